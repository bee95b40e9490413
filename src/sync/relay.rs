//! A run with no cache on disk: the source's thin pack of what the target lacks relayed into
//! the target's receive-pack (`engine::relay`), or why the run fills a cache instead.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use tracing::{debug, info, warn};

use super::target::{LEASE_ATTEMPTS, Listed, list_target, lost_a_race, not_as_reported};
use crate::base::error::{self, Error, RefProblem};
use crate::base::refname::RefMap;
use crate::base::transfer::TransferStats;
use crate::base::transfer::UNPACKER_ERROR;
use crate::engine::cache::{Lock, NewMirror};
use crate::engine::fetch::PackSink;
use crate::engine::libgit2::{self, Session, Unsupported};
use crate::engine::plan::{Action, Change, Plan};
use crate::engine::push;
use crate::engine::receive_pack;
use crate::engine::relay;
use crate::engine::upload_pack::UploadPackClient;
use crate::report::summary::{RefResult, Status, Summary};
use crate::settings::config::SyncConfig;
use crate::settings::flags::LfsPolicy;
use crate::sync::default_branch::DefaultBranch;
use crate::transport::retry::Retry;

/// What the relay led to.
pub(super) enum Relayed {
    Done(Status),
    /// The relay does not serve this run; nothing was pushed. The target's listing, when it got
    /// that far.
    Declined(String, Option<Listed>),
    /// The relay failed part-way (what it pushed stays pushed); the cache takes over.
    Failed(String),
}

/// Why a run does not try the stateless relay (`relay`), or `None` when it does: it needs no
/// cache on disk (one that exists is fresher than any relay), the wire engine for the target,
/// trees it never sees to be of no concern (`--lfs fail` reads them), and no earlier push still
/// landing (the cache's settle handles that).
pub(super) fn relay_declined(cfg: &SyncConfig, lock: &Lock) -> Option<&'static str> {
    if lock.mirror_exists() {
        Some("a cache exists")
    } else if !cfg.seed {
        Some("--no-seed: the cache is filled from the source alone")
    } else if cfg.lfs == LfsPolicy::Fail {
        Some("--lfs fail reads the trees of what is pushed, which only a cache holds")
    } else if !push::may_relay(cfg.push.engine, &cfg.target) {
        Some("the relay pushes to HTTP(S) and git:// targets with --push-engine auto or wire")
    } else if lock.interrupted_push() {
        Some("an earlier run's push did not settle")
    } else {
        None
    }
}

