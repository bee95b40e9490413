//! The edge between the command line and the library: logging set-up, running a command,
//! printing its outcome and choosing the exit code. `main` stays a few lines; this module is what
//! it calls, so tests of the library never print.

use std::io::{IsTerminal, Write};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{ArgMatches, CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::base::duration;
use crate::base::error::{self, exit};
use crate::base::progress::ProgressMode;
use crate::base::secret::{self, Secret};
use crate::engine::libgit2::{self, Session};
use crate::report::metrics;
use crate::report::summary::{ListSummary, Named, Status, Summary};
use crate::settings::config::{SshConfig, SyncConfig};
use crate::settings::flags::MetricsFormat;
use crate::settings::flags::{Cli, Command, CredentialHelperArgs, SyncArgs};
use crate::settings::{discover, mirror_list};
use crate::sync::run;
use crate::transport::auth::{Auth, SshKey};
use crate::transport::known_hosts;
use crate::transport::secret_source::SecretSource;

/// The program: parse, set up logging, run, map the outcome to an exit code.
pub fn main() -> ExitCode {
    secret::register_inputs(std::env::args_os().skip(1));
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return usage_error(&err),
    };
    init_tracing(cli.verbose, cli.quiet);
    let code = match cli.command {
        Command::Sync(args) => match (&args.config, matches.subcommand_matches("sync")) {
            (Some(file), Some(explicit)) => sync_list(file, &args, explicit, cli.quiet),
            _ => sync(&args, cli.quiet),
        },
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
        crate::base::text::escape(&secret::scrub(first)),
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

/// The process-wide network settings, once, before any thread or connection: libgit2's (its
/// timeouts, no machine configuration) and the AWS SDK's timeouts.
fn init_network(timeout: Duration) -> anyhow::Result<()> {
    libgit2::init(timeout)?;
    crate::aws::config::set_network_timeout(timeout);
    Ok(())
}

fn sync(args: &SyncArgs, quiet: bool) -> i32 {
    if args.repo.iter().any(|r| !r.trim().is_empty()) {
        return report_error(&error::usage(
            "--repo (or BACKLOG_MIRROR_REPO) selects mirrors of a list: give --config FILE too",
        ));
    }
    let checked = SyncConfig::from_args(args).and_then(|cfg| cfg.check_cache_place().map(|()| cfg));
    let cfg = match checked {
        Ok(cfg) => cfg,
        Err(err) => return report_error(&err),
    };
    if let Err(err) = init_network(cfg.network_timeout()) {
        return report_error(&err);
    }
    // A secret that cannot be read is one line, as any other setting found wrong.
    let auth = match build_auth(&cfg, &SecretReads::default()) {
        Ok(auth) => auth,
        Err(err) => {
            emit_metrics(args, &cfg.mirror_name, &failed_summary(&cfg, &err));
            return report_error(&err);
        }
    };
    let session = Session {
        auth,
        progress: cfg.progress,
        ssh: Default::default(),
    };
    let outcome = run::sync(&cfg, &session);
    let code = outcome.exit_code();
    emit_metrics(args, &cfg.mirror_name, &outcome.summary);
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

/// One mirror of a list, its secrets read first: a secret that cannot be read fails this
/// mirror only.
fn run_one(cfg: &SyncConfig, secrets: &SecretReads) -> run::Outcome {
    match build_auth(cfg, secrets) {
        Ok(auth) => {
            let session = Session {
                auth,
                progress: cfg.progress,
                ssh: Default::default(),
            };
            run::sync(cfg, &session)
        }
        Err(err) => failed(cfg, err),
    }
}

/// The outcome of a mirror that failed before or outside its sync.
fn failed(cfg: &SyncConfig, err: anyhow::Error) -> run::Outcome {
    run::Outcome {
        summary: failed_summary(cfg, &err),
        error: Some(err),
    }
}

fn failed_summary(cfg: &SyncConfig, err: &anyhow::Error) -> Summary {
    let mut summary = Summary::new(
        cfg.source.url.redacted(),
        cfg.target.url.redacted(),
        &cfg.mirror_path().display().to_string(),
        cfg.dry_run,
    );
    summary.exit_code = error::exit_code(err);
    summary.status = Status::Failed;
    summary.error = Some(error::one_line(err));
    summary
}

/// The mirror's EMF line, alone on its line: on stdout, or on stderr when stdout carries the
/// JSON summary.
fn emit_metrics(args: &SyncArgs, name: &str, summary: &Summary) {
    if args.metrics != MetricsFormat::Emf {
        return;
    }
    let line = secret::scrub(&metrics::emf_line(&args.metrics_namespace, name, summary));
    if args.json {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    } else {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// Every mirror of the list (or those `--repo` names), `--jobs` at a time. Each mirror's
/// settings are checked before the first one runs; then one mirror's failure is its own.
fn sync_list(file: &Path, args: &SyncArgs, explicit: &ArgMatches, quiet: bool) -> i32 {
    let started = Instant::now();
    let mut list = match mirror_list::load(file, explicit) {
        Ok(list) => list,
        Err(err) => return report_error(&err),
    };
    let discover = match discover::Discover::from_list(&mut list) {
        Ok(discover) => discover,
        Err(err) => return report_error(&err),
    };
    let discovery = match discover {
        None => None,
        Some(discover) => {
            if let Err(err) = init_network(discover.network_timeout) {
                return report_error(&err);
            }
            match discover::run(&discover, &mut list, &args.repo) {
                Ok(found) => Some(found),
                Err(err) => return report_error(&err),
            }
        }
    };
    let selected = match list.select(&args.repo) {
        Ok(selected) => selected,
        Err(err) => {
            // A name only discovery could answer, when discovery failed: that failure is why.
            if let Some(found) = &discovery
                && let Some(why) = &found.error
            {
                let _ = writeln!(std::io::stderr(), "error: {why}");
                return found.exit_code;
            }
            return report_error(&err);
        }
    };
    let mut configs = Vec::with_capacity(selected.len());
    for listed in &selected {
        match SyncConfig::from_args(&listed.args) {
            Ok(mut cfg) => {
                cfg.mirror_name = listed.name.clone();
                if let Err(err) = cfg.check_cache_place() {
                    return report_error(&listed.locate(&list.file, err));
                }
                // A bar redrawn in place cannot be shared by mirrors running at once.
                if args.jobs > 1 && selected.len() > 1 && cfg.progress.mode == ProgressMode::Auto {
                    cfg.progress.mode = ProgressMode::Plain;
                    cfg.push.progress.mode = ProgressMode::Plain;
                }
                configs.push(cfg);
            }
            Err(err) => return report_error(&listed.locate(&list.file, err)),
        }
    }
    let targets: Vec<_> = configs.iter().map(|cfg| &cfg.target).collect();
    let refused = match list.check_targets(&selected, &targets) {
        Ok(refused) => refused,
        Err(err) => return report_error(&err),
    };
    // libgit2's SSH transport reads its timeout from a global: one value for the whole process.
    if let Some((first, cfg, listed)) = configs.first().and_then(|first| {
        configs
            .iter()
            .zip(&selected)
            .find(|(cfg, _)| cfg.network_timeout() != first.network_timeout())
            .map(|(cfg, listed)| (first, cfg, listed))
    }) {
        return report_error(&error::usage(format!(
            "{}:{}: mirror '{}', key 'network-timeout': {} differs from the {} of mirror '{}';              mirrors synced in one run share one network timeout (libgit2's is process-wide):              set it in [defaults]",
            list.file,
            listed.line_of("network-timeout"),
            listed.name,
            duration::show(cfg.network_timeout()),
            duration::show(first.network_timeout()),
            selected[0].name
        )));
    }
    if let Some(first) = configs.first()
        && let Err(err) = init_network(first.network_timeout())
    {
        return report_error(&err);
    }
    let secrets = SecretReads::default();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Named>>> = Mutex::new(vec![None; configs.len()]);
    let workers = usize::from(args.jobs).min(configs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(cfg) = configs.get(i) else { break };
                    // At error level, so that the name is on every line any log level lets through.
                    let span = tracing::error_span!("mirror", name = %cfg.mirror_name);
                    let outcome = span.in_scope(|| {
                        // A bug in one mirror's sync (the hook has printed the panic) is that
                        // mirror's failure; its cache lock went with the unwinding.
                        if let Some(why) = &refused[i] {
                            let outcome = failed(cfg, error::usage(why.clone()));
                            tracing::error!("{why}");
                            return outcome;
                        }
                        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            run_one(cfg, &secrets)
                        }))
                        .unwrap_or_else(|_| {
                            failed(
                                cfg,
                                anyhow::anyhow!(
                                    "backlog-mirror panicked syncing this mirror (a bug; please \
                                     report it); the other mirrors went on"
                                ),
                            )
                        });
                        if let Some(err) = &outcome.error {
                            tracing::error!("{}", error::one_line(err));
                        }
                        outcome
                    });
                    emit_metrics(args, &cfg.mirror_name, &outcome.summary);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Named {
                        name: cfg.mirror_name.clone(),
                        summary: outcome.summary,
                    });
                }
            });
        }
    });
    let named: Vec<Named> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let mut summary = ListSummary::new(named);
    if let Some(found) = &discovery {
        summary = summary.with_discovery(
            serde_json::to_value(found).unwrap_or_default(),
            found.human(),
            found.exit_code,
        );
    }
    if args.json {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            secret::scrub(&summary.to_json())
        );
    }
    if !quiet || summary.exit_code != exit::OK {
        let mut text = Vec::new();
        let _ = summary.write_human(&mut text, started.elapsed().as_secs_f64());
        let _ =
            std::io::stderr().write_all(secret::scrub(&String::from_utf8_lossy(&text)).as_bytes());
    }
    summary.exit_code
}

