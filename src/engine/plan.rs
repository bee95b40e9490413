//! What a push has to do: the difference between the cache and the target, ref by ref.
//!
//! Planning before pushing lets a sync that has nothing to do open no push at all, lets the
//! delete guard see every deletion before any happens, and gives the report its exact list.

use git2::{Oid, Repository};
use serde::Serialize;
use tracing::warn;

use crate::base::error::Refusal;
use crate::base::refname::RefMap;
use crate::engine::ref_filter::RefFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Create,
    FastForward,
    Force,
    Delete,
}

impl Action {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::FastForward => "fast-forward",
            Action::Force => "force-update",
            Action::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) old: Option<Oid>,
    pub(crate) new: Option<Oid>,
}

#[cfg(test)]
impl Change {
    /// A change from `old` to `new`, its action as a plan would name it without walking
    /// history: a create, a delete, else a forced update.
    pub(crate) fn between(name: &str, old: Option<Oid>, new: Option<Oid>) -> Change {
        let action = match (old, new) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            _ => Action::Force,
        };
        Change {
            name: name.to_string(),
            action,
            old,
            new,
        }
    }
}

impl Change {
    /// The refspec that carries this change with mirror semantics.
    pub(crate) fn refspec(&self) -> String {
        match self.action {
            Action::Delete => format!(":{}", self.name),
            _ => format!("+{0}:{0}", self.name),
        }
    }

    /// The refspec for a push that carries this change's lease separately (git's
    /// `--force-with-lease`, see [`Change::lease`]): no `+`, which would override the lease.
    pub(crate) fn leased_refspec(&self) -> String {
        match self.action {
            Action::Delete => format!(":{}", self.name),
            _ => format!("{0}:{0}", self.name),
        }
    }

    /// git's `--force-with-lease=<ref>:<expect>` for this change: the target's ref must still
    /// be where the plan saw it (absent, for a create), or the target refuses it as stale.
    pub(crate) fn lease(&self) -> String {
        let expect = self.old.map(|o| o.to_string()).unwrap_or_default();
        format!("--force-with-lease={}:{expect}", self.name)
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    pub(crate) changes: Vec<Change>,
    pub(crate) unchanged: usize,
}

impl Plan {
    /// Compare the selected refs of the cache (`wanted`) with the target's (`current`).
    pub(crate) fn new(
        repo: &Repository,
        wanted: &RefMap,
        current: &RefMap,
        filter: &RefFilter,
    ) -> Plan {
        let mut plan = Plan::default();
        for (name, &new) in wanted.iter().filter(|(n, _)| filter.selects(n)) {
            match current.get(name) {
                Some(&old) if old == new => plan.unchanged += 1,
                Some(&old) => plan.changes.push(Change {
                    name: name.clone(),
                    action: if is_fast_forward(repo, old, new) {
                        Action::FastForward
                    } else {
                        Action::Force
                    },
                    old: Some(old),
                    new: Some(new),
                }),
                None => plan.changes.push(Change {
                    name: name.clone(),
                    action: Action::Create,
                    old: None,
                    new: Some(new),
                }),
            }
        }
        for (name, &old) in current.iter().filter(|(n, _)| filter.selects(n)) {
            if !wanted.contains_key(name) {
                plan.changes.push(Change {
                    name: name.clone(),
                    action: Action::Delete,
                    old: Some(old),
                    new: None,
                });
            }
        }
        plan
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn deletes(&self) -> usize {
        self.count(Action::Delete)
    }

    pub(crate) fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// Whether moving a ref from `old` to `new` keeps history (both commits, `old` an ancestor).
/// Unknown objects (the target had commits the source never had) mean a forced update.
fn is_fast_forward(repo: &Repository, old: Oid, new: Oid) -> bool {
    let is_commit = |oid| {
        repo.find_object(oid, None)
            .ok()
            .and_then(|o| o.kind())
            .is_some_and(|k| k == git2::ObjectType::Commit)
    };
    is_commit(old) && is_commit(new) && repo.graph_descendant_of(new, old).unwrap_or(false)
}

/// The delete guard, both of its rules: a source that lists no refs at all (a broken
/// repository, wrong credentials a server answers with an empty list) and a plan deleting more
/// than `--max-delete` refs each stop the run before that plan is pushed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeleteGuard {
    /// `--allow-mass-delete`: the guard is off.
    pub(crate) allow_mass_delete: bool,
    /// `--max-delete`; by default half the target's selected refs, at least 10.
    pub(crate) max_delete: Option<usize>,
}

impl DeleteGuard {
    /// Whether a fetch may prune the cache to the source's `refs`: an empty listing never empties
    /// the cache unless mass deletes are allowed, so the guard sees the source as it was.
    pub(crate) fn lets_fetch_prune_to(&self, refs: &RefMap) -> bool {
        !refs.is_empty() || self.allow_mass_delete
    }