/// The stateless sync (see `relay`): with no cache on disk, plan from the target's listing and
/// the source's advertisement, and push each batch with the pack the source's upload-pack
/// makes of what the target lacks, relayed as it arrives. The same plan, filter, delete guard,
/// dry run, leases, catch-up look and rounds as a run through the cache; a run this cannot
/// serve, or a relay that fails, goes through the cache after it.
pub(super) fn relay(
    cfg: &SyncConfig,
    session: &Session,
    summary: &mut Summary,
    unsupported: &mut Vec<Unsupported>,
    default: &mut DefaultBranch,
    lock: &Lock,
) -> Result<Relayed> {
    let timeout = cfg.push.network_timeout;
    let mut source = match UploadPackClient::new(&cfg.source, session, timeout, lock.fd()) {
        Ok(source) => source,
        Err(why) => return Ok(Relayed::Declined(why, None)),
    };
    let mut client = receive_pack::Client::new(&cfg.target, &session.auth.target, timeout)?;
    let retry = Retry::new(cfg.retries);
    let head_wanted = default.known_by_listings();
    // An empty plan container: the plan compares ids, and no objects are here to tell a
    // fast-forward from a forced update (each update is reported as forced).
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let empty = git2::Repository::init_bare(scratch.path())?;
    let mut round = 1;
    // What the last push was to leave on the target: the next look at the source and listing
    // of the target are the catch-up and the check of the push.
    let mut left: Option<RefMap> = None;
    loop {
        summary.rounds = round;
        // The target's listing and the source's advertisement do not depend on each other:
        // their round trips overlap, as a run's first look does.
        let span = tracing::Span::current();
        // A push does not move the target's HEAD: the check after one does not ask for it.
        let head_wanted = head_wanted && left.is_none();
        let (listed, looked) = std::thread::scope(|scope| {
            let listing = scope.spawn(|| {
                let _mirror = span.enter();
                let start = Instant::now();
                let (listed, retried) = retry.run("listing the target", || {
                    list_target(cfg, session, head_wanted, true)
                });
                (listed, retried, start.elapsed().as_secs_f64())
            });
            let start = Instant::now();
            let looked = retry.run("looking at the source", || source.advertise());
            (listing.join(), (looked, start.elapsed().as_secs_f64()))
        });
        let (listed, retried, seconds) = match listed {
            Ok(listed) => listed,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        summary.seconds.plan += seconds;
        summary.retries += retried;
        let ((looked, retried), seconds) = looked;
        summary.seconds.fetch += seconds;
        summary.retries += retried;
        let listed = listed?;
        if head_wanted {
            default.advertised(listed.head.clone());
        }
        // A first mirror: the relayed pack is kept as the new cache, or the cache is filled
        // first (see `first_mirror_declined`).
        let first = listed.refs.is_empty()
            && summary.refs.pushed() == 0
            && left.is_none()
            && !lock.mirror_exists();
        let ad = match looked {
            Ok(ad) => ad,
            Err(err) if left.is_some() => return Err(err),
            Err(err) => return Ok(Relayed::Failed(error::one_line(&err))),
        };
        if let Err(why) = crate::engine::upload_pack::can_relay(&ad) {
            return Ok(Relayed::Declined(why, Some(listed)));
        }
        let source_listing = libgit2::advertised(&ad.refs);
        unsupported.clone_from(&source_listing.unsupported);
        let wanted = source_listing.refs;
        let source_head = ad.head();
        let filter = &cfg.filter;
        let in_sync = |default: &mut DefaultBranch, summary: &mut Summary| {
            let head = source_head.as_deref();
            let on_target = head.is_some_and(|h| wanted.contains_key(h) && filter.selects(h));
            summary.default_branch = Some(default.follow(head, on_target));
            Relayed::Done(Status::InSync)
        };
        // Catch-up, as through the cache: a push to the source during this run may have had
        // its own build refused.
        if let Some(left) = left.take() {
            if left == wanted {
                not_as_reported(&listed.refs, &wanted, cfg)?;
                return Ok(in_sync(default, summary));
            }
            if round >= cfg.max_rounds {
                bail!(
                    "the source kept changing for {} rounds; the target holds the state of the \
                     last round. Run sync again or raise --max-rounds",
                    cfg.max_rounds
                );
            }
            info!("the source changed during round {round}: catching up");
            round += 1;
            summary.rounds = round;
        }
        let on_target = listed.refs.keys().filter(|n| filter.selects(n)).count();
        if wanted.is_empty() && on_target == 0 {
            if first {
                // Nothing to relay, and the next run is to find a cache as after any first
                // mirror: the cache's way makes an empty one.
                return Ok(Relayed::Declined(
                    "the source and the target are empty: the cache starts empty".into(),
                    Some(listed),
                ));
            }
            if !cfg.dry_run {
                lock.clear_push_mark()?;
            }
            return Ok(Relayed::Done(if cfg.dry_run {
                Status::DryRun
            } else {
                Status::InSync
            }));
        }
        let plan = timed!(
            summary,
            plan,
            Plan::new(&empty, &wanted, &listed.refs, filter)
        );
        let batches = push::wire_batches(&plan, cfg.push.batch_size, source_head.as_deref());
        if first && let Some(why) = first_mirror_declined(cfg, batches.len(), &wanted) {
            return Ok(Relayed::Declined(why.into(), Some(listed)));
        }
        summary.refs.unchanged = plan.unchanged;
        cfg.guard
            .check(wanted.is_empty(), plan.deletes(), on_target)
            .map_err(|refusal| Error::DeleteGuard {
                refusal,
                round,
                pushed: summary.refs.pushed(),
            })?;
        if cfg.dry_run {
            for change in &plan.changes {
                summary.record(change, RefResult::Planned, None);
            }
            return Ok(Relayed::Done(Status::DryRun));
        }
        if plan.is_empty() {
            debug!("the target already matches: no push");
            // After a lost race, this listing is the check a push left unsettled calls for.
            lock.clear_push_mark()?;
            return Ok(in_sync(default, summary));
        }
        let current = default.current();
        if default.movable()
            && plan
                .changes
                .iter()
                .any(|c| c.action == Action::Delete && Some(&c.name) == current.as_ref())
        {
            return Ok(Relayed::Declined(
                "the plan deletes the target's default branch, which is moved first".into(),
                Some(listed),
            ));
        }
        lock.mark_push(cfg.target.url.redacted())?;
        let (new_mirror, mut keep) = if first {
            let mirror = lock.new_mirror()?;
            let sink = PackSink::start(mirror.dir(), lock.fd())?;
            (Some(mirror), Some(sink))
        } else {
            (None, None)
        };
        let pushed = timed!(
            summary,
            push,
            relay_push(
                &mut client,
                &mut source,
                &ad,
                &batches,
                plan.changes.len(),
                listed.ad,
                cfg,
                summary,
                &mut keep
            )
        );
        if let (Some(mirror), Some(sink)) = (new_mirror, keep) {
            keep_as_cache(mirror, sink, &wanted, summary);
        }
        let rejected = match pushed {
            Ok(rejected) => rejected,
            Err(err) => return Ok(Relayed::Failed(error::one_line(&err))),
        };
        if !rejected.is_empty() {
            summary.forget_rejected(&rejected);
            if rejected.iter().all(|r| lost_a_race(&r.reason))
                && summary.lease_retries < LEASE_ATTEMPTS
            {
                summary.lease_retries += 1;
                warn!(
                    "{} ref(s) moved on the target since this run listed it; looking again",
                    rejected.len()
                );
                continue;
            }
            let first = &rejected[0];
            return Ok(Relayed::Failed(format!(
                "the target refused {} ref(s), {} first: {}",
                rejected.len(),
                crate::base::refname::shown(&first.name),
                first.reason
            )));
        }
        lock.clear_push_mark()?;
        left = Some(wanted);
    }
}

/// Why a first mirror (an empty target, no cache) is not relayed, or `None` when it is, its pack
/// kept as the new cache: that pack must hold everything a fetch into the cache would, so the
/// plan must take every ref the source has, in one batch (a target that batches, CodeCommit,
/// gets the cache's pushes, each object once). A dry run changes nothing, not even the cache.
fn first_mirror_declined(
    cfg: &SyncConfig,
    batches: usize,
    wanted: &RefMap,
) -> Option<&'static str> {
    if cfg.dry_run {
        Some("the target is empty: a first mirror's dry run fills the cache")
    } else if !wanted.keys().all(|name| cfg.filter.selects(name)) {
        Some("the target is empty and the filter leaves refs out: a first mirror fills the cache")
    } else if batches > 1 {
        Some("the target is empty and takes the plan in batches: a first mirror fills the cache")
    } else {
        None
    }
}

