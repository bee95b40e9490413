//! The order of a sync, and the only module that knows it.
//!
//! lock and repair the cache -> (seed an empty cache from the target) -> fetch from the source
//! with prune -> plan against the target -> delete guard -> push -> look at the source again and
//! repeat while it moved. Each step is its own module; this one decides when each runs and what
//! counts as done: the target equal to the source as of the last look.

use std::time::Instant;

use anyhow::{Result, bail};
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::config::SyncConfig;
use crate::error::RefProblem;
use crate::error::{self, DeleteGuard, Error};
use crate::libgit2::{self, Look, Session, Unsupported};
use crate::plan::{Action, Change};
use crate::plan::{Plan, default_max_delete};
use crate::push;
use crate::refname::RefMap;
use crate::report::{RefResult, Status, Summary};
use crate::retry::Retry;

/// A finished run: its summary (always filled in as far as the run got) and its error, if any.
pub(crate) struct Outcome {
    pub(crate) summary: Summary,
    pub(crate) error: Option<anyhow::Error>,
}

impl Outcome {
    pub(crate) fn exit_code(&self) -> i32 {
        self.error
            .as_ref()
            .map_or(error::exit::OK, error::exit_code)
    }
}

pub(crate) fn sync(cfg: &SyncConfig, session: &Session) -> Outcome {
    let started = Instant::now();
    let mut summary = Summary::new(
        cfg.source.url.redacted(),
        cfg.target.url.redacted(),
        &cfg.mirror_path().display().to_string(),
        cfg.dry_run,
    );
    let mut unsupported = Vec::new();
    let result = run(cfg, session, &mut summary, &mut unsupported);
    let result = left_out(result, &unsupported, &mut summary);
    summary.seconds.total = started.elapsed().as_secs_f64();
    let error = match result {
        Ok(status) => {
            summary.status = status;
            summary.exit_code = error::exit::OK;
            None
        }
        Err(err) => {
            summary.exit_code = error::exit_code(&err);
            summary.status = if summary.exit_code == error::exit::DELETE_GUARD {
                Status::Refused
            } else {
                Status::Failed
            };
            summary.error = Some(error::one_line(&err));
            Some(err)
        }
    };
    Outcome { summary, error }
}

/// Source refs this tool cannot carry (a name 4 KB long, one git itself would refuse) are left
/// out of the mirror, never allowed to stop it: each is reported by name with why, and a run
/// that mirrored everything else still fails (exit 1), every time, until the source is fixed.
fn left_out(
    result: Result<Status>,
    unsupported: &[Unsupported],
    summary: &mut Summary,
) -> Result<Status> {
    for skipped in unsupported {
        let change = Change {
            name: skipped.name.clone(),
            action: Action::Create,
            old: None,
            // git advertises a name it refuses with no object.
            new: (!skipped.id.is_zero()).then_some(skipped.id),
        };
        summary.record(
            &change,
            RefResult::Rejected,
            Some(format!("cannot be mirrored: {}", skipped.why)),
        );
    }
    match result {
        Ok(_) if !unsupported.is_empty() => Err(Error::Unmirrorable(
            unsupported
                .iter()
                .map(|u| RefProblem {
                    name: u.name.clone(),
                    reason: u.why.clone(),
                })
                .collect(),
        )
        .into()),
        other => other,
    }
}

/// Time a step into one of the summary's phase counters.
macro_rules! timed {
    ($summary:ident . $phase:ident, $body:expr) => {{
        let start = Instant::now();
        let value = $body;
        $summary.seconds.$phase += start.elapsed().as_secs_f64();
        value
    }};
}

/// Whether a failed fetch failed because of the cache itself rather than the network or remote.
fn is_local_damage(err: &anyhow::Error) -> bool {
    use git2::ErrorClass;
    err.chain()
        .find_map(|cause| cause.downcast_ref::<git2::Error>())
        .is_some_and(|e| {
            matches!(
                e.class(),
                ErrorClass::Odb
                    | ErrorClass::Zlib
                    | ErrorClass::Reference
                    | ErrorClass::Repository
                    | ErrorClass::Object
            )
        })
}

