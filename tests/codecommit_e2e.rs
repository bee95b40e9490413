//! End to end against a local CodeCommit stand-in that verifies SigV4 with botocore: `sync` with
//! credentials from the environment and from a container-credentials endpoint, with both push
//! engines; plain git through git-remote-codecommit and through our credential helper, proving the
//! server faithful and the helper right; and a wrong secret refused without printing it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::codecommit::{CodeCommitServer, ContainerCredentials};
use crate::support::*;

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEBACKLOG01";
const SECRET: &str = "canary-7f3a9c1e5b/secret/EXAMPLEKEY";
const TOKEN: &str = "canary-7f3a9c1e5b-session+token/==";

struct Fixture {
    sb: Sandbox,
    source: PathBuf,
    root: PathBuf,
}

fn fixture(repos: &[&str]) -> Fixture {
    let sb = Sandbox::new();
    let source = generate_repo(
        &sb.join("source.git"),
        &GenSpec {
            commits: 60,
            files: 20,
            blob_bytes: 1000,
            branches: 2,
            packed: true,
            ..GenSpec::default()
        },
    );
    let root = sb.join("codecommit");
    for repo in repos {
        init_bare(&root.join(repo));
    }
    Fixture { sb, source, root }
}

impl Fixture {
    fn sync(
        &self,
        server: &CodeCommitServer,
        repo: &str,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Run {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .envs(server.client_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["sync", "--source"])
            .arg(&self.source)
            .args([
                "--target",
                &format!("codecommit::{REGION}://{repo}"),
                "--cache-dir",
            ])
            .arg(self.sb.cache_dir())
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }
}

fn env_creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ]
}

#[test]
fn sync_signs_with_env_credentials_through_both_push_engines() {
    let fx = fixture(&["by-libgit2", "by-git", "by-wire"]);
    let server = CodeCommitServer::start(&fx.root, REGION, &[(AKID, SECRET, Some(TOKEN))], 0);
    for (repo, engine) in [
        ("by-libgit2", "libgit2"),
        ("by-git", "git"),
        ("by-wire", "wire"),
    ] {
        let out = fx.sync(
            &server,
            repo,
            &env_creds(),
            &["--push-engine", engine, "--json"],
        );
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert_mirror(&fx.source, &fx.root.join(repo));
        let report = out.json();
        assert_eq!(report["transfer"]["push"]["engine"], engine);
        assert!(
            report["target"].as_str().unwrap().contains("/v1/repos/"),
            "{report}"
        );
        assert_no_secret(&out, &[SECRET, TOKEN]);
    }
    // The only refusals are HTTP's usual challenge to a request sent without credentials: every
    // signature the sync presented verified.
    let refused: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r["status"] == 401 && r["why"] != "no credentials")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    // git (http.proactiveAuth) and our receive-pack client send the signature with their first
    // request: no challenge at all.
    let challenged: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| {
            let path = r["path"].as_str().unwrap_or("");
            (path.contains("/by-git/") || path.contains("/by-wire/"))
                && path.contains("receive-pack")
                && r["status"] == 401
        })
        .collect();
    assert!(challenged.is_empty(), "{challenged:?}");
}

#[test]
fn sync_signs_with_container_credentials() {
    let fx = fixture(&["app"]);
    let server = CodeCommitServer::start(&fx.root, REGION, &[(AKID, SECRET, Some(TOKEN))], 0);
    let creds = ContainerCredentials::start(AKID, SECRET, TOKEN);
    // --codecommit-endpoint wins over CODE_COMMIT_ENDPOINT, which points nowhere here.
    let out = fx.sync(
        &server,
        "app",
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &creds.url),
            ("CODE_COMMIT_ENDPOINT", "127.0.0.1:1"),
        ],
        &["--codecommit-endpoint", &server.endpoint()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(creds.hits() > 0, "the container endpoint was never asked");
    assert_mirror(&fx.source, &fx.root.join("app"));
    assert_no_secret(&out, &[SECRET, TOKEN]);
}

#[test]
fn a_wrong_secret_is_refused_clearly_and_never_printed() {
    let fx = fixture(&["app"]);
    let server = CodeCommitServer::start(&fx.root, REGION, &[(AKID, SECRET, None)], 0);
    let wrong = "canary-7f3a9c1e5b-wrong-secret";
    let out = fx.sync(
        &server,
        "app",
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", wrong),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.only_error();
    assert!(error.contains("refused the credentials"), "{}", error);
    assert_no_secret(&out, &[wrong]);
    assert!(refs(&fx.root.join("app")).is_empty());
}

fn plain_git(dir: &Path, server: &CodeCommitServer, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("git");
    isolate(&mut cmd);
    cmd.current_dir(dir)
        .envs(server.client_env())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args);
    for (k, v) in env.iter().chain(env_creds().iter()) {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn plain_git_reaches_it_with_git_remote_codecommit_and_with_our_credential_helper() {
    let fx = fixture(&["via-rcc", "via-helper"]);
    let server = CodeCommitServer::start(&fx.root, REGION, &[(AKID, SECRET, Some(TOKEN))], 0);

    // The reference helper: proves the server accepts what git-remote-codecommit signs.
    let out = plain_git(
        &fx.source,
        &server,
        &[
            "push",
            "--mirror",
            &format!("codecommit::{REGION}://via-rcc"),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "git-remote-codecommit push: {}", out.stderr);
    assert_mirror(&fx.source, &fx.root.join("via-rcc"));

    // Our credential helper, configured as any git credential helper.
    let helper = format!(
        "!'{}' credential-helper",
        env!("CARGO_BIN_EXE_backlog-mirror")
    );
    let url = format!("https://{}/v1/repos/via-helper", server.endpoint());
    let out = plain_git(
        &fx.source,
        &server,
        &[
            "-c",
            "credential.helper=",
            "-c",
            &format!("credential.helper={helper}"),
            "-c",
            "credential.useHttpPath=true",
            "push",
            "--mirror",
            &url,
        ],
        &[("AWS_REGION", REGION)],
    );
    assert_eq!(out.code, 0, "credential-helper push: {}", out.stderr);
    assert_mirror(&fx.source, &fx.root.join("via-helper"));

    // And the helper itself answers git's protocol on stdout, only for CodeCommit hosts.
    let ask = |input: &str| {
        let mut cmd = bin();
        cmd.env("CODE_COMMIT_ENDPOINT", server.endpoint())
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env_creds())
            .args(["credential-helper", "get"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, answer) = ask(&format!(
        "protocol=https\nhost={}\npath=v1/repos/x\n\n",
        server.endpoint()
    ));
    assert_eq!(code, Some(0));
    assert!(
        answer.contains(&format!("username={AKID}%{TOKEN}")),
        "{answer}"
    );
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("password=") && l.len() > 40),
        "{answer}"
    );
    let (code, answer) = ask("protocol=https\nhost=github.com\npath=a/b.git\n\n");
    assert_eq!((code, answer.as_str()), (Some(0), ""));
}
