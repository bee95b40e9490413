//! The process's one async runtime, for the two libraries that need one: the AWS SDK and hyper.
//!
//! The rest of the tool is a straight line of blocking steps that wait on futures with
//! `block_on`. One worker thread drives connections (a push body streams from the caller's
//! thread while the worker writes it), started only when something needs it: a run between two
//! plain Git hosts over git:// or SSH never starts it. libgit2 must be initialised first: its
//! OpenSSL probing sets environment variables, which is unsafe once other threads run.

use std::sync::OnceLock;

use anyhow::{Context, Result};

/// The runtime, started on first use.
pub(crate) fn get() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // git2 sets OpenSSL's environment variables when it initialises, which is not safe once
    // the runtime's thread runs; have it do so now (the call does nothing else).
    git2::opts::enable_caching(true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("backlog-mirror-io")
        .enable_all()
        .build()
        .context("cannot start the runtime for HTTP and AWS calls")?;
    Ok(RUNTIME.get_or_init(|| rt))
}
