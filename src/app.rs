//! The edge between the command line and the library: logging set-up, running a command,
//! printing its outcome and choosing the exit code. `main` stays a few lines; this module is what
//! it calls, so tests of the library never print.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::auth::{Auth, SshKey};
use crate::cli::{Cli, Command, CredentialHelperArgs, SyncArgs};
use crate::config::{SshConfig, SyncConfig};
use crate::error::{self, exit};
use crate::libgit2::{self, Session};
use crate::mirror;
use crate::secret::{self, Secret};
use crate::ssh;

/// The program: parse, set up logging, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    secret::register_inputs(std::env::args_os().skip(1));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_tracing(cli.verbose, cli.quiet);
    let code = match cli.command {
        Command::Sync(args) => sync(&args, cli.quiet),
        Command::CredentialHelper(args) => credential_helper(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// clap's usage errors, cut to the one line that names the flag, with exit code 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        let code = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::USAGE
        } else {
            exit::OK
        };
        return ExitCode::from(code as u8);
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let _ = writeln!(
        std::io::stderr(),
        "error: {}; see 'backlog-mirror {} --help'",
        secret::scrub(first),
        if text.contains("credential-helper") {
            "credential-helper"
        } else {
            "sync"
        }
    );
    ExitCode::from(exit::USAGE as u8)
}

/// Log to stderr; `-v`/`-q` pick the level and `RUST_LOG` overrides them. Panics are printed
/// through the same scrubbing as logs.
fn init_tracing(verbose: u8, quiet: bool) {
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

fn sync(args: &SyncArgs, quiet: bool) -> i32 {
    let cfg = match SyncConfig::from_args(args) {
        Ok(cfg) => cfg,
        Err(err) => return report_error(&err),
    };
    if let Err(err) = libgit2::init(cfg.network_timeout()) {
        return report_error(&err);
    }
    let auth = match build_auth(&cfg) {
        Ok(auth) => auth,
        Err(err) => return report_error(&err),
    };
    let session = Session {
        auth,
        progress: cfg.progress,
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

fn credential_helper(args: &CredentialHelperArgs) -> i32 {
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
    let region = cfg.region.as_deref();
    let SshConfig {
        key,
        passphrase,
        agent,
        host_keys,
    } = &cfg.ssh;
    let ssh_key = match key {
        Some(source) => {
            let raw = source.read(region)?;
            let key = ssh::normalize_private_key(raw.expose())
                .map_err(|why| error::usage(format!("{}: {why}", source.flag())))?;
            // A file written by `echo` or a pasted variable ends in a newline that is not part
            // of the passphrase; spaces may be, so only line endings go.
            let passphrase = passphrase
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
    Ok(Auth::new(
        ssh_key,
        *agent,
        host_keys.clone(),
        cfg.source.login(region)?,
        cfg.target.login(region)?,
    ))
}

fn report_error(err: &anyhow::Error) -> i32 {
    let _ = writeln!(std::io::stderr(), "error: {}", error::one_line(err));
    error::exit_code(err)
}
