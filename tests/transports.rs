//! Every transport as source and as target: local path, git:// (git daemon) and smart HTTP
//! (git http-backend), each a real server on 127.0.0.1 started by the test.

use crate::support::*;

fn history(sb: &Sandbox) -> std::path::PathBuf {
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    work.tag_annotated("v1", "one");
    work.branch("topic");
    work.commit("b.txt", "two", "second");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    source
}

fn sync_ok(sb: &Sandbox, source: &str, target: &str) -> Run {
    let out = run(&mut sb.sync(source, target));
    assert_eq!(out.code, 0, "sync {source} -> {target}:\n{}", out.stderr);
    out
}

/// Mirror, change the source, mirror again: both runs must end exact.
fn round_trip(
    sb: &Sandbox,
    source: &std::path::Path,
    target: &std::path::Path,
    src: &str,
    tgt: &str,
) {
    sync_ok(sb, src, tgt);
    assert_mirror(source, target);
    let work = WorkRepo::init(&sb.join("work2"));
    git(
        &work.path,
        &["fetch", "-q", &path_str(source), "+refs/*:refs/remotes/s/*"],
    );
    git(
        &work.path,
        &["checkout", "-q", "-B", "main", "refs/remotes/s/heads/main"],
    );
    work.commit("c.txt", "three", "third");
    git(
        &work.path,
        &["push", "-q", &path_str(source), "main:main", ":topic"],
    );
    sync_ok(sb, src, tgt);
    assert_mirror(source, target);
}

#[test]
fn git_daemon_as_source_and_as_target() {
    let sb = Sandbox::new();
    let source = history(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let daemon = GitDaemon::start(&sb.join("srv"));
    round_trip(
        &sb,
        &source,
        &target,
        &daemon.url("source.git"),
        &daemon.url("target.git"),
    );
}

#[test]
fn smart_http_as_source_and_as_target() {
    let sb = Sandbox::new();
    let source = history(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let http = HttpGit::start(&sb.join("srv"));
    round_trip(
        &sb,
        &source,
        &target,
        &http.url("source.git"),
        &http.url("target.git"),
    );
}

#[test]
fn mixed_transports_and_file_urls() {
    let sb = Sandbox::new();
    let source = history(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let http = HttpGit::start(&sb.join("srv"));
    let file_url = format!("file://{}", path_str(&source));
    round_trip(&sb, &source, &target, &file_url, &http.url("target.git"));
    let second = init_bare(&sb.join("srv/second.git"));
    let daemon = GitDaemon::start(&sb.join("srv"));
    let sb2 = Sandbox::new();
    sync_ok(&sb2, &daemon.url("source.git"), &path_str(&second));
    assert_mirror(&source, &second);
}

#[test]
fn no_op_sync_opens_no_push() {
    let sb = Sandbox::new();
    let source = history(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let hook = counting_hook(&target, "pre-receive");
    let http = HttpGit::start(&sb.join("srv"));
    let (src, tgt) = (http.url("source.git"), http.url("target.git"));
    sync_ok(&sb, &src, &tgt);
    assert_eq!(hook.count(), 1, "the first sync pushes once");
    // Pushes are POSTs; a listing may read receive-pack's advertisement (our client lists the
    // target that way, as the push's own advertisement).
    let pushes = || {
        http.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.service() == Some("git-receive-pack"))
            .count()
    };
    let pushes_before = pushes();
    assert!(pushes_before > 0);

    let out = sync_ok(&sb, &src, &tgt);
    assert_eq!(
        hook.count(),
        1,
        "a no-op sync ran the target's receive hook"
    );
    assert_eq!(
        pushes(),
        pushes_before,
        "a no-op sync pushed to receive-pack"
    );
    assert!(
        out.stderr
            .contains("0 created, 0 updated, 0 forced, 0 deleted"),
        "{}",
        out.stderr
    );
    assert_mirror(&source, &target);
}

#[test]
fn each_look_at_the_source_is_one_connection() {
    let sb = Sandbox::new();
    let source = history(&sb);
    let target = init_bare(&sb.join("target.git"));
    let daemon = GitDaemon::start(&sb.join("srv"));
    let (src, tgt) = (daemon.url("source.git"), path_str(&target));
    sync_ok(&sb, &src, &tgt);

    // The source moved: listing and fetching share one connection; the catch-up look after the
    // push is the second.
    let main = refs(&source)["refs/heads/main"].clone();
    update_ref(&source, "refs/heads/added", &main);
    let before = daemon.connections();
    sync_ok(&sb, &src, &tgt);
    assert_eq!(
        daemon.connections() - before,
        2,
        "connections for a sync with work"
    );
    assert_mirror(&source, &target);

    // Nothing moved: one look, nothing else.
    let before = daemon.connections();
    sync_ok(&sb, &src, &tgt);
    assert_eq!(
        daemon.connections() - before,
        1,
        "connections for a no-op sync"
    );
}
