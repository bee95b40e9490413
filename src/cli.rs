//! The command line: flags, their environment variables and their value syntax.
//!
//! Every flag reads `BACKLOG_MIRROR_<FLAG>` too, so a buildspec can stay a block of `env:` lines
//! and one bare `backlog-mirror sync`. Parsing here is purely syntactic; what needs the file system
//! or cross-flag checks lives in `config`, which turns these raw values into a validated
//! `SyncConfig`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  the target is an exact mirror of the source (as of the last look)
  1  sync failed: network, authentication, or refs rejected by the target
  2  bad usage or configuration: the message names the flag or value
  3  refused by the delete guard; the message says what earlier rounds had pushed
  4  the cache lock was not acquired within --lock-timeout";

#[derive(Debug, Parser)]
#[command(
    name = "backlog-mirror",
    version = env!("BACKLOG_MIRROR_VERSION"),
    about = "Keep an exact mirror of a Git repository (e.g. on Backlog) in AWS CodeCommit or any Git remote",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, env = "BACKLOG_MIRROR_VERBOSE")]
    pub verbose: u8,

    /// Only warnings and errors; no summary unless something failed.
    #[arg(short, long, global = true, env = "BACKLOG_MIRROR_QUIET")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch every ref from the source and mirror it to the target.
    #[command(after_help = EXIT_CODES)]
    Sync(Box<SyncArgs>),
    /// A git credential helper that signs CodeCommit requests (get|store|erase).
    CredentialHelper(CredentialHelperArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PushEngine {
    /// git's own pack-objects for large pushes when `git` is on PATH, libgit2 otherwise.
    Auto,
    /// Always the git CLI (fails if git is missing).
    Git,
    /// Always in-process libgit2.
    Libgit2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, periodic lines otherwise.
    Auto,
    /// Periodic plain lines even on a terminal.
    Plain,
    /// No progress output.
    Never,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Repository to mirror: path, file://, git://, http(s)://, ssh:// or user@host:path.
    #[arg(long, value_name = "URL", env = "BACKLOG_MIRROR_SOURCE")]
    pub source: Option<String>,

    /// Remote to make an exact mirror of the source (same URL forms).
    #[arg(long, value_name = "URL", env = "BACKLOG_MIRROR_TARGET")]
    pub target: Option<String>,

    /// Directory holding the bare mirror [default: $XDG_CACHE_HOME/backlog-mirror or ~/.cache/backlog-mirror].
    #[arg(long, value_name = "DIR", env = "BACKLOG_MIRROR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Name of the mirror in the cache dir (<DIR>/<NAME>.git) [default: derived from the source URL].
    #[arg(long, value_name = "NAME", env = "BACKLOG_MIRROR_MIRROR_NAME")]
    pub mirror_name: Option<String>,

    /// How long to wait for another sync holding the same cache (e.g. 30s, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration,
          env = "BACKLOG_MIRROR_LOCK_TIMEOUT")]
    pub lock_timeout: Duration,

    /// Do not fill an empty cache from the target before fetching from the source.
    #[arg(long, env = "BACKLOG_MIRROR_NO_SEED")]
    pub no_seed: bool,

    /// Refuse a plan deleting more refs than this [default: half the target's refs, at least 10].
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true, env = "BACKLOG_MIRROR_MAX_DELETE")]
    pub max_delete: Option<u64>,

    /// Turn the delete guard off: allow emptying the target or mass deletes.
    #[arg(long, env = "BACKLOG_MIRROR_ALLOW_MASS_DELETE")]
    pub allow_mass_delete: bool,

    /// Fetch-and-push rounds while the source keeps moving during a sync.
    #[arg(long, value_name = "N", default_value = "3", value_parser = parse_positive, allow_negative_numbers = true,
          env = "BACKLOG_MIRROR_MAX_ROUNDS")]
    pub max_rounds: u64,

    /// Only mirror refs matching this glob on the full ref name (repeatable; `*` matches `/`).
    #[arg(
        long,
        value_name = "GLOB",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_INCLUDE"
    )]
    pub include: Vec<String>,

    /// Never push or delete refs matching this glob, e.g. 'refs/pull/*' (repeatable).
    #[arg(
        long,
        value_name = "GLOB",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_EXCLUDE"
    )]
    pub exclude: Vec<String>,

    /// Most ref updates in one push; larger plans are split (CodeCommit takes 4,000).
    #[arg(long, value_name = "N", default_value = "4000", value_parser = parse_positive, allow_negative_numbers = true,
          env = "BACKLOG_MIRROR_BATCH_SIZE")]
    pub batch_size: u64,

    /// Who builds and sends packs on push.
    #[arg(long, value_enum, default_value_t = PushEngine::Auto, env = "BACKLOG_MIRROR_PUSH_ENGINE")]
    pub push_engine: PushEngine,

    /// Give up on a remote that accepts no connection or sends nothing for this long.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_network_timeout,
          env = "BACKLOG_MIRROR_NETWORK_TIMEOUT")]
    pub network_timeout: Duration,

    /// Retries of a network step after a transient failure (connection reset or refused, HTTP
    /// 5xx, timeout), with exponential backoff; 0 to 10.
    #[arg(long, value_name = "N", default_value = "2", value_parser = parse_retries,
          env = "BACKLOG_MIRROR_RETRIES")]
    pub retries: u32,

    /// Backlog space key: with the other --backlog-* flags, builds the source URL
    /// KEY@KEY.git.DOMAIN:/PROJECT/REPO.git [env: BACKLOG_SPACE_KEY too].
    #[arg(
        long,
        value_name = "KEY",
        env = "BACKLOG_MIRROR_BACKLOG_SPACE",
        help_heading = "Backlog source"
    )]
    pub backlog_space: Option<String>,

    /// backlog.jp or backlog.com [env: BACKLOG_DOMAIN_NAME too].
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "BACKLOG_MIRROR_BACKLOG_DOMAIN",
        help_heading = "Backlog source"
    )]
    pub backlog_domain: Option<String>,

    /// Backlog project key [env: BACKLOG_PROJECT_KEY too].
    #[arg(
        long,
        value_name = "PROJECT",
        env = "BACKLOG_MIRROR_BACKLOG_PROJECT",
        help_heading = "Backlog source"
    )]
    pub backlog_project: Option<String>,

    /// Backlog repository name [env: BACKLOG_REPOSITORY_NAME too].
    #[arg(
        long,
        value_name = "REPO",
        env = "BACKLOG_MIRROR_BACKLOG_REPO",
        help_heading = "Backlog source"
    )]
    pub backlog_repo: Option<String>,

    /// SSH private key from this Parameter Store parameter (SecureString, read with decryption).
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SSH_KEY_SSM",
        help_heading = "SSH"
    )]
    pub ssh_key_ssm: Option<String>,

    /// SSH private key from this environment variable (e.g. set by a buildspec's parameter-store block).
    #[arg(
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SSH_KEY_ENV",
        help_heading = "SSH"
    )]
    pub ssh_key_env: Option<String>,

    /// SSH private key from this file.
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SSH_KEY_FILE",
        help_heading = "SSH"
    )]
    pub ssh_key_file: Option<PathBuf>,

    /// Passphrase of an encrypted key, from this Parameter Store parameter.
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_SSM",
        help_heading = "SSH"
    )]
    pub ssh_passphrase_ssm: Option<String>,

    /// Passphrase of an encrypted key, from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_ENV",
        help_heading = "SSH"
    )]
    pub ssh_passphrase_env: Option<String>,

    /// Passphrase of an encrypted key, from this file.
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SSH_PASSPHRASE_FILE",
        help_heading = "SSH"
    )]
    pub ssh_passphrase_file: Option<PathBuf>,

    /// Accept SSH host keys listed in this OpenSSH known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(
        long,
        value_name = "FILE",
        env = "BACKLOG_MIRROR_KNOWN_HOSTS",
        help_heading = "SSH"
    )]
    pub known_hosts: Option<PathBuf>,

    /// Accept the SSH host key with this fingerprint, e.g. SHA256:abc... (repeatable).
    #[arg(
        long,
        value_name = "SHA256:...",
        value_delimiter = ',',
        env = "BACKLOG_MIRROR_HOST_KEY_FINGERPRINT",
        help_heading = "SSH"
    )]
    pub host_key_fingerprint: Vec<String>,

    /// Trust an SSH host's key on first use (logged as a warning): what `ssh-keyscan` did.
    #[arg(long, env = "BACKLOG_MIRROR_ACCEPT_NEW_HOST_KEY", help_heading = "SSH")]
    pub accept_new_host_key: bool,

    /// AWS region for Parameter Store and CodeCommit [default: from the AWS configuration].
    #[arg(
        long,
        value_name = "REGION",
        env = "BACKLOG_MIRROR_REGION",
        help_heading = "AWS"
    )]
    pub region: Option<String>,

    /// Target the CodeCommit repository of this name [env: CODECOMMIT_REPOSITORY_NAME too].
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_CODECOMMIT_REPO",
        help_heading = "AWS"
    )]
    pub codecommit_repo: Option<String>,

    /// CodeCommit Git endpoint host (or https URL) instead of git-codecommit.REGION.amazonaws.com.
    #[arg(
        long,
        value_name = "HOST",
        env = "BACKLOG_MIRROR_CODECOMMIT_ENDPOINT",
        help_heading = "AWS"
    )]
    pub codecommit_endpoint: Option<String>,

    /// HTTPS source password or token from this Parameter Store parameter.
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_SSM",
        help_heading = "HTTPS credentials"
    )]
    pub source_password_ssm: Option<String>,

    /// HTTPS source password or token from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_ENV",
        help_heading = "HTTPS credentials"
    )]
    pub source_password_env: Option<String>,

    /// HTTPS source password or token from this file.
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_SOURCE_PASSWORD_FILE",
        help_heading = "HTTPS credentials"
    )]
    pub source_password_file: Option<PathBuf>,

    /// HTTPS target password or token (GitHub, GitLab...) from this Parameter Store parameter.
    #[arg(
        long,
        value_name = "NAME",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_SSM",
        help_heading = "HTTPS credentials"
    )]
    pub target_password_ssm: Option<String>,

    /// HTTPS target password or token from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_ENV",
        help_heading = "HTTPS credentials"
    )]
    pub target_password_env: Option<String>,

    /// HTTPS target password or token from this file.
    #[arg(
        long,
        value_name = "PATH",
        env = "BACKLOG_MIRROR_TARGET_PASSWORD_FILE",
        help_heading = "HTTPS credentials"
    )]
    pub target_password_file: Option<PathBuf>,

    /// Print the summary as one JSON object on stdout.
    #[arg(long, env = "BACKLOG_MIRROR_JSON")]
    pub json: bool,

    /// Fetch into the cache and print the plan; change nothing on the target.
    #[arg(long, env = "BACKLOG_MIRROR_DRY_RUN")]
    pub dry_run: bool,

    /// Transfer progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, env = "BACKLOG_MIRROR_PROGRESS")]
    pub progress: ProgressMode,

    /// Seconds between plain progress lines (CI logs).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_progress_interval,
          env = "BACKLOG_MIRROR_PROGRESS_INTERVAL")]
    pub progress_interval: Duration,
}

