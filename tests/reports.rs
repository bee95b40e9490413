//! What a run says about itself is true: a refusal says what was pushed before it, a dry run
//! counts what it plans, durations read as they were given, and a value refused at validation
//! leaves nothing behind on disk.

use crate::support::*;

/// Round 1 of an initial sync pushes every ref; while it pushes, every ref of the source is
/// deleted, so round 2 meets the delete guard. The refusal must say what round 1 did.
#[test]
fn a_refusal_in_a_later_round_says_what_earlier_rounds_pushed() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &["b0", "b1", "b2", "b3"]);
    let marker = sb.join("emptied");
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nunset GIT_QUARANTINE_PATH $(git rev-parse --local-env-vars)\n\
             if [ ! -e '{m}' ]; then touch '{m}'; \
             git -C '{s}' for-each-ref --format='delete %(refname)' | git -C '{s}' update-ref --stdin; fi\n\
             exit 0\n",
            m = marker.display(),
            s = source.display()
        ),
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let out = run(sb
        .sync(&daemon.url("source.git"), &daemon.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        refs(&source).is_empty(),
        "the hook did not empty the source"
    );
    assert_eq!(refs(&target).len(), 5, "round 1 did not push");
    let error = out.only_error();
    assert!(
        error.contains("round 1") && error.contains("5 ref update(s)"),
        "the refusal hides what round 1 pushed: {error}"
    );
    assert!(
        !out.stderr.contains("untouched") && !error.contains("nothing was changed"),
        "a run that pushed claims the target untouched:\n{}",
        out.stderr
    );
    let report = out.json();
    assert_eq!(report["status"], "refused");
    assert_eq!(report["refs"]["created"], 5, "{report}");
}

#[test]
fn a_refusal_before_any_push_says_the_target_is_untouched() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let (src, tgt) = (path_str(&source), path_str(&target));
    assert_eq!(run(&mut sb.sync(&src, &tgt)).code, 0);
    delete_ref(&source, "refs/heads/main");
    let out = run(&mut sb.sync(&src, &tgt));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.only_error().contains("the target is untouched"),
        "{}",
        out.stderr
    );
}

/// Values refused after the cache directory was checked: still exit 2 with one line, and the
/// cache directory (which did not exist) still does not.
#[test]
fn validation_leaves_nothing_on_disk() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let ssh_source = "git@example.com:/p/r.git";
    let cases: [(&str, &str, &[&str], &str); 6] = [
        (
            "missing key file",
            ssh_source,
            &["--ssh-key-file", "/nonexistent"],
            "--ssh-key-file",
        ),
        (
            "missing known_hosts",
            ssh_source,
            &[
                "--ssh-key-file",
                "/etc/hostname",
                "--known-hosts",
                "/nonexistent",
            ],
            "--known-hosts",
        ),
        (
            "bad fingerprint",
            ssh_source,
            &[
                "--ssh-key-file",
                "/etc/hostname",
                "--host-key-fingerprint",
                "SHA256:!!",
            ],
            "SHA256",
        ),
        (
            "unset key variable",
            ssh_source,
            &["--ssh-key-env", "NO_SUCH_VARIABLE_HERE"],
            "NO_SUCH_VARIABLE_HERE",
        ),
        (
            "unreadable key",
            ssh_source,
            &["--ssh-key-file", "/etc/hostname"],
            "--ssh-key-file",
        ),
        (
            "network timeout zero",
            "",
            &["--network-timeout", "0"],
            "--network-timeout",
        ),
    ];
    for (label, src, extra, names) in cases {
        let src = if src.is_empty() {
            path_str(&source)
        } else {
            src.to_string()
        };
        let cache = sb.join(&format!("cache-{}", label.replace(' ', "-")));
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .args(["sync", "--source", &src, "--target"])
            .arg(&target)
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra);
        let out = run(&mut cmd);
        assert_eq!(out.code, 2, "{label}: {}", out.stderr);
        assert!(out.only_error().contains(names), "{label}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{label}: {}",
            out.stderr
        );
        assert!(
            !cache.exists(),
            "{label}: validation created {}",
            cache.display()
        );
    }
}

#[test]
fn durations_and_ranges_are_checked_and_shown_as_given() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let (src, tgt) = (path_str(&source), path_str(&target));
    for (flag, value) in [
        ("--network-timeout", "0"),
        ("--network-timeout", "0s"),
        ("--network-timeout", "10ms"),
        ("--progress-interval", "0"),
        ("--progress-interval", "10ms"),
    ] {
        let out = run(sb.sync(&src, &tgt).args([flag, value]));
        assert_eq!(out.code, 2, "{flag} {value}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{flag} {value}: {}",
            out.stderr
        );
        assert!(
            out.only_error().contains(flag),
            "{flag} {value}: {}",
            out.stderr
        );
    }
    let codecommit = run(sb
        .sync(&src, "codecommit::us-east-1://app")
        .args(["--batch-size", "5000"]));
    assert_eq!(codecommit.code, 2, "{}", codecommit.stderr);
    assert!(
        codecommit.only_error().contains("--batch-size"),
        "{}",
        codecommit.stderr
    );
    let env = run(sb
        .sync(&src, &tgt)
        .env("BACKLOG_MIRROR_NETWORK_TIMEOUT", "0"));
    assert_eq!(env.code, 2, "{}", env.stderr);
    assert!(
        env.only_error().contains("--network-timeout"),
        "{}",
        env.stderr
    );

    // A lock held for longer than a 200 ms timeout: the message says 200ms, not "0s".
    std::fs::create_dir_all(sb.cache_dir()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(sb.cache_dir().join("m.git.backlog-mirror-lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = run(sb
        .sync(&src, &tgt)
        .args(["--mirror-name", "m", "--lock-timeout", "200ms"]));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.only_error().contains("within 200ms"), "{}", out.stderr);
    assert!(!out.stderr.contains("0s"), "{}", out.stderr);
}

/// A dry run's counts are the plan's: `changes` and `refs` agree.
#[test]
fn a_dry_runs_counts_match_its_planned_changes() {
    let sb = Sandbox::new();
    let Pair {
        work,
        source,
        target,
    } = sb.pair("srv", &["stays", "goes", "rewritten"]);
    let (src, tgt) = (path_str(&source), path_str(&target));
    assert_eq!(run(&mut sb.sync(&src, &tgt)).code, 0);
    work.commit("b.txt", "two", "second");
    work.branch("new");
    git(&work.path, &["branch", "-D", "goes"]);
    git(&work.path, &["checkout", "-q", "rewritten"]);
    work.amend("rewritten");
    work.push_mirror(&source);
    let before = refs(&target);

    let out = run(sb.sync(&src, &tgt).args(["--dry-run", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(refs(&target), before);
    let report = out.json();
    let changes = report["changes"].as_array().unwrap();
    let count = |action: &str| changes.iter().filter(|c| c["action"] == action).count();
    assert_eq!(
        (
            count("create"),
            count("fast_forward"),
            count("force"),
            count("delete")
        ),
        (1, 1, 1, 1),
        "{report}"
    );
    let r = &report["refs"];
    assert_eq!(r["created"], 1, "{report}");
    assert_eq!(r["updated"], 1, "{report}");
    assert_eq!(r["forced"], 1, "{report}");
    assert_eq!(r["deleted"], 1, "{report}");
    assert_eq!(r["unchanged"], 1, "{report}");
    assert_eq!(r["rejected"], 0, "{report}");
}
