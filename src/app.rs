//! The edge between the command line and the library: logging set-up, running a command,
//! printing its outcome and choosing the exit code. `main` stays a few lines; this module is what
//! it calls, so tests of the library never print.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::auth::Auth;
use crate::cli::{CredentialHelperArgs, SyncArgs};
use crate::config::SyncConfig;
use crate::error::{self, exit};
use crate::mirror;
use crate::remote::{self, Session};

/// Log to stderr; `-v`/`-q` pick the level and `RUST_LOG` overrides them.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("backlog_mirror={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .without_time()
        .try_init();
}

pub fn sync(args: &SyncArgs, quiet: bool) -> i32 {
    let cfg = match SyncConfig::from_args(args) {
        Ok(cfg) => cfg,
        Err(err) => return report_error(&err),
    };
    if let Err(err) = remote::init(cfg.network_timeout) {
        return report_error(&err);
    }
    let session = Session {
        auth: Auth::default(),
        progress: cfg.progress,
        progress_interval: cfg.progress_interval,
    };
    let outcome = mirror::sync(&cfg, &session);
    let code = outcome.exit_code();
    if cfg.json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", outcome.summary.to_json());
    }
    if !quiet || code != exit::OK {
        let _ = outcome.summary.write_human(&mut std::io::stderr().lock());
    }
    if let Some(err) = &outcome.error {
        let _ = writeln!(std::io::stderr(), "error: {err:#}");
    }
    code
}

pub fn credential_helper(args: &CredentialHelperArgs) -> i32 {
    let _ = args;
    let _ = writeln!(
        std::io::stderr(),
        "error: credential-helper is not available in this build yet"
    );
    exit::FAILED
}

fn report_error(err: &anyhow::Error) -> i32 {
    let _ = writeln!(std::io::stderr(), "error: {err:#}");
    error::exit_code(err)
}
