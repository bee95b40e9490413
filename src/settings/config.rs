//! Turn raw flags into a validated `SyncConfig` before anything touches the network.
//!
//! A bad value must cost nothing: no connection, no cache change, no push. So every check that
//! can be done locally happens here, and each failure is a usage error (exit 2) that names the
//! flag (and its environment variable) and says what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::aws::codecommit::{self, CodeCommit};
use crate::base::error::usage;
use crate::base::progress::{ProgressMode, ProgressOptions};
use crate::base::url::{RemoteUrl, Scheme, resolved_path};
use crate::engine::plan::DeleteGuard;
use crate::engine::push::{PushEngine, PushOptions};
use crate::engine::ref_filter::RefFilter;
use crate::settings::flags::LfsPolicy;
use crate::settings::flags::SyncArgs;
use crate::transport::known_hosts::{HostKeyPolicy, parse_fingerprint};
use crate::transport::remote::{Access, End, Remote};
use crate::transport::secret_source::SecretSource;

/// One mirror's settings, checked.
#[derive(Debug, Clone)]
pub(crate) struct SyncConfig {
    pub(crate) source: Remote,
    pub(crate) target: Remote,
    pub(crate) cache_dir: PathBuf,
    pub(crate) mirror_name: String,
    pub(crate) lock_timeout: Duration,
    pub(crate) seed: bool,
    pub(crate) guard: DeleteGuard,
    pub(crate) max_rounds: u32,
    pub(crate) filter: RefFilter,
    pub(crate) push: PushOptions,
    pub(crate) retries: u32,
    pub(crate) json: bool,
    pub(crate) dry_run: bool,
    pub(crate) progress: ProgressOptions,
    pub(crate) ssh: SshConfig,
    /// `--region`: for Parameter Store (CodeCommit's is resolved into the target).
    pub(crate) region: Option<String>,
    /// `--create-target`: create a missing CodeCommit repository or local bare target.
    pub(crate) create_target: bool,
    /// `--lfs`: what pushed LFS pointers lead to.
    pub(crate) lfs: LfsPolicy,
}

/// The SSH key and host key policy, shared by both ends; read only after every local check.
#[derive(Debug, Clone)]
pub(crate) struct SshConfig {
    pub(crate) key: Option<SecretSource>,
    pub(crate) passphrase: Option<SecretSource>,
    /// Use a running ssh-agent: no key was given and `SSH_AUTH_SOCK` is set.
    pub(crate) agent: bool,
    pub(crate) host_keys: HostKeyPolicy,
}

impl SyncConfig {
    /// Where the bare mirror lives.
    pub(crate) fn mirror_path(&self) -> PathBuf {
        self.cache_dir.join(format!("{}.git", self.mirror_name))
    }

