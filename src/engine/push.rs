//! Carrying a plan to the target: check, choose who builds the pack, batch, read back results.
//!
//! Both engines report per-ref results because a push "succeeds" even when the target rejected
//! half the refs. Plans are split into batches because CodeCommit refuses pushes of more than
//! 4,000 ref updates; each batch opens a fresh connection so the target's advertisement (and so
//! the set of objects it already has) is current.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Result;
use git2::Repository;
use tracing::{debug, info, warn};

use crate::base::error::RefProblem;
use crate::base::net_error::{IsSpurious, NetError};
use crate::base::progress::{Progress, ProgressOptions};
use crate::base::refname::RefMap;
use crate::base::transfer::{PushOutcome, RefOutcome, TransferStats};
use crate::base::url::Scheme;
use crate::engine::cache::Cache;
use crate::engine::git_cli;
use crate::engine::libgit2::Session;
use crate::engine::pack::Cut;
use crate::engine::plan::{Action, Change, Plan};
use crate::engine::receive_pack::Client;
use crate::protocol::advertisement::Advertisement;
use crate::transport::remote::Remote;
use crate::transport::retry::{self, Retry};

/// Who builds and sends packs, as the user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PushEngine {
    /// With `git` on PATH: our receive-pack client (`wire`) for HTTP(S) and git:// targets,
    /// git push for local paths; libgit2 otherwise (SSH targets, no git).
    Auto,
    /// Always the git CLI (fails if git is missing).
    Git,
    /// Always in-process libgit2.
    Libgit2,
    /// Our own receive-pack client (HTTP(S) and git:// targets; needs git for pack-objects):
    /// one request per batch, the pack from `git pack-objects`. Other targets use `auto`'s
    /// choice.
    Wire,
}

/// How a run pushes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushOptions {
    pub(crate) engine: PushEngine,
    /// Most ref updates in one push.
    pub(crate) batch_size: usize,
    /// A git push whose processes move no byte for this long is killed.
    pub(crate) network_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) progress: ProgressOptions,
}

/// Who sends one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Engine {
    Libgit2,
    Git,
    Wire,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Libgit2 => "libgit2",
            Engine::Git => "git",
            Engine::Wire => "wire",
        }
    }
}

/// The commit `id` names (a tag peeled), if it is one.
fn commit_of(repo: &Repository, id: git2::Oid) -> Option<git2::Commit<'_>> {
    repo.find_object(id, None).ok()?.peel_to_commit().ok()
}

/// Walk every commit the push will send (new tips minus what the target already has) and make
/// sure each is readable with its tree: a cache damaged by a killed run must not reach the
/// target. Returns how many commits the push sends, for the log.
pub(crate) fn check_connectivity(
    repo: &Repository,
    plan: &Plan,
    target: &RefMap,
    head: Option<&str>,
) -> Result<Checked, String> {
    let tips = new_commits(repo, plan)?;
    if tips.is_empty() {
        return Ok(Checked::default());
    }
    match near_walk(repo, &tips, target, NEAR_WALK)? {
        Some(mut checked) => {
            // The default branch's history holds most of what a new branch starts from: a walk
            // that went down through it before meeting a tip (a branch made from an older commit
            // of it) would otherwise send those commits again.
            if let (Some(boundary), Some(&id)) =
                (checked.boundary.as_mut(), head.and_then(|h| target.get(h)))
            {
                boundary.push(id);
                boundary.sort_unstable();
                boundary.dedup();
            }
            Ok(checked)
        }
        None => full_walk(repo, &tips, target).map(|commits| Checked {
            commits,
            boundary: None,
        }),
    }
}

/// What the pre-push check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// How many commits the push sends (for the log).
    pub(crate) commits: usize,
    /// The target's tips the new history meets, when the near walk ended at one on every path
    /// (no root reached): what the push's pack may be cut against (`Cut::Boundary`).
    pub(crate) boundary: Option<Vec<git2::Oid>>,
}

/// The commits the plan's new ids name (tags peeled); a tag of a tree or blob has none, having
/// the object is all there is to check.
fn new_commits<'r>(repo: &'r Repository, plan: &Plan) -> Result<Vec<git2::Commit<'r>>, String> {
    let mut commits = Vec::new();
    for change in &plan.changes {
        let Some(new) = change.new else { continue };
        let object = repo.find_object(new, None).map_err(|_| {
            format!(
                "{} points to {new}, which the cache does not have",
                crate::base::refname::shown(&change.name)
            )
        })?;
        if let Ok(commit) = object.peel_to_commit() {
            commits.push(commit);
        }
    }
    Ok(commits)
}

/// Commit `id`, readable and with its tree.
fn readable_commit<'r>(
    repo: &'r Repository,
    odb: &git2::Odb,
    id: git2::Oid,
) -> Result<git2::Commit<'r>, String> {
    let commit = repo
        .find_commit(id)
        .map_err(|e| format!("commit {id} is unreadable: {}", e.message()))?;
    if !odb.exists(commit.tree_id()) {
        return Err(format!("commit {id} has no tree {}", commit.tree_id()));
    }
    Ok(commit)
}

/// How many commits the near walk reads before it leaves the check to the full walk.
const NEAR_WALK: usize = 1_000;

