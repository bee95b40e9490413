//! The stateless relay: a run with no cache on disk mirrors a change by streaming the source's
//! thin pack of what the target lacks into the target's receive-pack, and never clones the
//! target. Real servers on both ends (git daemon, git http-backend, the CodeCommit stand-in, a
//! local path through git upload-pack); each run gets a cache directory of its own that starts
//! empty, as a build in CodeBuild's `CacheMode None` does.

use std::path::{Path, PathBuf};

use crate::support::codecommit::CodeCommitServer;
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
    let relay = &out.json()["relay"];
    if relay["relayed"] == true && relay["cached"] == false {
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
        // An empty target is a first mirror: relayed, its pack kept as the cache.
        assert_eq!(first.json()["relay"]["relayed"], true, "{}", first.stdout);
        assert_eq!(first.json()["relay"]["cached"], true, "{}", first.stdout);

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

#[test]
fn a_first_mirror_relays_one_pack_and_keeps_it_as_the_cache() {
    for transport in ["git", "http"] {
        let sb = Sandbox::new();
        let source = source_repo(&sb);
        let target = init_bare(&sb.join("srv/target.git"));
        let server = GitServer::start(transport, &sb.join("srv"));
        let (src, tgt) = (server.url("source.git"), server.url("target.git"));
        let first = run(sb.sync(&src, &tgt).arg("--json"));
        assert_eq!(first.code, 0, "{transport}: {}", first.stderr);
        assert_mirror(&source, &target);
        fsck(&target);
        let json = first.json();
        assert_eq!(json["relay"]["relayed"], true, "{transport}: {json}");
        assert_eq!(json["relay"]["cached"], true, "{transport}: {json}");
        assert_eq!(json["relay"]["fallback"], serde_json::Value::Null, "{json}");
        assert_eq!(json["transfer"]["push"]["engine"], "relay", "{json}");
        assert_eq!(json["transfer"]["push"]["batches"], 1, "{json}");
        // One pack from the source, into the target and the cache at once: each object once.
        let objects = reachable_objects(&source);
        assert_eq!(json["relay"]["objects"], objects, "{transport}: {json}");
        assert_eq!(json["transfer"]["fetch"]["objects"], objects, "{json}");
        assert_eq!(json["transfer"]["push"]["objects"], objects, "{json}");
        let cache = mirror_in(&sb.cache_dir());
        assert_mirror(&source, &cache);
        fsck(&cache);
        assert!(
            names_in(&sb.cache_dir())
                .iter()
                .all(|n| !n.contains(".new-")),
            "a half-made mirror is left: {:?}",
            names_in(&sb.cache_dir())
        );

        // The next run is warm: the source sends the change alone, and the cache pushes it.
        change_source(&sb, &source, "w1");
        let next = run(sb.sync(&src, &tgt).arg("--json"));
        assert_eq!(next.code, 0, "{transport}: {}", next.stderr);
        assert_mirror(&source, &target);
        assert_mirror(&source, &cache);
        let json = next.json();
        assert_eq!(json["relay"], serde_json::Value::Null, "{json}");
        assert_eq!(
            json["transfer"]["fetch"]["objects"], 3,
            "{transport}: {json}"
        );
        assert_eq!(json["transfer"]["push"]["engine"], "wire", "{json}");
    }
}

/// A target that refuses the first mirror's relayed pack (a real hook, once) gets the cache's
/// push next, from the pack the relay kept: the source is asked once.
#[test]
fn a_first_mirror_the_target_refuses_is_pushed_from_the_kept_pack_without_fetching_again() {
    let sb = Sandbox::new();
    let source = source_repo(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    install_hook(
        &target,
        "pre-receive",
        "#!/bin/sh\nif [ -f refuse-once ]; then rm refuse-once; echo 'not this time' >&2; \
         exit 1; fi\nexit 0\n",
    );
    std::fs::write(target.join("refuse-once"), "").unwrap();
    let server = GitServer::start("git", &sb.join("srv"));
    let out = run(sb
        .sync(&server.url("source.git"), &server.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    fsck(&target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], false, "{json}");
    assert_eq!(json["relay"]["cached"], true, "{json}");
    let why = json["relay"]["fallback"].as_str().unwrap_or_default();
    assert!(why.contains("pre-receive hook declined"), "{json}");
    assert_eq!(json["seeded"], false, "{json}");
    // The relay's pack, kept: the cache's way found its refs current and fetched nothing.
    let objects = reachable_objects(&source);
    assert_eq!(json["transfer"]["fetch"]["objects"], objects, "{json}");
    assert_eq!(json["transfer"]["push"]["engine"], "wire", "{json}");
    assert!(!target.join("refuse-once").exists());
    let cache = mirror_in(&sb.cache_dir());
    assert_mirror(&source, &cache);
    fsck(&cache);
}

/// A cache directory too small for the first mirror's copy (a 128 KiB tmpfs, in a mount
/// namespace of the run's own): the target is mirrored all the same, the run says the copy could
/// not be kept, and leaves no half-made mirror behind.
#[test]
fn a_full_disk_under_the_cache_costs_the_copy_not_the_mirror() {
    let sb = Sandbox::new();
    let source = init_bare(&sb.join("srv/source.git"));
    for i in 0..3 {
        incompressible_branch(&source, &format!("b{i}"), i + 1, 100_000);
    }
    let target = init_bare(&sb.join("srv/target.git"));
    let server = GitServer::start("git", &sb.join("srv"));
    let cache = sb.join("tiny-cache");
    std::fs::create_dir_all(&cache).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(if root {
        &[][..]
    } else {
        &["--map-root-user"][..]
    })
    .args(["--mount", "sh", "-c"])
    .arg(
        "mount -t tmpfs -o size=128k tmpfs \"$1\" || exit 99; d=$1; shift; \"$@\"; code=$?; \
             echo \"left in the cache: $(ls -A \"$d\" | tr '\\n' ' ')\" >&2; exit $code",
    )
    .arg("sh")
    .arg(&cache)
    .arg(env!("CARGO_BIN_EXE_backlog-mirror"))
    .env("HOME", sb.home())
    .args(["sync", "--json", "--source", &server.url("source.git")])
    .args(["--target", &server.url("target.git"), "--cache-dir"])
    .arg(&cache);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    fsck(&target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], true, "{json}");
    assert_eq!(json["relay"]["cached"], false, "{json}");
    assert!(
        out.stderr.contains("could not be kept as the cache")
            && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    // Listed from inside the namespace, before the tmpfs went with it: the lock, nothing else.
    let left = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("left in the cache: "))
        .expect("the listing of the cache");
    let left: Vec<&str> = left.split_whitespace().collect();
    assert!(
        left.len() == 1 && left[0].ends_with(".git.backlog-mirror-lock"),
        "{left:?}"
    );
}

/// The names in a directory.
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_first_mirror_of_more_than_one_pack_fills_the_cache_first() {
    let sb = Sandbox::new();
    let source = source_repo(&sb);
    let server = GitServer::start("git", &sb.join("srv"));
    let src = server.url("source.git");
    // A filter that leaves refs out (the cache holds every ref), a plan in batches (each
    // pack would hold only its batch), a dry run (which changes nothing): the cache's way.
    for (name, extra, why) in [
        (
            "filtered",
            &["--exclude", "refs/pull/*"][..],
            "the filter leaves refs out",
        ),
        (
            "batched",
            &["--batch-size", "5"][..],
            "takes the plan in batches",
        ),
        ("dry", &["--dry-run"][..], "dry run"),
    ] {
        let target = init_bare(&sb.join(&format!("srv/{name}.git")));
        let cache = sb.join(&format!("cache-{name}"));
        let out = run(bin()
            .env("HOME", sb.home())
            .args(["sync", "--json", "--source", &src, "--target"])
            .arg(server.url(&format!("{name}.git")))
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra));
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let json = out.json();
        assert_eq!(json["relay"]["relayed"], false, "{name}: {json}");
        let fallback = json["relay"]["fallback"].as_str().unwrap_or_default();
        assert!(fallback.contains(why), "{name}: {json}");
        if name != "dry" {
            assert_eq!(json["transfer"]["push"]["engine"], "wire", "{name}: {json}");
            assert!(!git(&target, &["for-each-ref"]).is_empty(), "{name}");
            if name == "batched" {
                assert_mirror(&source, &target);
            }
            fsck(&target);
        }
    }
}

/// A source and a target served by git daemon, the target already a mirror of the source (made
/// by a first, cache-filling sync).
struct Mirrored {
    sb: Sandbox,
    source: PathBuf,
    target: PathBuf,
    server: GitServer,
}

impl Mirrored {
    fn new(transport: &str) -> Mirrored {
        let sb = Sandbox::new();
        let source = source_repo(&sb);
        let target = init_bare(&sb.join("srv/target.git"));
        let server = GitServer::start(transport, &sb.join("srv"));
        let m = Mirrored {
            sb,
            source,
            target,
            server,
        };
        let first = m.sync(&[]);
        assert_eq!(first.code, 0, "{}", first.stderr);
        assert_mirror(&m.source, &m.target);
        m
    }

    fn sync(&self, extra: &[&str]) -> Run {
        stateless(
            &self.sb,
            &self.server.url("source.git"),
            &self.server.url("target.git"),
            extra,
        )
    }
}

#[test]
fn a_target_tip_the_source_no_longer_has_still_mirrors_exactly() {
    let m = Mirrored::new("git");
    // main rewritten on the source (its old tip gone for good), a branch deleted.
    let main = refs(&m.source)["refs/heads/main"].clone();
    let tree = git(&m.source, &["rev-parse", &format!("{main}^{{tree}}")]);
    let rewritten = git(
        &m.source,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit-tree",
            tree.trim(),
            "-p",
            &format!("{main}^"),
            "-m",
            "rewritten",
        ],
    );
    update_ref(&m.source, "refs/heads/main", rewritten.trim());
    delete_ref(&m.source, "refs/heads/branch1");
    git(&m.source, &["reflog", "expire", "--expire=now", "--all"]);
    git(&m.source, &["gc", "-q", "--prune=now"]);
    assert!(git_ok(&m.source, &["cat-file", "-e", &main]).is_err());

    let out = m.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    fsck(&m.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], true, "{json}");
    // Reported as forced: with no objects here, no update is known to be a fast-forward.
    assert_eq!(json["refs"]["forced"], 1, "{json}");
    assert_eq!(json["refs"]["deleted"], 1, "{json}");
}

