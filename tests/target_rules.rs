//! A target's own rules hold whatever engine pushes: its hooks and `receive.deny*` settings run
//! for a local path as they do behind a server, and what the target says when it refuses (a
//! hook's message, a full disk) reaches the report in its own words.

use std::path::Path;

use crate::support::*;

/// A pre-receive hook that refuses any ref under refs/heads/secret/ with its own words.
fn refuse_secrets(target: &Path) {
    install_hook(
        target,
        "pre-receive",
        "#!/bin/sh\nwhile read old new name; do case \"$name\" in refs/heads/secret/*) \
         echo \"policy: $name may not be mirrored here\" >&2; exit 1;; esac; done\nexit 0\n",
    );
}

#[test]
fn a_local_targets_hooks_run_whatever_the_engine() {
    for engine in ["auto", "git", "libgit2"] {
        for file_url in [false, true] {
            let label = format!("{engine}, file url {file_url}");
            let sb = Sandbox::new();
            let Pair { source, target, .. } = sb.pair("srv", &["secret/plan", "open"]);
            refuse_secrets(&target);
            let tgt = if file_url {
                format!("file://{}", target.display())
            } else {
                path_str(&target)
            };
            let out =
                run(sb
                    .sync(&path_str(&source), &tgt)
                    .args(["--push-engine", engine, "--json"]));
            assert_eq!(out.code, 1, "{label}: {}", out.stderr);
            assert!(
                !refs(&target).contains_key("refs/heads/secret/plan"),
                "{label}: the hook was bypassed"
            );
            let error = out.only_error();
            assert!(
                error.contains("refs/heads/secret/plan")
                    && error.contains("may not be mirrored here"),
                "{label}: the hook's words are missing: {error}"
            );
            let report = out.json();
            assert_eq!(report["transfer"]["push"]["engine"], "git", "{label}");
        }
    }
}

#[test]
fn a_local_targets_deny_settings_hold_whatever_the_engine() {
    for engine in ["auto", "libgit2"] {
        let sb = Sandbox::new();
        let Pair {
            work,
            source,
            target,
            ..
        } = sb.pair("srv", &["doomed"]);
        let (src, tgt) = (path_str(&source), path_str(&target));
        let first = run(sb.sync(&src, &tgt).args(["--push-engine", engine]));
        assert_eq!(first.code, 0, "{engine}: {}", first.stderr);
        git(&target, &["config", "receive.denyDeletes", "true"]);
        git(&target, &["config", "receive.denyNonFastForwards", "true"]);
        // A deletion and a rewritten main: both refused by the target's settings.
        git(&work.path, &["branch", "-D", "doomed"]);
        work.amend("rewritten");
        work.push_mirror(&source);
        let before = refs(&target);

        let out = run(sb.sync(&src, &tgt).args(["--push-engine", engine]));
        assert_eq!(out.code, 1, "{engine}: {}", out.stderr);
        assert_eq!(
            refs(&target),
            before,
            "{engine}: the target's settings were bypassed"
        );
        let error = out.only_error();
        assert!(
            error.contains("refs/heads/doomed") && error.contains("refs/heads/main"),
            "{engine}: {error}"
        );
    }
}

#[test]
fn a_local_target_without_git_installed_is_refused_before_anything_changes() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &["b"]);
    let empty_path = sb.join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    for engine in ["auto", "libgit2"] {
        let out = run(sb
            .sync(&path_str(&source), &path_str(&target))
            .args(["--push-engine", engine])
            .env("PATH", &empty_path));
        assert_eq!(out.code, 2, "{engine}: {}", out.stderr);
        let error = out.only_error();
        assert!(
            error.contains("--target") && error.contains("git"),
            "{engine}: {error}"
        );
        assert!(refs(&target).is_empty(), "{engine}: the target changed");
        assert!(
            !sb.cache_dir().exists(),
            "{engine}: validation created the cache directory"
        );
    }
}