/// The check for the usual change, a few commits on top of what the target holds: walk back from
/// the new tips, stopping at the target's tips, reading each commit and its tree. The full walk
/// reads a commit for every one of the target's refs first (to order them by time): 85 ms on a
/// mirror of 10,000 branches, for a change of one commit. Where the new history meets the target's
/// below its tips (a branch forked from deep in the history, a merge of an old commit), this walk
/// would read ancestors the push does not send, so past `limit` commits it gives up (`None`) and
/// the full walk decides. Below the limit it may count a commit the target reaches but has no tip
/// on (the log's count, never what is sent): it reads more than the push sends, never less.
fn near_walk(
    repo: &Repository,
    new: &[git2::Commit],
    target: &RefMap,
    limit: usize,
) -> Result<Option<Checked>, String> {
    let tips: std::collections::HashSet<git2::Oid> = target.values().copied().collect();
    let mut todo: Vec<git2::Oid> = new.iter().map(git2::Commit::id).collect();
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let mut seen = std::collections::HashSet::new();
    let mut met = std::collections::BTreeSet::new();
    let mut rooted = false;
    while let Some(id) = todo.pop() {
        if tips.contains(&id) {
            met.insert(id);
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        if seen.len() > limit {
            return Ok(None);
        }
        let commit = readable_commit(repo, &odb, id)?;
        rooted |= commit.parent_count() == 0;
        todo.extend(commit.parent_ids());
    }
    Ok(Some(Checked {
        commits: seen.len(),
        boundary: (!rooted).then(|| met.into_iter().collect()),
    }))
}

/// The check ordered by time against every target tip: exact whatever the shape of the history.
fn full_walk(repo: &Repository, new: &[git2::Commit], target: &RefMap) -> Result<usize, String> {
    // (commit time, id, hide): libgit2 keeps pushed and hidden commits in call order, last call
    // first, and its limiting walk only stops early when that list runs newest first; in any
    // other order it walks every ancestor of every hidden tip down to the root (the whole
    // history, on every sync). So feed it oldest first.
    let mut starts: Vec<(i64, git2::Oid, bool)> = new
        .iter()
        .map(|commit| (commit.time().seconds(), commit.id(), false))
        .collect();
    for &have in target.values() {
        if let Some(commit) = commit_of(repo, have) {
            starts.push((commit.time().seconds(), commit.id(), true));
        }
    }
    starts.sort_unstable();
    let mut walk = repo.revwalk().map_err(|e| e.message().to_string())?;
    for (_, id, hide) in starts {
        let pushed = if hide { walk.hide(id) } else { walk.push(id) };
        pushed.map_err(|e| e.message().to_string())?;
    }
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let mut commits = 0;
    for id in walk {
        let id = id.map_err(|e| format!("cannot walk the history to push: {}", e.message()))?;
        readable_commit(repo, &odb, id)?;
        commits += 1;
    }
    Ok(commits)
}

/// Whether pushes to `target` go through our receive-pack client (`receive_pack`), whose
/// listing of the target can then stand for the first push's advertisement.
pub(crate) fn by_wire(chosen: PushEngine, target: &Remote) -> bool {
    choose_engine(chosen, target) == Engine::Wire
}

/// Whether the stateless relay may push to `target`: our receive-pack client serves it and the
/// user did not ask for another engine. The relay needs no git (its pack comes from the
/// source), unlike the wire engine's own pushes.
pub(crate) fn may_relay(chosen: PushEngine, target: &Remote) -> bool {
    matches!(chosen, PushEngine::Auto | PushEngine::Wire)
        && crate::engine::receive_pack::serves(target)
}

fn choose_engine(chosen: PushEngine, target: &Remote) -> Engine {
    if target.url.scheme() == Scheme::Local {
        // libgit2 pushes to a local path by writing its refs itself: the target's hooks and
        // receive.deny* settings would never run. git's receive-pack applies them (config
        // refuses a local target when git is missing).
        if chosen == PushEngine::Libgit2 {
            info!(
                "pushing to the local target through git receive-pack, so its hooks and \
                 receive.deny* settings apply (--push-engine libgit2 cannot run them)"
            );
        }
        return Engine::Git;
    }
    let wire_serves =
        crate::engine::receive_pack::serves(target) && crate::base::git::version().is_some();
    match chosen {
        PushEngine::Libgit2 => Engine::Libgit2,
        PushEngine::Git => Engine::Git,
        // Our receive-pack client wherever it can go: one request per batch with git's
        // delta-reusing pack, no refspec matching (git push over HTTPS is quadratic in refs),
        // credentials of any kind in-process, no object sent twice (libgit2's push re-sends
        // trees and blobs behind the target's tips).
        PushEngine::Wire | PushEngine::Auto if wire_serves => Engine::Wire,
        PushEngine::Wire | PushEngine::Auto => {
            if chosen == PushEngine::Wire {
                info!(
                    "--push-engine wire pushes to HTTP(S) and git:// targets with git installed; \
                     {} goes the automatic way",
                    target.url
                );
            }
            // SSH targets (or no git): git's pack-objects reuses the cache's stored deltas, and
            // libgit2's push walks the whole history behind every ref the target advertises.
            // But git never gets a credential on its command line and an SSH key may exist only
            // in memory, so those stay with libgit2.
            if target.git_cannot_push().is_none() && crate::base::git::version().is_some() {
                Engine::Git
            } else {
                Engine::Libgit2
            }
        }
    }
}

/// How many refspecs one `git push` may carry in a cache of `local_refs` refs. git matches every
/// refspec against every local ref (about 1 µs a pair, measured: 400 refspecs in a 10,000-ref
/// cache took 4.4 s, 4,000 took 43 s), so past this libgit2, which takes 10,000 refs in 3.5 s,
/// carries the rest.
fn git_refspec_limit(local_refs: usize, batch_size: usize) -> usize {
    (GIT_REFSPEC_PAIRS / local_refs.max(1))
        .max(16)
        .min(batch_size.max(1))
}

const GIT_REFSPEC_PAIRS: usize = 500_000;

/// The batches of a push and who sends each. Updates come first, newest commit first, deletions
/// last: a run cut short must not have deleted what it never replaced, and the newest tips
/// carry most of the objects. The source's default branch (`head`) goes before every other
/// update: an empty CodeCommit repository takes the first branch pushed to it as its default,
/// which then stays right even where this run cannot move it (no API endpoint, no permission),
/// and cannot be a branch a later change deletes. When git sends and the plan has more refs
/// than git handles well, git sends the first (newest) refs, which brings the target nearly
/// every object with git's fast, delta-reusing pack; libgit2 then sends the rest, which need
/// few objects.
fn batches<'p>(
    repo: Option<&Repository>,
    plan: &'p Plan,
    engine: Engine,
    hybrid: bool,
    batch_size: usize,
    local_refs: usize,
    head: Option<&str>,
) -> Vec<(Engine, Vec<&'p Change>)> {
    let time = |change: &Change| {
        change
            .new
            .and_then(|id| commit_of(repo?, id))
            .map_or(i64::MIN, |c| c.time().seconds())
    };
    let mut updates: Vec<(i64, &Change)> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .map(|c| (time(c), c))
        .collect();
    if engine == Engine::Wire {
        // git's pack-objects sends each object once whatever the order, so the order is for a
        // run cut short: what people use (branches, tags) is mirrored first.
        let rank = |name: &str| {
            if name.starts_with("refs/heads/") {
                0
            } else if name.starts_with("refs/tags/") {
                1
            } else {
                2
            }
        };
        updates.sort_by(|a, b| (rank(&a.1.name), &a.1.name).cmp(&(rank(&b.1.name), &b.1.name)));
    } else {
        updates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    }
    if let Some(at) = updates
        .iter()
        .position(|(_, c)| Some(c.name.as_str()) == head)
    {
        let default = updates.remove(at);
        updates.insert(0, default);
    }
    // A deletion that makes room for an update (`a` deleted, `a/b` created, or the reverse) goes
    // first: a target applies each ref on its own, in order, and cannot hold both at once.
    let updated: std::collections::BTreeSet<&str> =
        updates.iter().map(|(_, c)| c.name.as_str()).collect();
    let (making_room, deletions): (Vec<&Change>, Vec<&Change>) = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .partition(|c| in_the_way(&c.name, &updated));
    let mut ordered = making_room;
    ordered.extend(updates.into_iter().map(|(_, c)| c));
    ordered.extend(deletions);

    let batch_size = batch_size.max(1);
    let mut out = Vec::new();
    let (mut rest, mut rest_engine): (&[&Change], Engine) = (&ordered, engine);
    let limit = git_refspec_limit(local_refs, batch_size);
    if engine == Engine::Git && hybrid && limit < batch_size && rest.len() > limit {
        let (first, others) = rest.split_at(limit);
        out.push((Engine::Git, first.to_vec()));
        (rest, rest_engine) = (others, Engine::Libgit2);
    }
    out.extend(rest.chunks(batch_size).map(|c| (rest_engine, c.to_vec())));
    out
}