#[test]
fn deletions_alone_relay_no_pack() {
    let m = Mirrored::new("http");
    delete_ref(&m.source, "refs/heads/branch2");
    delete_ref(&m.source, "refs/pull/3/head");
    let out = m.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], true, "{json}");
    assert_eq!(json["relay"]["bytes"], 0, "{json}");
    assert_eq!(json["transfer"]["push"]["bytes"], 0, "{json}");
    assert_eq!(json["refs"]["deleted"], 2, "{json}");
}

#[test]
fn batches_build_on_each_other_and_send_no_object_twice() {
    for transport in ["git", "http"] {
        let m = Mirrored::new(transport);
        let c1 = push_a_commit(&m.source, &m.sb.join("w1"), "one.txt", "one");
        let c2 = push_a_commit(&m.source, &m.sb.join("w2"), "two.txt", "two");
        update_ref(&m.source, "refs/heads/fresh", &c1);
        update_ref(&m.source, "refs/pull/1/head", &c2);
        let tag = refs(&m.source)
            .into_keys()
            .find(|n| n.starts_with("refs/tags/"))
            .unwrap();
        delete_ref(&m.source, &tag);
        // One ref a batch: fresh (c1), main (c2 on c1: only c2's objects), pull/1 (c2, already
        // there: an empty pack), the tag's deletion.
        let out = m.sync(&["--batch-size", "1"]);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&m.source, &m.target);
        fsck(&m.target);
        let json = out.json();
        assert_eq!(json["relay"]["relayed"], true, "{json}");
        assert_eq!(json["transfer"]["push"]["batches"], 4, "{json}");
        // Two commits, each with its tree and one new blob.
        assert_eq!(json["relay"]["objects"], 6, "{transport}: {json}");
    }
}

