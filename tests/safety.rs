//! The guards around a mirror: the delete guard, the cache lock, catch-up rounds and seeding.

use std::path::Path;

use crate::support::*;

/// A source with `branches` branches `b0`, `b1`... besides `main`, and an empty target, in `srv/`.
fn populated(sb: &Sandbox, branches: usize) -> Pair {
    let names: Vec<String> = (0..branches).map(|i| format!("b{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    sb.pair("srv", &names)
}

#[test]
fn emptied_source_is_refused_with_exit_3_and_target_untouched() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 3);
    let (src, tgt) = (path_str(&source), path_str(&target));
    assert_eq!(run(&mut sb.sync(&src, &tgt)).code, 0);
    let before = refs(&target);

    for name in refs(&source).keys() {
        delete_ref(&source, name);
    }
    assert!(refs(&source).is_empty());
    let out = run(sb.sync(&src, &tgt).arg("--json"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(refs(&target), before, "the target changed");
    assert!(out.stderr.contains("delete guard"), "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "refused");
    assert_eq!(report["exit_code"], 3);
}

#[test]
fn mass_delete_beyond_the_limit_is_refused_unless_allowed() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 6);
    let (src, tgt) = (path_str(&source), path_str(&target));
    assert_eq!(run(&mut sb.sync(&src, &tgt)).code, 0);
    let before = refs(&target);
    for i in 0..5 {
        delete_ref(&source, &format!("refs/heads/b{i}"));
    }
    let out = run(sb.sync(&src, &tgt).args(["--max-delete", "4"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("--max-delete"), "{}", out.stderr);
    assert_eq!(refs(&target), before);

    let out = run(sb
        .sync(&src, &tgt)
        .args(["--max-delete", "4", "--allow-mass-delete"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
}

#[test]
fn a_held_lock_gives_exit_4_after_the_timeout() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 1);
    let (src, tgt) = (path_str(&source), path_str(&target));
    // Hold the cache lock the way a running sync does, from another process: a sync whose
    // target's pre-receive hook waits until we let it go.
    let gate = sb.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ntouch '{g}/entered'\nwhile [ ! -e '{g}/release' ]; do sleep 0.05; done\n",
            g = gate.display()
        ),
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let mut first = sb.sync(&src, &daemon.url("target.git"));
    let first = first.spawn().unwrap();
    wait_for_file(&gate.join("entered"));

    let second = run(sb.sync(&src, &tgt).args(["--lock-timeout", "300ms"]));
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains("--lock-timeout"),
        "{}",
        second.stderr
    );

    std::fs::write(gate.join("release"), b"").unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    assert_mirror(&source, &target);
}

#[test]
fn two_syncs_at_once_on_one_cache_both_end_exact() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 2);
    let daemon = GitDaemon::start(&sb.join("srv"));
    let (src, tgt) = (daemon.url("source.git"), daemon.url("target.git"));
    let a = sb.sync(&src, &tgt).spawn().unwrap();
    let b = sb.sync(&src, &tgt).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_mirror(&source, &target);
    fsck(&target);
}

