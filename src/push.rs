//! Carrying a plan to the target: check, choose who builds the pack, batch, read back results.
//!
//! Both engines report per-ref results because a push "succeeds" even when the target rejected
//! half the refs. Plans are split into batches because CodeCommit refuses pushes of more than
//! 4,000 ref updates; each batch opens a fresh connection so the target's advertisement (and so
//! the set of objects it already has) is current.

use std::collections::HashMap;

use anyhow::Result;
use git2::Repository;
use tracing::{debug, info};

use crate::cli::PushEngine;
use crate::config::SyncConfig;
use crate::gitcli;
use crate::plan::{Action, Change, Plan};
use crate::progress::Progress;
use crate::remote::{RefMap, Session};
use crate::report::{RefResult, Summary};
use crate::url::Scheme;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Libgit2,
    Git,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Libgit2 => "libgit2",
            Engine::Git => "git",
        }
    }
}

/// Walk every commit the push will send (new tips minus what the target already has) and make
/// sure each is readable with its tree: a cache damaged by a killed run must not reach the
/// target. Returns how many commits the push sends, for the log.
pub fn check_connectivity(
    repo: &Repository,
    plan: &Plan,
    target: &RefMap,
) -> Result<usize, String> {
    // (commit time, id, hide): libgit2 keeps pushed and hidden commits in call order, last call
    // first, and its limiting walk only stops early when that list runs newest first; in any
    // other order it walks every ancestor of every hidden tip down to the root (the whole
    // history, on every sync). So feed it oldest first.
    let mut starts: Vec<(i64, git2::Oid, bool)> = Vec::new();
    for change in &plan.changes {
        let Some(new) = change.new else { continue };
        let object = repo.find_object(new, None).map_err(|_| {
            format!(
                "{} points to {new}, which the cache does not have",
                change.name
            )
        })?;
        // A tag of a tree or blob: having the object is all there is to check.
        if let Ok(commit) = object.peel_to_commit() {
            starts.push((commit.time().seconds(), commit.id(), false));
        }
    }
    if starts.is_empty() {
        return Ok(0);
    }
    for &have in target.values() {
        if let Ok(object) = repo.find_object(have, None)
            && let Ok(commit) = object.peel_to_commit()
        {
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
        let commit = repo
            .find_commit(id)
            .map_err(|e| format!("commit {id} is unreadable: {}", e.message()))?;
        if !odb.exists(commit.tree_id()) {
            return Err(format!("commit {id} has no tree {}", commit.tree_id()));
        }
        commits += 1;
    }
    Ok(commits)
}

fn choose_engine(cfg: &SyncConfig) -> Engine {
    match cfg.push_engine {
        PushEngine::Libgit2 => Engine::Libgit2,
        PushEngine::Git => Engine::Git,
        PushEngine::Auto => {
            // git wins on every push size: its pack-objects reuses the cache's stored deltas (a
            // first mirror), and libgit2's push walks the whole history behind every ref the
            // target advertises (a few commits on a long history). But git never gets a
            // credential on its command line and an SSH key may exist only in memory, so
            // password and SSH targets stay with libgit2; CodeCommit goes through git, which
            // asks our credential helper for each signature.
            let reachable = cfg.target.password().is_none()
                && cfg.target.scheme() != Scheme::Ssh
                && cfg.auth.target_password.is_none();
            if reachable && gitcli::version().is_some() {
                Engine::Git
            } else {
                Engine::Libgit2
            }
        }
    }
}

/// Push `plan` in batches and record each ref's result in `summary`. Returns the refs the target
/// rejected, with its reasons.
pub fn execute(
    session: &Session,
    cfg: &SyncConfig,
    repo: &Repository,
    plan: &Plan,
    commits: Option<usize>,
    summary: &mut Summary,
) -> Result<Vec<(String, String)>> {
    let engine = choose_engine(cfg);
    summary.transfer.push.engine = Some(engine.name());
    // Updates before deletions: a run cut short must not have deleted what it never replaced.
    let mut ordered: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .collect();
    ordered.extend(plan.changes.iter().filter(|c| c.action == Action::Delete));
    let batches: Vec<&[&Change]> = ordered.chunks(cfg.batch_size.max(1)).collect();
    let to_send = commits.map_or_else(String::new, |n| format!(" ({n} commit(s) to send)"));
    info!(
        "pushing {} ref update(s) to {} in {} batch(es) via {}{to_send}",
        ordered.len(),
        cfg.target,
        batches.len(),
        engine.name()
    );
    let git_env = match (&engine, &cfg.auth.codecommit) {
        (Engine::Git, Some((_, region))) => {
            gitcli::codecommit_helper_env(region, &cfg.target.authority())?
        }
        _ => Vec::new(),
    };
    let mut rejected = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        debug!(
            "push batch {}/{}: {} refs",
            index + 1,
            batches.len(),
            batch.len()
        );
        let specs: Vec<String> = batch.iter().map(|c| c.refspec()).collect();
        let (statuses, stats) = match engine {
            Engine::Libgit2 => session.push(repo, &cfg.target, &specs)?,
            Engine::Git => {
                let mut progress = Progress::new("push", cfg.progress, cfg.progress_interval);
                gitcli::push(repo.path(), &cfg.target, &specs, &git_env, &mut progress)?
            }
        };
        summary.transfer.push.batches += 1;
        summary.transfer.push.objects += stats.objects;
        summary.transfer.push.bytes += stats.bytes;
        record(batch, &statuses, summary, &mut rejected);
    }
    Ok(rejected)
}

fn record(
    batch: &[&Change],
    statuses: &HashMap<String, Option<String>>,
    summary: &mut Summary,
    rejected: &mut Vec<(String, String)>,
) {
    for change in batch {
        match statuses.get(&change.name) {
            Some(None) => summary.record(change, RefResult::Ok, None),
            Some(Some(reason)) => {
                rejected.push((change.name.clone(), reason.clone()));
                summary.record(change, RefResult::Rejected, Some(reason.clone()));
            }
            None => {
                let reason = "the target reported no result for this ref".to_string();
                rejected.push((change.name.clone(), reason.clone()));
                summary.record(change, RefResult::Rejected, Some(reason));
            }
        }
    }
}
