//! Our own receive-pack client (`--push-engine wire`) against real servers: `git http-backend`,
//! `git daemon` and the CodeCommit stand-in (SigV4 verified, 4,000 ref updates per push). The
//! mirror ends exact; each object goes once (the summary's counts come from the pack stream and
//! must equal what the source holds); deletions need no pack; a ref the target's hook refuses is
//! named with the hook's words; no credential shows in `-vv` output. Lost leases and cut
//! connections are covered with the other engines in `leases` and `faults`.

use std::path::{Path, PathBuf};

use crate::support::codecommit::CodeCommitServer;
use crate::support::*;

/// A source with branches, tags (annotated and light) and pull-request heads on side commits no
/// branch contains.
fn shaped_source(sb: &Sandbox, pull_requests: usize) -> PathBuf {
    generate_shaped_repo(
        &sb.join("source.git"),
        &ShapedSpec {
            commits: 300,
            files: 40,
            blob_bytes: 400,
            fresh_bytes: 200,
            pull_requests,
            branches: 6,
            tags: 5,
        },
    )
    .0
}

/// A sync through the cache with the wire engine. `--no-seed`: a first mirror fills the cache
/// and pushes from it (with it, a first mirror of one batch relays the source's pack).
fn wire_sync(sb: &Sandbox, source: &Path, target: &str) -> Run {
    run(sb
        .sync(&path_str(source), target)
        .args(["--push-engine", "wire", "--no-seed", "--json"]))
}

#[test]
fn mirrors_exactly_with_each_object_sent_once_over_http_and_git_daemon() {
    for transport in ["http", "git"] {
        let sb = Sandbox::new();
        let source = shaped_source(&sb, 40);
        let target = init_bare(&sb.join("srv/target.git"));
        let server = GitServer::start(transport, &sb.join("srv"));
        let url = server.url("target.git");

        let out = wire_sync(&sb, &source, &url);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&source, &target);
        fsck(&target);
        let push = &out.json()["transfer"]["push"];
        assert_eq!(push["engine"], "wire", "{transport}: {push}");
        assert_eq!(
            push["objects"].as_u64().unwrap() as usize,
            reachable_objects(&source),
            "{transport}: every object once, none twice: {push}"
        );
        assert!(push["bytes"].as_u64().unwrap() > 10_000, "{push}");

        // One commit on main, a new branch at it, a tag deleted, a pull request moved.
        let work = sb.join("work");
        git(
            sb.path(),
            &["clone", "-q", &path_str(&source), &path_str(&work)],
        );
        std::fs::write(work.join("new.txt"), "new\n").unwrap();
        git(&work, &["add", "new.txt"]);
        git(
            &work,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-q",
                "-m",
                "new",
            ],
        );
        git(
            &work,
            &[
                "push",
                "-q",
                "origin",
                "HEAD:refs/heads/main",
                "HEAD:refs/heads/fresh",
            ],
        );
        let tag = refs(&source)
            .into_keys()
            .find(|n| n.starts_with("refs/tags/"))
            .unwrap();
        delete_ref(&source, &tag);
        let main = refs(&source)["refs/heads/main"].clone();
        update_ref(&source, "refs/pull/1/head", &main);

        let out = wire_sync(&sb, &source, &url);
        assert_eq!(out.code, 0, "{transport}: {}", out.stderr);
        assert_mirror(&source, &target);
        let push = &out.json()["transfer"]["push"];
        // The commit, its tree, the new blob: nothing the target already had.
        assert_eq!(push["objects"], 3, "{transport}: {push}");
    }
}

#[test]
fn deletions_alone_send_no_pack() {
    let sb = Sandbox::new();
    let source = shaped_source(&sb, 10);
    let target = init_bare(&sb.join("srv/target.git"));
    let http = HttpGit::start(&sb.join("srv"));
    let url = http.url("target.git");
    assert_eq!(wire_sync(&sb, &source, &url).code, 0);
    for name in ["refs/pull/2/head", "refs/pull/3/head", "refs/heads/branch1"] {
        delete_ref(&source, name);
    }
    let out = wire_sync(&sb, &source, &url);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let push = &out.json()["transfer"]["push"];
    assert_eq!(push["bytes"], 0, "{push}");
    assert_eq!(push["objects"], 0, "{push}");
}

