//! The fetch into a cache that already holds a mirror goes through our own upload-pack client
//! (one request, haves cut near the change, the pack stored through libgit2's indexer). Real
//! servers (git daemon, git http-backend, a local path); each test changes the source the ways a
//! mirror meets, checks the client that fetched (`transfer.fetch.engine` in the JSON summary),
//! and that the target ends exact. A cache that cannot store a sound pack is rebuilt; a pack
//! damaged on the way is fetched again, the cache kept.

use std::path::PathBuf;

use crate::support::*;

/// A source whose `main` holds a 20 KB file (so a small change to it travels as a delta against
/// the old version: a thin pack), with branches, tags and pull-request heads; an empty target;
/// both served by `transport`; one sync done.
struct Warm {
    sb: Sandbox,
    source: PathBuf,
    target: PathBuf,
    server: Option<GitServer>,
    /// A proxy the source is reached through, when a test damages the way.
    proxy: Option<FaultProxy>,
}

impl Warm {
    fn new(transport: &str) -> Warm {
        Warm::through(transport, None)
    }

    /// As `new`, the source reached through a proxy with `fault` (which fires once).
    fn through(transport: &str, fault: Option<Fault>) -> Warm {
        let sb = Sandbox::new();
        let source = generate_shaped_repo(
            &sb.join("srv/source.git"),
            &ShapedSpec {
                commits: 60,
                files: 10,
                blob_bytes: 300,
                fresh_bytes: 150,
                pull_requests: 8,
                branches: 3,
                tags: 3,
            },
        )
        .0;
        push_a_commit_on(
            &source,
            &sb.join("big"),
            "main",
            "big.txt",
            &noise(20_000),
            "refs/heads/main",
        );
        let target = init_bare(&sb.join("srv/target.git"));
        let server = (transport != "local").then(|| GitServer::start(transport, &sb.join("srv")));
        let proxy = fault.map(|fault| {
            let port = server.as_ref().expect("a proxy needs a server").port();
            FaultProxy::start_times(port, fault, 1)
        });
        let warm = Warm {
            sb,
            source,
            target,
            server,
            proxy,
        };
        let first = warm.sync(&[]);
        assert_eq!(first.code, 0, "{}", first.stderr);
        assert_mirror(&warm.source, &warm.target);
        warm
    }

    fn source_url(&self) -> String {
        match (&self.server, &self.proxy) {
            (Some(server), Some(proxy)) => proxy.rewrite(&server.url("source.git")),
            (Some(server), None) => server.url("source.git"),
            (None, _) => path_str(&self.source),
        }
    }

    fn command(&self, source: &str, extra: &[&str]) -> std::process::Command {
        let target = match &self.server {
            Some(server) => server.url("target.git"),
            None => path_str(&self.target),
        };
        let mut cmd = self.sb.sync(source, &target);
        cmd.args(["--json", "--retries", "2"]).args(extra);
        cmd
    }

    fn sync_from(&self, source: &str, extra: &[&str]) -> Run {
        run(&mut self.command(source, extra))
    }

    fn sync(&self, extra: &[&str]) -> Run {
        self.sync_from(&self.source_url(), extra)
    }

    /// `main`'s big file changed a little, a branch made on a pull-request head, a tag deleted,
    /// a pull request moved to the new commit.
    fn change(&self, work: &str) -> String {
        let mut text = noise(20_000);
        text.push_str(work);
        let id = push_a_commit_on(
            &self.source,
            &self.sb.join(work),
            "main",
            "big.txt",
            &text,
            "refs/heads/main",
        );
        let pulls = refs(&self.source);
        let on_pull = &pulls["refs/pull/2/head"];
        update_ref(&self.source, &format!("refs/heads/{work}"), on_pull);
        if let Some(tag) = pulls.keys().find(|n| n.starts_with("refs/tags/")) {
            delete_ref(&self.source, tag);
        }
        update_ref(&self.source, "refs/pull/1/head", &id);
        id
    }
}

