//! The target's default branch follows the source's `HEAD`.
//!
//! A push cannot carry it: Git has no command that moves a remote's `HEAD`, so a mirror made by
//! pushing keeps whatever default the target started with (CodeCommit: the first branch ever
//! pushed), and a clone of the mirror checks out another branch than a clone of the source. How
//! to move it depends on the target:
//!
//! - a local bare repository: `HEAD` is written directly, as `git symbolic-ref HEAD refs/heads/X`
//!   would. This bypasses receive-pack, which pushes to a local target otherwise always go through
//!   (so its hooks and `receive.deny*` apply), and that is fine: receive-pack has no way to change
//!   `HEAD` at all, git runs no hook for a symbolic ref, and the file is replaced atomically
//!   through a lock file, so a concurrent push or reader sees the old or the new value, never a
//!   torn one;
//! - a local repository with a work tree: its `HEAD` is not a default branch but the branch
//!   checked out there, which its index and files match. Writing it would switch the work tree's
//!   branch under its files, and moving it away first would let a deletion through that
//!   `receive.denyDeleteCurrent` refuses; so it is never written, and updates to that branch are
//!   left to receive-pack and the target's `receive.denyCurrentBranch` (refused by default,
//!   applied to the files with `updateInstead`), a refusal naming the branch and what to do;
//! - CodeCommit: `UpdateDefaultBranch` (see `control_plane`);
//! - any other remote: nothing can be done through Git; a difference between the `HEAD` it
//!   advertises and the source's is reported as a warning in the summary.
//!
//! A target refuses (CodeCommit) or is left dangling by (Git) the deletion of its default
//! branch, so when the source deleted it the default is moved first and the branch deleted after.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::aws::control_plane::ControlPlane;
use crate::base::refname;
use crate::report::summary::DefaultBranchReport;

/// How the target's default branch is read and moved.
pub(crate) enum Target {
    Local(PathBuf),
    CodeCommit(ControlPlane),
    /// Only the `HEAD` its listings advertise is known.
    Other,
}

/// The target's default branch, as far as this run knows it.
pub(crate) struct DefaultBranch {
    pub(crate) target: Target,
    /// Full ref name: read from a local target, from `GetRepository`, or from the `HEAD` the
    /// target's last listing advertised.
    known: Option<String>,
    /// Why the default branch is not managed on this target, when it is not.
    pub(crate) unmanaged: Option<String>,
    /// A local target with a work tree, whose `HEAD` is its checked-out branch.
    worktree: bool,
    /// This run moved it.
    moved: bool,
}

impl DefaultBranch {
    pub(crate) fn new(target: Target, known: Option<String>) -> DefaultBranch {
        DefaultBranch {
            target,
            known,
            unmanaged: None,
            worktree: false,
            moved: false,
        }
    }

    /// A local target at `path` (absolute). One with a work tree keeps its `HEAD`: see the
    /// module's documentation.
    pub(crate) fn local(path: PathBuf) -> DefaultBranch {
        let worktree = git2::Repository::open(&path).is_ok_and(|repo| !repo.is_bare());
        let unmanaged = worktree.then(|| {
            format!(
                "the target {} is not a bare repository: its HEAD is the branch checked out in \
                 its work tree, which this run never moves; mirror into a bare repository (git \
                 init --bare) for the default branch to follow the source",
                path.display()
            )
        });
        DefaultBranch {
            unmanaged,
            worktree,
            ..DefaultBranch::new(Target::Local(path), None)
        }
    }

    /// A target whose default branch is known only as its listings advertise it.
    pub(crate) fn unmanaged(why: String) -> DefaultBranch {
        DefaultBranch {
            target: Target::Other,
            known: None,
            unmanaged: Some(why),
            worktree: false,
            moved: false,
        }
    }

    /// Whether only the `HEAD` the target's listings advertise tells its default branch (no
    /// file or API says better, and nothing here can move it).
    pub(crate) fn known_by_listings(&self) -> bool {
        matches!(self.target, Target::Other)
    }

    /// A listing of the target advertised `head` (only kept where nothing better is known).
    pub(crate) fn advertised(&mut self, head: Option<String>) {
        if self.known_by_listings() {
            self.known = head;
        }
    }

    /// The target's default branch now.
    pub(crate) fn current(&self) -> Option<String> {
        match &self.target {
            Target::Local(path) => read_local_head(path),
            _ => self.known.clone(),
        }
    }