/// The batches of a push by our receive-pack client when no cache holds the objects (the relay):
/// the wire engine's order and batch size, the source's default branch `head` first.
pub(crate) fn wire_batches<'p>(
    plan: &'p Plan,
    batch_size: usize,
    head: Option<&str>,
) -> Vec<Vec<&'p Change>> {
    batches(None, plan, Engine::Wire, false, batch_size, 0, head)
        .into_iter()
        .map(|(_, batch)| batch)
        .collect()
}

/// Whether a ref named `name` keeps one of `names` from existing: one is a directory of the
/// other (`refs/heads/a` and `refs/heads/a/b`).
fn in_the_way(name: &str, names: &std::collections::BTreeSet<&str>) -> bool {
    let below = format!("{name}/");
    let has_below = names
        .range(below.as_str()..)
        .next()
        .is_some_and(|n| n.starts_with(&below));
    let has_above = name
        .match_indices('/')
        .any(|(at, _)| names.contains(&name[..at]));
    has_below || has_above
}

/// What a push did, for the run to record: which engines pushed, how many batches and what
/// they moved, the retries, and each change with the target's refusal in its own words.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    pub(crate) engine: Option<&'static str>,
    pub(crate) batches: usize,
    pub(crate) stats: TransferStats,
    pub(crate) retries: u32,
    /// Pushes the target did not take whole, sent again in two halves.
    pub(crate) halved: u32,
    /// Each change pushed, and why the target refused it when it did.
    pub(crate) results: Vec<(Change, Option<String>)>,
}

