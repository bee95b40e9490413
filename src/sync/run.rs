//! The order of a sync, and the only module that knows it.
//!
//! lock -> (no cache on disk and a non-empty target: the stateless relay, `relay`, which plans
//! from the two listings and streams the source's pack into the target, with the same guard,
//! leases and rounds; done unless it declines or fails) -> open and repair the cache -> (seed an
//! empty cache from the target) -> look: fetch from the source with prune -> plan against the
//! target -> the delete guard -> push -> catch up: look at the source again and run another round
//! while it moved. Two steps run a round again without
//! using one up: repair (a cache that fails its check before a push is rebuilt once) and settle
//! (an earlier, interrupted run's push landed under this one). Each step is its own method and
//! its work lives in its own module; this one decides when each runs and what counts as done:
//! the target equal to the source as of the last look.

use std::time::Instant;

use anyhow::{Result, bail};
use tracing::{debug, info, warn};

use crate::base::error::{self, Error, RefProblem};
use crate::base::refname::RefMap;
use crate::engine::cache::{Cache, Lock};
use crate::engine::fetch;
use crate::engine::libgit2::{self, Look, Session, Unsupported};
use crate::engine::plan::{Action, Change, Plan};
use crate::engine::push;
use crate::report::summary::{RefResult, Status, Summary};
use crate::settings::config::SyncConfig;
use crate::settings::flags::LfsPolicy;
use crate::sync::default_branch::DefaultBranch;
use crate::sync::lfs;
use crate::sync::relay::{Relayed, relay, relay_declined};
use crate::sync::target::{
    LEASE_ATTEMPTS, Listed, differing_refs, list_target, lost_a_race, not_as_reported,
    prepare_target,
};
use crate::transport::retry::Retry;

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

