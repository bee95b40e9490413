//! Git LFS in what a mirror pushes, which a target without an LFS server cannot serve.
//!
//! CodeCommit has no LFS server: a mirror of an LFS repository holds only pointer files, and a
//! build that checks it out gets pointers instead of content, without any error. So a run says
//! so, once, naming the refs (`--lfs warn`, the default), or refuses to push at all
//! (`--lfs fail`).
//!
//! Detection reads the root `.gitattributes` of every commit a plan pushes (one tree entry and
//! at most one small blob per distinct tree) and looks for `filter=lfs`: that is what
//! `git lfs track` writes, and without it no client stores pointers. The other signal, pointer
//! blobs among the objects sent, would mean reading every new blob of every push (a first mirror
//! reads the whole history), and a repository can hold pointer-shaped files without using LFS.
//! A `.gitattributes` only in a subdirectory is missed; `git lfs track` never writes one there.
//!
//! Copying LFS objects to a target that has an LFS server (GitHub, GitLab, Gitea) is a later
//! step. Its shape: after the refs are pushed, list the pointers the pushed commits reference
//! (`oid sha256:...` and `size`), ask the source's LFS batch API (`<source>/info/lfs`,
//! `operation: download`, authenticated like the Git remote: for Backlog over SSH through
//! `git-lfs-authenticate`) and the target's (`operation: upload`) which objects each has, and
//! stream the missing ones from one to the other without keeping them in the cache. Targets
//! without LFS (CodeCommit) keep the warning.

use std::collections::HashSet;

use git2::{ObjectType, Oid, Repository};

use crate::engine::plan::Plan;

/// The refs of `plan` whose new value is a commit with `filter=lfs` in its root
/// `.gitattributes`.
pub(crate) fn refs_using_lfs(repo: &Repository, plan: &Plan) -> Vec<String> {
    let mut lfs_trees: HashSet<Oid> = HashSet::new();
    let mut plain_trees: HashSet<Oid> = HashSet::new();
    let mut found = Vec::new();
    for change in &plan.changes {
        let Some(new) = change.new else { continue };
        let Some(tree) = repo
            .find_object(new, None)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.tree_id())
            .ok()
        else {
            continue;
        };
        let uses = if lfs_trees.contains(&tree) {
            true
        } else if plain_trees.contains(&tree) {
            false
        } else {
            let uses = tree_uses_lfs(repo, tree);
            if uses {
                lfs_trees.insert(tree);
            } else {
                plain_trees.insert(tree);
            }
            uses
        };
        if uses {
            found.push(change.name.clone());
        }
    }
    found
}

fn tree_uses_lfs(repo: &Repository, tree: Oid) -> bool {
    let Ok(tree) = repo.find_tree(tree) else {
        return false;
    };
    let Some(entry) = tree.get_name(".gitattributes") else {
        return false;
    };
    if entry.kind() != Some(ObjectType::Blob) {
        return false;
    }
    repo.find_blob(entry.id())
        .is_ok_and(|blob| attributes_use_lfs(blob.content()))
}

/// Whether a `.gitattributes` text sets `filter=lfs` on any pattern.
fn attributes_use_lfs(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        !line.starts_with(b"#")
            && line
                .split(|b| b.is_ascii_whitespace())
                .skip(1)
                .any(|attr| attr == b"filter=lfs")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_git_lfs_track_writes() {
        assert!(attributes_use_lfs(
            b"*.psd filter=lfs diff=lfs merge=lfs -text\n"
        ));
        assert!(attributes_use_lfs(b"*.txt text\r\n*.bin\tfilter=lfs\r\n"));
        assert!(!attributes_use_lfs(b"# *.psd filter=lfs\n*.txt text\n"));
        assert!(!attributes_use_lfs(b"filter=lfs\n"));
        assert!(!attributes_use_lfs(b"*.bin filter=lfsx\n"));
    }
}