/// A few changes are cut against the target's branches and tags only (`Cut::Near`): a new branch
/// on top of a pull request's head, whose side commits no branch reaches, gets them again in its
/// pack, and the target still ends exact and whole.
#[test]
fn a_branch_built_on_a_pull_request_head_arrives_exact() {
    for transport in ["git", "http"] {
        let m = Mirrored::new(transport);
        push_a_commit_on(
            &m.source,
            &m.sb.join("on-pr"),
            "refs/pull/2/head",
            "on-pr.txt",
            "built on a pull request",
            "refs/heads/from-pr",
        );
        let out = m.sync(&[]);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&m.source, &m.target);
        fsck(&m.target);
        let json = out.json();
        assert_eq!(json["relay"]["relayed"], true, "{transport}: {json}");
        assert_eq!(json["refs"]["created"], 1, "{json}");
        // The new commit, its tree and blob, and at least the side commit under it.
        assert!(
            json["relay"]["objects"].as_u64().unwrap() > 3,
            "{transport}: {json}"
        );
    }
}

#[test]
fn a_relay_the_target_refuses_falls_back_to_the_cache_and_mirrors() {
    let m = Mirrored::new("git");
    // The target refuses the first push it is offered (a real hook, once), and takes the next.
    install_hook(
        &m.target,
        "pre-receive",
        "#!/bin/sh\nif [ -f refuse-once ]; then rm refuse-once; echo 'not this time' >&2; \
         exit 1; fi\nexit 0\n",
    );
    std::fs::write(m.target.join("refuse-once"), "").unwrap();
    change_source(&m.sb, &m.source, "w1");
    let out = m.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    fsck(&m.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], false, "{json}");
    let why = json["relay"]["fallback"].as_str().unwrap_or_default();
    assert!(why.contains("pre-receive hook declined"), "{json}");
    assert_eq!(json["seeded"], true, "{json}");
    assert_eq!(json["refs"]["rejected"], 0, "{json}");
    assert!(!m.target.join("refuse-once").exists());
}