impl Pushed {
    /// The refs the target refused, with its reasons.
    pub(crate) fn rejected(&self) -> Vec<RefProblem> {
        self.results
            .iter()
            .filter_map(|(change, reason)| {
                Some(RefProblem {
                    name: change.name.clone(),
                    reason: reason.clone()?,
                })
            })
            .collect()
    }

    /// Count a pushed batch and take each of its refs' results, a refusal with the target's
    /// own words.
    pub(crate) fn add_batch(&mut self, batch: &[&Change], mut outcome: PushOutcome) {
        explain_rejections(&mut outcome.refs, &outcome.remote_lines);
        self.batches += 1;
        self.stats.objects += outcome.stats.objects;
        self.stats.bytes += outcome.stats.bytes;
        for change in batch {
            let reason = match outcome.refs.get(&change.name) {
                Some(RefOutcome::Accepted) => None,
                Some(RefOutcome::Rejected(reason)) => Some(reason.clone()),
                None => Some("the target reported no result for this ref".to_string()),
            };
            self.results.push(((*change).clone(), reason));
        }
    }
}

/// What a push may use besides its plan.
#[derive(Default)]
pub(crate) struct Hints<'h> {
    /// What the pre-push walk found (how many commits go, where they meet the target).
    pub(crate) checked: Option<&'h Checked>,
    /// How many refs the cache holds (git's refspec matching grows with them).
    pub(crate) local_refs: usize,
    /// The target's advertisement the plan was made from, when our client listed it.
    pub(crate) listed: Option<Advertisement>,
    /// The source's default branch, pushed first.
    pub(crate) head: Option<&'h str>,
}

/// The push engines behind one interface: a plan in, per-ref results out, whichever of git,
/// libgit2 and our receive-pack client each batch goes through.
pub(crate) struct Pusher<'a> {
    pub(crate) session: &'a Session,
    pub(crate) options: &'a PushOptions,
    pub(crate) target: &'a Remote,
    pub(crate) cache: &'a Cache,
}

/// One way to push a batch.
trait BatchPush {
    /// Push `batch`, each update leased on the value the plan saw; `listed`, when given, is the
    /// target's advertisement as last seen.
    fn push(&mut self, batch: &[&Change], listed: Option<Advertisement>) -> Result<PushOutcome>;

    /// The plan now goes in more batches than it was cut for: a later one builds on what an
    /// earlier one left on the target.
    fn rebatched(&mut self) {}
}

/// libgit2's push.
struct ByLibgit2<'a> {
    session: &'a Session,
    repo: &'a Repository,
    target: &'a Remote,
}

impl BatchPush for ByLibgit2<'_> {
    fn push(&mut self, batch: &[&Change], _: Option<Advertisement>) -> Result<PushOutcome> {
        self.session.push(
            self.repo,
            self.target,
            &batch.iter().map(|c| c.refspec()).collect::<Vec<_>>(),
            batch.iter().map(|c| (c.name.clone(), c.old)).collect(),
        )
    }
}

/// `git push`, in the cache, holding its lock.
struct ByGit<'a> {
    cache: &'a Cache,
    target: &'a Remote,
    env: Vec<(String, String)>,
    options: &'a PushOptions,
}

impl BatchPush for ByGit<'_> {
    fn push(&mut self, batch: &[&Change], _: Option<Advertisement>) -> Result<PushOutcome> {
        git_cli::push(
            self.cache.repo.path(),
            &self.target.url,
            &batch
                .iter()
                .map(|c| (c.leased_refspec(), c.lease()))
                .collect::<Vec<_>>(),
            &self.env,
            self.options.network_timeout,
            &mut Progress::new("push", self.options.progress),
            self.cache.lock(),
        )
    }
}

/// Our receive-pack client, the pack from `git pack-objects` in the cache.
struct ByWire<'a> {
    client: Client<'a>,
    cache: &'a Cache,
    options: &'a PushOptions,
    cut: Cut,
}

impl BatchPush for ByWire<'_> {
    fn push(&mut self, batch: &[&Change], listed: Option<Advertisement>) -> Result<PushOutcome> {
        self.client.push(
            &self.cache.repo,
            batch,
            self.cache.lock(),
            &mut Progress::new("push", self.options.progress),
            listed,
            self.cut.clone(),
        )
    }

    fn rebatched(&mut self) {
        self.cut = Cut::Every;
    }
}