#[test]
fn a_push_to_the_source_during_a_sync_is_caught_up() {
    let sb = Sandbox::new();
    let Pair {
        work,
        source,
        target,
    } = populated(&sb, 1);
    // While our push runs, the target's hook lands a new commit on the source, once: exactly the
    // push whose own webhook build CodeBuild would refuse.
    let marker = sb.join("pushed-during-sync");
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nunset GIT_QUARANTINE_PATH $(git rev-parse --local-env-vars)\n\
             if [ ! -e '{m}' ]; then touch '{m}'; \
             git -C '{w}' -c user.name=hook -c user.email=hook@example.com \
             commit -q --allow-empty -m during-sync && \
             git -C '{w}' push -q '{s}' main:main; fi >'{m}.log' 2>&1\nexit 0\n",
            m = marker.display(),
            w = work.path.display(),
            s = source.display()
        ),
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let out = run(sb
        .sync(&daemon.url("source.git"), &daemon.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(marker.exists(), "the hook did not run");
    assert_mirror(&source, &target);
    let report = out.json();
    let hook_log = std::fs::read_to_string(sb.join("pushed-during-sync.log")).unwrap_or_default();
    assert_eq!(report["rounds"], 2, "{report}\nhook said: {hook_log}");
}

#[test]
fn seeding_from_the_target_makes_a_cold_cache_fetch_only_the_change() {
    let sb = Sandbox::new();
    let source = generate_repo(
        &sb.join("srv/source.git"),
        &GenSpec {
            commits: 300,
            files: 60,
            blob_bytes: 2000,
            branches: 2,
            packed: true,
            ..GenSpec::default()
        },
    );
    let target = init_bare(&sb.join("srv/target.git"));
    let daemon = GitDaemon::start(&sb.join("srv"));
    let (src, tgt) = (daemon.url("source.git"), daemon.url("target.git"));
    assert_eq!(run(&mut sb.sync(&src, &tgt)).code, 0);

    // The same small change, synced once with the warm cache and once with none.
    push_a_commit(&source, &sb.join("work"), "new.txt", "change");
    let warm_target = init_bare(&sb.join("srv/warm.git"));
    git(
        &target,
        &["push", "-q", "--mirror", &path_str(&warm_target)],
    );

    let cold_sb = Sandbox::new();
    // git pushes, so the cold run seeds (with the wire engine it would relay: see `relay`).
    let cold = run(cold_sb
        .sync(&src, &tgt)
        .args(["--json", "--push-engine", "git"]));
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    let warm = run(sb.sync(&src, &daemon.url("warm.git")).arg("--json"));
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    assert_mirror(&source, &target);
    assert_mirror(&source, &warm_target);

    let cold = cold.json();
    let warm = warm.json();
    assert_eq!(cold["seeded"], true);
    assert!(
        cold["transfer"]["seed"]["objects"].as_u64().unwrap() > 500,
        "{cold}"
    );
    let cold_fetch = cold["transfer"]["fetch"]["objects"].as_u64().unwrap();
    let warm_fetch = warm["transfer"]["fetch"]["objects"].as_u64().unwrap();
    assert!(warm_fetch > 0, "{warm}");
    assert!(
        cold_fetch <= warm_fetch + 2,
        "a seeded cold sync fetched {cold_fetch} objects from the source, a warm one {warm_fetch}"
    );

    // --no-seed fetches the whole repository from the source.
    let unseeded_sb = Sandbox::new();
    let unseeded = run(unseeded_sb.sync(&src, &tgt).args(["--json", "--no-seed"]));
    let unseeded = unseeded.json();
    assert_eq!(unseeded["seeded"], false);
    assert!(unseeded["transfer"]["fetch"]["objects"].as_u64().unwrap() > 500 + warm_fetch);
}

fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn rejected_refs_are_named_with_the_targets_reason_and_the_rest_land() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 3);
    // The target refuses one branch, the way a protected branch or a host's policy would.
    install_hook(
        &target,
        "update",
        "#!/bin/sh\nif [ \"$1\" = refs/heads/b1 ]; then echo 'b1 is protected here' >&2; exit 1; fi\n",
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let out = run(sb
        .sync(&path_str(&source), &daemon.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.stderr.lines().find(|l| l.starts_with("error")).unwrap();
    assert!(error.contains("refs/heads/b1"), "{error}");
    assert!(error.contains("hook declined"), "{error}");
    let report = out.json();
    assert_eq!(report["refs"]["rejected"], 1);
    let got = refs(&target);
    let want = refs(&source);
    assert!(!got.contains_key("refs/heads/b1"));
    assert_eq!(
        got.len(),
        want.len() - 1,
        "the other refs did not land: {got:?}"
    );
}

#[test]
fn large_plans_are_pushed_in_batches_on_fresh_connections() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = populated(&sb, 9);
    let hook = counting_hook(&target, "pre-receive");
    let http = HttpGit::start(&sb.join("srv"));
    let out = run(sb
        .sync(&http.url("source.git"), &http.url("target.git"))
        .args(["--batch-size", "4", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let report = out.json();
    // 10 branches in batches of 4: three pushes, each its own receive-pack request.
    assert_eq!(report["transfer"]["push"]["batches"], 3, "{report}");
    assert_eq!(hook.count(), 3);
    let posts = http
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.service() == Some("git-receive-pack"))
        .count();
    assert_eq!(posts, 3);
}

/// A source that does not exist (a typo in the URL, a repository renamed) is found before the
/// target is fetched to seed a new cache: the run fails on it having taken nothing from the
/// target, whether it went straight to the cache (a local target) or tried the relay first (an
/// HTTP target).
#[test]
fn a_missing_source_fails_before_anything_is_seeded_from_the_target() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    let filled = sb.join("http/target.git");
    git(
        &sb.join("srv"),
        &[
            "clone",
            "-q",
            "--mirror",
            &path_str(&pair.source),
            &path_str(&filled),
        ],
    );
    git(&filled, &["config", "http.receivepack", "true"]);
    let daemon = GitDaemon::start(&sb.join("srv"));
    let http = HttpGit::start(&sb.join("http"));
    let missing = daemon.url("no-such-repository.git");
    git(
        &pair.work.path,
        &["push", "-q", "--mirror", &path_str(&pair.target)],
    );
    for (label, target) in [
        ("local target", path_str(&pair.target)),
        ("HTTP target", http.url("target.git")),
    ] {
        let run_sb = Sandbox::new();
        let out = run(run_sb.sync(&missing, &target).arg("--json"));
        assert_eq!(out.code, 1, "{label}: {}", out.stderr);
        assert!(
            out.only_error().contains("no-such-repository"),
            "{label}: {}",
            out.stderr
        );
        let report = out.json();
        assert_eq!(report["seeded"], false, "{label}: {report}");
        assert_eq!(report["transfer"]["seed"]["bytes"], 0, "{label}: {report}");
    }
    // The relay reads the HTTP target's HEAD from an upload-pack advertisement; a seed would
    // POST to upload-pack for the pack.
    let fetched: Vec<_> = http
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.service() == Some("git-upload-pack"))
        .map(|r| r.path)
        .collect();
    assert!(
        fetched.is_empty(),
        "the HTTP target was fetched from: {fetched:?}"
    );
}

/// Only CodeCommit limits a push (to 4,000 ref updates, `wire_push` covers its batches): a git
/// server takes a plan of 4,100 refs in one push, one pack, by default.
#[test]
fn a_plan_past_codecommits_limit_goes_to_a_git_server_in_one_push() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let main = refs(&pair.source)["refs/heads/main"].clone();
    let mut stdin = String::new();
    for i in 0..4_100 {
        stdin.push_str(&format!("create refs/heads/many/b{i} {main}\n"));
    }
    git_input(&pair.source, &["update-ref", "--stdin"], stdin.as_bytes());
    let hook = counting_hook(&pair.target, "pre-receive");
    let daemon = GitDaemon::start(&sb.join("srv"));
    let out = run(sb
        .sync(&path_str(&pair.source), &daemon.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&pair.source, &pair.target);
    let push = &out.json()["transfer"]["push"];
    assert_eq!(push["batches"], 1, "{push}");
    assert_eq!(hook.count(), 1);
}

/// A target that takes no pack over a size (here receive.maxInputSize; elsewhere a proxy's body
/// limit) gets a push too large for it in halves, smaller and smaller, until each fits: over a
/// local path (the target answers "unpack failed") and over git:// (it cuts the connection), with
/// each push engine. Before, every attempt sent the whole plan again and the run failed.
#[test]
fn a_push_the_target_will_not_take_whole_goes_in_halves_until_it_fits() {
    let cases: [(&str, &str); 4] = [
        ("path", "auto"),
        ("git", "auto"),
        ("git", "git"),
        ("git", "libgit2"),
    ];
    for (via, engine) in cases {
        let sb = Sandbox::new();
        let source = init_bare(&sb.join("srv/source.git"));
        for i in 0..6 {
            incompressible_branch(&source, &format!("b{i}"), i + 1, 100_000);
        }
        let target = init_bare(&sb.join("srv/target.git"));
        // Six branches of 100 kB each: the whole is refused, halves of three are not.
        git(&target, &["config", "receive.maxInputSize", "350000"]);
        let daemon;
        let url = if via == "git" {
            daemon = GitDaemon::start(&sb.join("srv"));
            daemon.url("target.git")
        } else {
            path_str(&target)
        };
        let out = run(sb
            .sync(&path_str(&source), &url)
            .args(["--push-engine", engine, "--json"]));
        assert_eq!(out.code, 0, "{via} {engine}: {}", out.stderr);
        assert_mirror(&source, &target);
        fsck(&target);
        let push = &out.json()["transfer"]["push"];
        assert!(push["halved"].as_u64() >= Some(1), "{via} {engine}: {push}");
        assert!(
            push["batches"].as_u64() >= Some(2),
            "{via} {engine}: {push}"
        );
        assert!(
            out.stderr
                .contains("did not take a push of 6 ref update(s)"),
            "{via} {engine}: {}",
            out.stderr
        );
    }
}

/// Halving is for size: one ref alone that the target will not take is refused with the
/// target's words, the rest of the plan still lands, and the run says so and fails.
#[test]
fn a_single_ref_over_the_targets_limit_is_refused_and_the_rest_lands() {
    let sb = Sandbox::new();
    let source = init_bare(&sb.join("srv/source.git"));
    incompressible_branch(&source, "big", 1, 400_000);
    for i in 0..3 {
        incompressible_branch(&source, &format!("b{i}"), i + 2, 10_000);
    }
    let target = init_bare(&sb.join("srv/target.git"));
    git(&target, &["config", "receive.maxInputSize", "200000"]);
    let out = run(sb
        .sync(&path_str(&source), &path_str(&target))
        .arg("--json"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let held = refs(&target);
    assert!(!held.contains_key("refs/heads/big"), "{held:?}");
    for i in 0..3 {
        let name = format!("refs/heads/b{i}");
        assert_eq!(held.get(&name), refs(&source).get(&name), "{name}");
    }
    assert!(out.stderr.contains("refs/heads/big"), "{}", out.stderr);
    assert!(out.stderr.contains("unpack"), "{}", out.stderr);
    fsck(&target);
}

/// Once the target has refused a batch, later batches of the plan are cut to the size it took
/// before they are sent, not refused one by one: eight 100 kB branches in batches of four to a
/// target that takes 350 kB make one refusal and four pushes of two.
#[test]
fn later_batches_stay_under_the_size_the_target_took() {
    let sb = Sandbox::new();
    let source = init_bare(&sb.join("srv/source.git"));
    for i in 0..8 {
        incompressible_branch(&source, &format!("b{i}"), i + 1, 100_000);
    }
    let target = init_bare(&sb.join("srv/target.git"));
    git(&target, &["config", "receive.maxInputSize", "350000"]);
    let out =
        run(sb
            .sync(&path_str(&source), &path_str(&target))
            .args(["--batch-size", "4", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let push = &out.json()["transfer"]["push"];
    assert_eq!(push["halved"], 1, "{push}");
    assert_eq!(push["batches"], 4, "{push}");
}
