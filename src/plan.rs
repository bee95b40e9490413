//! What a push has to do: the difference between the cache and the target, ref by ref.
//!
//! Planning before pushing lets a sync that has nothing to do open no push at all, lets the
//! delete guard see every deletion before any happens, and gives the report its exact list.

use git2::{Oid, Repository};
use serde::Serialize;

use crate::refname::RefMap;
use crate::select::RefFilter;

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

impl Change {
    /// The refspec that carries this change with mirror semantics.
    pub(crate) fn refspec(&self) -> String {
        match self.action {
            Action::Delete => format!(":{}", self.name),
            _ => format!("+{0}:{0}", self.name),
        }
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

/// The default for `--max-delete`: half the target's selected refs, at least 10.
pub(crate) fn default_max_delete(target_refs: usize) -> usize {
    (target_refs / 2).max(10)
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
    fn max_delete_default() {
        assert_eq!(default_max_delete(0), 10);
        assert_eq!(default_max_delete(30), 15);
    }
}