    pub(crate) fn from_args(args: &SyncArgs) -> anyhow::Result<SyncConfig> {
        let push_engine = args.push_engine.unwrap_or(PushEngine::Auto);

        let retries = args.retries.unwrap_or(2);
        let source_raw = match backlog_source(args)? {
            Some(backlog) => Some(backlog),
            None => args.source.clone(),
        };
        let source_url = remote_url("--source", "BACKLOG_MIRROR_SOURCE", source_raw.as_deref())?;
        let (target_url, codecommit) = target_remote(args)?;
        check_local("--source", &source_url, true)?;
        check_local("--target", &target_url, false)?;
        if same_place(&source_url, &target_url) {
            return Err(usage(format!(
                "--source and --target are the same repository ({}); point --target at the mirror",
                source_url.redacted()
            )));
        }
        let filter = RefFilter::new(&args.include, &args.exclude).map_err(usage)?;
        let mirror_name = match &args.mirror_name {
            Some(name) => check_mirror_name(name)?,
            None => source_url.mirror_name(),
        };
        check_local_target_engine(&target_url)?;
        let cache_dir = match &args.cache_dir {
            Some(dir) => dir.clone(),
            None => default_cache_dir()?,
        };
        check_cache_dir(&cache_dir)?;
        if push_engine == PushEngine::Git && crate::base::git::version().is_none() {
            return Err(usage(
                "--push-engine git needs the git CLI on PATH; install git or use --push-engine auto",
            ));
        }
        // Only CodeCommit limits one push (to 4,000 ref updates); any other target takes the plan
        // in one push: one pack, one walk, each object sent once.
        let batch_size = args.batch_size.unwrap_or(if codecommit.is_some() {
            CODECOMMIT_MAX_REF_UPDATES
        } else {
            usize::MAX
        });
        if codecommit.is_some() && batch_size > CODECOMMIT_MAX_REF_UPDATES {
            return Err(usage(format!(
                "--batch-size {} is more than CodeCommit accepts in one push \
                 ({CODECOMMIT_MAX_REF_UPDATES} ref updates); give at most \
                 {CODECOMMIT_MAX_REF_UPDATES}",
                batch_size
            )));
        }
        let secrets = secret_sources(args)?;
        let source = Remote {
            end: End::Source,
            access: password_access("--source-password", &secrets.source_password, &source_url)?,
            url: source_url,
        };
        let target = Remote {
            end: End::Target,
            access: match codecommit {
                Some(repo) => Access::CodeCommit(repo),
                None => {
                    password_access("--target-password", &secrets.target_password, &target_url)?
                }
            },
            url: target_url,
        };
        let ssh = ssh_config(args, &secrets, &source.url, &target.url)?;
        if push_engine == PushEngine::Git
            && let Some(why) = target.git_cannot_push()
        {
            return Err(usage(format!(
                "--push-engine git cannot push to {}: {why}; use --push-engine auto or libgit2",
                target.url.redacted()
            )));
        }
        let progress = ProgressOptions {
            mode: args.progress.unwrap_or(ProgressMode::Auto),
            interval: args.progress_interval.unwrap_or(Duration::from_secs(10)),
        };
        Ok(SyncConfig {
            source,
            target,
            cache_dir,
            mirror_name,
            lock_timeout: args.lock_timeout.unwrap_or(Duration::from_secs(600)),
            seed: !args.no_seed,
            guard: DeleteGuard {
                allow_mass_delete: args.allow_mass_delete,
                max_delete: args.max_delete,
            },
            max_rounds: args.max_rounds.unwrap_or(3),
            filter,
            push: PushOptions {
                engine: push_engine,
                batch_size,
                network_timeout: args.network_timeout.unwrap_or(Duration::from_secs(120)),
                retries,
                progress,
            },
            retries,
            json: args.json,
            dry_run: args.dry_run,
            progress,
            ssh,
            region: args.region.clone().filter(|r| !r.trim().is_empty()),
            create_target: args.create_target,
            lfs: args.lfs.unwrap_or_default(),
        })
    }

    pub(crate) fn network_timeout(&self) -> Duration {
        self.push.network_timeout
    }

    /// The mirror's place in the cache directory, once its name is final (a list names it
    /// after `from_args`):
    /// it must hold nothing but a mirror, and it and a local target must not be one inside the
    /// other (the target would be opened, rebuilt or filled as the cache, or the cache made
    /// inside the target). Checked before anything is created.
    pub(crate) fn check_cache_place(&self) -> anyhow::Result<()> {
        let mirror = self.mirror_path();
        crate::engine::cache::check_not_foreign(&mirror)?;
        let Some(target) = self.target.url.local_path() else {
            return Ok(());
        };
        let (target, mirror) = (resolved_path(target), resolved_path(&mirror));
        if target.starts_with(&mirror) || mirror.starts_with(&target) {
            return Err(usage(format!(
                "--target '{}' and this mirror's cache {} are one inside the other; point \
                 --target at a repository outside --cache-dir '{}'",
                self.target.url.redacted(),
                mirror.display(),
                self.cache_dir.display()
            )));
        }
        Ok(())
    }
}

/// CodeCommit refuses a push of more ref updates than this; also `--batch-size`'s default.
const CODECOMMIT_MAX_REF_UPDATES: usize = 4000;

fn remote_url(flag: &str, env: &str, raw: Option<&str>) -> anyhow::Result<RemoteUrl> {
    let raw = raw.ok_or_else(|| {
        usage(format!(
            "missing {flag} (or {env}): give the repository URL or path"
        ))
    })?;
    let url = RemoteUrl::parse(raw).map_err(|reason| {
        usage(format!(
            "{flag} '{}' {reason}",
            crate::base::secret::redact_raw(raw)
        ))
    })?;
    if let Some(password) = url.password() {
        crate::base::secret::register(password);
    }
    Ok(url)
}

/// A password source is for an HTTP(S) remote.
fn password_access(
    flag: &str,
    password: &Option<SecretSource>,
    url: &RemoteUrl,
) -> anyhow::Result<Access> {
    match password {
        None => Ok(Access::Url),
        Some(_) if !matches!(url.scheme(), Scheme::Http | Scheme::Https) => Err(usage(format!(
            "{flag}-* is for HTTP(S) remotes, but that remote is {}",
            url.scheme().name()
        ))),
        Some(password) => Ok(Access::Password(password.clone())),
    }
}

