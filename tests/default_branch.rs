//! The target's default branch follows the source's `HEAD`: a local target's `HEAD` is written,
//! CodeCommit's is moved with `UpdateDefaultBranch` (the stand-in checks the call's SigV4), and
//! any other remote gets a warning in the summary when its advertised `HEAD` differs. When the
//! source deletes the branch that is the target's default, the default moves first: targets
//! that refuse to delete their default branch (CodeCommit) still end exact.

use std::path::Path;

use crate::support::codecommit::CodeCommitServer;
use crate::support::*;

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEBACKLOG02";
const SECRET: &str = "canary-7f3a9c1e5b/default-branch/SECRET";

fn head(repo: &Path) -> String {
    git(repo, &["symbolic-ref", "HEAD"])
}

fn set_head(repo: &Path, branch: &str) {
    git(repo, &["symbolic-ref", "HEAD", branch]);
}

/// Refuse, as CodeCommit does, a push that deletes the repository's default branch.
fn refuse_deleting_the_default(bare: &Path) {
    install_hook(
        bare,
        "update",
        "#!/bin/sh\nif [ \"$3\" = 0000000000000000000000000000000000000000 ] && \
         [ \"$1\" = \"$(git symbolic-ref -q HEAD)\" ]; then echo \"$1 is the default branch\" >&2; \
         exit 1; fi\n",
    );
}

#[test]
fn a_local_target_follows_the_source_head_and_loses_its_default_branch_last() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    let (src, tgt) = (path_str(&pair.source), path_str(&pair.target));
    set_head(&pair.target, "refs/heads/dev");
    let first = run(sb.sync(&src, &tgt).arg("--json"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(head(&pair.target), "refs/heads/main");
    let report = &first.json()["default_branch"];
    assert_eq!(report["source"], "refs/heads/main");
    assert_eq!(report["target"], "refs/heads/main");
    assert_eq!(report["changed"], true);

    // The source's default moves to dev and main goes: the target, which refuses to delete its
    // default branch, gets dev as its default before main is deleted.
    refuse_deleting_the_default(&pair.target);
    set_head(&pair.source, "refs/heads/dev");
    git(&pair.source, &["update-ref", "-d", "refs/heads/main"]);
    let second = run(sb.sync(&src, &tgt).arg("--json"));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_mirror(&pair.source, &pair.target);
    assert_eq!(head(&pair.target), "refs/heads/dev");
    assert_eq!(second.json()["default_branch"]["changed"], true);

    // Nothing to do: nothing changes, nothing is said.
    let third = run(sb.sync(&src, &tgt).arg("--json"));
    assert_eq!(third.code, 0, "{}", third.stderr);
    let report = &third.json()["default_branch"];
    assert_eq!(report["changed"], false);
    assert!(report["warning"].is_null(), "{report}");
}

#[test]
fn another_remote_whose_head_differs_gets_a_warning() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    git(
        &pair.source,
        &["push", "-q", "--mirror", &path_str(&pair.target)],
    );
    set_head(&pair.source, "refs/heads/dev");
    let daemon = GitDaemon::start(&sb.join("srv"));
    let out = run(sb
        .sync(&path_str(&pair.source), &daemon.url("target.git"))
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = &out.json()["default_branch"];
    assert_eq!(report["source"], "refs/heads/dev");
    assert_eq!(report["target"], "refs/heads/main");
    assert_eq!(report["changed"], false);
    let warning = report["warning"].as_str().expect("a warning");
    assert!(
        warning.contains("refs/heads/main") && warning.contains("refs/heads/dev"),
        "{warning}"
    );
    assert!(out.stderr.contains("default branch"), "{}", out.stderr);
    assert_eq!(head(&pair.target), "refs/heads/main", "git cannot move it");
}

struct Cc {
    sb: Sandbox,
    pair: Pair,
    root: std::path::PathBuf,
    server: CodeCommitServer,
}

fn codecommit(deny: &[&str]) -> Cc {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["dev"]);
    let root = sb.join("codecommit");
    init_bare(&root.join("app"));
    let server = CodeCommitServer::start_denying(&root, REGION, &[(AKID, SECRET, None)], 0, deny);
    Cc {
        sb,
        pair,
        root,
        server,
    }
}