#[test]
fn a_dry_run_relays_nothing() {
    let m = Mirrored::new("http");
    change_source(&m.sb, &m.source, "w1");
    let before = refs(&m.target);
    let out = m.sync(&["--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(refs(&m.target), before);
    let json = out.json();
    assert_eq!(json["status"], "dry_run", "{json}");
    assert_eq!(json["relay"]["bytes"], 0, "{json}");
    assert_eq!(json["transfer"]["push"]["batches"], 0, "{json}");
    assert_eq!(json["changes"].as_array().map(Vec::len), Some(4), "{json}");
}

#[test]
fn the_delete_guard_stops_a_relayed_mass_delete() {
    let m = Mirrored::new("git");
    for name in refs(&m.source).into_keys() {
        if name != "refs/heads/main" {
            delete_ref(&m.source, &name);
        }
    }
    let before = refs(&m.target);
    let out = m.sync(&[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(refs(&m.target), before);
    assert_eq!(out.json()["status"], "refused");
}

#[test]
fn lfs_fail_goes_through_the_cache() {
    let m = Mirrored::new("git");
    change_source(&m.sb, &m.source, "w1");
    let out = m.sync(&["--lfs", "fail"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    let json = out.json();
    assert_eq!(json["relay"], serde_json::Value::Null, "{json}");
    assert_eq!(json["seeded"], true, "{json}");
}

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEBACKLOG01";
const SECRET: &str = "canary-7f3a9c1e5b/relay/EXAMPLEKEY";

#[test]
fn a_relay_from_a_password_source_into_codecommit_shows_no_secret() {
    let sb = Sandbox::new();
    let source = source_repo(&sb);
    let password = format!("{CANARY}-relay-password");
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), password.clone())),
            ..HttpOptions::default()
        },
    );
    let root = sb.join("codecommit");
    let target = init_bare(&root.join("app"));
    git(&source, &["push", "-q", "--mirror", &path_str(&target)]);
    change_source(&sb, &source, "w1");
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 4000);
    let src = http.url("source.git").replace("http://", "http://mirror@");
    let cache = sb.join("fresh-cache");
    let out = run(bin()
        .env("HOME", sb.home())
        .envs(server.client_env())
        .envs(server.api_env())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("SOURCE_PASSWORD", &password)
        .args(["sync", "--json", "-vv", "--source", &src])
        .args(["--source-password-env", "SOURCE_PASSWORD"])
        .args(["--target", &format!("codecommit::{REGION}://app")])
        .arg("--cache-dir")
        .arg(&cache));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    assert_eq!(out.json()["relay"]["relayed"], true, "{}", out.stdout);
    assert!(packs_under(&cache).is_empty());
    assert_no_secret(&out, &[&password, SECRET]);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("Authorization") && !text.contains("Basic "),
            "a credential header leaked:\n{text}"
        );
    }
    // The listing, the push, the listing that checks it: each carried its signature up front,
    // none was challenged.
    let git_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/v1/repos/")))
        .collect();
    assert_eq!(git_requests.len(), 3, "{git_requests:?}");
    assert!(
        git_requests.iter().all(|r| r["status"] == 200),
        "{git_requests:?}"
    );
}