fn check_local(flag: &str, url: &RemoteUrl, is_source: bool) -> anyhow::Result<()> {
    let Some(path) = url.local_path() else {
        return Ok(());
    };
    if !is_source && !path.exists() {
        // Not bad usage: the run says how to create it (exit 1), or creates it with
        // --create-target.
        return Ok(());
    }
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

/// A local target is pushed through git's receive-pack, which runs its hooks and applies its
/// `receive.deny*` settings; libgit2 would write its refs directly and skip both.
fn check_local_target_engine(target: &RemoteUrl) -> anyhow::Result<()> {
    if target.scheme() == Scheme::Local && crate::base::git::version().is_none() {
        return Err(usage(format!(
            "--target '{}' is a local repository, and pushing to one needs the git CLI (its \
             receive-pack runs the target's hooks and receive.deny* settings); install git or \
             serve the target over git://, HTTP(S) or SSH",
            target.redacted()
        )));
    }
    Ok(())
}

/// Whether two remotes are one repository however written (see `RemoteUrl::place`).
fn same_place(a: &RemoteUrl, b: &RemoteUrl) -> bool {
    a.place() == b.place()
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

pub(crate) fn default_cache_dir() -> anyhow::Result<PathBuf> {
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
    // Checked without writing anything (the directory is made when the cache is opened, once
    // every other check passed): the directory, or the nearest ancestor that exists, must be a
    // directory we may write in.
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(usage(format!(
            "--cache-dir '{shown}' cannot be created: {} is not a directory; choose a writable \
             directory",
            existing.display()
        )));
    }
    if let Err(e) = writable(existing) {
        return Err(usage(format!(
            "--cache-dir '{shown}' is not writable ({}); choose a writable directory",
            crate::base::error::io_reason(&e)
        )));
    }
    Ok(())
}

/// access(2) for write and search: what the permission bits, the mount and ACLs allow us.
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path that lives across the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The article's environment names, kept so an existing buildspec's `env:` block still works.
pub(crate) fn flag_or_env(flag: &Option<String>, legacy_env: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(legacy_env).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `--backlog-space/-domain/-project/-repo` to `KEY@KEY.git.DOMAIN:/PROJECT/REPO.git`.
/// An explicit `--source` wins over the reference buildspec's `BACKLOG_*` variables (they are
/// defaults a project may carry); with our own `--backlog-*` flags it is a conflict `settings::flags` refuses.
fn backlog_source(args: &SyncArgs) -> anyhow::Result<Option<String>> {
    if args.source.is_some() {
        return Ok(None);
    }
    let space = flag_or_env(&args.backlog_space, "BACKLOG_SPACE_KEY");
    let domain = flag_or_env(&args.backlog_domain, "BACKLOG_DOMAIN_NAME");
    let project = flag_or_env(&args.backlog_project, "BACKLOG_PROJECT_KEY");
    let repo = flag_or_env(&args.backlog_repo, "BACKLOG_REPOSITORY_NAME");
    if space.is_none() && project.is_none() && repo.is_none() {
        return Ok(None);
    }
    let need = |value: Option<String>, flag: &str, env: &str| {
        value.ok_or_else(|| usage(format!("{flag} (or {env}) is missing: the Backlog source needs all of --backlog-space, --backlog-project and --backlog-repo")))
    };
    let space = need(space, "--backlog-space", "BACKLOG_SPACE_KEY")?;
    let project = need(project, "--backlog-project", "BACKLOG_PROJECT_KEY")?;
    let repo = need(repo, "--backlog-repo", "BACKLOG_REPOSITORY_NAME")?;
    let domain = domain.unwrap_or_else(|| "backlog.jp".to_string());
    if !space.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(usage(format!(
            "--backlog-space '{space}' is not a Backlog space key (letters, digits and '-')"
        )));
    }
    if domain != "backlog.jp" && domain != "backlog.com" {
        return Err(usage(format!(
            "--backlog-domain '{domain}' must be backlog.jp or backlog.com"
        )));
    }
    if !project
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(usage(format!(
            "--backlog-project '{project}' is not a Backlog project key (letters, digits and '_')"
        )));
    }
    let repo = repo.trim_end_matches(".git");
    if repo.is_empty()
        || !repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(usage(format!(
            "--backlog-repo '{repo}' is not a repository name (letters, digits, '-', '_', '.')"
        )));
    }
    Ok(Some(format!(
        "{space}@{space}.git.{domain}:/{project}/{repo}.git"
    )))
}

/// The four secrets' sources, each checked locally (the variable set, the file readable).
struct SecretSources {
    ssh_key: Option<SecretSource>,
    ssh_passphrase: Option<SecretSource>,
    source_password: Option<SecretSource>,
    target_password: Option<SecretSource>,
}

