//! The command line: flags, their environment variables and their value syntax.
//!
//! Every flag reads `BACKLOG_MIRROR_<FLAG>` too, so a buildspec can stay a block of `env:` lines
//! and one bare `backlog-mirror sync`. Parsing here is purely syntactic; what needs the file system
//! or cross-flag checks lives in `settings::config`, which turns these raw values into a validated
//! `SyncConfig`. Settings that have a default are optional here and get it in `settings::config`, so that
//! values from several places (the command line, the environment, a mirror list) can be merged
//! before they are checked.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::aws::credential_helper::Operation;
use crate::base::duration;
use crate::base::progress::ProgressMode;
use crate::engine::push::PushEngine;

pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  the target is an exact mirror of the source (as of the last look)
  1  sync failed: network, authentication, or refs rejected by the target
  2  bad usage or configuration: the message names the flag or value
  3  refused by the delete guard; the message says what earlier rounds had pushed
  4  the cache lock was not acquired within --lock-timeout
With --config: the most severe of the mirrors' codes, 3 > 1 > 2 > 4 > 0.";

#[derive(Debug, Parser)]
#[command(
    name = "backlog-mirror",
    version = env!("BACKLOG_MIRROR_VERSION"),
    about = "Keep an exact mirror of a Git repository (e.g. on Backlog) in AWS CodeCommit or any Git remote",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub(crate) struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, env = "BACKLOG_MIRROR_VERBOSE")]
    pub(crate) verbose: u8,

    /// Only warnings and errors; no summary unless something failed.
    #[arg(short, long, global = true, env = "BACKLOG_MIRROR_QUIET")]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch every ref from the source and mirror it to the target.
    #[command(after_help = EXIT_CODES)]
    Sync(Box<SyncArgs>),
    /// A git credential helper that signs CodeCommit requests (get|store|erase).
    CredentialHelper(CredentialHelperArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// Mirror every repository of this TOML list ([defaults] and [[mirror]] tables; keys are
    /// these flags' long names) instead of one --source/--target pair.
    #[arg(
        long,
        value_name = "FILE",
        env = "BACKLOG_MIRROR_CONFIG",
        help_heading = "Mirror list"
    )]
    pub(crate) config: Option<PathBuf>,

    /// Only the list's mirror of this name, or of this Backlog PROJECT/repo (repeatable;
    /// comma-separated in the variable; empty: every mirror).
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_REPO",
        help_heading = "Mirror list"
    )]
    pub(crate) repo: Vec<String>,

    /// Mirrors of the list synced at once.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64),
          env = "BACKLOG_MIRROR_JOBS", help_heading = "Mirror list")]
    pub(crate) jobs: u16,

    /// Print one CloudWatch embedded-metric-format line per mirror (stdout; stderr with --json).
    #[arg(
        long,
        value_enum,
        default_value_t = MetricsFormat::None,
        env = "BACKLOG_MIRROR_METRICS",
        help_heading = "Metrics"
    )]
    pub(crate) metrics: MetricsFormat,

    /// CloudWatch namespace of those metrics.
    #[arg(long, value_name = "NAMESPACE", default_value = "BacklogMirror",
          value_parser = parse_namespace, env = "BACKLOG_MIRROR_METRICS_NAMESPACE",
          help_heading = "Metrics")]
    pub(crate) metrics_namespace: String,

    /// Repository to mirror: path, file://, git://, http(s)://, ssh:// or user@host:path.
    #[arg(long, value_name = "URL", env = "BACKLOG_MIRROR_SOURCE",
          conflicts_with_all = ["backlog_space", "backlog_domain", "backlog_project", "backlog_repo"])]
    pub(crate) source: Option<String>,

    /// Remote to make an exact mirror of the source (same URL forms).
    #[arg(
        long,
        value_name = "URL",
        env = "BACKLOG_MIRROR_TARGET",
        conflicts_with = "codecommit_repo"
    )]
    pub(crate) target: Option<String>,

    /// Directory holding the bare mirror [default: $XDG_CACHE_HOME/backlog-mirror or ~/.cache/backlog-mirror].
    #[arg(long, value_name = "DIR", env = "BACKLOG_MIRROR_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Name of the mirror in the cache dir (<DIR>/<NAME>.git) [default: derived from the source URL].
    #[arg(long, value_name = "NAME", env = "BACKLOG_MIRROR_MIRROR_NAME")]
    pub(crate) mirror_name: Option<String>,

    /// How long to wait for another sync holding the same cache (e.g. 30s, 10m, 1h) [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "BACKLOG_MIRROR_LOCK_TIMEOUT")]
    pub(crate) lock_timeout: Option<Duration>,

    /// Do not fill an empty cache from the target before fetching from the source.
    #[arg(long, env = "BACKLOG_MIRROR_NO_SEED")]
    pub(crate) no_seed: bool,

    /// Refuse a plan deleting more refs than this [default: half the target's refs, at least 10].
    #[arg(long, value_name = "N", value_parser = parse_max_delete, allow_negative_numbers = true, env = "BACKLOG_MIRROR_MAX_DELETE")]
    pub(crate) max_delete: Option<usize>,

    /// Turn the delete guard off: allow emptying the target or mass deletes.
    #[arg(long, env = "BACKLOG_MIRROR_ALLOW_MASS_DELETE")]
    pub(crate) allow_mass_delete: bool,

    /// Fetch-and-push rounds while the source keeps moving during a sync [default: 3].
    #[arg(long, value_name = "N", value_parser = parse_max_rounds, allow_negative_numbers = true,
          env = "BACKLOG_MIRROR_MAX_ROUNDS")]
    pub(crate) max_rounds: Option<u32>,

    /// Only mirror refs matching this glob on the full ref name (repeatable; `*` matches `/`).
    #[arg(
        long,
        value_name = "GLOB",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_INCLUDE"
    )]
    pub(crate) include: Vec<String>,

    /// Never push or delete refs matching this glob, e.g. 'refs/pull/*' (repeatable).
    #[arg(
        long,
        value_name = "GLOB",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_EXCLUDE"
    )]
    pub(crate) exclude: Vec<String>,

    /// Most ref updates in one push; larger plans are split [default: 4000 for CodeCommit, which
    /// takes no more; else the whole plan in one push].
    #[arg(long, value_name = "N", value_parser = parse_batch_size, allow_negative_numbers = true,
          env = "BACKLOG_MIRROR_BATCH_SIZE")]
    pub(crate) batch_size: Option<usize>,

    /// Who builds and sends packs on push [default: auto].
    #[arg(long, value_enum, env = "BACKLOG_MIRROR_PUSH_ENGINE")]
    pub(crate) push_engine: Option<PushEngine>,

    /// Give up on a remote that accepts no connection or sends nothing for this long [default: 2m].
    #[arg(long, value_name = "DURATION", value_parser = parse_network_timeout,
          env = "BACKLOG_MIRROR_NETWORK_TIMEOUT")]
    pub(crate) network_timeout: Option<Duration>,

    /// Retries of a network step after a transient failure (connection reset or refused, HTTP
    /// 5xx, timeout), with exponential backoff; 0 to 10 [default: 2].
    #[arg(long, value_name = "N", value_parser = parse_retries, env = "BACKLOG_MIRROR_RETRIES")]
    pub(crate) retries: Option<u32>,

    /// Backlog space key: with the other --backlog-* flags, builds the source URL
    /// KEY@KEY.git.DOMAIN:/PROJECT/REPO.git [env: BACKLOG_SPACE_KEY too].
    #[arg(
        long,
        value_name = "KEY",
        env = "BACKLOG_MIRROR_BACKLOG_SPACE",
        help_heading = "Backlog source"
    )]
    pub(crate) backlog_space: Option<String>,

    /// backlog.jp or backlog.com [env: BACKLOG_DOMAIN_NAME too].
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "BACKLOG_MIRROR_BACKLOG_DOMAIN",
        help_heading = "Backlog source"
    )]
    pub(crate) backlog_domain: Option<String>,

    /// Backlog project key [env: BACKLOG_PROJECT_KEY too].
    #[arg(
        long,
        value_name = "PROJECT",
        env = "BACKLOG_MIRROR_BACKLOG_PROJECT",
        help_heading = "Backlog source"
    )]
    pub(crate) backlog_project: Option<String>,

    /// Backlog repository name [env: BACKLOG_REPOSITORY_NAME too].
    #[arg(
        long,
        value_name = "REPO",
        env = "BACKLOG_MIRROR_BACKLOG_REPO",
        help_heading = "Backlog source"
    )]
    pub(crate) backlog_repo: Option<String>,

    /// Backlog API key for [discover] in the mirror list, from this Parameter Store parameter.
    #[arg(
        group = "backlog-api-key",
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_BACKLOG_API_KEY_SSM",
        help_heading = "Backlog discovery"
    )]
    pub(crate) backlog_api_key_ssm: Option<String>,

    /// Backlog API key for [discover], from this environment variable.
    #[arg(
        group = "backlog-api-key",
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_BACKLOG_API_KEY_ENV",
        help_heading = "Backlog discovery"
    )]
    pub(crate) backlog_api_key_env: Option<String>,

    /// Backlog API key for [discover], from this file.
    #[arg(
        group = "backlog-api-key",
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_BACKLOG_API_KEY_FILE",
        help_heading = "Backlog discovery"
    )]
    pub(crate) backlog_api_key_file: Option<PathBuf>,

    /// SSH private key from this Parameter Store parameter (SecureString, read with decryption).
    #[arg(
        group = "ssh-key",
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SSH_KEY_SSM",
        help_heading = "SSH"
    )]
    pub(crate) ssh_key_ssm: Option<String>,

    /// SSH private key from this environment variable (e.g. set by a buildspec's parameter-store block).
    #[arg(
        group = "ssh-key",
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SSH_KEY_ENV",
        help_heading = "SSH"
    )]
    pub(crate) ssh_key_env: Option<String>,

    /// SSH private key from this file.
    #[arg(
        group = "ssh-key",
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SSH_KEY_FILE",
        help_heading = "SSH"
    )]
    pub(crate) ssh_key_file: Option<PathBuf>,

    /// Passphrase of an encrypted key, from this Parameter Store parameter.
    #[arg(
        group = "ssh-passphrase",
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_SSM",
        help_heading = "SSH"
    )]
    pub(crate) ssh_passphrase_ssm: Option<String>,

    /// Passphrase of an encrypted key, from this environment variable.
    #[arg(
        group = "ssh-passphrase",
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_ENV",
        help_heading = "SSH"
    )]
    pub(crate) ssh_passphrase_env: Option<String>,

    /// Passphrase of an encrypted key, from this file.
    #[arg(
        group = "ssh-passphrase",
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_FILE",
        help_heading = "SSH"
    )]
    pub(crate) ssh_passphrase_file: Option<PathBuf>,

    /// Accept SSH host keys listed in this OpenSSH known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(
        group = "host-key-policy",
        long,
        value_name = "FILE",
        env = "BACKLOG_MIRROR_KNOWN_HOSTS",
        help_heading = "SSH"
    )]
    pub(crate) known_hosts: Option<PathBuf>,

    /// Accept the SSH host key with this fingerprint, e.g. SHA256:abc... (repeatable).
    #[arg(
        group = "host-key-policy",
        long,
        value_name = "SHA256:...",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_HOST_KEY_FINGERPRINT",
        help_heading = "SSH"
    )]
    pub(crate) host_key_fingerprint: Vec<String>,

    /// Trust an SSH host's key on first use (logged as a warning): what `ssh-keyscan` did.
    #[arg(long, env = "BACKLOG_MIRROR_ACCEPT_NEW_HOST_KEY", help_heading = "SSH")]
    pub(crate) accept_new_host_key: bool,

    /// AWS region for Parameter Store and CodeCommit [default: from the AWS configuration].
    #[arg(
        long,
        value_name = "REGION",
        env = "BACKLOG_MIRROR_REGION",
        help_heading = "AWS"
    )]
    pub(crate) region: Option<String>,

    /// Target the CodeCommit repository of this name [env: CODECOMMIT_REPOSITORY_NAME too].
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_CODECOMMIT_REPO",
        help_heading = "AWS"
    )]
    pub(crate) codecommit_repo: Option<String>,

    /// CodeCommit Git endpoint host (or https URL) instead of git-codecommit.REGION.amazonaws.com.
    #[arg(
        long,
        value_name = "HOST",
        env = "BACKLOG_MIRROR_CODECOMMIT_ENDPOINT",
        help_heading = "AWS"
    )]
    pub(crate) codecommit_endpoint: Option<String>,

    /// HTTPS source password or token from this Parameter Store parameter.
    #[arg(
        group = "source-password",
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_SSM",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) source_password_ssm: Option<String>,

    /// HTTPS source password or token from this environment variable.
    #[arg(
        group = "source-password",
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_ENV",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) source_password_env: Option<String>,

    /// HTTPS source password or token from this file.
    #[arg(
        group = "source-password",
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_FILE",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) source_password_file: Option<PathBuf>,

    /// HTTPS target password or token (GitHub, GitLab...) from this Parameter Store parameter.
    #[arg(
        group = "target-password",
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_SSM",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) target_password_ssm: Option<String>,

    /// HTTPS target password or token from this environment variable.
    #[arg(
        group = "target-password",
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_ENV",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) target_password_env: Option<String>,

    /// HTTPS target password or token from this file.
    #[arg(
        group = "target-password",
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_FILE",
        help_heading = "HTTPS credentials"
    )]
    pub(crate) target_password_file: Option<PathBuf>,

    /// Print the summary as one JSON object on stdout.
    #[arg(long, env = "BACKLOG_MIRROR_JSON")]
    pub(crate) json: bool,

    /// Fetch into the cache and print the plan; change nothing on the target.
    #[arg(long, env = "BACKLOG_MIRROR_DRY_RUN")]
    pub(crate) dry_run: bool,

    /// Transfer progress on stderr [default: auto].
    #[arg(long, value_enum, env = "BACKLOG_MIRROR_PROGRESS")]
    pub(crate) progress: Option<ProgressMode>,

    /// Time between plain progress lines (CI logs) [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_progress_interval,
          env = "BACKLOG_MIRROR_PROGRESS_INTERVAL")]
    pub(crate) progress_interval: Option<Duration>,

    /// Create a missing target: a CodeCommit repository (CreateRepository) or a local bare
    /// repository (git init --bare).
    #[arg(long, env = "BACKLOG_MIRROR_CREATE_TARGET")]
    pub(crate) create_target: bool,

    /// When pushed branches use Git LFS (whose objects the target does not get): warn, or fail
    /// before pushing anything [default: warn].
    #[arg(long, value_enum, env = "BACKLOG_MIRROR_LFS")]
    pub(crate) lfs: Option<LfsPolicy>,
}