/// Keep the pack a first mirror relayed (`sink`, filled as it passed) as the new cache, its refs
/// the source's `wanted`, when the whole pack arrived, whatever the target made of it (a target
/// that refused it is pushed to from this cache next, with nothing fetched again). A cache that
/// cannot be kept is only a warning: the target is as pushed, and the next run relays.
fn keep_as_cache(mirror: NewMirror, sink: PackSink, wanted: &RefMap, summary: &mut Summary) {
    let start = Instant::now();
    let kept = sink.finish().and_then(|()| mirror.finish(wanted));
    summary.seconds.fetch += start.elapsed().as_secs_f64();
    let report = summary.relay.get_or_insert_default();
    match kept {
        Ok(()) => {
            report.cached = true;
            let stats = TransferStats {
                objects: report.objects,
                bytes: report.bytes,
            };
            summary.transfer.fetch.add(stats, "wire");
            debug!("the relayed pack is the new cache");
        }
        Err(err) => warn!(
            "the relayed pack could not be kept as the cache ({}): the next run relays without \
             one",
            error::one_line(&err)
        ),
    }
}

/// Push a plan of `changes` updates in the wire engine's `batches` (`push::wire_batches`), each
/// pack relayed from `source` (whose advertisement was `source_ad`); the first batch uses `listed`, the target's advertisement
/// the plan was made from, when there is one. `keep`, when given, gets a copy of the pack (one
/// batch) and is handed back. Refusals come back as today's; a failed relay (a damaged pack, an
/// unpack error) is an error.
#[allow(clippy::too_many_arguments)]
pub(super) fn relay_push(
    client: &mut receive_pack::Client,
    source: &mut UploadPackClient,
    source_ad: &crate::protocol::advertisement::Advertisement,
    batches: &[Vec<&Change>],
    changes: usize,
    mut listed: Option<crate::protocol::advertisement::Advertisement>,
    cfg: &SyncConfig,
    summary: &mut Summary,
    keep: &mut Option<PackSink>,
) -> Result<Vec<RefProblem>> {
    info!(
        "relaying {} ref update(s) from {} to {} in {} batch(es), {}",
        changes,
        cfg.source.url,
        cfg.target.url,
        batches.len(),
        if keep.is_some() {
            "keeping the pack as the new cache"
        } else {
            "no cache"
        }
    );
    let mut packer = relay::Relay {
        cut: crate::engine::pack::Cut::for_plan(changes, batches.len()),
        source,
        source_ofs_delta: source_ad.has("ofs-delta"),
        source_quiet: source_ad.has("no-progress"),
        relayed: Default::default(),
        keep: keep.take(),
    };
    let mut pushed = push::Pushed {
        engine: Some("relay"),
        ..Default::default()
    };
    let result = (|| {
        for batch in batches {
            let outcome = client.push_with(batch, &mut packer, listed.take());
            let report = summary.relay.get_or_insert_default();
            report.objects = packer.relayed.objects;
            report.bytes = packer.relayed.bytes;
            let outcome = outcome?;
            if let Some(why) = &outcome.unpack_error {
                bail!("the target could not take the relayed pack: {UNPACKER_ERROR}: {why}");
            }
            pushed.add_batch(batch, outcome);
        }
        Ok(())
    })();
    *keep = packer.keep.take();
    summary.record_push(&pushed);
    result?;
    Ok(pushed.rejected())
}
