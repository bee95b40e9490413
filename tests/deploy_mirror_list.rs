//! scripts/deploy.sh and the mirror list, run for real: the AWS CLI v2 against moto's server on
//! 127.0.0.1 deploying the real template (see tests/deploy.rs for what moto does and does not
//! model). The list is uploaded content-addressed before the stack points at it and pinned by
//! MirrorListSha256; an unchanged list changes nothing, a changed one is a new object and an
//! update; without --mirror-list the single-repository flags write a list of one mirror; and a
//! list the shell can tell is wrong stops the command before anything on AWS changes.

use std::path::Path;
use std::process::Command;

use crate::support::deploy::{self, Fixture, SCRIPT};
use crate::support::moto::REGION;
use crate::support::*;
use serde_json::Value;

const STACK: &str = "space-test";

fn fixture() -> Fixture {
    Fixture::new(STACK)
}

fn args(more: &[&str]) -> Vec<String> {
    deploy::args(STACK, more)
}

/// The list the stack pins, read from where the build reads it.
fn pinned_list(fx: &Fixture) -> String {
    let sha = fx.parameter("MirrorListSha256");
    let bytes = fx
        .object(&format!("config/{sha}/mirrors.toml"))
        .unwrap_or_else(|| panic!("no object for the pinned list {sha}"));
    assert_eq!(sha256_hex(&bytes), sha, "the object is not the pinned list");
    String::from_utf8(bytes).expect("UTF-8 list")
}