#[derive(Debug, Args)]
pub(crate) struct CredentialHelperArgs {
    /// The operation git asks for.
    #[arg(value_enum)]
    pub(crate) operation: Operation,
}

/// `--lock-timeout`: any duration up to 7 days.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    duration::parse(raw)
}

/// `--network-timeout`: zero would turn timeouts off, and less than a second fails healthy
/// connections (a TLS handshake on a slow link).
fn parse_network_timeout(raw: &str) -> Result<Duration, String> {
    duration::parse_at_least(raw, Duration::from_secs(1))
}

/// `--progress-interval`: zero printed a line per object.
fn parse_progress_interval(raw: &str) -> Result<Duration, String> {
    duration::parse_at_least(raw, Duration::from_millis(100))
}

/// A whole number from `least` to `most`, of the type the setting is kept in: nothing is cast
/// down later.
fn parse_number<T>(raw: &str, least: T, most: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value: T = raw
        .trim()
        .parse()
        .map_err(|_| format!("'{raw}' is not a whole number: expected e.g. 50"))?;
    if value < least {
        return Err(format!("'{raw}' must be at least {least}"));
    }
    if value > most {
        return Err(format!("'{raw}' is out of range: give {least} to {most}"));
    }
    Ok(value)
}

/// `--max-delete`: zero allowed.
fn parse_max_delete(raw: &str) -> Result<usize, String> {
    parse_number(raw, 0, usize::MAX)
}