impl Pusher<'_> {
    /// Push `plan` in batches, each one's results added to `pushed` as it lands (so what landed
    /// before a failure is there to record).
    pub(crate) fn push(&self, plan: &Plan, hints: Hints<'_>, pushed: &mut Pushed) -> Result<()> {
        let Pusher {
            session,
            options,
            target,
            cache,
        } = *self;
        let engine = choose_engine(options.engine, target);
        let hybrid = options.engine == PushEngine::Auto && target.url.scheme() != Scheme::Local;
        let batches = batches(
            Some(&cache.repo),
            plan,
            engine,
            hybrid,
            options.batch_size,
            hints.local_refs,
            hints.head,
        );
        let used = |e: Engine| batches.iter().any(|(b, _)| *b == e);
        let names = match (used(Engine::Git), used(Engine::Libgit2)) {
            _ if used(Engine::Wire) => Engine::Wire.name(),
            (true, true) => "git+libgit2",
            (true, false) => Engine::Git.name(),
            _ => Engine::Libgit2.name(),
        };
        pushed.engine = Some(names);
        let to_send = hints.checked.map_or_else(String::new, |c| {
            format!(" ({} commit(s) to send)", c.commits)
        });
        info!(
            "pushing {} ref update(s) to {} in {} batch(es) via {names}{to_send}",
            plan.changes.len(),
            target.url,
            batches.len(),
        );
        let mut engines: HashMap<Engine, Box<dyn BatchPush + '_>> = HashMap::new();
        if used(Engine::Libgit2) {
            engines.insert(
                Engine::Libgit2,
                Box::new(ByLibgit2 {
                    session,
                    repo: &cache.repo,
                    target,
                }),
            );
        }
        if used(Engine::Git) {
            engines.insert(
                Engine::Git,
                Box::new(ByGit {
                    cache,
                    target,
                    env: target.git_env()?,
                    options,
                }),
            );
        }
        if used(Engine::Wire) {
            let login = match target.end {
                crate::transport::remote::End::Source => &session.auth.source,
                crate::transport::remote::End::Target => &session.auth.target,
            };
            let mut cut = Cut::for_plan(plan.changes.len(), batches.len());
            if let (Cut::Near, Some(tips)) = (&cut, hints.checked.and_then(|c| c.boundary.clone()))
            {
                cut = Cut::Boundary(tips);
            }
            engines.insert(
                Engine::Wire,
                Box::new(ByWire {
                    client: Client::new(target, login, options.network_timeout)?,
                    cache,
                    options,
                    cut,
                }),
            );
        }
        let mut listed = hints.listed;
        let retry = Retry::new(options.retries);
        let planned = batches.len();
        let mut queue: VecDeque<(Engine, Vec<&Change>)> = batches.into();
        // What the target took at most, once it has refused more: later batches stay under it.
        let mut most = usize::MAX;
        // Halving stops once one ref alone was refused whole: it was not the size.
        let mut halving = true;
        while let Some((engine, batch)) = queue.pop_front() {
            let Some(by) = engines.get_mut(&engine) else {
                anyhow::bail!("a {} batch without its engine", engine.name());
            };
            if batch.len() > most {
                requeue(&mut queue, engine, &batch, most);
                by.rebatched();
                continue;
            }
            debug!(
                "push batch {}: {} refs via {} ({} more to go)",
                pushed.batches + 1,
                batch.len(),
                engine.name(),
                queue.len(),
            );
            let mut pending: Vec<&Change> = batch;
            let mut retried = 0;
            let outcome = loop {
                // Every update carries the value the plan saw as its lease: a ref another
                // writer (a second sync of the same mirror) moved since is refused, never
                // overwritten. The listing the plan was made from goes with the first attempt
                // only: a retry or a later batch asks again (the target changed since).
                let refused = match by.push(&pending, listed.take()) {
                    Ok(outcome) => match &outcome.unpack_error {
                        Some(why) if halving && pending.len() > 1 => {
                            format!("it could not take the pack ({why})")
                        }
                        Some(_) => {
                            halving = false;
                            break outcome;
                        }
                        None => break outcome,
                    },
                    // A 413 says "too large"; a cut may be the network's, so it is retried
                    // whole first, unless this target already refused more than it takes.
                    Err(err)
                        if halving
                            && pending.len() > 1
                            && cut_short(&err)
                            && (too_large(&err) || retried > 0 || most != usize::MAX) =>
                    {
                        format!("{err:#}")
                    }
                    Err(err) if retried < retry.retries && retry::is_transient(&err) => {
                        retried += 1;
                        pushed.retries += 1;
                        retry.pause("the push", &err, retried);
                        match still_to_push(session, target, &pending, pushed) {
                            Some(rest) => pending = rest,
                            None => {
                                pending.clear();
                                break PushOutcome::default();
                            }
                        }
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                // A target that will not take this much at once (a pack over its size limit, a
                // proxy's body limit): the refs it still lacks go again in two halves, and no
                // later batch is larger than the half.
                let Some(rest) = still_to_push(session, target, &pending, pushed) else {
                    pending.clear();
                    break PushOutcome::default();
                };
                let half = rest.len().div_ceil(2);
                warn!(
                    "the target did not take a push of {} ref update(s): {}; pushing them in two \
                     batches of at most {half}",
                    pending.len(),
                    crate::base::text::clip(&refused, 300)
                );
                pushed.halved += 1;
                most = most.min(half);
                by.rebatched();
                requeue(&mut queue, engine, &rest, half);
                pending.clear();
                break PushOutcome::default();
            };
            if pending.is_empty() {
                continue;
            }
            pushed.add_batch(&pending, outcome);
        }
        if pushed.batches > planned {
            info!(
                "pushed in {} batches where {planned} were planned: the target limits one push",
                pushed.batches
            );
        }
        Ok(())
    }
}

/// Put `refs` back at the front of the queue, in their order, as batches of at most `size`.
fn requeue<'c>(
    queue: &mut VecDeque<(Engine, Vec<&'c Change>)>,
    engine: Engine,
    refs: &[&'c Change],
    size: usize,
) {
    for part in refs.chunks(size).rev() {
        queue.push_front((engine, part.to_vec()));
    }
}

/// The changes of `pending` the target still lacks, those it already holds recorded as pushed
/// (a push cut short may have landed; a deletion of a ref already gone would be refused).
/// All of them when the target cannot be listed; none (`None`) when every one landed.
fn still_to_push<'c>(
    session: &Session,
    target: &Remote,
    pending: &[&'c Change],
    pushed: &mut Pushed,
) -> Option<Vec<&'c Change>> {
    let Ok(now) = session.list(target) else {
        return Some(pending.to_vec());
    };
    let (landed, rest): (Vec<&Change>, Vec<&Change>) = pending
        .iter()
        .partition(|c| now.get(&c.name).copied() == c.new);
    for change in landed {
        pushed.results.push((change.clone(), None));
    }
    (!rest.is_empty()).then_some(rest)
}

/// Whether the target (or a proxy before it) said the push was too large: 413.
fn too_large(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<NetError>(),
            Some(NetError::HttpStatus { status: 413, .. })
        )
    })
}