impl Cc {
    fn sync(&self) -> Run {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .envs(self.server.client_env())
            .envs(self.server.api_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .args(["sync", "--json", "--source"])
            .arg(&self.pair.source)
            .args([
                "--target",
                &format!("codecommit::{REGION}://app"),
                "--cache-dir",
            ])
            .arg(self.sb.cache_dir());
        let out = run(&mut cmd);
        assert_no_secret(&out, &[SECRET]);
        out
    }
}

#[test]
fn codecommit_gets_update_default_branch_before_its_default_is_deleted() {
    let cc = codecommit(&[]);
    let target = cc.root.join("app");
    set_head(&cc.pair.source, "refs/heads/dev");
    let first = cc.sync();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_mirror(&cc.pair.source, &target);
    assert_eq!(head(&target), "refs/heads/dev");
    let calls = cc.server.api_calls();
    let actions: Vec<&str> = calls.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["GetRepository", "UpdateDefaultBranch"],
        "{calls:?}"
    );
    assert_eq!(calls[1].1["defaultBranchName"], "dev");
    assert_eq!(first.json()["default_branch"]["target"], "refs/heads/dev");

    // dev, CodeCommit's default, is deleted at the source, whose HEAD goes back to main. The
    // stand-in refuses a push deleting the default branch, as CodeCommit's DeleteBranch does.
    set_head(&cc.pair.source, "refs/heads/main");
    git(&cc.pair.source, &["update-ref", "-d", "refs/heads/dev"]);
    let second = cc.sync();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_mirror(&cc.pair.source, &target);
    assert_eq!(head(&target), "refs/heads/main");
    let calls = cc.server.api_calls();
    assert_eq!(calls.last().unwrap().0, "UpdateDefaultBranch", "{calls:?}");
    assert_eq!(calls.last().unwrap().1["defaultBranchName"], "main");
}

#[test]
fn the_stand_in_refuses_deleting_codecommits_default_branch() {
    // What the test above relies on: without the move, the deletion is refused by name.
    let cc = codecommit(&["UpdateDefaultBranch"]);
    let target = cc.root.join("app");
    let first = cc.sync();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(head(&target), "refs/heads/main");
    set_head(&cc.pair.source, "refs/heads/dev");
    git(&cc.pair.source, &["update-ref", "-d", "refs/heads/main"]);
    let second = cc.sync();
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("DefaultBranchCannotBeDeletedException"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("codecommit:UpdateDefaultBranch"),
        "names the missing permission: {}",
        second.stderr
    );
    assert!(git_ok(&target, &["rev-parse", "--verify", "refs/heads/main"]).is_ok());
}

/// CodeCommit makes the first branch pushed to an empty repository its default. A first mirror
/// in batches sends the source's default branch before any other, so the target's default is
/// right even where this run cannot move it: here no API endpoint (the Git endpoint is
/// overridden, the API's is not), and branches that sort before `main` filling the first
/// batch otherwise. The source then deletes one of them: no default branch is in the way.
#[test]
fn a_first_mirror_in_batches_sends_the_default_branch_first() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["aaa1", "aaa2", "aaa3", "dev"]);
    let root = sb.join("codecommit");
    init_bare(&root.join("app"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 2);
    let sync = || {
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .envs(server.client_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .args(["sync", "--json", "--source"])
            .arg(&pair.source)
            .args(["--target", &format!("codecommit::{REGION}://app")])
            .args(["--batch-size", "2", "--cache-dir"])
            .arg(sb.cache_dir());
        let out = run(&mut cmd);
        assert_no_secret(&out, &[SECRET]);
        out
    };
    assert_eq!(head(&pair.source), "refs/heads/main");
    let first = sync();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let target = root.join("app");
    assert_mirror(&pair.source, &target);
    assert!(
        first.json()["transfer"]["push"]["batches"]
            .as_u64()
            .unwrap()
            >= 3,
        "{}",
        first.stdout
    );
    assert_eq!(head(&target), "refs/heads/main");
    assert!(server.api_calls().is_empty(), "{:?}", server.api_calls());

    git(&pair.source, &["update-ref", "-d", "refs/heads/aaa1"]);
    let second = sync();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_mirror(&pair.source, &target);
}
