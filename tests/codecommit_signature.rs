//! Our CodeCommit password equals the one git-remote-codecommit's own code computes (PyPI
//! `git-remote-codecommit` + botocore) for the same credentials, region, repository and moment:
//! the binary's credential helper signs now, and the reference signs for the moment the
//! helper's password names.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn reference(
    access: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    when: u64,
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rcc_sign.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            access,
            secret,
            token.unwrap_or("-"),
            region,
            "my-repo",
            &when.to_string(),
        ])
        .env_remove("CODE_COMMIT_ENDPOINT")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "git-remote-codecommit's signer failed (run ./scripts/test.sh to install it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `backlog-mirror credential-helper get` for `my-repo` at `host`: (username, password).
fn helper(
    sb: &Sandbox,
    access: &str,
    secret: &str,
    token: Option<&str>,
    host: &str,
) -> (String, String) {
    let mut cmd = bin();
    cmd.env("HOME", sb.home())
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(["credential-helper", "get"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("AWS_SESSION_TOKEN", token);
    }
    let mut child = cmd.spawn().expect("credential-helper");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("protocol=https\nhost={host}\npath=v1/repos/my-repo\n\n").as_bytes())
        .expect("request");
    let out = child.wait_with_output().expect("credential-helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_string()
    };
    (field("username"), field("password"))
}

/// The Unix time of a SigV4 stamp (`YYYYMMDDTHHMMSS`), as GNU date reads it.
fn unix_time(stamp: &str) -> u64 {
    let when = format!(
        "{} {}:{}:{}",
        &stamp[..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let out = Command::new("date")
        .args(["-u", "-d", &when, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("date -d '{when}': {e}"))
}

#[test]
fn signatures_match_git_remote_codecommit() {
    let sb = Sandbox::new();
    let cases = [
        ("us-east-1", None),
        (
            "us-east-1",
            Some("FwoGZXIvYXdzEJr//////////wEaDK+token/with=specials"),
        ),
        ("cn-north-1", None),
        ("cn-north-1", Some("IQoJb3JpZ2luX2VjEJr+session")),
        ("ap-northeast-1", Some("short")),
    ];
    for (region, token) in cases {
        let access = "AKIAIOSFODNN7EXAMPLE";
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let host = reference(access, secret, token, region, 0)["host"]
            .as_str()
            .expect("host")
            .to_string();
        let (user, password) = helper(&sb, access, secret, token, &host);
        let want = reference(access, secret, token, region, unix_time(&password));
        assert_eq!(want["username"], user.as_str(), "{region} {token:?}");
        assert_eq!(want["password"], password.as_str(), "{region} {token:?}");
    }
}