/// Whether a push failed the way a push too large for the target fails: the target (or a proxy
/// before it) answered 413, timed out or failed on it (408, 5xx: a gateway that gave up on a long
/// upload), or cut the connection while the pack was on its way. A target that could not be
/// reached at all, or stopped answering, says nothing about size.
fn cut_short(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(net) = cause.downcast_ref::<NetError>() {
            return match net {
                NetError::HttpStatus { status, .. } => matches!(status, 408 | 413 | 500..=599),
                // A stall costs the network timeout each time: not worth halving for.
                NetError::Resolve { .. } | NetError::Connect { .. } | NetError::Stalled { .. } => {
                    false
                }
                other => other.is_spurious(),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        if let Some(git) = cause.downcast_ref::<git2::Error>() {
            return git.class() == git2::ErrorClass::Net && git.is_spurious();
        }
        false
    })
}

/// Give each rejected ref the target's own words after its terse status ("pre-receive hook
/// declined", "unpacker error"): the lines that name the ref, or else the lines that name no
/// rejected ref (a message about the whole push, such as a full disk).
fn explain_rejections(refs: &mut HashMap<String, RefOutcome>, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let rejected: Vec<String> = refs
        .iter()
        .filter(|(_, outcome)| matches!(outcome, RefOutcome::Rejected(_)))
        .map(|(n, _)| n.clone())
        .collect();
    let names = |line: &str, name: &str| {
        line.contains(name)
            || name
                .strip_prefix("refs/heads/")
                .or_else(|| name.strip_prefix("refs/tags/"))
                .is_some_and(|short| {
                    line.split(|c: char| c.is_whitespace() || "'\"`:,()".contains(c))
                        .any(|word| word == short)
                })
    };
    let general: Vec<&str> = lines
        .iter()
        .filter(|l| !rejected.iter().any(|n| names(l, n)))
        .map(String::as_str)
        .collect();
    for name in rejected {
        let Some(RefOutcome::Rejected(reason)) = refs.get_mut(&name) else {
            continue;
        };
        let own: Vec<&str> = lines
            .iter()
            .filter(|l| names(l, &name))
            .map(String::as_str)
            .collect();
        let words = if own.is_empty() { &general } else { &own };
        let skip = words.len().saturating_sub(3);
        let new: Vec<&str> = words[skip..]
            .iter()
            .copied()
            .filter(|w| !reason.contains(w))
            .collect();
        if !new.is_empty() {
            *reason = format!("{reason}: {}", new.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Oid;

    /// A bare repository with one commit per second from `t0`, returned oldest first.
    fn commits(dir: &std::path::Path, n: usize) -> (Repository, Vec<Oid>) {
        let repo = Repository::init_bare(dir).unwrap();
        let mut ids: Vec<Oid> = Vec::new();
        {
            let tree_id = repo.treebuilder(None).unwrap().write().unwrap();
            let tree = repo.find_tree(tree_id).unwrap();
            for i in 0..n {
                let when = git2::Time::new(1000 + i as i64, 0);
                let sig = git2::Signature::new("t", "t@example.com", &when).unwrap();
                let parent = ids.last().map(|&p| repo.find_commit(p).unwrap());
                let parents: Vec<_> = parent.iter().collect();
                let id = repo
                    .commit(None, &sig, &sig, &format!("c{i}"), &tree, &parents)
                    .unwrap();
                ids.push(id);
            }
        }
        (repo, ids)
    }

    fn change(name: &str, action: Action, id: Oid) -> Change {
        let (old, new) = match action {
            Action::Delete => (Some(id), None),
            _ => (None, Some(id)),
        };
        Change {
            name: name.to_string(),
            action,
            old,
            new,
        }
    }

    #[test]
    fn the_near_walk_counts_what_goes_and_leaves_deep_history_to_the_full_walk() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, ids) = commits(dir.path(), 40);
        // The target holds every 5th commit as a branch, up to ids[29]; main moves to ids[32].
        let target: RefMap = (0..30)
            .step_by(5)
            .map(|i| (format!("refs/heads/t{i}"), ids[i]))
            .chain([("refs/heads/main".to_string(), ids[29])])
            .collect();
        let mut plan = Plan::default();
        let mut moved = change("refs/heads/main", Action::FastForward, ids[32]);
        moved.old = Some(ids[29]);
        plan.changes.push(moved);
        let tips = new_commits(&repo, &plan).unwrap();
        // It meets the target at ids[29], main's old tip: the pack's cut.
        let near = Checked {
            commits: 3,
            boundary: Some(vec![ids[29]]),
        };
        assert_eq!(
            near_walk(&repo, &tips, &target, 100),
            Ok(Some(near.clone()))
        );
        assert_eq!(check_connectivity(&repo, &plan, &target, None), Ok(near));
        assert_eq!(full_walk(&repo, &tips, &target), Ok(3));
        // A new branch at ids[39] over an empty target: 40 commits, past a limit of 10.
        let empty = RefMap::new();
        let mut fresh = Plan::default();
        fresh
            .changes
            .push(change("refs/heads/new", Action::Create, ids[39]));
        let fresh_tips = new_commits(&repo, &fresh).unwrap();
        assert_eq!(near_walk(&repo, &fresh_tips, &empty, 10), Ok(None));
        let whole = Checked {
            commits: 40,
            boundary: None,
        };
        assert_eq!(
            check_connectivity(&repo, &fresh, &empty, None),
            Ok(whole.clone())
        );
        // Under the limit, a walk that reaches the root meets the target nowhere: no cut.
        assert_eq!(near_walk(&repo, &fresh_tips, &empty, 100), Ok(Some(whole)));
        // A new branch forked from ids[12], below the target's tips t10, t15: the walk goes
        // through ids[12] and ids[11] and meets t10.
        let mut fork = Plan::default();
        fork.changes
            .push(change("refs/heads/fork", Action::Create, ids[12]));
        let fork_tips = new_commits(&repo, &fork).unwrap();
        assert_eq!(
            near_walk(&repo, &fork_tips, &target, 100),
            Ok(Some(Checked {
                commits: 2,
                boundary: Some(vec![ids[10]]),
            }))
        );
        // With the default branch named, its tip joins the cut: the fork's commits are main's.
        let mut with_main = vec![ids[10], ids[29]];
        with_main.sort_unstable();
        assert_eq!(
            check_connectivity(&repo, &fork, &target, Some("refs/heads/main")),
            Ok(Checked {
                commits: 2,
                boundary: Some(with_main),
            })
        );
        // A commit whose tree is gone is found by the near walk.
        let tree = repo.find_commit(ids[0]).unwrap().tree_id();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let mut raw = format!(
            "tree {}\nparent {}\n",
            Oid::from_bytes(&[7; 20]).unwrap(),
            ids[32]
        );
        raw.push_str(&format!(
            "author t <t@example.com> {} +0000\n",
            sig.when().seconds()
        ));
        raw.push_str(&format!(
            "committer t <t@example.com> {} +0000\n\nbroken\n",
            sig.when().seconds()
        ));
        let broken = repo
            .odb()
            .unwrap()
            .write(git2::ObjectType::Commit, raw.as_bytes())
            .unwrap();
        assert_ne!(tree, Oid::from_bytes(&[7; 20]).unwrap());
        let mut bad = Plan::default();
        bad.changes
            .push(change("refs/heads/main", Action::FastForward, broken));
        let err = check_connectivity(&repo, &bad, &target, None).unwrap_err();
        assert!(err.contains("has no tree"), "{err}");
    }

    #[test]
    fn a_push_cut_short_or_refused_as_too_large_is_told_from_an_unreachable_target() {
        use crate::base::net_error::NetError;
        let status = |status| {
            anyhow::Error::from(NetError::HttpStatus {
                status,
                text: format!("HTTP {status}"),
            })
        };
        let broken = anyhow::Error::from(NetError::Broken {
            url: "git://h/r".into(),
            detail: "reset".into(),
        })
        .context("cannot read the push report");
        let reset = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for short in [status(413), broken, reset, status(502)] {
            assert!(cut_short(&short), "{short:#}");
        }
        assert!(too_large(&status(413).context("pushing")));
        assert!(!too_large(&status(502)));
        let stalled = anyhow::Error::from(NetError::Stalled {
            url: "git://h/r".into(),
            doing: "took nothing",
            timeout: std::time::Duration::from_secs(1),
            why: "stalled",
        });
        assert!(!cut_short(&stalled));
        let refused = anyhow::Error::from(NetError::Connect {
            url: "git://h/r".into(),
            detail: "refused".into(),
        });
        let missing = anyhow::anyhow!("the target said: repository not found");
        for lasting in [status(403), status(404), refused, missing] {
            assert!(!cut_short(&lasting), "{lasting:#}");
        }
    }

    #[test]
    fn git_takes_the_newest_refs_and_libgit2_the_rest_when_refs_are_many() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, ids) = commits(dir.path(), 40);
        let mut plan = Plan::default();
        plan.changes
            .push(change("refs/heads/gone", Action::Delete, ids[0]));
        for (i, &id) in ids.iter().enumerate() {
            plan.changes
                .push(change(&format!("refs/heads/b{i:02}"), Action::Create, id));
        }
        // 100,000 refs in the cache: git gets 16 refspecs, the minimum.
        let split = batches(Some(&repo), &plan, Engine::Git, true, 20, 100_000, None);
        let engines: Vec<_> = split.iter().map(|(e, b)| (*e, b.len())).collect();
        assert_eq!(
            engines,
            vec![
                (Engine::Git, 16),
                (Engine::Libgit2, 20),
                (Engine::Libgit2, 5)
            ]
        );
        assert_eq!(split[0].1[0].name, "refs/heads/b39", "newest first");
        assert_eq!(split[0].1[15].name, "refs/heads/b24");
        assert_eq!(split[2].1[4].name, "refs/heads/gone", "deletions last");

        // Few refs in the cache: git carries every batch.
        let all_git = batches(Some(&repo), &plan, Engine::Git, true, 10, 41, None);
        assert!(all_git.iter().all(|(e, _)| *e == Engine::Git));
        assert_eq!(all_git.len(), 5);
        // An engine the user chose is kept for every batch.
        let chosen = batches(Some(&repo), &plan, Engine::Git, false, 10, 100_000, None);
        assert!(chosen.iter().all(|(e, _)| *e == Engine::Git));
    }

    #[test]
    fn the_source_default_branch_goes_before_every_other_update() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, ids) = commits(dir.path(), 6);
        let mut plan = Plan::default();
        plan.changes
            .push(change("refs/heads/a", Action::Delete, ids[0]));
        for (i, &id) in ids.iter().enumerate() {
            plan.changes
                .push(change(&format!("refs/heads/b{i}"), Action::Create, id));
        }
        plan.changes
            .push(change("refs/heads/main", Action::Create, ids[2]));
        for engine in [Engine::Wire, Engine::Git, Engine::Libgit2] {
            let split = batches(
                Some(&repo),
                &plan,
                engine,
                false,
                3,
                10,
                Some("refs/heads/main"),
            );
            let names: Vec<&str> = split
                .iter()
                .flat_map(|(_, b)| b.iter().map(|c| c.name.as_str()))
                .collect();
            assert_eq!(names[0], "refs/heads/main", "{engine:?}: {names:?}");
            assert_eq!(
                names.last(),
                Some(&"refs/heads/a"),
                "{engine:?}: deletions last"
            );
            assert_eq!(names.len(), 8);
        }
        // A default branch the plan does not change leaves the order alone.
        let split = batches(
            None,
            &plan,
            Engine::Wire,
            false,
            3,
            10,
            Some("refs/heads/zz"),
        );
        assert_eq!(split[0].1[0].name, "refs/heads/b0");
    }

    #[test]
    fn deletions_that_make_room_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, ids) = commits(dir.path(), 2);
        let mut plan = Plan::default();
        plan.changes
            .push(change("refs/heads/a", Action::Delete, ids[0]));
        plan.changes
            .push(change("refs/heads/b/c", Action::Delete, ids[0]));
        plan.changes
            .push(change("refs/heads/gone", Action::Delete, ids[0]));
        plan.changes
            .push(change("refs/heads/a/b", Action::Create, ids[1]));
        plan.changes
            .push(change("refs/heads/b", Action::Create, ids[1]));
        plan.changes
            .push(change("refs/heads/ab", Action::Create, ids[1]));
        let split = batches(Some(&repo), &plan, Engine::Libgit2, false, 100, 10, None);
        let names: Vec<&str> = split[0].1.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "refs/heads/a",
                "refs/heads/b/c",
                "refs/heads/a/b",
                "refs/heads/ab",
                "refs/heads/b",
                "refs/heads/gone"
            ]
        );
    }

    #[test]
    fn each_refused_ref_gets_its_own_words() {
        // Eight refs refused at once, as a target that lost a race with a late push says it:
        // every ref keeps the line that names it, however many there are.
        let mut statuses: HashMap<String, RefOutcome> = (0..8)
            .map(|i| {
                (
                    format!("refs/heads/b{i}"),
                    RefOutcome::Rejected("failed to update ref".to_string()),
                )
            })
            .collect();
        statuses.insert("refs/heads/fine".to_string(), RefOutcome::Accepted);
        let mut text: String = (0..8)
            .map(|i| {
                format!(
                    "remote: error: cannot lock ref 'refs/heads/b{i}': reference already exists   \n"
                )
            })
            .collect();
        text.push_str("remote: Resolving deltas: 100% (3/3)\n");
        let lines = crate::base::transfer::remote_messages(&text);
        assert_eq!(lines.len(), 8, "{lines:?}");
        explain_rejections(&mut statuses, &lines);
        for i in 0..8 {
            assert_eq!(
                statuses[&format!("refs/heads/b{i}")],
                RefOutcome::Rejected(format!(
                    "failed to update ref: error: cannot lock ref 'refs/heads/b{i}': \
                     reference already exists"
                ))
            );
        }
        assert_eq!(statuses["refs/heads/fine"], RefOutcome::Accepted);
    }

    #[test]
    fn refspec_limit_scales_with_the_caches_refs() {
        assert_eq!(git_refspec_limit(10, 4000), 4000);
        assert_eq!(git_refspec_limit(10_000, 4000), 50);
        assert_eq!(git_refspec_limit(1_000_000, 4000), 16);
        assert_eq!(git_refspec_limit(10_000, 20), 20);
        assert_eq!(git_refspec_limit(10_000, 3), 3);
    }
}
