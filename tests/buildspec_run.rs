//! buildspec.yml runs for real: its phases' commands, with bash, in the environment CodeBuild
//! gives a build (the buildspec's variables, the project's overrides, the parameter-store
//! variable, CODEBUILD_* variables, container credentials), against a local SSH source (OpenSSH
//! sshd) and a local CodeCommit stand-in that verifies SigV4. The target ends an exact mirror, and
//! again after the cache directory is emptied (stateless mode).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::codecommit::{CodeCommitServer, ContainerCredentials};
use support::*;

const REGION: &str = "ap-northeast-1";
const AKID: &str = "ASIAEXAMPLEBUILDROLE";
const SECRET: &str = "canary-7f3a9c1e5b-build-role-secret";
const TOKEN: &str = "canary-7f3a9c1e5b-build-role-token";

fn buildspec() -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml"),
        ])
        .output()
        .expect("python3 with PyYAML (installed with cfn-lint by ./scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("buildspec as JSON")
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Run every phase as CodeBuild does: each phase's commands in one bash, stopping at the first
/// failing command; later phases do not run after a failure. Returns (exit code, output).
fn run_build(
    spec: &serde_json::Value,
    env: &BTreeMap<String, String>,
    workdir: &Path,
) -> (i32, String) {
    let mut log = String::new();
    for phase in ["install", "pre_build", "build", "post_build"] {
        let Some(commands) = spec["phases"][phase]["commands"].as_array() else {
            continue;
        };
        let script = commands
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let mut cmd = Command::new("bash");
        cmd.env_clear()
            .envs(env)
            .current_dir(workdir)
            .args(["-e", "-o", "pipefail", "-c", &script]);
        let out = cmd.output().expect("bash");
        log.push_str(&format!(
            "[{phase}]\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        if !out.status.success() {
            return (out.status.code().unwrap_or(-1), log);
        }
    }
    (0, log)
}

#[test]
fn the_buildspec_mirrors_backlog_over_ssh_into_codecommit_and_again_statelessly() {
    let sb = Sandbox::new();
    let source = generate_repo(
        &sb.join("backlog/PROJ/app.git"),
        &GenSpec {
            commits: 80,
            files: 20,
            blob_bytes: 800,
            branches: 2,
            packed: true,
            ..GenSpec::default()
        },
    );
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "deploy", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let root = sb.join("codecommit");
    init_bare(&root.join("app"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, Some(TOKEN))], 4000);
    let creds = ContainerCredentials::start(AKID, SECRET, TOKEN);

    let spec = buildspec();
    let binary = Path::new(env!("CARGO_BIN_EXE_backlog-mirror"));
    let work = sb.join("codebuild/src");
    std::fs::create_dir_all(&work).unwrap();
    let mut env = BTreeMap::new();
    // 1. What the build image has.
    env.insert(
        "PATH".to_string(),
        format!(
            "{}:{}",
            sb.join("bin").display(),
            std::env::var("PATH").unwrap()
        ),
    );
    env.insert("HOME".to_string(), path_str(&sb.home()));
    // 2. The buildspec's own variables (lowest precedence) and its parameter-store variable.
    for (k, v) in spec["env"]["variables"].as_object().unwrap() {
        env.insert(k.clone(), v.as_str().unwrap_or("").to_string());
    }
    let ssm = spec["env"]["parameter-store"].as_object().unwrap();
    assert!(
        ssm.contains_key("SSH_PRIVATE_KEY"),
        "the buildspec reads the key from Parameter Store"
    );
    env.insert("SSH_PRIVATE_KEY".into(), key.private_text.clone());
    // 3. The project's environment, as the CloudFormation stack sets it, pointed at local peers.
    for (k, v) in [
        ("BACKLOG_MIRROR_SOURCE", sshd.url(&source)),
        ("CODECOMMIT_REPOSITORY_NAME", "app".to_string()),
        (
            "BACKLOG_MIRROR_HOST_KEY_FINGERPRINT",
            sshd.host_key_fingerprints().join(","),
        ),
        (
            "BACKLOG_MIRROR_CACHE_DIR",
            path_str(&sb.join("efs/backlog-mirror")),
        ),
        ("BACKLOG_MIRROR_URL", format!("file://{}", binary.display())),
        ("BACKLOG_MIRROR_SHA256", sha256(binary)),
        ("BACKLOG_MIRROR_BIN_DIR", path_str(&sb.join("bin"))),
        // 4. What CodeBuild itself sets.
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.url.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "CODEBUILD_BUILD_ID",
            "backlog-mirror:0b5f1a3c-1".to_string(),
        ),
        ("CODEBUILD_BUILD_NUMBER", "1".to_string()),
        (
            "CODEBUILD_BUILD_ARN",
            format!("arn:aws:codebuild:{REGION}:123456789012:build/backlog-mirror:1"),
        ),
        ("CODEBUILD_INITIATOR", "apigateway".to_string()),
        ("CODEBUILD_SRC_DIR", path_str(&work)),
        ("CODEBUILD_CI", "true".to_string()),
    ]
    .into_iter()
    .chain(server.client_env())
    {
        env.insert(k.to_string(), v);
    }

    let (code, log) = run_build(&spec, &env, &work);
    assert_eq!(code, 0, "{log}");
    assert_mirror(&source, &root.join("app"));
    assert!(
        !log.contains(SECRET) && !log.contains(TOKEN),
        "a secret leaked:\n{log}"
    );
    assert!(
        !log.contains(key.private_text.lines().nth(1).unwrap()),
        "the key leaked:\n{log}"
    );

    // Stateless: the cache directory is gone; the mirror is seeded from CodeCommit and stays exact.
    std::fs::remove_dir_all(sb.join("efs")).unwrap();
    let work_tree = WorkRepo::init(&sb.join("dev"));
    git(
        &work_tree.path,
        &["fetch", "-q", &path_str(&source), "main"],
    );
    git(
        &work_tree.path,
        &["checkout", "-q", "-B", "main", "FETCH_HEAD"],
    );
    work_tree.commit("new.txt", "pushed to Backlog", "new work");
    git(
        &work_tree.path,
        &[
            "push",
            "-q",
            &path_str(&source),
            "main:main",
            "main:refs/heads/feature",
        ],
    );
    let (code, log) = run_build(&spec, &env, &work);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("seeding"),
        "the stateless run did not seed from CodeCommit:\n{log}"
    );
    assert_mirror(&source, &root.join("app"));

    // A binary that does not match its checksum never runs.
    let mut tampered = env.clone();
    tampered.insert("BACKLOG_MIRROR_SHA256".into(), "0".repeat(64));
    tampered.insert("BACKLOG_MIRROR_BIN_DIR".into(), path_str(&sb.join("bin2")));
    tampered.insert(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", sb.join("bin2").display()),
    );
    let (code, log) = run_build(&spec, &tampered, &work);
    assert_ne!(code, 0, "{log}");
    assert!(
        !log.contains("[build]"),
        "the build phase ran after a failed checksum:\n{log}"
    );
    assert!(!sb.join("bin2/backlog-mirror").exists());
}