#[derive(Debug, Args)]
pub struct CredentialHelperArgs {
    /// The operation git asks for.
    #[arg(value_enum)]
    pub operation: CredentialOperation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialOperation {
    Get,
    Store,
    Erase,
}

/// `90`, `90s`, `1.5m`, `10m`, `1h`, `250ms`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let hint = "expected a duration such as 30s, 10m or 1h";
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration: {hint}"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return Err(format!("'{raw}' has an unknown unit: {hint}")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err(format!("'{raw}' is out of range: {hint}, at most 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration of at least `least`.
fn parse_duration_from(raw: &str, least: Duration) -> Result<Duration, String> {
    let value = parse_duration(raw)?;
    if value < least {
        return Err(format!(
            "'{raw}' is too short: give at least {}",
            show_duration(least)
        ));
    }
    Ok(value)
}

/// `--network-timeout`: zero would turn timeouts off, and less than a second fails healthy
/// connections (a TLS handshake on a slow link).
pub fn parse_network_timeout(raw: &str) -> Result<Duration, String> {
    parse_duration_from(raw, Duration::from_secs(1))
}

/// `--progress-interval`: zero printed a line per object.
pub fn parse_progress_interval(raw: &str) -> Result<Duration, String> {
    parse_duration_from(raw, Duration::from_millis(100))
}

/// A duration as a person would write it, in the largest unit that keeps it whole: `200ms`,
/// `90s`, `10m`, `1h`; what `parse_duration` reads back to the same value.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return if d.is_zero() {
            "0s".to_string()
        } else {
            format!("{}us", d.as_micros())
        };
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A whole number, zero allowed.
pub fn parse_count(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse::<u64>()
        .map_err(|_| format!("'{raw}' is not a whole number: expected e.g. 50"))
}

/// `--retries`: 0 to 10 (each retry waits longer, up to 30 s).
pub fn parse_retries(raw: &str) -> Result<u32, String> {
    match parse_count(raw)? {
        n @ 0..=10 => Ok(n as u32),
        _ => Err(format!("'{raw}' is out of range: give 0 to 10")),
    }
}

/// A whole number of at least one.
pub fn parse_positive(raw: &str) -> Result<u64, String> {
    match parse_count(raw)? {
        0 => Err(format!("'{raw}' must be at least 1")),
        n => Ok(n),
    }
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
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "m", "ten", "10 parsecs", "-5s", "99999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_show_as_written() {
        for text in ["200ms", "90s", "10m", "1h", "1500ms", "0s"] {
            assert_eq!(show_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(show_duration(parse_duration("1.5m").unwrap()), "90s");
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("0").unwrap(), 0);
        assert!(parse_positive("0").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("1e3").is_err());
    }
}