fn fetch_engine(out: &Run) -> String {
    out.json()["transfer"]["fetch"]["engine"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

#[test]
fn a_warm_fetch_goes_through_our_client_over_git_http_and_a_local_path() {
    for transport in ["git", "http", "local"] {
        let w = Warm::new(transport);
        w.change("one");
        let out = w.sync(&[]);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&w.source, &w.target);
        assert_eq!(fetch_engine(&out), "wire", "{transport}: {}", out.stdout);
        let fetched = &out.json()["transfer"]["fetch"];
        // The commit, its tree and the changed file: not the whole history.
        let objects = fetched["objects"].as_u64().unwrap();
        assert!((1..=5).contains(&objects), "{transport}: {fetched}");
        fsck(&w.sb.cache_dir().join(mirror_dir(&w.sb.cache_dir())));
        // The escape hatch gives libgit2's fetch back, exact too.
        w.change("two");
        let out = run(w
            .sb
            .sync(&w.source_url(), &target_of(&w))
            .args(["--json"])
            .env("BACKLOG_MIRROR_LIBGIT2_FETCH", "1"));
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&w.source, &w.target);
        assert_eq!(fetch_engine(&out), "libgit2", "{transport}: {}", out.stdout);
    }
}

fn target_of(w: &Warm) -> String {
    match &w.server {
        Some(server) => server.url("target.git"),
        None => path_str(&w.target),
    }
}

/// The one mirror directory a sandbox's cache holds.
fn mirror_dir(cache: &std::path::Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].file_name().unwrap().into()
}

#[test]
fn refs_moved_to_objects_the_cache_holds_download_nothing() {
    let w = Warm::new("git");
    let before = refs(&w.source);
    let main = &before["refs/heads/main"];
    let parent = git(&w.source, &["rev-parse", &format!("{main}^")]);
    update_ref(&w.source, "refs/heads/main", &parent);
    update_ref(&w.source, "refs/heads/copy", &before["refs/pull/3/head"]);
    let branch = before
        .keys()
        .find(|n| n.starts_with("refs/heads/") && *n != "refs/heads/main")
        .unwrap();
    delete_ref(&w.source, branch);
    let out = w.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&w.source, &w.target);
    assert_eq!(fetch_engine(&out), "wire", "{}", out.stdout);
    assert_eq!(
        out.json()["transfer"]["fetch"]["objects"],
        0,
        "{}",
        out.stdout
    );
}

/// The cache's objects gone (its refs kept): the source's thin pack is sound but cannot be
/// completed from them. The cache is rebuilt once and the run ends exact.
#[test]
fn a_cache_that_cannot_store_a_sound_pack_is_rebuilt_and_the_run_ends_exact() {
    let w = Warm::new("git");
    let cache = w.sb.cache_dir().join(mirror_dir(&w.sb.cache_dir()));
    for entry in std::fs::read_dir(cache.join("objects/pack"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(entry.path()).unwrap();
    }
    w.change("one");
    let out = w.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&w.source, &w.target);
    assert!(
        out.stderr.contains("rebuilding the cache from scratch")
            && out.stderr.contains("the cache could not store it"),
        "{}",
        out.stderr
    );
    fsck(&cache);
}

/// One bit flipped in the source's answer (a proxy in front of git daemon, once, 100 KiB into a
/// connection: past the whole first mirror, inside the 200 KB change): the pack fails its
/// checksum, the fetch is tried again, and the cache is kept.
#[test]
fn a_pack_damaged_on_the_way_is_fetched_again_and_the_cache_kept() {
    let fault = Fault::Flip {
        dir: Direction::Downstream,
        after: 100 * 1024,
    };
    let w = Warm::through("git", Some(fault));
    let proxy = w.proxy.as_ref().unwrap();
    assert_eq!(proxy.fired(), 0, "the first mirror met the damage");
    push_a_commit_on(
        &w.source,
        &w.sb.join("noise"),
        "main",
        "noise.txt",
        &noise(200_000),
        "refs/heads/main",
    );
    let out = w.sync(&[]);
    assert_eq!(proxy.fired(), 1, "the damage never happened");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&w.source, &w.target);
    assert!(
        out.stderr.contains("damaged on the way") && !out.stderr.contains("rebuilding"),
        "{}",
        out.stderr
    );
    let json = out.json();
    assert_eq!(json["retries"], 1, "{json}");
    assert_eq!(json["seeded"], false, "{json}");
    assert_eq!(fetch_engine(&out), "wire", "{json}");
}

