//! Turn raw flags into a validated `SyncConfig` before anything touches the network.
//!
//! A bad value must cost nothing: no connection, no cache change, no push. So every check that
//! can be done locally happens here, and each failure is a usage error (exit 2) that names the
//! flag (and its environment variable) and says what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ProgressMode, PushEngine, SyncArgs};
use crate::error::usage;
use crate::select::RefFilter;
use crate::url::{RemoteUrl, Scheme};

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub source: RemoteUrl,
    pub target: RemoteUrl,
    pub cache_dir: PathBuf,
    pub mirror_name: String,
    pub lock_timeout: Duration,
    pub seed: bool,
    pub max_delete: Option<usize>,
    pub allow_mass_delete: bool,
    pub max_rounds: u32,
    pub filter: RefFilter,
    pub batch_size: usize,
    pub push_engine: PushEngine,
    pub git_push_threshold: usize,
    pub network_timeout: Duration,
    pub json: bool,
    pub dry_run: bool,
    pub progress: ProgressMode,
    pub progress_interval: Duration,
}

impl SyncConfig {
    /// Where the bare mirror lives.
    pub fn mirror_path(&self) -> PathBuf {
        self.cache_dir.join(format!("{}.git", self.mirror_name))
    }

    pub fn from_args(args: &SyncArgs) -> anyhow::Result<SyncConfig> {
        let source = remote("--source", "BACKLOG_MIRROR_SOURCE", args.source.as_deref())?;
        let target = remote("--target", "BACKLOG_MIRROR_TARGET", args.target.as_deref())?;
        check_local("--source", &source, true)?;
        check_local("--target", &target, false)?;
        if same_place(&source, &target) {
            return Err(usage(format!(
                "--source and --target are the same repository ({}); point --target at the mirror",
                source.redacted()
            )));
        }
        let filter = RefFilter::new(&args.include, &args.exclude).map_err(usage)?;
        let mirror_name = match &args.mirror_name {
            Some(name) => check_mirror_name(name)?,
            None => source.mirror_name(),
        };
        let cache_dir = match &args.cache_dir {
            Some(dir) => dir.clone(),
            None => default_cache_dir()?,
        };
        check_cache_dir(&cache_dir)?;
        if args.push_engine == PushEngine::Git && crate::gitcli::version().is_none() {
            return Err(usage(
                "--push-engine git needs the git CLI on PATH; install git or use --push-engine auto",
            ));
        }
        Ok(SyncConfig {
            source,
            target,
            cache_dir,
            mirror_name,
            lock_timeout: args.lock_timeout,
            seed: !args.no_seed,
            max_delete: args.max_delete.map(saturating_usize),
            allow_mass_delete: args.allow_mass_delete,
            max_rounds: u32::try_from(args.max_rounds).unwrap_or(u32::MAX),
            filter,
            batch_size: saturating_usize(args.batch_size),
            push_engine: args.push_engine,
            git_push_threshold: saturating_usize(args.git_push_threshold),
            network_timeout: args.network_timeout,
            json: args.json,
            dry_run: args.dry_run,
            progress: args.progress,
            progress_interval: args.progress_interval,
        })
    }
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn remote(flag: &str, env: &str, raw: Option<&str>) -> anyhow::Result<RemoteUrl> {
    let raw = raw.ok_or_else(|| {
        usage(format!(
            "missing {flag} (or {env}): give the repository URL or path"
        ))
    })?;
    RemoteUrl::parse(raw).map_err(|reason| usage(format!("{flag} '{}' {reason}", shown(raw))))
}

/// The raw value as safe to print: if it parses as a URL with credentials, without them.
fn shown(raw: &str) -> String {
    match ::url::Url::parse(raw.trim()) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        _ => raw.trim().to_string(),
    }
}

fn check_local(flag: &str, url: &RemoteUrl, is_source: bool) -> anyhow::Result<()> {
    let Some(path) = url.local_path() else {
        return Ok(());
    };
    if !path.exists() {
        let hint = if is_source {
            "check the path"
        } else {
            "create it first with 'git init --bare'"
        };
        return Err(usage(format!(
            "{flag} '{}' does not exist; {hint}",
            path.display()
        )));
    }
    if git2::Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .is_err()
    {
        return Err(usage(format!(
            "{flag} '{}' is not a git repository; give the path of a repository{}",
            path.display(),
            if is_source {
                ""
            } else {
                " (create one with 'git init --bare')"
            }
        )));
    }
    Ok(())
}

fn same_place(a: &RemoteUrl, b: &RemoteUrl) -> bool {
    match (a.local_path(), b.local_path()) {
        (Some(pa), Some(pb)) => match (pa.canonicalize(), pb.canonicalize()) {
            (Ok(ca), Ok(cb)) => ca == cb,
            _ => false,
        },
        _ => a.scheme() != Scheme::Local && a.without_credentials() == b.without_credentials(),
    }
}

fn check_mirror_name(name: &str) -> anyhow::Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name.trim_end_matches(".git").to_string())
    } else {
        Err(usage(format!(
            "--mirror-name '{name}' is not a safe file name; use letters, digits, '-', '_' and '.' \
             (not leading), at most 100 characters"
        )))
    }
}

fn default_cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .ok_or_else(|| {
            usage(
                "no --cache-dir given and neither XDG_CACHE_HOME nor HOME is set; pass --cache-dir",
            )
        })?;
    Ok(base.join("backlog-mirror"))
}

/// The cache dir must be a writable directory that is not itself somebody's repository: we
/// create, repair and sometimes delete entries in it.
fn check_cache_dir(dir: &Path) -> anyhow::Result<()> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!(
            "--cache-dir '{shown}' is a file, not a directory; point it at a directory"
        )));
    }
    if dir.join(".git").exists() || dir.join("HEAD").is_file() && dir.join("objects").is_dir() {
        return Err(usage(format!(
            "--cache-dir '{shown}' is a git repository itself; give a directory for backlog-mirror's \
             own use (the mirror goes in a subdirectory)"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        usage(format!(
            "--cache-dir '{shown}' cannot be created ({}); choose a writable directory",
            crate::error::io_reason(&e)
        ))
    })?;
    tempfile::Builder::new()
        .prefix(".write-test")
        .tempfile_in(dir)
        .map_err(|e| {
            usage(format!(
                "--cache-dir '{shown}' is not writable ({}); choose a writable directory",
                crate::error::io_reason(&e)
            ))
        })?;
    Ok(())
}