/// Whether a failed fetch failed because of the cache itself rather than the network or remote.
fn is_local_damage(err: &anyhow::Error) -> bool {
    use git2::ErrorClass;
    if err.chain().any(|cause| cause.is::<fetch::CacheRefused>()) {
        return true;
    }
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

/// How many times a run pushes again because the target changed after its push (an earlier,
/// interrupted run's push landing late) before it gives up.
const SETTLE_ATTEMPTS: u32 = 3;

fn run(
    cfg: &SyncConfig,
    session: &Session,
    summary: &mut Summary,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Status> {
    let target = prepare_target(cfg)?;
    let lock = timed!(
        summary,
        lock,
        Lock::take(&cfg.mirror_path(), cfg.lock_timeout)?
    );
    let mut default = target.create(cfg)?;
    let mut listed = None;
    match relay_declined(cfg, &lock) {
        Some(why) => debug!("no relay: {why}"),
        None => {
            let start = Instant::now();
            let tried = relay(cfg, session, summary, unsupported, &mut default, &lock);
            let report = summary.relay.get_or_insert_default();
            report.seconds = start.elapsed().as_secs_f64();
            match tried? {
                Relayed::Done(status) => {
                    report.relayed = true;
                    return Ok(status);
                }
                Relayed::Declined(why, listing) => {
                    info!("not relaying ({why}): filling the cache");
                    report.fallback = Some(why);
                    listed = listing;
                }
                Relayed::Failed(why) => {
                    warn!("the relay failed ({why}): going through the cache instead");
                    report.fallback = Some(why);
                }
            }
        }
    }
    let cache = timed!(summary, lock, Cache::open_locked(lock)?);
    debug!("cache {} (new: {})", cache.path.display(), cache.created);
    // The relay's listing of the target, when it declined after it and pushed nothing, is the
    // first plan's.
    let (seen_target, listed) = match listed {
        Some(Listed { refs, ad, .. }) => (Some(refs), ad),
        None => (None, None),
    };
    let mut run = Run {
        cfg,
        session,
        summary,
        cache,
        repaired: false,
        settle_attempts: 0,
        seen_target,
        listed,
        unsupported,
        retry: Retry::new(cfg.retries),
        default,
        lfs_warned: false,
    };
    let mut look = run.first_look()?;
    let mut round = 1;
    loop {
        run.summary.rounds = round;
        match run.round(&look, round)? {
            Next::Done(Status::InSync) => {
                let head = look.head.as_deref();
                let on_target =
                    head.is_some_and(|h| look.refs.contains_key(h) && cfg.filter.selects(h));
                run.summary.default_branch = Some(run.default.follow(head, on_target));
                return Ok(Status::InSync);
            }
            Next::Done(status) => return Ok(status),
            Next::Again(repaired) => look = repaired,
            Next::Lease(again) => look = again,
            Next::Settle => {}
            Next::Round(moved) if round < cfg.max_rounds => {
                info!("the source changed during round {round}: catching up");
                look = moved;
                round += 1;
            }
            Next::Round(_) => bail!(
                "the source kept changing for {} rounds; the target holds the state of the last \
                 round. Run sync again or raise --max-rounds",
                cfg.max_rounds
            ),
        }
    }
}

/// What one run carries from step to step.
struct Run<'a> {
    cfg: &'a SyncConfig,
    session: &'a Session,
    summary: &'a mut Summary,
    cache: Cache,
    /// The cache was rebuilt once already; a second failure is final.
    repaired: bool,
    /// Pushes made again because the target changed under this run.
    settle_attempts: u32,
    /// The target's refs as the seed, the first listing or a settle saw them: still current for
    /// the next plan, as nothing but this run pushes there.
    seen_target: Option<RefMap>,
    /// The target's receive-pack advertisement from the listing `seen_target` last came from,
    /// when our own client listed it (`Listed::ad`): the next push's first batch uses it
    /// instead of asking again.
    listed: Option<crate::protocol::advertisement::Advertisement>,
    /// The source's refs this tool cannot carry, as the last look saw them.
    unsupported: &'a mut Vec<Unsupported>,
    retry: Retry,
    /// The target's default branch, and how to move it.
    default: DefaultBranch,
    /// Pushed refs using LFS were already reported.
    lfs_warned: bool,
}

/// What a round leads to.
enum Next {
    Done(Status),
    /// The same round again, from this look: the cache was repaired.
    Again(Look),
    /// The same round again, from the same look: the target changed under the push.
    Settle,
    /// The same round again, from this fresh look at the source and a fresh listing of the
    /// target: refs had moved on the target under the plan, and the push refused them.
    Lease(Look),
    /// The source moved during the round (this look saw it): the next round.
    Round(Look),
}

/// A round's plan and what it was made from.
struct Planned {
    plan: Plan,
    /// The cache's refs: what the target is to hold.
    wanted: RefMap,
    /// How many of the target's refs the filter selects.
    on_target: usize,
    target: RefMap,
    /// The branch the source's `HEAD` named at the look this plan was made from.
    source_head: Option<String>,
}

/// What a push step leads to.
enum Pushed {
    Done,
    /// The cache failed its check before the push; nothing was pushed.
    Damaged(String),
    Settle,
    /// Leases broke: look again.
    Lease,
}

impl Run<'_> {
    /// The first look at the source. An existing mirror is not seeded, so the target's listing
    /// does not depend on the source: the two round trips overlap. The source's error, if both
    /// fail, is the one reported.
    fn first_look(&mut self) -> Result<Look> {
        let head_wanted = self.default.known_by_listings();
        let (look, listed) = self.look_listing(!self.cache.created, head_wanted)?;
        if listed.is_some() {
            self.seen_target = listed;
        }
        if self.cache.interrupted_push {
            info!(
                "an earlier run's push to the target did not finish; the target may still change \
                 under this run, so it is listed again after this run's push"
            );
        }
        Ok(look)
    }

    /// Look at the source and, when `list`, list the target meanwhile on another thread: the
    /// two round trips do not depend on each other. The source's error, if both fail, is the one
    /// reported. The listing's advertisement is kept for the next push (`listed`), and the
    /// target's `HEAD` read when `head_wanted` (see `list_target`).
    fn look_listing(&mut self, list: bool, head_wanted: bool) -> Result<(Look, Option<RefMap>)> {
        let (cfg, session, retry) = (self.cfg, self.session, self.retry);
        // The listing's log lines carry the mirror's name, as this thread's do.
        let span = tracing::Span::current();
        let (look, listing) = std::thread::scope(|scope| {
            let listing = list.then(|| {
                scope.spawn(|| {
                    let _mirror = span.enter();
                    let start = Instant::now();
                    let (refs, retried) = retry.run("listing the target", || {
                        list_target(cfg, session, head_wanted, false)
                    });
                    (refs, retried, start.elapsed().as_secs_f64())
                })
            });
            let look = self.look();
            (look, listing.map(|handle| handle.join()))
        });
        let look = look?;
        match listing {
            Some(Ok((refs, retried, seconds))) => {
                self.summary.seconds.plan += seconds;
                self.summary.retries += retried;
                let listed = refs?;
                if head_wanted {
                    self.default.advertised(listed.head);
                }
                self.listed = listed.ad;
                Ok((look, Some(listed.refs)))
            }
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok((look, None)),
        }
    }

    /// One round from `look`: plan, guard, push, catch up.
    fn round(&mut self, look: &Look, round: u32) -> Result<Next> {
        let fetched = look.fetched.is_some();
        if !fetched {
            debug!("the cache already holds every source ref: nothing to fetch");
        }
        let Some(planned) = self.plan(look)? else {
            info!("the source and the target are both empty");
            return Ok(Next::Done(self.finished()));
        };
        self.guard(look, &planned, round)?;
        self.lfs(&planned.plan)?;
        if self.cfg.dry_run {
            for change in &planned.plan.changes {
                self.summary.record(change, RefResult::Planned, None);
            }
            return Ok(Next::Done(Status::DryRun));
        }
        if planned.plan.is_empty() {
            debug!("the target already matches: no push");
            // The listing this plan was made from is the check an interrupted push calls for.
            self.cache.clear_push_mark()?;
            if !fetched {
                return Ok(Next::Done(Status::InSync));
            }
        } else {
            match self.push(&planned)? {
                Pushed::Done => {}
                Pushed::Damaged(why) => return self.repair(&why).map(Next::Again),
                Pushed::Settle => return Ok(Next::Settle),
                // Whoever moved the target may have mirrored a newer source than this run's
                // look: planning again from this run's cache alone could put an older value
                // back. So look at the source again too.
                Pushed::Lease => return Ok(Next::Lease(self.look()?)),
            }
        }
        let (next, after) = self.catch_up(!planned.plan.is_empty())?;
        if next.refs == planned.wanted {
            if let Some(after) = &after {
                not_as_reported(after, &planned.wanted, self.cfg)?;
            }
            return Ok(Next::Done(Status::InSync));
        }
        // The listing after this push is the next round's.
        self.seen_target = after;
        Ok(Next::Round(next))
    }

    /// The status of a run with nothing to do.
    fn finished(&self) -> Status {
        if self.cfg.dry_run {
            Status::DryRun
        } else {
            Status::InSync
        }
    }

    /// The cache's refs against the target's, after upkeep of a cache that just fetched; `None`
    /// when the source and the target are both empty.
    fn plan(&mut self, look: &Look) -> Result<Option<Planned>> {
        let target = self.target()?;
        let filter = &self.cfg.filter;
        let on_target = target.keys().filter(|n| filter.selects(n)).count();
        if look.refs.is_empty() && on_target == 0 {
            return Ok(None);
        }
        let wanted = self.cache.refs()?;
        if look.fetched.is_some() {
            self.cache.maintain()?;
        }
        let plan = timed!(
            self.summary,
            plan,
            Plan::new(&self.cache.repo, &wanted, &target, filter)
        );
        self.summary.refs.unchanged = plan.unchanged;
        Ok(Some(Planned {
            plan,
            wanted,
            on_target,
            target,
            source_head: look.head.clone(),
        }))
    }

    /// The delete guard, before anything of this round is pushed.
    fn guard(&self, look: &Look, planned: &Planned, round: u32) -> Result<()> {
        let checked = self.cfg.guard.check(
            look.refs.is_empty(),
            planned.plan.deletes(),
            planned.on_target,
        );
        checked.map_err(|refusal| {
            Error::DeleteGuard {
                refusal,
                round,
                pushed: self.summary.refs.pushed(),
            }
            .into()
        })
    }

    /// Check the cache, then push the plan. A push the target partly refused because an earlier
    /// run's push landed under it is settled: pushed again from a fresh listing.
    fn push(&mut self, planned: &Planned) -> Result<Pushed> {
        let checked = match timed!(self.summary, plan, self.check(planned)) {
            Ok(checked) => checked,
            Err(why) => return Ok(Pushed::Damaged(why)),
        };
        let unsettled = self.cache.interrupted_push;
        self.cache.mark_push(self.cfg.target.url.redacted())?;
        // The target's default branch is deleted last, after the default moved to the source's
        // (CodeCommit refuses to delete its default branch; a Git server's HEAD would dangle).
        let (first, last) = self.default_last(planned);
        let head = planned.source_head.as_deref();
        let mut rejected = self.execute(&first, checked.as_ref(), planned.wanted.len(), head)?;
        if let Some((last, head)) = last {
            if let Err(err) = self.default.set(&head) {
                warn!(
                    "cannot move the target's default branch to {} before deleting the old one: \
                     {}",
                    crate::base::refname::shown(&head),
                    error::one_line(&err)
                );
            }
            let nothing = push::Checked::default();
            rejected.extend(self.execute(&last, Some(&nothing), planned.wanted.len(), None)?);
        }
        if !rejected.is_empty() && rejected.iter().all(|r| lost_a_race(&r.reason)) {
            return self.lease_broken(rejected);
        }
        if unsettled && rejected.is_empty() {
            return self.settle(planned, &rejected);
        }
        if !rejected.is_empty() {
            // Refs refused while an earlier push may still be landing: the next run checks.
            if !unsettled {
                self.cache.clear_push_mark()?;
            }
            return Err(self.default.refused(rejected));
        }
        self.cache.clear_push_mark()?;
        Ok(Pushed::Done)
    }

    /// Push one plan, timed.
    fn execute(
        &mut self,
        plan: &Plan,
        checked: Option<&push::Checked>,
        local_refs: usize,
        head: Option<&str>,
    ) -> Result<Vec<RefProblem>> {
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let pusher = push::Pusher {
            session: self.session,
            options: &self.cfg.push,
            target: &self.cfg.target,
            cache: &self.cache,
        };
        let hints = push::Hints {
            checked,
            local_refs,
            listed: self.listed.take(),
            head,
        };
        let mut pushed = push::Pushed::default();
        let result = timed!(self.summary, push, pusher.push(plan, hints, &mut pushed));
        self.summary.record_push(&pushed);
        result?;
        Ok(pushed.rejected())
    }

    /// The plan split so the deletion of the target's default branch comes last, with the branch
    /// to make the default before it: when the plan deletes the target's default branch, the
    /// target's default can be moved, and the source's default is on the target once the rest of
    /// the plan is pushed.
    fn default_last(&self, planned: &Planned) -> (Plan, Option<(Plan, String)>) {
        let plan = planned.plan.clone();
        let Some(current) = self.default.current() else {
            return (plan, None);
        };
        let Some(head) = planned.source_head.clone() else {
            return (plan, None);
        };
        let deletes_default = |c: &Change| c.action == Action::Delete && c.name == current;
        let movable = self.default.movable()
            && head != current
            && planned.wanted.contains_key(&head)
            && self.cfg.filter.selects(&head);
        if !movable || !plan.changes.iter().any(deletes_default) {
            return (plan, None);
        }
        let (last, changes): (Vec<Change>, Vec<Change>) =
            plan.changes.into_iter().partition(deletes_default);
        let first = Plan {
            changes,
            unchanged: plan.unchanged,
        };
        let last = Plan {
            changes: last,
            unchanged: 0,
        };
        (first, Some((last, head)))
    }

    /// Pushed refs using LFS: say so once (naming them), count them, and with `--lfs fail` stop
    /// before anything of this plan is pushed.
    fn lfs(&mut self, plan: &Plan) -> Result<()> {
        let found = lfs::refs_using_lfs(&self.cache.repo, plan);
        if found.is_empty() {
            return Ok(());
        }
        self.summary.lfs_refs += found.len();
        let mut names: Vec<String> = found
            .iter()
            .take(10)
            .map(|n| crate::base::refname::shown(n))
            .collect();
        if found.len() > names.len() {
            names.push(format!("and {} more", found.len() - names.len()));
        }
        let names = names.join(", ");
        if self.cfg.lfs == LfsPolicy::Fail {
            bail!(
                "{} ref(s) to push use Git LFS ({names}): the target would hold LFS pointer \
                 files, not their content; nothing was pushed (--lfs fail). Use --lfs warn to \
                 mirror the pointers anyway",
                found.len()
            );
        }
        if !self.lfs_warned {
            self.lfs_warned = true;
            warn!(
                "{} ref(s) use Git LFS ({names}): the target gets their LFS pointer files, not \
                 the files' content (--lfs fail refuses to push them)",
                found.len()
            );
        }
        Ok(())
    }

    /// What the push is about to send must be readable: a cache damaged by a killed run must not
    /// reach the target. A mirror this run created holds only packs libgit2 indexed and verified
    /// in this run (verifying them records them, at no cost); the checks are for what earlier,
    /// possibly killed, runs and the disk left, and skipping the walk on a first mirror saves a
    /// walk of the whole history. Returns how many commits the push sends, when counted.
    fn check(&self, planned: &Planned) -> Result<Option<push::Checked>, String> {
        self.cache.verify_packs()?;
        if self.cache.created {
            return Ok(None);
        }
        let head = planned.source_head.as_deref();
        push::check_connectivity(&self.cache.repo, &planned.plan, &planned.target, head).map(Some)
    }

    /// Rebuild a cache that failed its check before a push, once, and look at the source again.
    fn repair(&mut self, why: &str) -> Result<Look> {
        if self.repaired {
            bail!(
                "the cache at {} is still damaged after a rebuild ({why}); refusing to push from it",
                self.cache.path.display()
            );
        }
        self.repaired = true;
        self.cache
            .rebuild(&format!("it failed its check before the push: {why}"))?;
        self.look()
    }

    /// An earlier run's push may have landed while this one ran (and refused some of its
    /// updates, made from values the landing changed): if the target is not what this push was
    /// to leave, push again from a fresh listing.
    fn settle(&mut self, planned: &Planned, rejected: &[RefProblem]) -> Result<Pushed> {
        let after = timed!(self.summary, plan, self.list_target()?);
        let differ = differing_refs(&after, &planned.wanted, self.cfg);
        // Refused updates are either planned again or, the target already holding what they
        // would have set, moot.
        self.summary.forget_rejected(rejected);
        if differ == 0 {
            self.cache.clear_push_mark()?;
            // The check after the push (`catch_up`) is this listing.
            self.seen_target = Some(after);
            return Ok(Pushed::Done);
        }
        self.settle_attempts += 1;
        if self.settle_attempts > SETTLE_ATTEMPTS {
            bail!(
                "the target keeps changing under this run ({differ} ref(s) differ after \
                 {SETTLE_ATTEMPTS} pushes): a push from an earlier, interrupted run, or another \
                 writer, is still updating it; run sync again later"
            );
        }
        warn!(
            "the target changed after this run's push ({differ} ref(s) differ): a push an \
             earlier, interrupted run started has landed since; pushing again"
        );
        self.seen_target = Some(after);
        Ok(Pushed::Settle)
    }

    /// Refs moved on the target between this run's listing and its push, and the target refused
    /// them (a broken lease): another sync of the same mirror pushed meanwhile, or an earlier
    /// run's push landed late. Pushing from the old plan again could put older values back, and
    /// failing would leave the newest push to whoever happens to run next; so look again.
    fn lease_broken(&mut self, rejected: Vec<RefProblem>) -> Result<Pushed> {
        if self.summary.lease_retries >= LEASE_ATTEMPTS {
            warn!(
                "refs kept moving on the target under this run's plans ({LEASE_ATTEMPTS} \
                 retries): another writer keeps pushing to it"
            );
            return Err(Error::Rejected(rejected).into());
        }
        self.summary.forget_rejected(&rejected);
        self.summary.lease_retries += 1;
        warn!(
            "{} ref(s) moved on the target since this run listed it (another sync of this \
             mirror, or an earlier push landing late); the target refused them, so this run \
             looks at the source and the target again",
            rejected.len()
        );
        self.seen_target = None;
        self.listed = None;
        Ok(Pushed::Lease)
    }

    /// Catch-up: a push to the source during this run may have had its own webhook build
    /// refused (CodeBuild's concurrency limit is 1); mirror it now rather than wait. When the
    /// source moved, this look already fetches the next round's objects. After a push
    /// (`pushed`) the target is listed meanwhile, to check it holds what it reported applied
    /// (`not_as_reported`); a settle that followed the push has listed it already.
    fn catch_up(&mut self, pushed: bool) -> Result<(Look, Option<RefMap>)> {
        let settled = self.seen_target.take();
        // A push does not move the target's HEAD: it is not asked for again.
        let (look, listed) = self.look_listing(pushed && settled.is_none(), false)?;
        Ok((look, listed.or(settled)))
    }

    /// The target's refs: those already seen, or a fresh listing.
    fn target(&mut self) -> Result<RefMap> {
        match self.seen_target.take() {
            Some(refs) => Ok(refs),
            None => Ok(timed!(self.summary, plan, self.list_target()?)),
        }
    }

    /// A fresh listing of the target, retried after transient failures. Its advertisement,
    /// when our client listed, is kept for the push planned from it.
    fn list_target(&mut self) -> Result<RefMap> {
        let (cfg, session, head_wanted) =
            (self.cfg, self.session, self.default.known_by_listings());
        let (listed, retried) = self.retry.run("listing the target", || {
            list_target(cfg, session, head_wanted, false)
        });
        self.summary.retries += retried;
        let listed = listed?;
        self.default.advertised(listed.head);
        self.listed = listed.ad;
        Ok(listed.refs)
    }

    /// Look at the source and fetch from it when its refs differ from the cache's. A mirror
    /// that is new and empty is seeded from the target first (unless --no-seed), so the source
    /// sends only what the target lacks. Both fetch through our own upload-pack client (`fetch`)
    /// where it serves the remote, else through libgit2. A fetch that fails inside the cache (unreadable
    /// objects or refs) rebuilds the cache once and tries again.
    fn look(&mut self) -> Result<Look> {
        loop {
            // A target this run just listed as empty has nothing to seed from.
            let target_empty = self.seen_target.as_ref().is_some_and(RefMap::is_empty);
            if self.cfg.seed
                && self.cache.created
                && !self.summary.seeded
                && !target_empty
                && self.cache.refs()?.is_empty()
            {
                self.seed()?;
            }
            let (cfg, session, cache) = (self.cfg, self.session, &self.cache);
            let local = cache.refs()?;
            let (looked, retried) = timed!(
                self.summary,
                fetch,
                self.retry.run("fetching from the source", || {
                    let decide = |refs: &RefMap| {
                        let fetch = *refs != local && cfg.guard.lets_fetch_prune_to(refs);
                        if fetch {
                            info!("fetching from {}", cfg.source.url);
                        }
                        fetch
                    };
                    let ours = if fetch::disabled() {
                        Err("BACKLOG_MIRROR_LIBGIT2_FETCH is set".into())
                    } else {
                        let timeout = cfg.push.network_timeout;
                        fetch::look(cache, &local, &cfg.source, session, timeout, decide)?
                    };
                    let (look, engine) = match ours {
                        Ok(look) => (look, "wire"),
                        Err(why) => {
                            debug!("fetching through libgit2: {why}");
                            let look = session.look(&cache.repo, &cfg.source, "fetch", decide)?;
                            (look, "libgit2")
                        }
                    };
                    if look.fetched.is_some() {
                        cache.record(&look.refs, true, &cfg.source.url)?;
                    }
                    Ok((look, engine))
                })
            );
            self.summary.retries += retried;
            match looked {
                Ok((look, engine)) => {
                    if let Some(stats) = look.fetched {
                        self.summary.transfer.fetch.add(stats, engine);
                    }
                    self.unsupported.clone_from(&look.unsupported);
                    return Ok(look);
                }
                Err(err) if !self.repaired && is_local_damage(&err) => {
                    self.repaired = true;
                    self.seen_target = None;
                    self.listed = None;
                    self.cache
                        .rebuild(&format!("the fetch failed inside the cache: {err:#}"))?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Fill the new, empty cache from the target's refs. Once the target's listing shows refs
    /// and before its objects are fetched, the source is listed: a source that is missing,
    /// unreachable or refuses the run's credentials fails the run there, before the whole
    /// target is fetched into the cache for nothing, and an empty one (which the delete guard
    /// stops) is not seeded for. An empty target costs no listing more.
    fn seed(&mut self) -> Result<()> {
        let (cfg, session, cache, retry) = (self.cfg, self.session, &self.cache, self.retry);
        let source_looked = std::cell::RefCell::new(None);
        let (seed, retried) = timed!(
            self.summary,
            seed,
            self.retry.run("seeding from the target", || {
                let decide = |refs: &RefMap| {
                    if refs.is_empty() {
                        return false;
                    }
                    let (listed, retried) =
                        retry.run("looking at the source", || session.list(&cfg.source));
                    let source_has_refs = listed.as_ref().is_ok_and(|l| !l.is_empty());
                    *source_looked.borrow_mut() = Some((listed, retried));
                    if source_has_refs {
                        info!(
                            "seeding the new cache from the target's {} refs, so the source sends \
                             only what the target lacks",
                            refs.len()
                        );
                    }
                    source_has_refs
                };
                let ours = if fetch::disabled() {
                    Err("BACKLOG_MIRROR_LIBGIT2_FETCH is set".into())
                } else {
                    let timeout = cfg.push.network_timeout;
                    let empty = RefMap::new();
                    fetch::look(cache, &empty, &cfg.target, session, timeout, decide)?
                };
                let look = match ours {
                    Ok(look) => look,
                    Err(why) => {
                        debug!("seeding through libgit2: {why}");
                        session.look(&cache.repo, &cfg.target, "seed", decide)?
                    }
                };
                if look.fetched.is_some() {
                    cache.record(&look.refs, false, &cfg.target.url)?;
                }
                Ok(look)
            })
        );
        self.summary.retries += retried;
        if let Some((listed, retried)) = source_looked.into_inner() {
            self.summary.retries += retried;
            listed?;
        }
        let seed = seed?;
        self.default.advertised(seed.head.clone());
        libgit2::leave_alone(&cfg.target.url, &seed.unsupported);
        if let Some(stats) = seed.fetched {
            self.summary.transfer.seed.add(stats);
            self.summary.seeded = true;
        }
        self.seen_target = Some(seed.refs);
        self.listed = None;
        Ok(())
    }
}