fn sha256_hex(bytes: &[u8]) -> String {
    <sha2::Sha256 as sha2::Digest>::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_list(dir: &Path, name: &str, mirrors: &[&str]) -> String {
    let mut text = String::from(
        "# The mirrors of myspace.\n[defaults]\nbacklog-space = \"myspace\"\ncodecommit-prefix = \"backlog-\"\n",
    );
    for m in mirrors {
        let (project, repo) = m.split_once('/').unwrap();
        text.push_str(&format!(
            "\n[[mirror]]\nname = \"{m}\"\nbacklog-project = \"{project}\"\nbacklog-repo = \"{repo}\"\ncodecommit-repo = \"backlog-{repo}\"\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, &text).expect("list");
    path.to_string_lossy().into_owned()
}

#[test]
fn a_mirror_list_is_uploaded_pinned_kept_and_replaced() {
    let fx = fixture();
    let first = write_list(fx.sb.path(), "first.toml", &["PROJ/app", "PROJ/lib"]);
    let settings = [
        "--alert-email",
        "ops@example.com",
        "--codecommit-prefix",
        "backlog-",
        "--build-concurrency",
        "5",
        "--sync-jobs",
        "2",
        "--stale-after-hours",
        "2",
        "--mirror-metrics",
        "emf",
    ];
    let mut with_list: Vec<&str> = vec!["--mirror-list", &first];
    with_list.extend(settings);
    let out = fx.deploy_ok(&args(&with_list));
    assert!(
        out.stderr.contains("uploading the mirror list"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let first_sha = sha256_hex(&std::fs::read(&first).unwrap());
    assert_eq!(fx.parameter("MirrorListSha256"), first_sha);
    assert_eq!(pinned_list(&fx), std::fs::read_to_string(&first).unwrap());
    for (key, value) in [
        ("CodeCommitRepositoryPrefix", "backlog-"),
        ("BuildConcurrency", "5"),
        ("SyncJobs", "2"),
        ("StaleAfterHours", "2"),
        ("MirrorMetrics", "emf"),
    ] {
        assert_eq!(fx.parameter(key), value, "{key}");
    }

    // The build role, as moto's IAM holds it, reaches only the prefixed repositories.
    let resources = fx.aws(&[
        "cloudformation",
        "list-stack-resources",
        "--stack-name",
        STACK,
    ]);
    let role = resources["StackResourceSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["LogicalResourceId"] == "BuildRole")
        .and_then(|r| r["PhysicalResourceId"].as_str())
        .expect("BuildRole")
        .to_string();
    let policy = fx.aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        &role,
        "--policy-name",
        "mirror",
    ]);
    let policy = policy["PolicyDocument"].to_string();
    assert!(
        policy.contains(&format!(
            "arn:aws:codecommit:{REGION}:123456789012:backlog-*"
        )),
        "{policy}"
    );
    // The alarms, in moto's CloudWatch (stored, not evaluated), into the alert topic: CodeBuild's
    // own metrics for the project, and with emf the per-mirror one.
    let alarms = fx.aws(&["cloudwatch", "describe-alarms"]);
    let mut alarms: Vec<&Value> = alarms["MetricAlarms"].as_array().unwrap().iter().collect();
    alarms.sort_by_key(|a| a["AlarmName"].as_str().unwrap().to_string());
    let names: Vec<&str> = alarms
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "backlog-mirror-mirror-failing",
            "backlog-mirror-mirror-stale",
            "backlog-mirror-mirrors-silent"
        ]
    );
    for a in &alarms {
        let actions = a["AlarmActions"].to_string();
        assert!(
            actions.contains(":sns:") && actions.contains("backlog-mirror-failures"),
            "{a}"
        );
        assert_eq!(a["OKActions"], a["AlarmActions"], "{a}");
    }
    for a in [alarms[0], alarms[2]] {
        assert_eq!(a["Namespace"], "AWS/CodeBuild", "{a}");
        assert_eq!(
            a["Dimensions"],
            serde_json::json!([{"Name": "ProjectName", "Value": "backlog-mirror"}]),
            "{a}"
        );
    }
    assert!(
        alarms[1]["Metrics"][0]["Expression"]
            .as_str()
            .unwrap()
            .contains("SCHEMA(\"BacklogMirror/backlog-mirror\", Mirror)")
    );
    assert_eq!(alarms[1]["EvaluationPeriods"], 2);

    // Again: nothing uploaded, nothing changed.
    let events = fx.event_count();
    let again = fx.deploy_ok(&args(&with_list));
    assert!(
        again.stderr.contains("no change set executed"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("uploading"), "{}", again.stderr);
    // Without any list flag the stack keeps its list.
    let kept = fx.deploy_ok(&args(&[]));
    assert!(
        kept.stderr.contains("no change set executed"),
        "{}",
        kept.stderr
    );
    assert!(!kept.stderr.contains("mirror list"), "{}", kept.stderr);
    assert_eq!(fx.event_count(), events, "a no-op run changed the stack");
    // A kept list that is no longer in the bucket would fail every build: the command says so.
    let gone = format!("config/{first_sha}/mirrors.toml");
    fx.aws(&[
        "s3api",
        "delete-object",
        "--bucket",
        &fx.bucket(),
        "--key",
        &gone,
    ]);
    let out = fx.deploy(&args(&[]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{gone} is gone: deploy the list again with --mirror-list"
        )),
        "{}",
        out.stderr
    );
    fx.deploy_ok(&args(&with_list));
    assert!(
        fx.object(&gone).is_some(),
        "the list was not uploaded again"
    );

    // Adding a repository: one edit of the list, the same command.
    let second = write_list(
        fx.sb.path(),
        "second.toml",
        &["PROJ/app", "PROJ/lib", "OTHER/web"],
    );
    let mut with_second: Vec<&str> = vec!["--mirror-list", &second];
    with_second.extend(settings);
    let out = fx.deploy_ok(&args(&with_second));
    assert!(
        out.stderr.contains("uploading the mirror list"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("stack {STACK} deployed")),
        "{}",
        out.stderr
    );
    assert_eq!(
        fx.parameter("MirrorListSha256"),
        sha256_hex(&std::fs::read(&second).unwrap())
    );
    assert!(pinned_list(&fx).contains("name = \"OTHER/web\""));
    // The list a running build pinned stays where it was.
    assert!(
        fx.object(&format!("config/{first_sha}/mirrors.toml"))
            .is_some()
    );

    fx.report_placeholders(&["AWS::CloudWatch::Alarm"]);
}

/// The single-repository flags write a list of one mirror. With `--codecommit-prefix ''` the
/// build role may force-push to every repository: given, never defaulted, and said so.
#[test]
fn single_repository_flags_write_a_list_of_one_mirror() {
    let fx = fixture();
    let one = |repo: &str| -> Vec<String> {
        args(&[
            "--backlog-project",
            "PROJ",
            "--backlog-repo",
            "app",
            "--codecommit-repo",
            repo,
            "--backlog-domain",
            "backlog.com",
            "--codecommit-prefix",
            "",
        ])
    };
    let out = fx.deploy_ok(&one("app-mirror"));
    assert!(
        out.stderr.contains("mirror list of one mirror, PROJ/app"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "warning: --codecommit-prefix '': the build may create, pull from and force-push to every CodeCommit repository of account 123456789012"
        ),
        "an empty prefix must say what it grants:\n{}",
        out.stderr
    );
    assert_eq!(fx.parameter("CodeCommitRepositoryPrefix"), "");
    assert_eq!(
        pinned_list(&fx),
        "# The mirror list of one repository, written by scripts/deploy.sh from --backlog-project,\n\
         # --backlog-repo and --codecommit-repo. Give --mirror-list FILE to deploy a list of your own.\n\
         [defaults]\n\
         backlog-space = \"myspace\"\n\
         backlog-domain = \"backlog.com\"\n\
         \n\
         [[mirror]]\n\
         name = \"PROJ/app\"\n\
         backlog-project = \"PROJ\"\n\
         backlog-repo = \"app\"\n\
         codecommit-repo = \"app-mirror\"\n"
    );
    let sha = fx.parameter("MirrorListSha256");
    let again = fx.deploy_ok(&one("app-mirror"));
    assert!(
        again.stderr.contains("no change set executed"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("uploading"), "{}", again.stderr);
    assert_eq!(fx.parameter("MirrorListSha256"), sha);

    let moved = fx.deploy_ok(&one("app-mirror-2"));
    assert!(
        moved.stderr.contains("uploading the mirror list"),
        "{}",
        moved.stderr
    );
    assert_ne!(fx.parameter("MirrorListSha256"), sha);
    assert!(pinned_list(&fx).contains("codecommit-repo = \"app-mirror-2\"\n"));

    // Only some of the three: which mirror would that be?
    let partial = fx.deploy(&args(&["--backlog-repo", "other"]));
    assert_eq!(partial.code, 2, "{}", partial.stderr);
    assert!(
        partial
            .only_error()
            .contains("--backlog-project is required for a list of one mirror"),
        "{}",
        partial.stderr
    );
}

/// What the shell checks, through --render-only (no AWS call): each bad list is one line naming
/// --mirror-list, the file and the line; lists TOML allows in other spellings pass.
#[test]
fn mirror_lists_the_shell_can_tell_are_wrong_are_refused_before_aws() {
    let sb = Sandbox::new();
    let file = |name: &str, bytes: &[u8]| {
        let path = sb.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_string_lossy().into_owned()
    };
    let render = |more: &[&str]| {
        let mut cmd = Command::new("bash");
        isolate(&mut cmd);
        cmd.arg(SCRIPT)
            .args(["--render-only", &sb.join("out.yaml").to_string_lossy()])
            .args(more)
            .env("HOME", sb.home())
            .env("BACKLOG_MIRROR_AWS_CLI", "/bin/false")
            .env("BACKLOG_MIRROR_AWS_ENDPOINT_URL", "http://127.0.0.1:9");
        run(&mut cmd)
    };
    let too_long = format!("[[mirror]]\nname = \"PROJ/{}\"\n", "a".repeat(96));
    let refused: Vec<(String, &str)> = vec![
        (file("empty.toml", b""), "has no [[mirror]] table"),
        (
            file("defaults.toml", b"[defaults]\nbacklog-space = \"x\"\n"),
            "has no [[mirror]] table",
        ),
        (
            file(
                "nameless.toml",
                b"[defaults]\n\n[[mirror]]\nsource = \"x\"\n",
            ),
            "line 3: a [[mirror]] table without a name",
        ),
        (
            file(
                "nameless-last.toml",
                b"[[mirror]]\nname = \"PROJ/a\"\n[[mirror]]\ntarget = \"x\"\n",
            ),
            "line 3: a [[mirror]] table without a name",
        ),
        (
            file(
                "twice.toml",
                b"[[mirror]]\nname = \"PROJ/app\"\n\n[[mirror]]\nname = 'PROJ/app'\n",
            ),
            "line 5: the name 'PROJ/app' is taken by line 2",
        ),
        (
            file("dots.toml", b"[[mirror]]\nname = \"../etc\"\n"),
            "line 2: '../etc' is not a mirror name",
        ),
        (
            file("deep.toml", b"[[mirror]]\nname = \"a/b/c\"\n"),
            "'a/b/c' is not a mirror name",
        ),
        (
            file("long.toml", too_long.as_bytes()),
            "is not a mirror name",
        ),
        (
            file("nul.toml", b"[[mirror]]\nname = \"PROJ/a\"\0\n"),
            "holds NUL bytes",
        ),
        (
            file("latin1.toml", b"[[mirror]]\nname = \"PROJ/a\" # caf\xe9\n"),
            "is not UTF-8 text",
        ),
        (
            sb.join("missing.toml").to_string_lossy().into_owned(),
            "cannot read",
        ),
        (sb.path().to_string_lossy().into_owned(), "cannot read"),
    ];
    for (path, reason) in &refused {
        let out = render(&["--mirror-list", path]);
        assert_eq!(out.code, 2, "{path}: {}", out.stderr);
        let line = out.only_error();
        assert!(
            line.starts_with("error: --mirror-list: ") && line.contains(reason),
            "{path}: want '{reason}': {line}"
        );
        assert!(!sb.join("out.yaml").exists(), "{path}: rendered anyway");
    }
    let good = file("good.toml", b"[[mirror]]\nname = \"PROJ/app\"\n");
    let both = render(&["--mirror-list", &good, "--backlog-repo", "app"]);
    assert_eq!(both.code, 2);
    assert!(
        both.only_error().contains("give either the list or"),
        "{}",
        both.stderr
    );

    let accepted = [
        file(
            "spelled.toml",
            b"# comment\r\n[ defaults ]\r\n[[ mirror ]]  # a table\r\n\"name\" = 'PROJ/app'  # its name\r\n[[mirror]]\r\n  name=\"PROJ/app-2\"\r\n",
        ),
        // A multi-line string could hold a line that looks like a header: names are not required.
        file(
            "multiline.toml",
            b"[[mirror]]\nname = \"PROJ/a\"\ndescription = \"\"\"\n[[mirror]]\n\"\"\"\n",
        ),
        // Names in forms the shell does not read are left to the binary.
        file("escaped.toml", b"[[mirror]]\nname = \"PROJ\\u002Fa\"\n"),
        good,
    ];
    for path in &accepted {
        let out = render(&["--mirror-list", path]);
        assert_eq!(out.code, 0, "{path}: {}", out.stderr);
    }
}

/// The single-repository list's target must be one the build role may push to.
#[test]
fn a_one_mirror_list_outside_the_codecommit_prefix_is_refused() {
    let fx = fixture();
    let out = fx.deploy(&args(&[
        "--backlog-project",
        "PROJ",
        "--backlog-repo",
        "app",
        "--codecommit-repo",
        "app",
        "--codecommit-prefix",
        "backlog-",
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.only_error().contains(
            "--codecommit-repo: 'app' does not start with the CodeCommit prefix 'backlog-'"
        ),
        "{}",
        out.stderr
    );
    let stacks = fx.aws(&["cloudformation", "list-stacks"]);
    assert_eq!(stacks["StackSummaries"].as_array().map_or(0, Vec::len), 0);
}
