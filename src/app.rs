//! The edge between the command line and the library: logging set-up, running a command,
//! printing its outcome and choosing the exit code. `main` stays a few lines; this module is what
//! it calls, so tests of the library never print.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use std::collections::HashMap;

use crate::auth::{Auth, PasswordSource, SshKey};
use crate::cli::{CredentialHelperArgs, SyncArgs};
use crate::codecommit;
use crate::config::SyncConfig;
use crate::error::{self, exit};
use crate::mirror;
use crate::remote::{self, Session};
use crate::secret::{self, Secret};
use crate::ssh;

/// Log to stderr; `-v`/`-q` pick the level and `RUST_LOG` overrides them. Panics are printed
/// through the same scrubbing as logs.
pub fn init_tracing(verbose: u8, quiet: bool) {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            std::io::stderr(),
            "backlog-mirror panicked (a bug; please report it): {}",
            secret::scrub(&info.to_string())
        );
    }));
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
        .with_writer(|| secret::ScrubbingWriter(std::io::stderr()))
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
    let auth = match build_auth(&cfg) {
        Ok(auth) => auth,
        Err(err) => return report_error(&err),
    };
    let session = Session {
        auth,
        progress: cfg.progress,
        progress_interval: cfg.progress_interval,
    };
    let outcome = mirror::sync(&cfg, &session);
    let code = outcome.exit_code();
    if cfg.json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", secret::scrub(&outcome.summary.to_json()));
    }
    // A usage error is one line, even when found late (a cache directory that cannot be made).
    if code != exit::USAGE && (!quiet || code != exit::OK) {
        let mut text = Vec::new();
        let _ = outcome.summary.write_human(&mut text);
        let _ =
            std::io::stderr().write_all(secret::scrub(&String::from_utf8_lossy(&text)).as_bytes());
    }
    if let Some(err) = &outcome.error {
        let _ = writeln!(std::io::stderr(), "error: {}", error::one_line(err));
    }
    code
}

pub fn credential_helper(args: &CredentialHelperArgs) -> i32 {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match crate::credential_helper::run(args.operation, stdin, stdout) {
        Ok(()) => exit::OK,
        Err(err) => report_error(&err),
    }
}

/// Read every secret the run needs (Parameter Store included) before the first connection, so a
/// missing key fails fast and the transfer never stalls half-way on it.
fn build_auth(cfg: &SyncConfig) -> anyhow::Result<Auth> {
    let a = &cfg.auth;
    let region = a.region.as_deref();
    let ssh_key = match &a.ssh_key {
        Some(source) => {
            let raw = source.read(region)?;
            let key = ssh::normalize_private_key(raw.expose())
                .map_err(|why| error::usage(format!("{}: {why}", source.flag())))?;
            // A file written by `echo` or a pasted variable ends in a newline that is not part
            // of the passphrase; spaces may be, so only line endings go.
            let passphrase = a
                .ssh_passphrase
                .as_ref()
                .map(|p| p.read(region))
                .transpose()?
                .map(|p| Secret::new(p.expose().trim_end_matches(['\r', '\n']).to_string()));
            if ssh::key_is_encrypted(&key) && passphrase.is_none() {
                return Err(error::usage(format!(
                    "{}: the key is encrypted; give its passphrase with --ssh-passphrase-ssm, -env or -file",
                    source.flag()
                )));
            }
            Some(SshKey {
                private: Secret::new(key),
                passphrase,
            })
        }
        None => None,
    };
    let mut passwords = HashMap::new();
    for (source, url) in [
        (&a.source_password, &cfg.source),
        (&a.target_password, &cfg.target),
    ] {
        if let Some(source) = source {
            let value = source.read(region)?;
            let trimmed = Secret::new(value.expose().trim().to_string());
            passwords.insert(url.as_git_url().to_string(), trimmed);
        }
    }
    let mut signers: HashMap<String, PasswordSource> = HashMap::new();
    if let Some((repo, region)) = &a.codecommit {
        let signer = codecommit::Signer::new(repo, Some(region), a.codecommit_endpoint.as_deref())?;
        signers.insert(
            cfg.target.as_git_url().to_string(),
            Box::new(move || signer.credentials()),
        );
    }
    Ok(Auth::new(
        ssh_key,
        a.ssh_agent,
        a.host_keys.clone(),
        passwords,
        signers,
    ))
}

fn report_error(err: &anyhow::Error) -> i32 {
    let _ = writeln!(std::io::stderr(), "error: {}", error::one_line(err));
    error::exit_code(err)
}
