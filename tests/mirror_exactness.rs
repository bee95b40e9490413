//! The target ends as an exact mirror (git for-each-ref is the oracle) through every kind of ref
//! change, and says exactly what it changed.

use crate::support::*;

fn sync(sb: &Sandbox, source: &str, target: &str, extra: &[&str]) -> Run {
    let mut cmd = sb.sync(source, target);
    cmd.args(extra);
    run(&mut cmd)
}

#[test]
fn every_kind_of_ref_change_is_mirrored_exactly() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    work.commit("b.txt", "two", "second");
    work.tag_light("light");
    work.tag_annotated("v1.0", "release 1.0");
    work.note("a note");
    work.branch("feature");
    work.branch("doomed");
    let source = init_bare(&sb.join("source.git"));
    work.push_mirror(&source);
    let head = git(&source, &["rev-parse", "refs/heads/main"]);
    update_ref(&source, "refs/pull/1/head", &head);
    update_ref(&source, "refs/merge-requests/2/head", &head);
    pack_refs(&source);
    let target = init_bare(&sb.join("target.git"));
    let (src, tgt) = (path_str(&source), path_str(&target));

    let first = sync(&sb, &src, &tgt, &["--json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_mirror(&source, &target);
    let report = first.json();
    assert_eq!(report["status"], "in_sync");
    assert_eq!(report["refs"]["created"], refs(&source).len());
    assert!(
        first.stderr.contains("refs/pull/1/head"),
        "{}",
        first.stderr
    );

    // New commits, a force-push, deleted branch and tag, a new loose ref.
    work.checkout("main");
    work.commit("a.txt", "three", "third");
    work.checkout("feature");
    work.amend("feature rewritten");
    work.checkout("main");
    work.push_mirror(&source);
    delete_ref(&source, "refs/heads/doomed");
    delete_ref(&source, "refs/tags/light");
    let feature_new = git(&source, &["rev-parse", "refs/heads/feature"]);
    update_ref(&source, "refs/heads/loose-new", &feature_new);

    let second = sync(&sb, &src, &tgt, &["--json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_mirror(&source, &target);
    let report = second.json();
    assert_eq!(report["refs"]["updated"], 1, "{}", second.stdout);
    assert_eq!(report["refs"]["forced"], 1, "{}", second.stdout);
    assert_eq!(report["refs"]["deleted"], 2, "{}", second.stdout);
    assert_eq!(report["refs"]["created"], 1, "{}", second.stdout);
    let actions: Vec<(String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["ref"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("refs/heads/main", "fast_forward"),
        ("refs/heads/feature", "force"),
        ("refs/heads/doomed", "delete"),
        ("refs/tags/light", "delete"),
        ("refs/heads/loose-new", "create"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {actions:?}"
        );
    }
    fsck(&source);
    fsck(&target);
}

#[test]
fn dry_run_prints_the_plan_and_leaves_the_target() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("", &[]);
    let before = refs(&target);
    let out = sync(
        &sb,
        &path_str(&source),
        &path_str(&target),
        &["--dry-run", "--json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(refs(&target), before);
    let report = out.json();
    assert_eq!(report["status"], "dry_run");
    assert_eq!(report["changes"][0]["result"], "planned");
    assert_eq!(report["changes"][0]["ref"], "refs/heads/main");
}

#[test]
fn include_and_exclude_leave_unselected_refs_alone() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    let head = work.commit("a.txt", "one", "first");
    let source = init_bare(&sb.join("source.git"));
    work.push_mirror(&source);
    update_ref(&source, "refs/pull/7/head", &head);
    let target = init_bare(&sb.join("target.git"));
    // The target has its own ref in the excluded namespace: never deleted.
    let target_work = WorkRepo::init(&sb.join("twork"));
    let own = target_work.commit("x.txt", "x", "target's own");
    target_work.push_mirror(&target);
    update_ref(&target, "refs/pull/99/head", &own);
    delete_ref(&target, "refs/heads/main");

    let out = sync(
        &sb,
        &path_str(&source),
        &path_str(&target),
        &["--exclude", "refs/pull/*"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = refs(&target);
    assert_eq!(got.get("refs/heads/main"), Some(&head));
    assert!(!got.contains_key("refs/pull/7/head"), "{got:?}");
    assert_eq!(got.get("refs/pull/99/head"), Some(&own));
}

#[test]
fn json_summary_has_the_documented_schema() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("", &[]);
    let out = sync(&sb, &path_str(&source), &path_str(&target), &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.json();
    for key in [
        "schema",
        "status",
        "exit_code",
        "error",
        "source",
        "target",
        "cache",
        "dry_run",
        "rounds",
        "seeded",
        "refs",
        "changes",
        "transfer",
        "seconds",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["schema"], 1);
    for key in [
        "created",
        "updated",
        "forced",
        "deleted",
        "unchanged",
        "rejected",
    ] {
        assert!(report["refs"][key].is_u64(), "refs.{key}: {report}");
    }
    for phase in ["lock", "seed", "fetch", "plan", "push", "total"] {
        assert!(
            report["seconds"][phase].is_f64(),
            "seconds.{phase}: {report}"
        );
    }
    for leg in ["seed", "fetch", "push"] {
        assert!(
            report["transfer"][leg]["objects"].is_u64(),
            "{leg}: {report}"
        );
        assert!(report["transfer"][leg]["bytes"].is_u64(), "{leg}: {report}");
    }
    assert!(report["transfer"]["fetch"]["objects"].as_u64().unwrap() > 0);
    // A first mirror fills the empty cache through our own upload-pack client too.
    assert_eq!(report["transfer"]["fetch"]["engine"], "wire");
    // auto hands a push to git whenever git is installed and the target needs no credential.
    assert_eq!(report["transfer"]["push"]["engine"], "git");
    assert_eq!(report["rounds"], 1);
}