#[test]
fn a_relay_killed_mid_pack_moves_nothing_and_the_next_run_mirrors() {
    let sb = Sandbox::new();
    let source = source_repo(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    git(&source, &["push", "-q", "--mirror", &path_str(&target)]);
    // A change of about 300 KB that does not compress, from a source that sends 40 KB/s.
    let work = WorkRepo::init(&sb.join("w1"));
    git(&work.path, &["fetch", "-q", &path_str(&source), "main"]);
    git(&work.path, &["checkout", "-q", "-B", "main", "FETCH_HEAD"]);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            // xorshift64: bytes zlib cannot shrink.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(work.path.join("noise.bin"), noise).unwrap();
    git(&work.path, &["add", "noise.bin"]);
    work.commit("small.txt", "small", "noise");
    git(&work.path, &["push", "-q", &path_str(&source), "main:main"]);
    let slow = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            throttle_bytes_per_sec: Some(40_000),
            ..HttpOptions::default()
        },
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let before = refs(&target);
    let cache = sb.join("cache-killed");
    let mut cmd = bin();
    cmd.env("HOME", sb.home())
        .args(["sync", "--source", &slow.url("source.git")])
        .args(["--target", &daemon.url("target.git"), "--cache-dir"])
        .arg(&cache);
    let (killed_run, killed) = spawn_and_kill_when(&mut cmd, |line| line.contains("relaying"));
    assert!(killed, "the relay finished first: {}", killed_run.stderr);
    assert_eq!(refs(&target), before, "a killed relay moved refs");
    fsck(&target);

    // The next run knows a push did not settle: it goes through the cache, and mirrors.
    let out = run(bin()
        .env("HOME", sb.home())
        .args(["sync", "--json", "--source", &slow.url("source.git")])
        .args(["--target", &daemon.url("target.git"), "--cache-dir"])
        .arg(&cache));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let json = out.json();
    assert_eq!(json["relay"], serde_json::Value::Null, "{json}");
    assert_eq!(json["seeded"], true, "{json}");
}