/// Killed while the source's pack streams into the cache (the link stalls once, 100 KiB into the
/// pack, and the kill comes then): the cache's refs have not moved, whatever the indexer left is
/// cleared, and the next run fetches again and ends exact.
#[test]
fn a_warm_fetch_killed_mid_pack_leaves_nothing_the_next_run_cannot_finish() {
    let fault = Fault::Stall {
        dir: Direction::Downstream,
        after: 100 * 1024,
    };
    let w = Warm::through("git", Some(fault));
    let proxy = w.proxy.as_ref().unwrap();
    let cache = w.sb.cache_dir().join(mirror_dir(&w.sb.cache_dir()));
    let before = refs(&cache);
    push_a_commit_on(
        &w.source,
        &w.sb.join("noise"),
        "main",
        "noise.txt",
        &noise(400_000),
        "refs/heads/main",
    );
    let mut sync = w
        .command(&w.source_url(), &[])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    proxy.wait_fired();
    sync.kill().unwrap();
    sync.wait().unwrap();
    assert_eq!(
        refs(&cache),
        before,
        "the cache's refs moved on a pack never stored"
    );
    let out = w.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&w.source, &w.target);
    assert_eq!(fetch_engine(&out), "wire", "{}", out.stdout);
    fsck(&cache);
    let halves: Vec<_> = std::fs::read_dir(cache.join("objects/pack"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("pack-"))
        .collect();
    assert!(halves.is_empty(), "half-written packs left: {halves:?}");
}

/// A source of two branches, `b` on `main`'s parent, whose two commits are made so that
/// `main`'s tip sorts before its parent: asked with both as haves, in id order, git's
/// upload-pack (no multi_ack) acknowledges `main` (its first common object) and then `b` again
/// (a parent of an object it knows the client has), two ACKs before the pack. `main` then
/// moves on and the warm sync must read both.
#[test]
fn a_warm_fetch_reads_every_ack_before_the_pack_over_each_transport() {
    for transport in ["local", "git", "http"] {
        let sb = Sandbox::new();
        let work = WorkRepo::init(&sb.join("work"));
        let mut tries = 0;
        let (parent, tip) = loop {
            tries += 1;
            assert!(tries < 64, "no pair of commits in id order after 64 tries");
            git(
                &work.path,
                &["checkout", "-q", "--orphan", &format!("try{tries}")],
            );
            let parent = work.commit("f", &format!("one {tries}"), "one");
            let tip = work.commit("f", &format!("two {tries}"), "two");
            if tip < parent {
                break (parent, tip);
            }
        };
        let source = init_bare(&sb.join("srv/source.git"));
        let target = init_bare(&sb.join("srv/target.git"));
        update_ref_from(&source, &work.path, "refs/heads/main", &tip);
        update_ref(&source, "refs/heads/b", &parent);
        let server = (transport != "local").then(|| GitServer::start(transport, &sb.join("srv")));
        let url = |repo: &std::path::Path, name: &str| match &server {
            Some(server) => server.url(name),
            None => path_str(repo),
        };
        let sync = || {
            run(sb
                .sync(&url(&source, "source.git"), &url(&target, "target.git"))
                .args(["--json", "--retries", "0"]))
        };
        let first = sync();
        assert_eq!(first.code, 0, "{transport}: {}", first.stderr);
        work.checkout(&format!("try{tries}"));
        let next = work.commit("f", "three", "three");
        update_ref_from(&source, &work.path, "refs/heads/main", &next);
        for round in 0..2 {
            let out = sync();
            assert_eq!(out.code, 0, "{transport}, round {round}: {}", out.stderr);
            assert_mirror(&source, &target);
        }
        let out = sync();
        assert_eq!(fetch_engine(&out), "none", "{transport}: {}", out.stdout);
    }
}

/// Point `name` of the bare `repo` at `id`, an object of the work repository `from`.
fn update_ref_from(repo: &std::path::Path, from: &std::path::Path, name: &str, id: &str) {
    git(
        from,
        &["push", "-q", "-f", &path_str(repo), &format!("{id}:{name}")],
    );
}
