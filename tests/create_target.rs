//! A missing target: exit 1 with the exact command that creates it, nothing created, not even
//! the cache; with `--create-target` (or `BACKLOG_MIRROR_CREATE_TARGET`) a local bare repository
//! is made (`git init --bare`) or a CodeCommit repository created (`CreateRepository`, through the
//! stand-in, with the source's description), and the mirror follows in the same run.

use std::process::Command;

use crate::support::codecommit::CodeCommitServer;
use crate::support::*;

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEBACKLOG03";
const SECRET: &str = "canary-7f3a9c1e5b/create-target/SECRET";

/// The command the error line gives between `to create it, run: ` and ` (or pass`.
fn quoted_command(error: &str) -> String {
    let lead = "to create it, run: ";
    let start = error.find(lead).expect("names a command") + lead.len();
    let end = error[start..]
        .find(" (or pass --create-target)")
        .expect("end")
        + start;
    error[start..end].to_string()
}

#[test]
fn a_missing_local_target_names_git_init_and_is_created_on_request() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    // A path a shell would split, expand or end a quote in: the command still makes it.
    let target = sb.join("new targets/it's $(x).git");
    let (src, tgt) = (path_str(&pair.source), path_str(&target));

    let missing = run(&mut sb.sync(&src, &tgt));
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    let error = missing.only_error();
    let command = quoted_command(error);
    assert_eq!(
        command,
        format!("git init --bare '{}'", tgt.replace('\'', "'\\''"))
    );
    assert!(
        !target.exists() && !sb.cache_dir().exists(),
        "nothing is created"
    );

    // The command, as printed, makes a target the next run mirrors into.
    let made = Command::new("sh").args(["-c", &command]).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let next = run(&mut sb.sync(&src, &tgt));
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_mirror(&pair.source, &target);

    // The flag, and its environment variable, create it.
    for (i, by_env) in [false, true].into_iter().enumerate() {
        let target = sb.join(&format!("made-{i}/app.git"));
        let tgt = path_str(&target);
        let mut cmd = sb.sync(&src, &tgt);
        if by_env {
            cmd.env("BACKLOG_MIRROR_CREATE_TARGET", "true");
        } else {
            cmd.arg("--create-target");
        }
        let out = run(cmd.arg("--json"));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_mirror(&pair.source, &target);
        assert_eq!(git(&target, &["rev-parse", "--is-bare-repository"]), "true");
        assert_eq!(git(&target, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    }
}

#[test]
fn a_dry_run_creates_nothing() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let target = sb.join("app.git");
    let out = run(sb
        .sync(&path_str(&pair.source), &path_str(&target))
        .args(["--create-target", "--dry-run"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.only_error().contains("a dry run creates nothing"),
        "{}",
        out.stderr
    );
    assert!(!target.exists());
}

/// A sync into `team-app` on the stand-in, signing with SECRET.
fn codecommit_cmd(
    sb: &Sandbox,
    server: &CodeCommitServer,
    source: &std::path::Path,
    secret: &str,
) -> std::process::Command {
    let mut cmd = bin();
    cmd.env("HOME", sb.home())
        .envs(server.client_env())
        .envs(server.api_env())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(["sync", "--source"])
        .arg(source)
        .args([
            "--target",
            &format!("codecommit::{REGION}://team-app"),
            "--cache-dir",
        ])
        .arg(sb.cache_dir());
    cmd
}

fn codecommit_sync(
    sb: &Sandbox,
    server: &CodeCommitServer,
    source: &std::path::Path,
    extra: &[&str],
) -> Run {
    let out = run(codecommit_cmd(sb, server, source, SECRET)
        .arg("--json")
        .args(extra));
    assert_no_secret(&out, &[SECRET]);
    out
}

#[test]
fn a_missing_codecommit_repository_names_create_repository_and_is_created_on_request() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    std::fs::write(pair.source.join("description"), "The team's app\n").unwrap();
    let root = sb.join("codecommit");
    std::fs::create_dir_all(&root).unwrap();
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 0);

    let missing = codecommit_sync(&sb, &server, &pair.source, &[]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert_eq!(
        quoted_command(missing.json()["error"].as_str().unwrap()),
        "aws codecommit create-repository --repository-name team-app --region us-east-1"
    );
    assert!(!root.join("team-app").exists());
    let actions: Vec<String> = server.api_calls().into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["GetRepository"]);

    let created = codecommit_sync(&sb, &server, &pair.source, &["--create-target"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_mirror(&pair.source, &root.join("team-app"));
    let calls = server.api_calls();
    let create = calls
        .iter()
        .find(|(a, _)| a == "CreateRepository")
        .expect("CreateRepository called");
    assert_eq!(create.1["repositoryName"], "team-app");
    assert_eq!(create.1["repositoryDescription"], "The team's app");
    assert_eq!(
        created.json()["default_branch"]["target"],
        "refs/heads/main"
    );

    // Every API call the runs made verified as SigV4.
    let refused: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/" && r["status"] == 403)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn the_control_plane_refuses_a_wrong_signature_and_the_run_names_the_permission() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let root = sb.join("codecommit");
    std::fs::create_dir_all(&root).unwrap();
    let server = CodeCommitServer::start_denying(
        &root,
        REGION,
        &[(AKID, SECRET, None)],
        0,
        &["CreateRepository"],
    );
    let denied = codecommit_sync(&sb, &server, &pair.source, &["--create-target"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied
            .only_error()
            .contains("grant the build role codecommit:CreateRepository"),
        "{}",
        denied.stderr
    );
    // A request signed with another secret is refused by the stand-in, as AWS would.
    let wrong = run(&mut codecommit_cmd(
        &sb,
        &server,
        &pair.source,
        "canary-7f3a9c1e5b-wrong",
    ));
    assert_ne!(wrong.code, 0, "{}", wrong.stderr);
    let bad: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/" && r["status"] == 403 && r["why"].is_string())
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["why"], "signature mismatch");
}

/// Every check that can fail as bad usage (exit 2, "nothing was touched") comes before the
/// target is created: a target that is, or holds, the mirror's own cache, a foreign directory
/// where the cache goes, a cache directory that cannot be made.
#[test]
fn usage_mistakes_with_create_target_create_nothing() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let src = path_str(&pair.source);
    let root = sb.join("places");
    std::fs::create_dir_all(root.join("foreign/app.git")).unwrap();
    std::fs::write(root.join("foreign/app.git/notes.txt"), "someone's").unwrap();
    std::os::unix::fs::symlink(sb.join("nowhere/deep"), root.join("dangling")).unwrap();
    let cases = [
        (
            "the target is the mirror's cache",
            root.join("cache/app.git"),
            root.join("cache"),
            "one inside the other",
        ),
        (
            "the cache would be made inside the target",
            root.join("t.git"),
            root.join("t.git/cache"),
            "one inside the other",
        ),
        (
            "a foreign directory where the mirror goes",
            root.join("t.git"),
            root.join("foreign"),
            "exists but was not made by backlog-mirror",
        ),
        (
            "a cache directory that cannot be made",
            root.join("t.git"),
            root.join("dangling"),
            "--cache-dir",
        ),
    ];
    for (label, target, cache, want) in cases {
        let out = run(bin()
            .env("HOME", sb.home())
            .args(["sync", "--source", &src, "--target"])
            .arg(&target)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--mirror-name", "app", "--create-target"]));
        assert_eq!(out.code, 2, "{label}: {}", out.stderr);
        assert!(out.only_error().contains(want), "{label}: {}", out.stderr);
        assert!(!target.exists(), "{label}: the target was created");
    }
    assert!(!root.join("cache").exists());
}