#[test]
fn a_ref_the_targets_hook_refuses_is_named_with_its_reason() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &["secret/plan", "open"]);
    install_hook(
        &target,
        "pre-receive",
        "#!/bin/sh\nwhile read old new name; do case \"$name\" in refs/heads/secret/*) \
         echo \"policy: $name may not be mirrored here\" >&2; exit 1;; esac; done\nexit 0\n",
    );
    let http = HttpGit::start(&sb.join("srv"));
    let out = wire_sync(&sb, &source, &http.url("target.git"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!refs(&target).contains_key("refs/heads/secret/plan"));
    let error = out.only_error();
    assert!(
        error.contains("refs/heads/secret/plan")
            && error.contains("pre-receive hook declined")
            && error.contains("may not be mirrored here"),
        "the hook's words are missing: {error}"
    );
}

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEBACKLOG01";
const SECRET: &str = "canary-7f3a9c1e5b/secret/EXAMPLEKEY";
const TOKEN: &str = "canary-7f3a9c1e5b-session+token/==";

#[test]
fn codecommit_takes_4500_refs_in_two_signed_batches_and_no_secret_shows() {
    let sb = Sandbox::new();
    let source = shaped_source(&sb, 10);
    // 4,500 refs: the generated ones plus pull-request heads on existing commits.
    let ids: Vec<String> = git(&source, &["rev-list", "--all"])
        .lines()
        .map(str::to_string)
        .collect();
    let have = refs(&source).len();
    let mut stdin = String::new();
    for i in 0..(4500 - have) {
        stdin.push_str(&format!(
            "create refs/pull/{}/head {}\n",
            10_000 + i,
            ids[i % ids.len()]
        ));
    }
    let mut update = std::process::Command::new("git");
    update
        .args(["update-ref", "--stdin"])
        .env("GIT_DIR", &source)
        .stdin(std::process::Stdio::piped());
    let mut child = update.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(refs(&source).len(), 4500);

    let root = sb.join("codecommit");
    let target = init_bare(&root.join("app"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, Some(TOKEN))], 4000);
    let out = run(sb
        .sync(&path_str(&source), &format!("codecommit::{REGION}://app"))
        .envs(server.client_env())
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["--push-engine", "wire", "--json", "-vv"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let push = &out.json()["transfer"]["push"];
    assert_eq!(push["batches"], 2, "{push}");
    assert_eq!(push["engine"], "wire", "{push}");
    assert_eq!(
        push["objects"].as_u64().unwrap() as usize,
        reachable_objects(&source),
        "{push}"
    );
    // Our requests are signed up front: each verified, none challenged (libgit2's listing of
    // the target, through upload-pack, still draws one).
    let requests = server.requests();
    let refused: Vec<_> = requests
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.contains("receive-pack"))
        })
        .filter(|r| r["status"] != 200)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    let posts = requests
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/git-receive-pack"))
        })
        .count();
    assert_eq!(posts, 2, "{requests:?}");
    assert_no_secret(&out, &[SECRET, TOKEN]);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("Authorization") && !text.contains("Basic "),
            "a credential header leaked:\n{text}"
        );
    }
}

