//! The target before a run's rounds: whether it exists (and is created with `--create-target`),
//! how its default branch is read and moved, and how it is listed.

use anyhow::{Result, bail};
use tracing::{info, warn};

use crate::aws::control_plane::ControlPlane;
use crate::base::error::{self};
use crate::base::refname::RefMap;
use crate::base::url::Scheme;
use crate::engine::libgit2::{self, Session};
use crate::engine::push;
use crate::engine::receive_pack;
use crate::settings::config::SyncConfig;
use crate::sync::default_branch::{self, DefaultBranch};

/// The target's refs as one listing saw them, and what else that listing learned.
pub(super) struct Listed {
    pub(super) refs: RefMap,
    /// The branch the target's `HEAD` names, when asked for and said.
    pub(super) head: Option<String>,
    /// The receive-pack advertisement, when our own client listed.
    pub(super) ad: Option<crate::protocol::advertisement::Advertisement>,
}

/// List the target. Where our receive-pack client pushes over HTTP(S), it lists too: one GET
/// of the receive-pack advertisement with the credentials up front, which the push then uses as
/// its own (git's two requests per sync, not libgit2's 401 and 200 and the push's own GET).
/// receive-pack does not say where `HEAD` points, so when that is wanted (`head_wanted`: a
/// target whose default branch only its listings tell) the upload-pack advertisement is asked
/// for it. Other HTTP(S) targets are listed by the same client's upload-pack advertisement
/// (a dry run's credentials may only read); the rest by libgit2. Refs this tool cannot carry are sorted out
/// alike either way (`libgit2::advertised`).
/// `relay`: the relay pushes, whatever engine the cache would use.
pub(super) fn list_target(
    cfg: &SyncConfig,
    session: &Session,
    head_wanted: bool,
    relay: bool,
) -> Result<Listed> {
    let target = &cfg.target;
    let http = matches!(target.url.scheme(), Scheme::Http | Scheme::Https);
    let wire = relay || push::by_wire(cfg.push.engine, target);
    // A dry run pushes nothing, and may hold credentials that can only read.
    if http && !cfg.dry_run && wire {
        let mut client =
            receive_pack::Client::new(target, &session.auth.target, cfg.push.network_timeout)?;
        let ad = client.list()?;
        let head = if head_wanted { client.head()? } else { None };
        let listing = libgit2::advertised(&ad.refs);
        libgit2::leave_alone(&target.url, &listing.unsupported);
        return Ok(Listed {
            refs: listing.refs,
            head,
            ad: Some(ad),
        });
    }
    if http && !crate::engine::fetch::disabled() {
        // The upload-pack advertisement: read access is enough, and it names HEAD's branch.
        let mut client =
            receive_pack::Client::new(target, &session.auth.target, cfg.push.network_timeout)?;
        let ad = client.upload_listing()?;
        let listing = libgit2::advertised(&ad.refs);
        libgit2::leave_alone(&target.url, &listing.unsupported);
        return Ok(Listed {
            refs: listing.refs,
            head: ad.head(),
            ad: None,
        });
    }
    let (refs, head) = session.list_with_head(target)?;
    Ok(Listed {
        refs,
        head,
        ad: None,
    })
}

/// The target as the run found it: ready, with how its default branch is read and moved, or
/// missing and to be created (`--create-target`).
pub(super) enum Prepared {
    Ready(DefaultBranch),
    MissingLocal(std::path::PathBuf),
    MissingCodeCommit(ControlPlane),
}

/// Make sure the target exists and learn how its default branch is read and moved. Runs before
/// anything else: a missing target is exit 1 naming the command that creates it, before even
/// the cache is touched. One to create is created by `Prepared::create` once the cache lock
/// is held, so that every check that can fail as bad usage (exit 2: nothing touched) comes
/// before it.
pub(super) fn prepare_target(cfg: &SyncConfig) -> Result<Prepared> {
    use default_branch::Target;
    let dry_run = if cfg.dry_run {
        " (a dry run creates nothing)"
    } else {
        ""
    };
    if let Some(path) = cfg.target.url.local_path() {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if path.exists() {
            return Ok(Prepared::Ready(DefaultBranch::local(path)));
        }
        if !cfg.create_target || cfg.dry_run {
            bail!(
                "the target {} does not exist; to create it, run: git init --bare {} (or pass \
                 --create-target){dry_run}",
                path.display(),
                crate::base::text::shell_word(&path.display().to_string()),
            );
        }
        return Ok(Prepared::MissingLocal(path));
    }
    let Some(repo) = cfg.target.codecommit() else {
        return Ok(Prepared::Ready(DefaultBranch::new(Target::Other, None)));
    };
    let api_overridden = ["AWS_ENDPOINT_URL_CODECOMMIT", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|e| !e.trim().is_empty()));
    if !crate::aws::codecommit::is_aws_host(&repo.host) && !api_overridden {
        // The Git endpoint is overridden and the API's is not: the API the SDK would call is
        // not the one that serves this repository.
        return Ok(Prepared::Ready(DefaultBranch::unmanaged(format!(
            "the CodeCommit Git endpoint is overridden ({}) and the API endpoint is not \
             (AWS_ENDPOINT_URL_CODECOMMIT): default branch and --create-target not handled",
            repo.host
        ))));
    }
    let api = ControlPlane::new(repo)?;
    match api.get() {
        Ok(Some(meta)) => {
            let known = meta.default_branch.map(|b| format!("refs/heads/{b}"));
            Ok(Prepared::Ready(DefaultBranch::new(
                Target::CodeCommit(api),
                known,
            )))
        }
        Ok(None) if cfg.create_target && !cfg.dry_run => Ok(Prepared::MissingCodeCommit(api)),
        Ok(None) => bail!(
            "the CodeCommit repository '{}' does not exist in {}; to create it, run: {} (or pass \
             --create-target){dry_run}",
            api.name,
            api.region,
            api.create_command(),
        ),
        Err(err) => {
            let why = error::one_line(&err);
            warn!("{why}: the target's default branch is not managed in this run");
            Ok(Prepared::Ready(DefaultBranch::unmanaged(why)))
        }
    }
}