    /// Whether this target's default branch can be moved by this run.
    pub(crate) fn movable(&self) -> bool {
        !self.known_by_listings() && self.unmanaged.is_none()
    }

    /// Refs the target refused, with what to do when one is the branch checked out in a local
    /// target's work tree (which receive-pack refuses to update or delete unless the target's
    /// configuration says otherwise).
    pub(crate) fn refused(&self, rejected: Vec<crate::base::error::RefProblem>) -> anyhow::Error {
        let checked_out = self.worktree.then(|| self.current()).flatten();
        let hit = checked_out.filter(|branch| rejected.iter().any(|r| &r.name == branch));
        let err = anyhow::Error::from(crate::base::error::Error::Rejected(rejected));
        match (hit, &self.target) {
            (Some(branch), Target::Local(path)) => err.context(format!(
                "{} is the branch checked out in the work tree of the target {}, which refuses \
                 to update or delete it (receive.denyCurrentBranch, receive.denyDeleteCurrent); \
                 mirror into a bare repository (git init --bare)",
                refname::shown(&branch),
                path.display()
            )),
            _ => err,
        }
    }

    /// Make `branch` (a full ref name the target holds) the target's default branch; returns
    /// whether it changed.
    pub(crate) fn set(&mut self, branch: &str) -> Result<bool> {
        if self.current().as_deref() == Some(branch) {
            return Ok(false);
        }
        if let Some(why) = &self.unmanaged {
            anyhow::bail!("{why}");
        }
        match &self.target {
            Target::Local(path) => {
                let repo = git2::Repository::open(path)
                    .with_context(|| format!("cannot open the target {}", path.display()))?;
                let name = std::str::from_utf8(&refname::to_bytes(branch))
                    .map(str::to_string)
                    .with_context(|| {
                        format!(
                            "cannot point the target's HEAD at {}: not UTF-8",
                            refname::shown(branch)
                        )
                    })?;
                repo.reference_symbolic("HEAD", &name, true, "backlog-mirror: default branch")
                    .with_context(|| {
                        format!(
                            "cannot point the target's HEAD at {}",
                            refname::shown(branch)
                        )
                    })?;
            }
            Target::CodeCommit(api) => {
                let Some(short) = branch.strip_prefix("refs/heads/") else {
                    anyhow::bail!(
                        "CodeCommit's default branch must be a branch, not {}",
                        refname::shown(branch)
                    );
                };
                api.set_default_branch(short)?;
            }
            Target::Other => anyhow::bail!("the target's default branch cannot be moved"),
        }
        info!(
            "the target's default branch is now {} (was {})",
            refname::shown(branch),
            self.known
                .as_deref()
                .map_or_else(|| "unset".to_string(), refname::shown)
        );
        self.known = Some(branch.to_string());
        self.moved = true;
        Ok(true)
    }

    /// After a run that left the target in sync: move the target's default branch to the
    /// source's `HEAD` (`source`, present on the target when `on_target`), or say why not.
    pub(crate) fn follow(&mut self, source: Option<&str>, on_target: bool) -> DefaultBranchReport {
        let mut report = DefaultBranchReport {
            source: source.map(str::to_string),
            target: self.current(),
            changed: self.moved,
            warning: None,
        };
        let Some(source) = source else {
            return report;
        };
        if report.target.as_deref() == Some(source) {
            return report;
        }
        if let Some(why) = &self.unmanaged {
            report.warning = Some(why.clone());
        } else if !on_target {
            report.warning = Some(format!(
                "the source's default branch {} is not mirrored (--include/--exclude)",
                refname::shown(source)
            ));
        } else if !self.movable() {
            if let Some(target) = &report.target {
                report.warning = Some(format!(
                    "the target's default branch is {}, the source's {}; Git cannot change a \
                     remote's HEAD: change it in the target's settings",
                    refname::shown(target),
                    refname::shown(source)
                ));
            }
        } else {
            match self.set(source) {
                Ok(_) => {
                    report.changed = self.moved;
                    report.target = self.current();
                }
                Err(err) => report.warning = Some(crate::base::error::one_line(&err)),
            }
        }
        if let Some(warning) = &report.warning {
            warn!("default branch: {warning}");
        }
        report
    }
}

/// The branch a local repository's `HEAD` names.
fn read_local_head(path: &std::path::Path) -> Option<String> {
    let repo = git2::Repository::open(path).ok()?;
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target_bytes().map(refname::escape)
}
