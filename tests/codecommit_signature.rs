//! Our CodeCommit password equals the one git-remote-codecommit's own code computes (PyPI
//! `git-remote-codecommit` + botocore), for fixed credentials, region, repository and time.

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use backlog_mirror::codecommit::{self, Credentials};

fn reference(
    access: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    repo: &str,
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
            repo,
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

#[test]
fn signatures_match_git_remote_codecommit() {
    let when = 1_764_000_000;
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
        let want = reference(access, secret, token, region, "my-repo", when);
        let repo = codecommit::parse(&format!("codecommit::{region}://my-repo"))
            .unwrap()
            .unwrap();
        let host = codecommit::resolve_host(&repo, region, None);
        assert_eq!(want["host"], host.as_str(), "{region}");
        let (user, password) = codecommit::sign(
            &Credentials {
                access_key_id: access,
                secret_access_key: secret,
                session_token: token,
            },
            region,
            &host,
            &codecommit::repo_path("my-repo"),
            UNIX_EPOCH + Duration::from_secs(when),
        );
        assert_eq!(want["username"], user.as_str(), "{region} {token:?}");
        assert_eq!(want["password"], password.as_str(), "{region} {token:?}");
    }
}