#[test]
fn an_http_password_goes_up_front_and_never_shows() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &["dev"]);
    let password = format!("{CANARY}-wire-password");
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), password.clone())),
            ..HttpOptions::default()
        },
    );
    let url = http.url("target.git").replace("http://", "http://mirror@");
    let out = run(sb
        .sync(&path_str(&source), &url)
        .env("TARGET_PASSWORD", &password)
        .args([
            "--target-password-env",
            "TARGET_PASSWORD",
            "--push-engine",
            "wire",
            "--no-seed",
            "--json",
            "-vv",
        ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    assert_eq!(out.json()["transfer"]["push"]["engine"], "wire");
    assert_no_secret(&out, &[&password]);
    // One listing, one push and the listing that checks it, the password on each first
    // request: no 401 round trip.
    assert_eq!(
        http.count_service("git-receive-pack"),
        3,
        "{:?}",
        http.requests()
    );
}

/// The requests of one sync that reached a Git endpoint of the CodeCommit stand-in (not its API).
fn git_requests(server: &CodeCommitServer) -> Vec<serde_json::Value> {
    server
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/v1/repos/")))
        .collect()
}

#[test]
fn a_one_commit_incremental_to_codecommit_lists_pushes_and_checks_in_three_requests() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    let root = sb.join("codecommit");
    let target = init_bare(&root.join("app"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 4000);
    let sync = || {
        let out = run(sb
            .sync(
                &path_str(&pair.source),
                &format!("codecommit::{REGION}://app"),
            )
            .envs(server.client_env())
            .envs(server.api_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .args(["--push-engine", "wire", "--json"]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_no_secret(&out, &[SECRET]);
        out
    };
    sync();
    push_a_commit(&pair.source, &sb.join("w2"), "b.txt", "second");
    let before = git_requests(&server).len();
    let out = sync();
    assert_mirror(&pair.source, &target);
    assert_eq!(out.json()["transfer"]["push"]["engine"], "wire");
    let requests = git_requests(&server)[before..].to_vec();
    // The listing is the push's advertisement: one GET (signed up front, no 401), one POST
    // (was 4: libgit2's listing drew a 401, then the push asked for the advertisement again),
    // and one GET after it, the check that the target holds what it reported applied.
    let shape: Vec<(String, String, u64)> = requests
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or("").to_string(),
                format!(
                    "{}?{}",
                    r["path"].as_str().unwrap_or(""),
                    r["query"].as_str().unwrap_or("")
                ),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(shape.len(), 3, "{shape:?}");
    for get in [&shape[0], &shape[2]] {
        assert!(
            get.0 == "GET"
                && get.1.ends_with("/info/refs?service=git-receive-pack")
                && get.2 == 200,
            "{shape:?}"
        );
    }
    assert!(
        shape[1].0 == "POST" && shape[1].1.ends_with("/git-receive-pack?") && shape[1].2 == 200,
        "{shape:?}"
    );
}

#[test]
fn a_one_commit_incremental_to_smart_http_asks_head_once_and_lists_again_to_check() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    let password = format!("{CANARY}-count-password");
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), password.clone())),
            ..HttpOptions::default()
        },
    );
    let url = http.url("target.git").replace("http://", "http://mirror@");
    let sync = || {
        let out = run(sb
            .sync(&path_str(&pair.source), &url)
            .env("TARGET_PASSWORD", &password)
            .args(["--target-password-env", "TARGET_PASSWORD"])
            .args(["--push-engine", "wire", "--json"]));
        assert_no_secret(&out, &[&password]);
        out
    };
    assert_eq!(sync().code, 0);
    push_a_commit(&pair.source, &sb.join("w2"), "b.txt", "second");
    let before = http.requests().len();
    let out = sync();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&pair.source, &pair.target);
    let requests = http.requests()[before..].to_vec();
    let services: Vec<(&str, Option<&str>)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.service()))
        .collect();
    // The receive-pack listing (the push's advertisement), upload-pack's for where HEAD points
    // (receive-pack does not say), the push, and the listing that checks it, each with the
    // password up front (was 4: libgit2's listing drew a 401 first).
    assert_eq!(
        services,
        vec![
            ("GET", Some("git-receive-pack")),
            ("GET", Some("git-upload-pack")),
            ("POST", Some("git-receive-pack")),
            ("GET", Some("git-receive-pack")),
        ],
        "{requests:?}"
    );
    assert_eq!(
        out.json()["default_branch"]["target"],
        "refs/heads/main",
        "{}",
        out.stdout
    );
}

/// A branch made from an older commit of main, with light tags below it: the push's pack is cut
/// where the new history meets the target and against main's tip (`Cut::Boundary`), so it
/// carries the new commit alone, not the main commits between the fork and the tag below it.
#[test]
fn a_branch_from_an_older_commit_of_main_sends_only_its_own_commit() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    for i in 0..30 {
        work.commit(
            &format!("f{}.txt", i % 7),
            &format!("{i}\n"),
            &format!("c{i}"),
        );
        if i % 5 == 0 {
            work.tag_light(&format!("t{i}"));
        }
    }
    let source = init_bare(&sb.join("source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join("srv/target.git"));
    let server = GitServer::start("git", &sb.join("srv"));
    let url = server.url("target.git");
    let first = wire_sync(&sb, &source, &url);
    assert_eq!(first.code, 0, "{}", first.stderr);

    // main~2 is c27, three commits above the tag t25.
    let fork = git(&source, &["rev-parse", "main~2"]);
    push_a_commit_on(
        &source,
        &sb.join("fork"),
        &fork,
        "fork.txt",
        "fork\n",
        "refs/heads/fork",
    );
    let out = wire_sync(&sb, &source, &url);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    fsck(&target);
    let push = &out.json()["transfer"]["push"];
    // The commit, its tree, the new blob.
    assert_eq!(push["objects"], 3, "{push}");
}
