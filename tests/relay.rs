//! The stateless relay: a run with no cache on disk mirrors a change by streaming the source's
//! thin pack of what the target lacks into the target's receive-pack, and never clones the
//! target. Real servers on both ends (git daemon, git http-backend, the CodeCommit stand-in, a
//! local path through git upload-pack); each run gets a cache directory of its own that starts
//! empty, as a build in CodeBuild's `CacheMode None` does.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A source with branches, tags and pull-request heads on side commits.
fn source_repo(sb: &Sandbox) -> PathBuf {
    generate_shaped_repo(
        &sb.join("srv/source.git"),
        &ShapedSpec {
            commits: 120,
            files: 20,
            blob_bytes: 300,
            fresh_bytes: 150,
            pull_requests: 12,
            branches: 4,
            tags: 4,
        },
    )
    .0
}

/// A stateless sync: a cache directory of its own, empty, every time.
fn stateless(sb: &Sandbox, source: &str, target: &str, extra: &[&str]) -> Run {
    let cache = tempfile::Builder::new()
        .prefix("cache-")
        .tempdir_in(sb.path())
        .unwrap()
        .keep();
    let out = run(bin()
        .env("HOME", sb.home())
        .args(["sync", "--json", "--source", source, "--target", target])
        .arg("--cache-dir")
        .arg(&cache)
        .args(extra));
    let packs = packs_under(&cache);
    if out.json()["relay"]["relayed"] == true {
        assert!(packs.is_empty(), "a relay left packs behind: {packs:?}");
    }
    out
}

/// Every pack file under `dir`.
fn packs_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "pack") {
                found.push(path);
            }
        }
    }
    found
}

/// A commit on `main`, a new branch at it, a tag deleted, a pull request moved.
fn change_source(sb: &Sandbox, source: &Path, work: &str) {
    let id = push_a_commit(source, &sb.join(work), &format!("{work}.txt"), work);
    update_ref(source, "refs/heads/fresh", &id);
    let tag = refs(source)
        .into_keys()
        .find(|n| n.starts_with("refs/tags/"))
        .unwrap();
    delete_ref(source, &tag);
    update_ref(source, "refs/pull/1/head", &id);
}

#[test]
fn a_stateless_incremental_relays_over_git_http_and_a_local_path_and_never_seeds() {
    for transport in ["git", "http", "local"] {
        let sb = Sandbox::new();
        let source = source_repo(&sb);
        let target = init_bare(&sb.join("srv/target.git"));
        let server = GitServer::start(
            if transport == "local" {
                "http"
            } else {
                transport
            },
            &sb.join("srv"),
        );
        let src = if transport == "local" {
            path_str(&source)
        } else {
            server.url("source.git")
        };
        let tgt = server.url("target.git");
        let first = stateless(&sb, &src, &tgt, &[]);
        assert_eq!(first.code, 0, "{transport}: {}", first.stderr);
        assert_mirror(&source, &target);
        // An empty target is a first mirror: it goes through the cache.
        assert_eq!(first.json()["relay"]["relayed"], false, "{}", first.stdout);

        change_source(&sb, &source, "w1");
        let out = stateless(&sb, &src, &tgt, &[]);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&source, &target);
        fsck(&target);
        let json = out.json();
        assert_eq!(json["relay"]["relayed"], true, "{transport}: {json}");
        assert_eq!(json["relay"]["fallback"], serde_json::Value::Null, "{json}");
        assert_eq!(json["seeded"], false, "{json}");
        assert_eq!(json["transfer"]["seed"]["objects"], 0, "{json}");
        assert_eq!(json["transfer"]["fetch"]["objects"], 0, "{json}");
        assert_eq!(json["transfer"]["push"]["engine"], "relay", "{json}");
        // The commit, its tree, the new blob: the thin pack of the change, nothing else.
        assert_eq!(json["relay"]["objects"], 3, "{transport}: {json}");
        assert_eq!(json["refs"]["created"], 1, "{json}");
        assert_eq!(json["refs"]["deleted"], 1, "{json}");
        assert_eq!(json["status"], "in_sync", "{json}");
    }
}