/// `--max-rounds`: at least one.
fn parse_max_rounds(raw: &str) -> Result<u32, String> {
    parse_number(raw, 1, u32::MAX)
}

/// `--batch-size`: at least one.
fn parse_batch_size(raw: &str) -> Result<usize, String> {
    parse_number(raw, 1, usize::MAX)
}

/// `--retries`: 0 to 10 (each retry waits longer, up to 30 s).
fn parse_retries(raw: &str) -> Result<u32, String> {
    parse_number(raw, 0, 10)
}

/// What a run does when pushed branches use LFS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LfsPolicy {
    /// Push, and say which refs hold LFS pointers.
    #[default]
    Warn,
    /// Push nothing, exit 1.
    Fail,
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MetricsFormat {
    /// One embedded-metric-format JSON line per mirror.
    Emf,
    /// No metrics.
    None,
}

/// `--metrics-namespace`: what CloudWatch accepts as a namespace (1 to 255 printable ASCII
/// characters, no leading ':'), and not `AWS/...`, which is reserved for AWS's own services.
pub(crate) fn parse_namespace(raw: &str) -> Result<String, String> {
    let printable = raw.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if raw.is_empty() || raw.len() > 255 || !printable || raw.starts_with(':') {
        return Err(format!(
            "'{raw}' is not a CloudWatch namespace: give 1 to 255 printable ASCII characters, \
             e.g. BacklogMirror/prod"
        ));
    }
    if raw.starts_with("AWS/") {
        return Err(format!(
            "'{raw}' starts with AWS/, which CloudWatch keeps for AWS services"
        ));
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_are_ranged_in_their_own_type() {
        assert_eq!(parse_max_delete("0").unwrap(), 0);
        assert!(parse_max_rounds("0").is_err());
        assert!(parse_max_delete("-1").is_err());
        assert!(parse_max_delete("1e3").is_err());
        assert!(parse_max_rounds("4294967296").is_err());
        assert_eq!(parse_retries("10").unwrap(), 10);
        assert!(parse_retries("11").unwrap_err().contains("0 to 10"));
    }

    #[test]
    fn namespaces_cloudwatch_refuses_are_refused() {
        assert!(parse_namespace("BacklogMirror/prod-1").is_ok());
        assert!(parse_namespace("").is_err());
        assert!(parse_namespace(":x").is_err());
        assert!(parse_namespace("AWS/CodeBuild").is_err());
        assert!(parse_namespace("a\nb").is_err());
        assert!(parse_namespace(&"n".repeat(256)).is_err());
    }
}
