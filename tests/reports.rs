//! What a run says about itself is true: a refusal says what was pushed before it, a dry run
//! counts what it plans, durations read as they were given, and a value refused at validation
//! leaves nothing behind on disk.

mod support;

use support::*;

/// Round 1 of an initial sync pushes every ref; while it pushes, every ref of the source is
/// deleted, so round 2 meets the delete guard. The refusal must say what round 1 did.
#[test]
fn a_refusal_in_a_later_round_says_what_earlier_rounds_pushed() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    for i in 0..4 {
        work.branch(&format!("b{i}"));
    }
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join("srv/target.git"));
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
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["status"], "refused");
    assert_eq!(report["refs"]["created"], 5, "{report}");
}

#[test]
fn a_refusal_before_any_push_says_the_target_is_untouched() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join("srv/target.git"));
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
