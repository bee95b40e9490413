//! The SSH key read from Parameter Store (moto's server on 127.0.0.1 standing in for SSM), and the
//! three ways that goes wrong, each one clear line.

use crate::support::ssm::{Moto, REGION};
use crate::support::*;

struct Fixture {
    sb: Sandbox,
    sshd: Sshd,
    source: std::path::PathBuf,
    target: std::path::PathBuf,
    key: KeyPair,
}

fn fixture() -> Fixture {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("", &[]);
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "k", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    Fixture {
        sb,
        sshd,
        source,
        target,
        key,
    }
}

impl Fixture {
    fn sync(&self, moto: &Moto, creds: (&str, &str), extra: &[&str]) -> Run {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .args(["sync", "--source", &self.sshd.url(&self.source), "--target"])
            .arg(&self.target)
            .arg("--cache-dir")
            .arg(self.sb.cache_dir())
            .args([
                "--host-key-fingerprint",
                &self.sshd.host_key_fingerprints()[0],
            ])
            .args(extra);
        for (k, v) in moto.env(creds.0, creds.1) {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }
}

#[test]
fn the_key_is_read_from_a_secure_string_with_decryption() {
    let fx = fixture();
    let moto = Moto::start(None);
    moto.put_secure_string("/backlog-mirror/ssh-key", &fx.key.private_text);
    let out = fx.sync(
        &moto,
        ("testing", CANARY),
        &["--ssh-key-ssm", "/backlog-mirror/ssh-key"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    assert_no_secret(&out, &[fx.key.private_text.lines().nth(1).unwrap()]);
}

#[test]
fn a_missing_parameter_and_a_wrong_region_are_usage_errors() {
    let fx = fixture();
    let moto = Moto::start(None);
    moto.put_secure_string("/backlog-mirror/ssh-key", &fx.key.private_text);

    let out = fx.sync(
        &moto,
        ("testing", "testing"),
        &["--ssh-key-ssm", "/backlog-mirror/nope"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--ssh-key-ssm '/backlog-mirror/nope'"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(REGION), "{}", out.stderr);

    let out = fx.sync(
        &moto,
        ("testing", "testing"),
        &[
            "--ssh-key-ssm",
            "/backlog-mirror/ssh-key",
            "--region",
            "eu-west-1",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("eu-west-1") && out.stderr.contains("--region"),
        "{}",
        out.stderr
    );
    assert!(refs(&fx.target).is_empty());
}

#[test]
fn access_denied_is_one_clear_line_with_exit_1() {
    let fx = fixture();
    // Four free setup calls, then moto enforces IAM: the user may do nothing with SSM.
    let moto = Moto::start(Some(4));
    moto.put_secure_string("/backlog-mirror/ssh-key", &fx.key.private_text);
    let keys = moto.boto(
        "iam.create_user(UserName='build')\n\
         iam.put_user_policy(UserName='build', PolicyName='deny', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Deny', 'Action': 'ssm:*', 'Resource': '*'}]}))\n\
         k = iam.create_access_key(UserName='build')['AccessKey']\n\
         print(k['AccessKeyId'], k['SecretAccessKey'])",
    );
    let (id, secret) = keys.split_once(' ').expect("access key");
    let out = fx.sync(
        &moto,
        (id, secret),
        &["--ssh-key-ssm", "/backlog-mirror/ssh-key"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("not allowed"), "{}", out.stderr);
    assert!(out.stderr.contains("ssm:GetParameters"), "{}", out.stderr);
    assert_no_secret(&out, &[secret]);
    assert!(refs(&fx.target).is_empty());
}

/// A Parameter Store that takes the request and never answers (a stalled proxy, a black-holed
/// endpoint) is bounded by --network-timeout like every other network step: the run ends with
/// one line saying it could not reach Parameter Store, and the target is untouched. Without the
/// SDK's timeouts this run waits for ever.
#[test]
fn a_silent_parameter_store_is_bounded_by_the_network_timeout() {
    use crate::support::fault_proxy::{Direction, Fault, FaultProxy};
    let fx = fixture();
    let moto = Moto::start(None);
    moto.put_secure_string("/backlog-mirror/ssh-key", &fx.key.private_text);
    let endpoint = moto.endpoint();
    let port: u16 = endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("moto's port");
    let proxy = FaultProxy::start(
        port,
        Fault::Stall {
            dir: Direction::Downstream,
            after: 0,
        },
    );
    let mut cmd = bin();
    cmd.env("HOME", fx.sb.home())
        .args(["sync", "--source", &fx.sshd.url(&fx.source), "--target"])
        .arg(&fx.target)
        .arg("--cache-dir")
        .arg(fx.sb.cache_dir())
        .args([
            "--host-key-fingerprint",
            &fx.sshd.host_key_fingerprints()[0],
        ])
        .args(["--ssh-key-ssm", "/backlog-mirror/ssh-key"])
        .args(["--network-timeout", "1s"]);
    for (k, v) in moto.env("testing", CANARY) {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL_SSM", proxy.rewrite(&endpoint));
    let out = run(&mut cmd);
    assert!(proxy.fired() >= 1, "the proxy never held a request");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--ssh-key-ssm '/backlog-mirror/ssh-key'")
            && out.stderr.contains("Parameter Store"),
        "{}",
        out.stderr
    );
    assert!(refs(&fx.target).is_empty());
}