fn secret_sources(args: &SyncArgs) -> anyhow::Result<SecretSources> {
    let sources = SecretSources {
        ssh_key: SecretSource::given(
            "ssh-key",
            args.ssh_key_ssm.as_ref(),
            args.ssh_key_env.as_ref(),
            args.ssh_key_file.as_ref(),
        ),
        ssh_passphrase: SecretSource::given(
            "ssh-passphrase",
            args.ssh_passphrase_ssm.as_ref(),
            args.ssh_passphrase_env.as_ref(),
            args.ssh_passphrase_file.as_ref(),
        ),
        source_password: SecretSource::given(
            "source-password",
            args.source_password_ssm.as_ref(),
            args.source_password_env.as_ref(),
            args.source_password_file.as_ref(),
        ),
        target_password: SecretSource::given(
            "target-password",
            args.target_password_ssm.as_ref(),
            args.target_password_env.as_ref(),
            args.target_password_file.as_ref(),
        ),
    };
    for secret in [
        &sources.ssh_key,
        &sources.ssh_passphrase,
        &sources.source_password,
        &sources.target_password,
    ]
    .into_iter()
    .flatten()
    {
        secret.check_local()?;
    }
    Ok(sources)
}

fn ssh_config(
    args: &SyncArgs,
    secrets: &SecretSources,
    source: &RemoteUrl,
    target: &RemoteUrl,
) -> anyhow::Result<SshConfig> {
    let key = secrets.ssh_key.clone();
    if secrets.ssh_passphrase.is_some() && key.is_none() {
        return Err(usage(
            "an SSH passphrase was given without a key; add --ssh-key-ssm, --ssh-key-env or --ssh-key-file",
        ));
    }
    let uses_ssh = source.scheme() == Scheme::Ssh || target.scheme() == Scheme::Ssh;
    let agent = key.is_none() && std::env::var_os("SSH_AUTH_SOCK").is_some();
    if uses_ssh && key.is_none() && !agent {
        return Err(usage(
            "the SSH remote needs a private key: pass --ssh-key-ssm, --ssh-key-env or --ssh-key-file",
        ));
    }
    Ok(SshConfig {
        key,
        passphrase: secrets.ssh_passphrase.clone(),
        agent,
        host_keys: host_key_policy(args)?,
    })
}