impl Prepared {
    /// The target, created when it was missing.
    pub(super) fn create(self, cfg: &SyncConfig) -> Result<DefaultBranch> {
        use default_branch::Target;
        match self {
            Prepared::Ready(default) => Ok(default),
            Prepared::MissingLocal(path) => {
                git2::Repository::init_bare(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the target {}: {}",
                        path.display(),
                        e.message()
                    )
                })?;
                info!("created the target {} (--create-target)", path.display());
                Ok(DefaultBranch::local(path))
            }
            Prepared::MissingCodeCommit(api) => {
                api.create(source_description(cfg).as_deref())?;
                info!(
                    "created the CodeCommit repository '{}' in {} (--create-target)",
                    api.name, api.region
                );
                Ok(DefaultBranch::new(Target::CodeCommit(api), None))
            }
        }
    }
}

/// The source's description, when it is a local repository that has one (gitweb's
/// `description` file, unless git's placeholder): Backlog and other hosts do not say over Git.
fn source_description(cfg: &SyncConfig) -> Option<String> {
    let path = cfg.source.url.local_path()?;
    let repo = git2::Repository::open(path).ok()?;
    let text = std::fs::read_to_string(repo.path().join("description")).ok()?;
    let text: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect();
    (!text.is_empty() && !text.starts_with("Unnamed repository")).then_some(text)
}

/// How many times a run looks again and plans anew because refs moved on the target under its
/// plan (leases broken by another sync of the same mirror) before it gives up. Each retry
/// follows a push by someone else, so two syncs racing settle in one or two.
pub(super) const LEASE_ATTEMPTS: u32 = 5;

/// Whether a ref update was refused because the ref moved under it (the old value it was sent
/// with no longer held), not by the target's policy.
pub(super) fn lost_a_race(reason: &str) -> bool {
    [
        "but expected",
        "already exists",
        "stale info",
        "cannot lock ref",
        "failed to lock",
        "incorrect old value",
    ]
    .iter()
    .any(|p| reason.contains(p))
}

/// The selected refs where `target` differs from `wanted` (missing, extra or moved): each
/// name with the target's id and the wanted one.
pub(super) fn differences(
    target: &RefMap,
    wanted: &RefMap,
    cfg: &SyncConfig,
) -> Vec<(String, Option<git2::Oid>, Option<git2::Oid>)> {
    let names: std::collections::BTreeSet<&String> = target.keys().chain(wanted.keys()).collect();
    names
        .into_iter()
        .filter(|n| cfg.filter.selects(n))
        .map(|n| (n.clone(), target.get(n).copied(), wanted.get(n).copied()))
        .filter(|(_, has, wants)| has != wants)
        .collect()
}

/// How many selected refs of `target` differ from the cache's `wanted`.
pub(super) fn differing_refs(target: &RefMap, wanted: &RefMap, cfg: &SyncConfig) -> usize {
    differences(target, wanted, cfg).len()
}

/// The check of a push the target reported applied, when the source has not moved since:
/// `target`, listed after the push, must be `wanted`. git trusts a receive-pack's report; so
/// does the push, but exit 0 says the target equals the source, so a target that reports
/// updates it did not make (a hook that moves a ref back after the report is written, a server
/// that answers `ok` and drops the command) fails the run, naming each ref with both ids.
pub(super) fn not_as_reported(target: &RefMap, wanted: &RefMap, cfg: &SyncConfig) -> Result<()> {
    let differ = differences(target, wanted, cfg);
    if differ.is_empty() {
        return Ok(());
    }
    let short = |id: Option<git2::Oid>| {
        id.map_or_else(
            || "nothing".to_string(),
            |id| id.to_string()[..10].to_string(),
        )
    };
    let mut named: Vec<String> = differ
        .iter()
        .take(5)
        .map(|(name, has, wants)| {
            format!(
                "{} (holds {}, pushed {})",
                crate::base::refname::shown(name),
                short(*has),
                short(*wants)
            )
        })
        .collect();
    if differ.len() > named.len() {
        named.push(format!("and {} more", differ.len() - named.len()));
    }
    bail!(
        "the target reported this run's push applied, but its listing after the push differs \
         in {} ref(s): {}; something on the target undid or dropped the updates (a hook, the \
         server) or another writer pushed since: look at the target, then run sync again",
        differ.len(),
        named.join(", ")
    )
}
