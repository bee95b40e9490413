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
use crate::error::{self, DeleteGuard, Error};
use crate::plan::{Plan, default_max_delete};
use crate::push;
use crate::remote::{self, Look, RefMap, Session};
use crate::report::{RefResult, Status, Summary};

/// A finished run: its summary (always filled in as far as the run got) and its error, if any.
pub struct Outcome {
    pub summary: Summary,
    pub error: Option<anyhow::Error>,
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        self.error
            .as_ref()
            .map_or(error::exit::OK, error::exit_code)
    }
}

pub fn sync(cfg: &SyncConfig, session: &Session) -> Outcome {
    let started = Instant::now();
    let mut summary = Summary::new(
        cfg.source.redacted(),
        cfg.target.redacted(),
        &cfg.mirror_path().display().to_string(),
        cfg.dry_run,
    );
    let result = run(cfg, session, &mut summary);
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
            summary.error = Some(format!("{err:#}"));
            Some(err)
        }
    };
    Outcome { summary, error }
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

fn run(cfg: &SyncConfig, session: &Session, summary: &mut Summary) -> Result<Status> {
    let mut cache = timed!(
        summary.lock,
        Cache::open(&cfg.mirror_path(), cfg.lock_timeout)?
    );
    debug!("cache {} (new: {})", cache.path.display(), cache.created);
    let mut repaired = false;
    // The target's refs as the seed or the first listing saw them: still current for the first
    // plan, as nothing but this run pushes there.
    let mut seen_target = None;
    // An existing mirror is not seeded, so the target's listing does not depend on the source:
    // overlap the two round trips. The source's error, if both fail, is the one reported.
    let (first_look, listing) = std::thread::scope(|scope| {
        let listing = (!cache.created).then(|| {
            scope.spawn(|| {
                let start = Instant::now();
                (session.list(&cfg.target), start.elapsed().as_secs_f64())
            })
        });
        let look = look_at_source(
            cfg,
            session,
            &mut cache,
            &mut repaired,
            &mut seen_target,
            summary,
        );
        let listing = listing.map(|handle| handle.join());
        (look, listing)
    });
    let mut look = first_look?;
    match listing {
        Some(Ok((refs, seconds))) => {
            summary.seconds.plan += seconds;
            seen_target = Some(refs?);
        }
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => {}
    }
    let mut round = 0;
    while round < cfg.max_rounds {
        round += 1;
        summary.rounds = round;
        let fetched = look.fetched.is_some();

        if look.refs.is_empty() {
            let target = match seen_target.take() {
                Some(refs) => refs,
                None => timed!(summary.plan, session.list(&cfg.target)?),
            };
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
                return Err(Error::DeleteGuard(DeleteGuard::SourceEmpty).into());
            }
            warn!(
                "the source is empty: deleting every selected ref on the target (--allow-mass-delete)"
            );
            seen_target = Some(target);
        }
        if !fetched {
            debug!("the cache already holds every source ref: nothing to fetch");
        }
        let wanted = remote::local_refs(&cache.repo)?;
        if fetched && let Some(done) = crate::gitcli::maintain(&cache.path) {
            info!("cache maintenance: {done}");
            cache.reopen()?;
        }

        let target_refs = match seen_target.take() {
            Some(refs) => refs,
            None => timed!(summary.plan, session.list(&cfg.target)?),
        };
        let plan = timed!(
            summary.plan,
            Plan::new(&cache.repo, &wanted, &target_refs, &cfg.filter)
        );
        summary.refs.unchanged = plan.unchanged;
        let selected_on_target = target_refs.keys().filter(|n| cfg.filter.selects(n)).count();
        let limit = cfg
            .max_delete
            .unwrap_or_else(|| default_max_delete(selected_on_target));
        if !cfg.allow_mass_delete && plan.deletes() > limit {
            return Err(Error::DeleteGuard(DeleteGuard::TooManyDeletes {
                planned: plan.deletes(),
                limit,
            })
            .into());
        }

        if cfg.dry_run {
            for change in &plan.changes {
                summary.record(change, RefResult::Planned, None);
            }
            return Ok(Status::DryRun);
        }
        if plan.is_empty() {
            debug!("the target already matches: no push");
            if !fetched {
                return Ok(Status::InSync);
            }
        } else {
            // A mirror this run created holds only packs libgit2 indexed and verified in this
            // run; the check is for what earlier, possibly killed, runs left. Skipping it on the
            // first mirror saves a walk of the whole history.
            let checked = if cache.created {
                Ok(None)
            } else {
                timed!(
                    summary.plan,
                    push::check_connectivity(&cache.repo, &plan, &target_refs).map(Some)
                )
            };
            let commits = match checked {
                Ok(commits) => commits,
                Err(why) if !repaired => {
                    repaired = true;
                    cache.rebuild(&format!("it failed its check before the push: {why}"))?;
                    look = look_at_source(
                        cfg,
                        session,
                        &mut cache,
                        &mut repaired,
                        &mut seen_target,
                        summary,
                    )?;
                    // The repair does not use up a round.
                    round -= 1;
                    continue;
                }
                Err(why) => bail!(
                    "the cache at {} is still damaged after a rebuild ({why}); refusing to push from it",
                    cache.path.display()
                ),
            };
            let rejected = timed!(
                summary.push,
                push::execute(
                    session,
                    cfg,
                    &cache.repo,
                    &plan,
                    commits,
                    wanted.len(),
                    summary
                )?
            );
            if !rejected.is_empty() {
                return Err(Error::Rejected(rejected).into());
            }
        }

        // Catch-up: a push to the source during this run may have had its own webhook build
        // refused (CodeBuild's concurrency limit is 1); mirror it now rather than wait. When the
        // source moved, this look already fetches the next round's objects.
        look = look_at_source(
            cfg,
            session,
            &mut cache,
            &mut repaired,
            &mut seen_target,
            summary,
        )?;
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

/// Look at the source and fetch from it when its refs differ from the cache's. A mirror that is
/// new and empty is seeded from the target first (unless --no-seed), so the source sends only
/// what the target lacks; the target's refs seen then go to `seen_target`. A fetch that fails
/// inside the cache (unreadable objects or refs) rebuilds the cache once and tries again.
fn look_at_source(
    cfg: &SyncConfig,
    session: &Session,
    cache: &mut Cache,
    repaired: &mut bool,
    seen_target: &mut Option<RefMap>,
    summary: &mut Summary,
) -> Result<Look> {
    loop {
        let local = remote::local_refs(&cache.repo)?;
        if cfg.seed && cache.created && !summary.seeded && local.is_empty() {
            let seed = timed!(
                summary.seed,
                session.look(&cache.repo, &cfg.target, false, "seed", |refs| {
                    if !refs.is_empty() {
                        info!(
                            "seeding the new cache from the target's {} refs, so the source sends only what the target lacks",
                            refs.len()
                        );
                    }
                    !refs.is_empty()
                })?
            );
            if let Some(stats) = seed.fetched {
                summary.transfer.seed.add(stats);
                summary.seeded = true;
            }
            *seen_target = Some(seed.refs);
        }
        let local = remote::local_refs(&cache.repo)?;
        let looked = timed!(
            summary.fetch,
            session.look(&cache.repo, &cfg.source, true, "fetch", |refs| {
                // An empty listing never empties the cache unless mass deletes are allowed:
                // the delete guard decides what happens next.
                let fetch = *refs != local && (!refs.is_empty() || cfg.allow_mass_delete);
                if fetch {
                    info!("fetching from {}", cfg.source);
                }
                fetch
            })
        );
        match looked {
            Ok(look) => {
                if let Some(stats) = look.fetched {
                    summary.transfer.fetch.add(stats);
                }
                return Ok(look);
            }
            Err(err) if !*repaired && is_local_damage(&err) => {
                *repaired = true;
                *seen_target = None;
                cache.rebuild(&format!("the fetch failed inside the cache: {err:#}"))?;
            }
            Err(err) => return Err(err),
        }
    }
}