fn host_key_policy(args: &SyncArgs) -> anyhow::Result<HostKeyPolicy> {
    // `settings::flags` refuses --known-hosts with --host-key-fingerprint; --accept-new-host-key is checked
    // here, by its value: clap would count BACKLOG_MIRROR_ACCEPT_NEW_HOST_KEY=false as given.
    if args.accept_new_host_key
        && (args.known_hosts.is_some() || !args.host_key_fingerprint.is_empty())
    {
        return Err(usage(
            "choose one host key policy: --known-hosts, --host-key-fingerprint or --accept-new-host-key",
        ));
    }
    let default_known = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts"));
    if let Some(path) = &args.known_hosts {
        if !path.is_file() {
            return Err(usage(format!(
                "--known-hosts '{}' is not a readable file",
                path.display()
            )));
        }
        return Ok(HostKeyPolicy::KnownHosts(path.clone()));
    }
    if !args.host_key_fingerprint.is_empty() {
        let fingerprints = args
            .host_key_fingerprint
            .iter()
            .map(|f| parse_fingerprint(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(usage)?;
        return Ok(HostKeyPolicy::Fingerprints(fingerprints));
    }
    if args.accept_new_host_key {
        return Ok(HostKeyPolicy::AcceptNew(default_known));
    }
    Ok(match default_known {
        Some(path) if path.is_file() => HostKeyPolicy::KnownHosts(path),
        _ => HostKeyPolicy::Refuse,
    })
}

/// The target, with CodeCommit's forms turned into the HTTPS URL that is actually contacted.
fn target_remote(args: &SyncArgs) -> anyhow::Result<(RemoteUrl, Option<CodeCommit>)> {
    let shorthand = flag_or_env(&args.codecommit_repo, "CODECOMMIT_REPOSITORY_NAME");
    // `--target` with `--codecommit-repo` is a conflict `settings::flags` refuses; with the reference
    // buildspec's CODECOMMIT_REPOSITORY_NAME, a default a project may carry, --target wins.
    let raw = match (&args.target, shorthand) {
        (Some(raw), _) => raw.clone(),
        (None, Some(name)) => format!("codecommit://{name}"),
        (None, None) => {
            return Err(usage(
                "missing --target (or BACKLOG_MIRROR_TARGET, or --codecommit-repo): give the mirror's URL or path",
            ));
        }
    };
    let shown = || crate::base::secret::redact_raw(&raw);
    let Some(repo) =
        codecommit::parse(&raw).map_err(|why| usage(format!("--target '{}' {why}", shown())))?
    else {
        return Ok((
            remote_url("--target", "BACKLOG_MIRROR_TARGET", Some(&raw))?,
            None,
        ));
    };
    let given = repo.region.clone().or_else(|| args.region.clone());
    let region = crate::aws::config::region(given.as_deref(), repo.profile.as_deref())?
        .ok_or_else(|| {
            usage(format!(
                "--target '{}' needs an AWS region: write codecommit::REGION://{}, pass \
             --region, set AWS_REGION or give the AWS profile a region",
                shown(),
                repo.name
            ))
        })?;
    if !codecommit::is_region(&region) {
        return Err(usage(format!(
            "--region '{region}' is not an AWS region name (e.g. ap-northeast-1)"
        )));
    }
    for (name, value) in [
        ("--codecommit-endpoint", args.codecommit_endpoint.clone()),
        (
            "CODE_COMMIT_ENDPOINT",
            std::env::var("CODE_COMMIT_ENDPOINT").ok(),
        ),
    ] {
        if let Some(value) = value.filter(|v| !v.trim().is_empty())
            && !codecommit::is_endpoint(&value)
        {
            return Err(usage(format!(
                "{name} '{}' is not a host name with an optional port; give e.g. \
                 git-codecommit-fips.us-east-1.amazonaws.com or 127.0.0.1:8443",
                crate::base::secret::redact_raw(&value)
            )));
        }
    }
    let repo = CodeCommit::new(repo, region, args.codecommit_endpoint.as_deref());
    let url = repo.url();
    let target = RemoteUrl::parse(&url)
        .map_err(|why| usage(format!("--codecommit-endpoint gives '{url}', which {why}")))?;
    Ok((target, Some(repo)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::flags::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> SyncArgs {
        let mut argv = vec!["backlog-mirror", "sync"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).expect("parse").command {
            Command::Sync(args) => *args,
            Command::CredentialHelper(_) => unreachable!(),
        }
    }

    #[test]
    fn backlog_shorthand_builds_the_ssh_url() {
        let a = args(&[
            "--backlog-space",
            "myspace",
            "--backlog-domain",
            "backlog.com",
            "--backlog-project",
            "PROJ",
            "--backlog-repo",
            "app.git",
        ]);
        assert_eq!(
            backlog_source(&a).unwrap().as_deref(),
            Some("myspace@myspace.git.backlog.com:/PROJ/app.git")
        );
        let a = args(&[
            "--backlog-space",
            "s",
            "--backlog-project",
            "P",
            "--backlog-repo",
            "r",
        ]);
        assert_eq!(
            backlog_source(&a).unwrap().as_deref(),
            Some("s@s.git.backlog.jp:/P/r.git")
        );
        let a = args(&["--backlog-space", "s", "--backlog-repo", "r"]);
        let err = backlog_source(&a).unwrap_err().to_string();
        assert!(err.contains("--backlog-project"), "{err}");
    }

    #[test]
    fn codecommit_targets_resolve_to_the_signed_https_endpoint() {
        let a = args(&["--target", "codecommit::ap-northeast-1://prof@app"]);
        let (url, cc) = target_remote(&a).unwrap();
        assert_eq!(
            url.as_git_url(),
            "https://git-codecommit.ap-northeast-1.amazonaws.com/v1/repos/app"
        );
        let repo = cc.unwrap();
        assert_eq!(
            (repo.profile.as_deref(), repo.region.as_str()),
            (Some("prof"), "ap-northeast-1")
        );
        let a = args(&["--codecommit-repo", "app", "--region", "cn-north-1"]);
        let (url, _) = target_remote(&a).unwrap();
        assert_eq!(
            url.as_git_url(),
            "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/app"
        );
        let a = args(&[
            "--target",
            "codecommit::us-east-1://app",
            "--codecommit-endpoint",
            "git-codecommit-fips.us-east-1.amazonaws.com",
        ]);
        let (url, _) = target_remote(&a).unwrap();
        assert_eq!(
            url.as_git_url(),
            "https://git-codecommit-fips.us-east-1.amazonaws.com/v1/repos/app"
        );
        let a = args(&["--target", "codecommit://app", "--region", "nowhere"]);
        assert!(target_remote(&a).is_err());
    }
}
