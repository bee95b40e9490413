//! `backlog-mirror credential-helper`: git's credential protocol, answered with CodeCommit
//! signatures.
//!
//! It lets plain git (and our own git push engine) reach CodeCommit with the same native signing
//! as the sync, replacing `aws codecommit credential-helper` without Python. Configure it with
//! `credential.helper='!backlog-mirror credential-helper'` and `credential.UseHttpPath=true`: the
//! repository name is part of what is signed, so git must send the path. Hosts that are not
//! CodeCommit get no answer, so git falls through to its other helpers.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use anyhow::{Context, Result};

use crate::aws::codecommit::{self, Signer};

/// What git asks of a credential helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Operation {
    Get,
    Store,
    Erase,
}

pub(crate) fn run(op: Operation, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let mut request = HashMap::new();
    for line in input.lines() {
        let line = line.context("cannot read git's credential request")?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            request.insert(key.to_string(), value.to_string());
        }
    }
    if op != Operation::Get {
        return Ok(());
    }
    if request.get("protocol").map(String::as_str) != Some("https") {
        return Ok(());
    }
    let Some(host) = request.get("host") else {
        return Ok(());
    };
    if !codecommit::is_codecommit_host(host) {
        return Ok(());
    }
    let Some(path) = request.get("path") else {
        anyhow::bail!(
            "git sent no repository path for {host}; set credential.UseHttpPath=true so the \
             repository can be signed"
        );
    };
    let name = path
        .trim_start_matches('/')
        .strip_prefix("v1/repos/")
        .map(|n| n.trim_end_matches('/').trim_end_matches(".git"))
        .with_context(|| format!("'{path}' is not a CodeCommit repository path (v1/repos/NAME)"))?;
    let name = codecommit::check_name(name).map_err(anyhow::Error::msg)?;
    // The region of a CodeCommit host name, else the sync's (which starts us), else as the SDK
    // finds it, as `sync` does.
    let from_host = match codecommit::parse(&format!("https://{host}/v1/repos/{name}")) {
        Ok(Some(repo)) => repo.region,
        _ => None,
    };
    let given = from_host.or_else(|| std::env::var("BACKLOG_MIRROR_REGION").ok());
    let region = crate::aws::config::region(given.as_deref(), None)?;
    let signer = Signer::new(region.as_deref(), None, host, &name)?;
    let (username, password) = signer.credentials()?;
    // The one place a password is written, by design: git reads it from our stdout.
    writeln!(output, "username={username}")?;
    writeln!(output, "password={}", password.expose())?;
    output.flush()?;
    Ok(())
}