#[test]
fn the_relay_needs_no_git_installed() {
    let m = Mirrored::new("http");
    change_source(&m.sb, &m.source, "w1");
    let no_git = m.sb.join("no-git-bin");
    std::fs::create_dir_all(&no_git).unwrap();
    let cache = m.sb.join("cache-no-git");
    let out = run(bin()
        .env("HOME", m.sb.home())
        .env("PATH", &no_git)
        .args(["sync", "--json", "--source", &m.server.url("source.git")])
        .args(["--target", &m.server.url("target.git"), "--cache-dir"])
        .arg(&cache));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    assert_eq!(out.json()["relay"]["relayed"], true, "{}", out.stdout);

    // A first mirror too: libgit2's indexer keeps the relayed pack as the cache.
    let fresh = init_bare(&m.sb.join("srv/fresh.git"));
    let cache = m.sb.join("cache-no-git-first");
    let out = run(bin()
        .env("HOME", m.sb.home())
        .env("PATH", &no_git)
        .args(["sync", "--json", "--source", &m.server.url("source.git")])
        .args(["--target", &m.server.url("fresh.git"), "--cache-dir"])
        .arg(&cache));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &fresh);
    assert_eq!(out.json()["relay"]["cached"], true, "{}", out.stdout);
    let kept = mirror_in(&cache);
    assert_mirror(&m.source, &kept);
    fsck(&kept);
}

#[test]
fn a_push_to_the_source_during_a_relay_is_caught_up_in_a_second_round() {
    let m = Mirrored::new("git");
    change_source(&m.sb, &m.source, "w1");
    let work = m.sb.join("during");
    git(
        m.sb.path(),
        &["clone", "-q", &path_str(&m.source), &path_str(&work)],
    );
    // While the relay's push runs, the target's hook lands a commit on the source, once.
    let marker = m.sb.join("pushed-during-relay");
    install_hook(
        &m.target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nunset GIT_QUARANTINE_PATH $(git rev-parse --local-env-vars)\n\
             if [ ! -e '{mk}' ]; then touch '{mk}'; \
             git -C '{w}' -c user.name=hook -c user.email=hook@example.com \
             commit -q --allow-empty -m during-relay && \
             git -C '{w}' push -q '{s}' HEAD:main; fi >'{mk}.log' 2>&1\nexit 0\n",
            mk = marker.display(),
            w = work.display(),
            s = m.source.display()
        ),
    );
    let out = m.sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(marker.exists(), "the hook did not run");
    assert_mirror(&m.source, &m.target);
    let json = out.json();
    let hook_log =
        std::fs::read_to_string(m.sb.join("pushed-during-relay.log")).unwrap_or_default();
    assert_eq!(json["rounds"], 2, "{json}\nhook said: {hook_log}");
    assert_eq!(json["relay"]["relayed"], true, "{json}");
}

/// A pack damaged on the way (one bit flipped by a proxy in front of the source, once): the relay
/// refuses it before its checksum reaches the target, so no ref moves on the damaged pack; the
/// run goes through the cache, whose fetch is clean, and ends exact with one push landed.
#[test]
fn a_pack_damaged_on_the_way_moves_nothing_and_the_cache_path_finishes() {
    let m = Mirrored::new("git");
    push_a_commit_on(
        &m.source,
        &m.sb.join("noise"),
        "main",
        "noise.txt",
        &noise(200_000),
        "refs/heads/main",
    );
    let landed = m.sb.join("landed.log");
    install_hook(
        &m.target,
        "post-receive",
        &format!("#!/bin/sh\ncat >> '{}'\n", landed.display()),
    );
    let proxy = FaultProxy::start_times(
        m.server.port(),
        Fault::Flip {
            dir: Direction::Downstream,
            after: 40 * 1024,
        },
        1,
    );
    let out = stateless(
        &m.sb,
        &proxy.rewrite(&m.server.url("source.git")),
        &m.server.url("target.git"),
        &[],
    );
    assert_eq!(proxy.fired(), 1, "the damage never happened");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&m.source, &m.target);
    fsck(&m.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], false, "{json}");
    assert!(
        json["relay"]["fallback"]
            .as_str()
            .is_some_and(|why| why.contains("the source's pack does not match its checksum")),
        "{json}"
    );
    // One push landed, the cache's: main moved once.
    let log = std::fs::read_to_string(&landed).unwrap_or_default();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.ends_with(" refs/heads/main\n"), "{log}");
}