fn credential_helper(args: &CredentialHelperArgs) -> i32 {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match crate::aws::credential_helper::run(args.operation, stdin, stdout) {
        Ok(()) => exit::OK,
        Err(err) => report_error(&err),
    }
}

/// Read every secret the run needs (Parameter Store included) before the first connection, so a
/// missing key fails fast and the transfer never stalls half-way on it.
fn build_auth(cfg: &SyncConfig, secrets: &SecretReads) -> anyhow::Result<Auth> {
    let region = cfg.region.as_deref();
    let SshConfig {
        key,
        passphrase,
        agent,
        host_keys,
    } = &cfg.ssh;
    let ssh_key = match key {
        Some(source) => {
            let raw = secrets.read(source, region)?;
            let key = known_hosts::normalize_private_key(raw.expose())
                .map_err(|why| error::usage(format!("{}: {why}", source.flag())))?;
            // A file written by `echo` or a pasted variable ends in a newline that is not part
            // of the passphrase; spaces may be, so only line endings go.
            let passphrase = passphrase
                .as_ref()
                .map(|p| secrets.read(p, region))
                .transpose()?
                .map(|p| Secret::new(p.expose().trim_end_matches(['\r', '\n']).to_string()));
            if known_hosts::key_is_encrypted(&key) && passphrase.is_none() {
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

/// The SSH key and passphrase read once per run, not once per mirror: a list's mirrors usually
/// share the key of `[defaults]`, and 50 reads of one Parameter Store parameter at once would
/// meet its request rate limit. Reads take turns, so a second mirror waits for the first's read
/// and uses it; a failed read is not kept, so each mirror reports its own failure.
#[derive(Default)]
struct SecretReads {
    read: Mutex<Vec<(SecretKey, Secret)>>,
}

/// A secret's source and the region it was read in.
type SecretKey = (SecretSource, Option<String>);

impl SecretReads {
    fn read(&self, source: &SecretSource, region: Option<&str>) -> anyhow::Result<Secret> {
        let key = (source.clone(), region.map(str::to_string));
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, secret)) = read.iter().find(|(k, _)| *k == key) {
            return Ok(secret.clone());
        }
        let secret = source.read(region)?;
        read.push((key, secret.clone()));
        Ok(secret)
    }
}

fn report_error(err: &anyhow::Error) -> i32 {
    let _ = writeln!(std::io::stderr(), "error: {}", error::one_line(err));
    error::exit_code(err)
}