/// What one run carries from step to step.
struct Run<'a> {
    cfg: &'a SyncConfig,
    session: &'a Session,
    cache: Cache,
    /// The cache was rebuilt once already; a second failure is final.
    repaired: bool,
    /// The target's refs as the seed or the first listing saw them: still current for the
    /// first plan, as nothing but this run pushes there.
    seen_target: Option<RefMap>,
    /// The source's refs this tool cannot carry, as the last look saw them.
    unsupported: &'a mut Vec<Unsupported>,
    retry: Retry,
}

/// How many times a run pushes again because the target changed after its push (an earlier,
/// interrupted run's push landing late) before it gives up.
const SETTLE_ATTEMPTS: u32 = 3;

fn run(
    cfg: &SyncConfig,
    session: &Session,
    summary: &mut Summary,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Status> {
    let cache = timed!(
        summary.lock,
        Cache::open(&cfg.mirror_path(), cfg.lock_timeout)?
    );
    debug!("cache {} (new: {})", cache.path.display(), cache.created);
    let mut run = Run {
        cfg,
        session,
        cache,
        repaired: false,
        seen_target: None,
        unsupported,
        retry: Retry::new(cfg.retries),
    };
    let retry = run.retry;
    // An existing mirror is not seeded, so the target's listing does not depend on the source:
    // overlap the two round trips. The source's error, if both fail, is the one reported.
    let overlap = !run.cache.created;
    let (first_look, listing) = std::thread::scope(|scope| {
        let listing = overlap.then(|| {
            scope.spawn(|| {
                let start = Instant::now();
                let (refs, retried) = retry.run("listing the target", || session.list(&cfg.target));
                (refs, retried, start.elapsed().as_secs_f64())
            })
        });
        let look = run.look(summary);
        (look, listing.map(|handle| handle.join()))
    });
    let mut look = first_look?;
    match listing {
        Some(Ok((refs, retried, seconds))) => {
            summary.seconds.plan += seconds;
            summary.retries += retried;
            run.seen_target = Some(refs?);
        }
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => {}
    }
    if run.cache.interrupted_push {
        info!(
            "an earlier run's push to the target did not finish; the target may still change \
             under this run, so it is listed again after this run's push"
        );
    }
    let mut settle_attempts = 0;
    let mut round = 0;
    while round < cfg.max_rounds {
        round += 1;
        summary.rounds = round;
        let fetched = look.fetched.is_some();

        if look.refs.is_empty() {
            let target = run.target(summary)?;
            let selected = target.keys().filter(|n| cfg.filter.selects(n)).count();
            if selected == 0 {
                info!("the source and the target are both empty");
                return Ok(if cfg.dry_run {
                    Status::DryRun
                } else {
                    Status::InSync
                });
            }
            if !cfg.allow_mass_delete {
                return Err(refused(DeleteGuard::SourceEmpty, round, summary));
            }
            warn!(
                "the source is empty: deleting every selected ref on the target (--allow-mass-delete)"
            );
            run.seen_target = Some(target);
        }
        if !fetched {
            debug!("the cache already holds every source ref: nothing to fetch");
        }
        let wanted = libgit2::local_refs(&run.cache.repo)?;
        if fetched && let Some(done) = crate::gitcli::maintain(&run.cache.path) {
            info!("cache maintenance: {done}");
            run.cache.reopen()?;
        }

        let target_refs = run.target(summary)?;
        let plan = timed!(
            summary.plan,
            Plan::new(&run.cache.repo, &wanted, &target_refs, &cfg.filter)
        );
        summary.refs.unchanged = plan.unchanged;
        let selected_on_target = target_refs.keys().filter(|n| cfg.filter.selects(n)).count();
        let limit = cfg
            .max_delete
            .unwrap_or_else(|| default_max_delete(selected_on_target));
        if !cfg.allow_mass_delete && plan.deletes() > limit {
            return Err(refused(
                DeleteGuard::TooManyDeletes {
                    planned: plan.deletes(),
                    limit,
                },
                round,
                summary,
            ));
        }

        if cfg.dry_run {
            for change in &plan.changes {
                summary.record(change, RefResult::Planned, None);
            }
            return Ok(Status::DryRun);
        }
        if plan.is_empty() {
            debug!("the target already matches: no push");
            // The listing this plan was made from is the check an interrupted push calls for.
            run.cache.clear_push_mark()?;
            if !fetched {
                return Ok(Status::InSync);
            }
        } else {
            // A mirror this run created holds only packs libgit2 indexed and verified in this
            // run (verifying them records them, at no cost); the checks are for what earlier,
            // possibly killed, runs and the disk left. Skipping the walk on the first mirror
            // saves a walk of the whole history.
            let checked = timed!(
                summary.plan,
                run.cache.verify_packs().and_then(|()| {
                    if run.cache.created {
                        Ok(None)
                    } else {
                        push::check_connectivity(&run.cache.repo, &plan, &target_refs).map(Some)
                    }
                })
            );
            let commits = match checked {
                Ok(commits) => commits,
                Err(why) if !run.repaired => {
                    run.repaired = true;
                    run.cache
                        .rebuild(&format!("it failed its check before the push: {why}"))?;
                    look = run.look(summary)?;
                    // The repair does not use up a round.
                    round -= 1;
                    continue;
                }
                Err(why) => bail!(
                    "the cache at {} is still damaged after a rebuild ({why}); refusing to push from it",
                    run.cache.path.display()
                ),
            };
            let unsettled = run.cache.interrupted_push;
            run.cache.mark_push(cfg.target.url.redacted())?;
            let mut rejected = timed!(
                summary.push,
                push::execute(
                    session,
                    &cfg.push,
                    &cfg.target,
                    &run.cache.repo,
                    &plan,
                    commits,
                    wanted.len(),
                    summary
                )?
            );
            if unsettled && rejected.iter().all(|r| lost_a_race(&r.reason)) {
                // An earlier run's push may have landed while this one ran (and refused some of
                // its updates, made from values the landing changed); if the target is not what
                // this push was to leave, push again.
                let after = timed!(summary.plan, run.list_target(summary)?);
                let differ = differing_refs(&after, &wanted, cfg);
                // Refused updates are either planned again or, the target already holding what
                // they would have set, moot.
                summary.forget_rejected(&rejected);
                rejected.clear();
                if differ > 0 {
                    settle_attempts += 1;
                    if settle_attempts > SETTLE_ATTEMPTS {
                        bail!(
                            "the target keeps changing under this run ({differ} ref(s) differ \
                             after {SETTLE_ATTEMPTS} pushes): a push from an earlier, interrupted \
                             run, or another writer, is still updating it; run sync again later"
                        );
                    }
                    warn!(
                        "the target changed after this run's push ({differ} ref(s) differ): a push \
                         an earlier, interrupted run started has landed since; pushing again"
                    );
                    run.seen_target = Some(after);
                    round -= 1;
                    continue;
                }
            }
            if !rejected.is_empty() {
                // Refs refused while an earlier push may still be landing: the next run checks.
                if !unsettled {
                    run.cache.clear_push_mark()?;
                }
                return Err(Error::Rejected(rejected).into());
            }
            run.cache.clear_push_mark()?;
        }

        // Catch-up: a push to the source during this run may have had its own webhook build
        // refused (CodeBuild's concurrency limit is 1); mirror it now rather than wait. When the
        // source moved, this look already fetches the next round's objects.
        look = run.look(summary)?;
        if look.refs == wanted {
            return Ok(Status::InSync);
        }
        info!("the source changed during round {round}: catching up");
    }
    bail!(
        "the source kept changing for {} rounds; the target holds the state of the last round. \
         Run sync again or raise --max-rounds",
        cfg.max_rounds
    )
}

/// The delete guard's refusal in `round`, with what the run's earlier rounds pushed.
fn refused(guard: DeleteGuard, round: u32, summary: &Summary) -> anyhow::Error {
    Error::DeleteGuard {
        guard,
        round,
        pushed: summary.refs.pushed(),
    }
    .into()
}

/// Whether a ref update was refused because the ref moved under it (the old value it was sent
/// with no longer held), not by the target's policy.
fn lost_a_race(reason: &str) -> bool {
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

/// How many selected refs of `target` differ from the cache's `wanted` (missing, extra or moved).
fn differing_refs(target: &RefMap, wanted: &RefMap, cfg: &SyncConfig) -> usize {
    let selected = |refs: &RefMap| -> RefMap {
        refs.iter()
            .filter(|(n, _)| cfg.filter.selects(n))
            .map(|(n, id)| (n.clone(), *id))
            .collect()
    };
    let (target, wanted) = (selected(target), selected(wanted));
    let moved = wanted
        .iter()
        .filter(|(n, id)| target.get(*n) != Some(id))
        .count();
    moved + target.keys().filter(|n| !wanted.contains_key(*n)).count()
}

impl Run<'_> {
    /// The target's refs: those already seen, or a fresh listing.
    fn target(&mut self, summary: &mut Summary) -> Result<RefMap> {
        match self.seen_target.take() {
            Some(refs) => Ok(refs),
            None => Ok(timed!(summary.plan, self.list_target(summary)?)),
        }
    }

    /// A fresh listing of the target, retried after transient failures.
    fn list_target(&self, summary: &mut Summary) -> Result<RefMap> {
        let (refs, retried) = self
            .retry
            .run("listing the target", || self.session.list(&self.cfg.target));
        summary.retries += retried;
        refs
    }

    /// Look at the source and fetch from it when its refs differ from the cache's. A mirror
    /// that is new and empty is seeded from the target first (unless --no-seed), so the source
    /// sends only what the target lacks. A fetch that fails inside the cache (unreadable objects
    /// or refs) rebuilds the cache once and tries again.
    fn look(&mut self, summary: &mut Summary) -> Result<Look> {
        let (cfg, session) = (self.cfg, self.session);
        loop {
            let cache = &self.cache;
            if cfg.seed
                && cache.created
                && !summary.seeded
                && libgit2::local_refs(&cache.repo)?.is_empty()
            {
                let (seed, retried) = timed!(
                    summary.seed,
                    self.retry.run("seeding from the target", || {
                        session.look(&cache.repo, &cfg.target, false, "seed", |refs| {
                            if !refs.is_empty() {
                                info!(
                                    "seeding the new cache from the target's {} refs, so the source sends only what the target lacks",
                                    refs.len()
                                );
                            }
                            !refs.is_empty()
                        })
                    })
                );
                summary.retries += retried;
                let seed = seed?;
                libgit2::leave_alone(&cfg.target.url, &seed.unsupported);
                if let Some(stats) = seed.fetched {
                    summary.transfer.seed.add(stats);
                    summary.seeded = true;
                }
                self.seen_target = Some(seed.refs);
            }
            let local = libgit2::local_refs(&cache.repo)?;
            let (looked, retried) = timed!(
                summary.fetch,
                self.retry.run("fetching from the source", || {
                    session.look(&cache.repo, &cfg.source, true, "fetch", |refs| {
                        // An empty listing never empties the cache unless mass deletes are
                        // allowed: the delete guard decides what happens next.
                        let fetch = *refs != local && (!refs.is_empty() || cfg.allow_mass_delete);
                        if fetch {
                            info!("fetching from {}", cfg.source.url);
                        }
                        fetch
                    })
                })
            );
            summary.retries += retried;
            match looked {
                Ok(look) => {
                    if let Some(stats) = look.fetched {
                        summary.transfer.fetch.add(stats);
                    }
                    self.unsupported.clone_from(&look.unsupported);
                    return Ok(look);
                }
                Err(err) if !self.repaired && is_local_damage(&err) => {
                    self.repaired = true;
                    self.seen_target = None;
                    self.cache
                        .rebuild(&format!("the fetch failed inside the cache: {err:#}"))?;
                }
                Err(err) => return Err(err),
            }
        }
    }
}