#[test]
fn a_hooks_words_reach_the_report_through_either_engine() {
    for engine in ["git", "libgit2"] {
        let sb = Sandbox::new();
        let Pair { target, .. } = sb.pair("srv", &["secret/plan"]);
        refuse_secrets(&target);
        let daemon = GitDaemon::start(&sb.join("srv"));
        let out = run(sb
            .sync(&daemon.url("source.git"), &daemon.url("target.git"))
            .args(["--push-engine", engine, "--json"]));
        assert_eq!(out.code, 1, "{engine}: {}", out.stderr);
        assert!(
            out.only_error()
                .contains("refs/heads/secret/plan may not be mirrored here"),
            "{engine}: {}",
            out.stderr
        );
        let report = out.json();
        assert_eq!(report["retries"], 0, "{engine}: a rejection was retried");
        let reason = report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ref"] == "refs/heads/secret/plan")
            .map(|c| c["reason"].as_str().unwrap_or("").to_string())
            .unwrap();
        assert!(
            reason.contains("pre-receive hook declined") && reason.contains("may not be mirrored"),
            "{engine}: {reason}"
        );
    }
}

/// A real full disk: the target lives on a 256 KiB tmpfs mounted in a private mount namespace
/// (`unshare`, no privileges needed where user namespaces are allowed), and the sync runs in that
/// namespace so git's receive-pack writes there.
#[test]
fn a_full_disk_on_the_target_is_reported_in_its_own_words() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    let noise: String = (0..40_000u64)
        .map(|i| format!("{:016x}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    work.commit("big.txt", &noise, "too big for the target's disk");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let target = sb.join("srv/target.git");
    std::fs::create_dir_all(&target).unwrap();
    let sync = sb.sync(&path_str(&source), &path_str(&target));
    let program = sync.get_program().to_owned();
    let args: Vec<_> = sync.get_args().map(|a| a.to_owned()).collect();
    let mut cmd = std::process::Command::new("unshare");
    isolate(&mut cmd);
    cmd.env("HOME", sb.home())
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=256k tmpfs \"$1\" && git init -q --bare --template= \"$1\" \
             && shift && exec \"$@\"",
        )
        .arg("sh")
        .arg(&target)
        .arg(&program)
        .args(&args);
    let out = run(&mut cmd);
    assert!(
        !out.stderr.contains("unshare:") && !out.stderr.contains("mount:"),
        "this test needs unprivileged user and mount namespaces (unshare -Urm): {}",
        out.stderr
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.only_error();
    assert!(
        error.contains("refs/heads/main") && error.contains("No space left on device"),
        "{error}"
    );
}

/// A target with a work tree: its `HEAD` is the branch checked out there, which git's
/// receive-pack refuses to delete or update by default (`receive.denyDeleteCurrent`,
/// `receive.denyCurrentBranch`). The run leaves it to those rules: it never points `HEAD`
/// elsewhere to get a deletion through, says which ref and what to do, and with
/// `receive.denyCurrentBranch=updateInstead` the branch is updated along with its files.
#[test]
fn a_non_bare_targets_checked_out_branch_is_left_to_its_own_rules() {
    let sb = Sandbox::new();
    let Pair { work, source, .. } = sb.pair("srv", &[]);
    let target = WorkRepo::init(&sb.join("wt"));
    git(&target.path, &["checkout", "-q", "-b", "work"]);
    let kept = target.commit("mine.txt", "the target's own work", "on the target");
    let tgt = path_str(&target.path);

    let out = run(sb.sync(&path_str(&source), &tgt).arg("--json"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        git(&target.path, &["symbolic-ref", "HEAD"]),
        "refs/heads/work"
    );
    assert_eq!(git(&target.path, &["rev-parse", "refs/heads/work"]), kept);
    assert_eq!(git(&target.path, &["status", "--porcelain"]), "");
    // Everything else landed.
    assert_eq!(
        git(&target.path, &["rev-parse", "refs/heads/main"]),
        git(&source, &["rev-parse", "refs/heads/main"])
    );
    let error = out.only_error();
    assert!(
        error.contains("refs/heads/work is the branch checked out in the work tree")
            && error.contains("git init --bare"),
        "{error}"
    );
    assert_eq!(out.json()["exit_code"], 1);

    // The source has the branch too, rewritten: updateInstead lets the target take it, files
    // and all; its HEAD stays the branch it checked out.
    work.checkout("main");
    git(&work.path, &["checkout", "-q", "-b", "work"]);
    let theirs = work.commit("mine.txt", "the source's version", "from the source");
    work.push_mirror(&source);
    git(
        &target.path,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    let out = run(sb.sync(&path_str(&source), &tgt).arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target.path.join(".git"));
    assert_eq!(
        git(&target.path, &["symbolic-ref", "HEAD"]),
        "refs/heads/work"
    );
    assert_eq!(git(&target.path, &["rev-parse", "HEAD"]), theirs);
    assert_eq!(
        std::fs::read_to_string(target.path.join("mine.txt")).unwrap(),
        "the source's version"
    );
    assert_eq!(git(&target.path, &["status", "--porcelain"]), "");
    let report = &out.json()["default_branch"];
    assert_eq!(report["changed"], false);
    assert!(
        report["warning"]
            .as_str()
            .is_some_and(|w| w.contains("not a bare repository")),
        "{report}"
    );
}

/// A target that answers `ok` and keeps something else: a real receive-pack whose post-receive
/// hook moves each updated ref back (it runs after the report is written). git trusts the
/// report; the run lists the target after its push and fails, naming the ref, through the
/// cache (a local path, git://) and through the stateless relay (HTTP).
#[test]
fn a_target_that_undoes_what_it_reported_fails_the_run() {
    let undo = "#!/bin/sh\nwhile read old new name; do\n  if [ \"$old\" = \
                0000000000000000000000000000000000000000 ]; then git update-ref -d \"$name\"; \
                else git update-ref \"$name\" \"$old\"; fi\ndone\n";
    let sb = Sandbox::new();
    let Pair { work, source, .. } = sb.pair("srv", &["dev"]);
    let served = sb.join("served");
    let daemon = GitDaemon::start(&served);
    let http = HttpGit::start(&served);
    let targets = [
        ("local", init_bare(&served.join("local.git")), None),
        (
            "git://",
            init_bare(&served.join("daemon.git")),
            Some(daemon.url("daemon.git")),
        ),
        (
            "relay",
            init_bare(&served.join("http.git")),
            Some(http.url("http.git")),
        ),
    ];
    let src = path_str(&source);
    let mut runs = Vec::new();
    for (label, bare, url) in &targets {
        git(bare, &["config", "http.receivepack", "true"]);
        let tgt = url.clone().unwrap_or_else(|| path_str(bare));
        let run_sb = Sandbox::new();
        let first = run(&mut run_sb.sync(&src, &tgt));
        assert_eq!(first.code, 0, "{label}: {}", first.stderr);
        install_hook(bare, "post-receive", undo);
        runs.push((label, bare, tgt, run_sb));
    }
    work.commit("b.txt", "two", "second");
    work.branch("new");
    work.push_mirror(&source);
    for (label, bare, tgt, mut run_sb) in runs {
        if *label == "relay" {
            // No cache on disk: the run relays.
            run_sb = Sandbox::new();
        }
        let before = refs(bare);
        let out = run(run_sb.sync(&src, &tgt).arg("--json"));
        assert_eq!(out.code, 1, "{label}: {}", out.stderr);
        assert_eq!(
            refs(bare),
            before,
            "{label}: the hook did not undo the push"
        );
        let error = out.only_error();
        assert!(
            error.contains("reported this run's push applied")
                && error.contains("differs in 2 ref(s)")
                && error.contains("refs/heads/main (holds ")
                && error.contains("refs/heads/new (holds nothing"),
            "{label}: {error}"
        );
        let report = out.json();
        assert_eq!(report["status"], "failed", "{label}");
        let engine = &report["transfer"]["push"]["engine"];
        assert_eq!(engine == "relay", *label == "relay", "{label}: {report}");
    }
}