    /// Refuse a plan deleting `deletes` of the `on_target` selected refs on the target, made from
    /// a source that listed no refs (`source_empty`) or some.
    pub(crate) fn check(
        &self,
        source_empty: bool,
        deletes: usize,
        on_target: usize,
    ) -> Result<(), Refusal> {
        if self.allow_mass_delete {
            if source_empty {
                warn!(
                    "the source is empty: deleting every selected ref on the target \
                     (--allow-mass-delete)"
                );
            }
            return Ok(());
        }
        if source_empty {
            return Err(Refusal::SourceEmpty);
        }
        let limit = self.max_delete.unwrap_or((on_target / 2).max(10));
        if deletes > limit {
            return Err(Refusal::TooManyDeletes {
                planned: deletes,
                limit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &Repository, parent: Option<Oid>, msg: &str) -> Oid {
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let parents: Vec<_> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let refs: Vec<_> = parents.iter().collect();
        repo.commit(None, &sig, &sig, msg, &tree, &refs).unwrap()
    }

    #[test]
    fn classifies_every_action() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = commit(&repo, None, "a");
        let b = commit(&repo, Some(a), "b");
        let c = commit(&repo, None, "c");
        let wanted: RefMap = [
            ("refs/heads/same", a),
            ("refs/heads/ff", b),
            ("refs/heads/forced", c),
            ("refs/heads/new", a),
            ("refs/pull/1/head", a),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        let current: RefMap = [
            ("refs/heads/same", a),
            ("refs/heads/ff", a),
            ("refs/heads/forced", b),
            ("refs/heads/gone", a),
            ("refs/pull/9/head", a),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        let filter = RefFilter::new(&[], &["refs/pull/*".to_string()]).unwrap();
        let plan = Plan::new(&repo, &wanted, &current, &filter);
        let got: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("refs/heads/ff", Action::FastForward),
                ("refs/heads/forced", Action::Force),
                ("refs/heads/new", Action::Create),
                ("refs/heads/gone", Action::Delete),
            ]
        );
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.changes[3].refspec(), ":refs/heads/gone");
        assert_eq!(plan.changes[0].refspec(), "+refs/heads/ff:refs/heads/ff");
    }

    #[test]
    fn the_guard_refuses_an_empty_source_and_mass_deletes() {
        let guard = DeleteGuard {
            allow_mass_delete: false,
            max_delete: None,
        };
        assert_eq!(guard.check(true, 0, 5), Err(Refusal::SourceEmpty));
        // Half the target's selected refs, at least 10.
        assert_eq!(guard.check(false, 10, 0), Ok(()));
        assert_eq!(
            guard.check(false, 11, 0),
            Err(Refusal::TooManyDeletes {
                planned: 11,
                limit: 10
            })
        );
        assert_eq!(guard.check(false, 15, 30), Ok(()));
        assert!(guard.check(false, 16, 30).is_err());
        assert!(!guard.lets_fetch_prune_to(&RefMap::new()));
        let off = DeleteGuard {
            allow_mass_delete: true,
            max_delete: Some(0),
        };
        assert_eq!(off.check(true, 100, 100), Ok(()));
        assert!(off.lets_fetch_prune_to(&RefMap::new()));
        let limited = DeleteGuard {
            allow_mass_delete: false,
            max_delete: Some(4),
        };
        assert!(limited.check(false, 5, 1000).is_err());
    }
}
