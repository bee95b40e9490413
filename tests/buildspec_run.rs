//! buildspec.yml runs for real, as CodeBuild runs it: each phase's commands in one bash, a
//! command's exit status deciding whether the phase goes on, later phases skipped after a failure;
//! with the environment CodeBuild gives a build (the buildspec's variables, then the project's as
//! the CloudFormation stack sets them, CODEBUILD_* variables, container credentials). The binary
//! it runs is the static release build of scripts/dist.sh, copied from S3 (moto_server, through
//! the real AWS CLI) or downloaded over HTTP, and checked against its SHA-256 before it runs; the
//! mirror list is copied from S3 and checked the same way.
//! The sync reads its SSH key from Parameter Store (moto) under the name the stack gives it, pulls
//! from OpenSSH's sshd and pushes to the CodeCommit stand-in, which verifies SigV4. The mirrors
//! are the list's (MANY-CONTRACT.md): every mirror without an override, the one the webhook's
//! BACKLOG_MIRROR_REPO names with one, exit 2 touching nothing for a name the list lacks, and, with
//! the stack's MirrorMetrics emf, one CloudWatch embedded-metric-format line per mirror synced.

use crate::support::stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::codecommit::{CodeCommitServer, ContainerCredentials};
use crate::support::ssm::{Moto, REGION};
use crate::support::*;

const AKID: &str = "ASIAEXAMPLEBUILDROLE";
const SECRET: &str = "canary-7f3a9c1e5b-build-role-secret";
const TOKEN: &str = "canary-7f3a9c1e5b-build-role-token";
const TARGET: &str = "x86_64-unknown-linux-musl";
const KEY_PARAMETER: &str = "/teams/app/backlog-deploy-key";
const BUCKET: &str = "backlog-mirror-artifactbucket-1q2w3e4r5t6y";

/// The static binary scripts/dist.sh built (scripts/test.sh sets the variable).
fn dist_binary() -> PathBuf {
    let path = std::env::var_os("BACKLOG_MIRROR_DIST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "BACKLOG_MIRROR_DIST_BINARY is not set: build the release binary with \
             scripts/dist.sh --target {TARGET} and set it to target/dist/backlog-mirror-{TARGET}, \
             or run ./scripts/test.sh, which does both"
            )
        });
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "BACKLOG_MIRROR_DIST_BINARY={}: {e}: run scripts/dist.sh --target {TARGET} or ./scripts/test.sh",
            path.display()
        )
    });
    assert!(
        bytes.len() > 64 && &bytes[..4] == b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1,
        "BACKLOG_MIRROR_DIST_BINARY={} is not a 64-bit little-endian ELF file",
        path.display()
    );
    assert_eq!(
        u16::from_le_bytes([bytes[0x12], bytes[0x13]]),
        0x3e,
        "BACKLOG_MIRROR_DIST_BINARY={} is not an x86_64 binary: point it at \
         target/dist/backlog-mirror-{TARGET}",
        path.display()
    );
    assert!(
        !has_interpreter(&bytes),
        "BACKLOG_MIRROR_DIST_BINARY={} is dynamically linked; the buildspec ships the static \
         build of scripts/dist.sh --target {TARGET}",
        path.display()
    );
    path
}

/// Does this 64-bit little-endian ELF file ask for a dynamic loader (a PT_INTERP header)?
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run `phases` as CodeBuild runs a buildspec (version 0.2): every command of a phase in the
/// same bash, each checked for its exit status (a multi-line command counts as one, with its
/// last status); the first failure ends the phase and the build. Returns (exit code, log).
fn run_phases(
    spec: &serde_json::Value,
    env: &BTreeMap<String, String>,
    workdir: &Path,
    phases: &[&str],
) -> (i32, String) {
    let mut log = String::new();
    for phase in phases {
        let Some(commands) = spec["phases"][phase]["commands"].as_array() else {
            continue;
        };
        let script: String = commands
            .iter()
            .map(|c| {
                format!(
                    "{}\n__status=$?; if [ $__status -ne 0 ]; then exit $__status; fi\n",
                    c.as_str().unwrap().trim_end()
                )
            })
            .collect();
        let out = Command::new("bash")
            .env_clear()
            .envs(env)
            .current_dir(workdir)
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .expect("bash");
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

const ALL_PHASES: &[&str] = &["install", "pre_build", "build", "post_build"];

/// The environment of a build: the image's, the buildspec's variables, the project's (from the
/// stack), then what CodeBuild itself sets. `local` points the build at the test's peers.
fn build_env(
    sb: &Sandbox,
    spec: &serde_json::Value,
    project: &BTreeMap<String, String>,
    local: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap());
    env.insert("HOME".to_string(), path_str(&sb.home()));
    for (k, v) in spec["env"]["variables"].as_object().unwrap() {
        env.insert(k.clone(), v.as_str().unwrap_or("").to_string());
    }
    assert!(
        spec["env"].get("parameter-store").is_none(),
        "the buildspec names a parameter itself; the project's SshKeyParameterName must decide"
    );
    env.extend(project.clone());
    for (k, v) in [
        ("AWS_REGION", REGION.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "CODEBUILD_BUILD_ID",
            "backlog-mirror:0b5f1a3c-1".to_string(),
        ),
        ("CODEBUILD_BUILD_NUMBER", "1".to_string()),
        (
            "CODEBUILD_BUILD_ARN",
            format!("arn:aws:codebuild:{REGION}:123456789012:build/backlog-mirror:0b5f1a3c-1"),
        ),
        ("CODEBUILD_INITIATOR", "apigateway".to_string()),
        ("CODEBUILD_CI", "true".to_string()),
    ] {
        env.insert(k.to_string(), v);
    }
    for (k, v) in local {
        env.insert(k.to_string(), v.clone());
    }
    env
}

/// The AWS CLI the buildspec calls, checked against moto before a build relies on it.
fn check_aws_cli(env: &BTreeMap<String, String>) {
    let out = Command::new("aws")
        .env_clear()
        .envs(env)
        .args(["s3api", "head-bucket", "--bucket", BUCKET])
        .output()
        .unwrap_or_else(|e| panic!("the AWS CLI is missing ({e}): run ./scripts/test.sh"));
    assert!(
        out.status.success(),
        "the AWS CLI does not reach moto's S3 through AWS_ENDPOINT_URL_S3 (AWS CLI v2 >= 2.13 or \
         v1 >= 1.29 needed): run ./scripts/test.sh\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s3_put(moto: &Moto, key: &str, file: &Path) {
    moto.boto(&format!(
        "s3 = boto3.client('s3', **kw)\n\
         s3.put_object(Bucket='{BUCKET}', Key='{key}', Body=open({file:?}, 'rb').read())",
        file = path_str(file)
    ));
}

#[test]
fn the_buildspec_copies_the_pinned_binary_from_s3_and_mirrors_with_the_stacks_key() {
    let binary = dist_binary();
    let sha = sha256(&binary);
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
    let other = generate_repo(
        &sb.join("backlog/PROJ/lib.git"),
        &GenSpec {
            commits: 30,
            files: 10,
            blob_bytes: 500,
            branches: 1,
            packed: false,
            ..GenSpec::default()
        },
    );
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "deploy", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let root = sb.join("codecommit");
    init_bare(&root.join("app"));
    init_bare(&root.join("lib"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, Some(TOKEN))], 4000);
    let creds = ContainerCredentials::start(AKID, SECRET, TOKEN);
    let moto = Moto::start(None);
    moto.boto(&format!(
        "boto3.client('s3', **kw).create_bucket(Bucket='{BUCKET}', \
         CreateBucketConfiguration={{'LocationConstraint': '{REGION}'}})"
    ));
    let pinned = format!("bin/{sha}/backlog-mirror-{TARGET}");
    s3_put(&moto, &pinned, &binary);
    moto.put_secure_string(KEY_PARAMETER, &key.private_text);
    // The stack's mirror list, content-addressed like the binary: two mirrors.
    let list = sb.join("mirrors.toml");
    std::fs::write(
        &list,
        format!(
            "[[mirror]]\nname = \"PROJ/app\"\nsource = \"{}\"\ntarget = \"codecommit://app\"\n\n\
             [[mirror]]\nname = \"PROJ/lib\"\nsource = \"{}\"\ntarget = \"codecommit://lib\"\n",
            sshd.url(&source),
            sshd.url(&other)
        ),
    )
    .unwrap();
    let list_sha = sha256(&list);
    let list_key = format!("config/{list_sha}/mirrors.toml");
    s3_put(&moto, &list_key, &list);

    // The project's environment as the stack sets it for these parameters.
    let t = stack::template();
    let fingerprints = sshd.host_key_fingerprints().join(",");
    let project = stack::Stack::new(
        &t,
        &[
            ("Architecture", "x86_64"),
            ("ComputeMode", "Lambda"),
            ("SshKeyParameterName", KEY_PARAMETER),
            ("BinarySha256", &sha),
            ("BacklogHostKeyFingerprint", &fingerprints),
            ("MirrorListSha256", &list_sha),
            ("MirrorMetrics", "emf"),
        ],
    )
    .with_physical("ArtifactBucket", BUCKET)
    .build_env();
    assert_eq!(project["BACKLOG_MIRROR_SSH_KEY_SSM"], KEY_PARAMETER);
    assert_eq!(project["BACKLOG_MIRROR_METRICS"], "emf");
    assert_eq!(project["MIRROR_BIN_TARGET"], TARGET);
    assert_eq!(project["MIRROR_LIST_BUCKET"], BUCKET);

    let spec = stack::buildspec();
    let work = sb.join("codebuild/src");
    std::fs::create_dir_all(&work).unwrap();
    let bin_dir = sb.join("tmp/backlog-mirror-bin");
    let list_dir = sb.join("tmp/backlog-mirror-list");
    let mut local = vec![
        // Backlog and CodeCommit are local; so are S3 and Parameter Store. The list names the
        // mirrors; only where the buildspec puts it is the test's.
        (
            "BACKLOG_MIRROR_CONFIG",
            path_str(&list_dir.join("mirrors.toml")),
        ),
        ("AWS_ENDPOINT_URL_S3", moto.endpoint()),
        ("AWS_ENDPOINT_URL_SSM", moto.endpoint()),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.url.clone()),
        // Per-test scratch space instead of the shared /tmp.
        ("MIRROR_BIN_DIR", path_str(&bin_dir)),
        (
            "BACKLOG_MIRROR_CACHE_DIR",
            path_str(&sb.join("tmp/backlog-mirror")),
        ),
        ("CODEBUILD_SRC_DIR", path_str(&work)),
    ];
    local.extend(server.client_env().map(|(k, v)| (k, v)));
    let env = build_env(&sb, &spec, &project, &local);
    check_aws_cli(&env);

    // No override (the schedule's build, or a webhook that names no repository): every mirror.
    let (code, log) = run_phases(&spec, &env, &work, ALL_PHASES);
    assert_eq!(code, 0, "{log}");
    assert_mirror(&source, &root.join("app"));
    assert_mirror(&other, &root.join("lib"));
    // One line per mirror, written as each finishes: mirrors run at once, so in any order.
    let mut synced = metric_lines(&log);
    synced.sort();
    assert_eq!(synced, ["PROJ/app", "PROJ/lib"], "{log}");
    assert!(
        log.contains(&format!("s3://{BUCKET}/{pinned}")),
        "the binary did not come from the stack's bucket:\n{log}"
    );
    assert!(
        log.contains(&format!("s3://{BUCKET}/{list_key}"))
            && log.contains("mirrors.toml.download: OK")
            && log.contains("backlog-mirror-bin/download: OK"),
        "the list and the binary were not both copied and checked:\n{log}"
    );
    assert_eq!(
        std::fs::read(list_dir.join("mirrors.toml")).unwrap(),
        std::fs::read(&list).unwrap(),
        "the list is not where BACKLOG_MIRROR_CONFIG says"
    );
    assert!(
        log.contains("backlog-mirror 0.1"),
        "no --version line:\n{log}"
    );
    for secret in [SECRET, TOKEN, key.private_text.lines().nth(1).unwrap()] {
        assert!(!log.contains(secret), "a secret leaked:\n{log}");
    }

    // Both repositories move; the webhook of PROJ/app names it (the override the API's mapping
    // passes): stateless, the cache gone, that mirror alone is synced, the change relayed from
    // Backlog's upload-pack into CodeCommit with no cache.
    std::fs::remove_dir_all(sb.join("tmp/backlog-mirror")).unwrap();
    for (repo, name) in [(&source, "app"), (&other, "lib")] {
        let dev = WorkRepo::init(&sb.join(&format!("dev-{name}")));
        git(&dev.path, &["fetch", "-q", &path_str(repo), "main"]);
        git(&dev.path, &["checkout", "-q", "-B", "main", "FETCH_HEAD"]);
        dev.commit("new.txt", "pushed to Backlog", "new work");
        git(
            &dev.path,
            &[
                "push",
                "-q",
                &path_str(repo),
                "main:main",
                "main:refs/heads/feature",
            ],
        );
    }
    let lib_before = refs(&root.join("lib"));
    let mut webhook = env.clone();
    webhook.insert("BACKLOG_MIRROR_REPO".into(), "PROJ/app".into());
    let (code, log) = run_phases(&spec, &webhook, &work, ALL_PHASES);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("relaying") && log.contains("no cache") && !log.contains("seeding"),
        "the stateless run did not relay the change:\n{log}"
    );
    assert_mirror(&source, &root.join("app"));
    assert_eq!(
        refs(&root.join("lib")),
        lib_before,
        "a build for PROJ/app synced PROJ/lib"
    );
    assert_eq!(metric_lines(&log), ["PROJ/app"], "{log}");

    // A name the list does not have: exit 2, nothing touched.
    let app_before = refs(&root.join("app"));
    let mut unknown = env.clone();
    unknown.insert("BACKLOG_MIRROR_REPO".into(), "PROJ/nope".into());
    let (code, log) = run_phases(&spec, &unknown, &work, ALL_PHASES);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("PROJ/nope"),
        "the refusal does not name it:\n{log}"
    );
    assert_eq!(refs(&root.join("app")), app_before);
    assert_eq!(refs(&root.join("lib")), lib_before);

    // Someone replaces the pinned object: the checksum stops the build before the file runs.
    let marker = sb.join("tampered-binary-ran");
    let tampered = sb.join("tampered");
    std::fs::write(
        &tampered,
        format!("#!/bin/sh\ntouch {}\n", path_str(&marker)),
    )
    .unwrap();
    s3_put(&moto, &pinned, &tampered);
    let (code, log) = run_phases(&spec, &env, &work, ALL_PHASES);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("FAILED"), "sha256sum did not report:\n{log}");
    assert!(
        !log.contains("[build]"),
        "the build phase ran after a failed checksum:\n{log}"
    );
    assert!(!marker.exists(), "the tampered file ran");
    assert!(
        !bin_dir.join("backlog-mirror").exists(),
        "the previous build's binary is still in place"
    );

    // The same for the mirror list: replaced, or never uploaded, the build stops before the
    // binary is even fetched, and no list is left where the binary reads it.
    s3_put(&moto, &pinned, &binary);
    let tampered_list = sb.join("tampered.toml");
    std::fs::write(
        &tampered_list,
        "[[mirror]]\nname = \"PROJ/app\"\nsource = \"https://evil.example/x.git\"\ntarget = \"codecommit://app\"\n",
    )
    .unwrap();
    s3_put(&moto, &list_key, &tampered_list);
    let (code, log) = run_phases(&spec, &env, &work, ALL_PHASES);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("FAILED"), "sha256sum did not report:\n{log}");
    assert!(!log.contains("[build]"), "{log}");
    assert!(
        !list_dir.join("mirrors.toml").exists() && !bin_dir.join("backlog-mirror").exists(),
        "a list or binary is in place after a failed list check:\n{log}"
    );
    let mut no_list = env.clone();
    no_list.insert("MIRROR_LIST_SHA256".into(), "0".repeat(64));
    let (code, log) = run_phases(&spec, &no_list, &work, ALL_PHASES);
    assert_ne!(code, 0, "{log}");
    assert!(!log.contains("[build]"), "{log}");

    // A checksum nobody uploaded: the copy fails, nothing runs.
    let mut missing = env.clone();
    missing.insert("MIRROR_BIN_SHA256".into(), "0".repeat(64));
    let (code, log) = run_phases(&spec, &missing, &work, ALL_PHASES);
    assert_ne!(code, 0, "{log}");
    assert!(!log.contains("[build]"), "{log}");
}

/// The Mirror of every embedded-metric-format line in a build log, as printed, each checked against
/// what the stack's alarms query (MANY-CONTRACT.md, "Metrics"; CloudWatch's "Specification:
/// Embedded metric format": the log event is the JSON object alone, with _aws.Timestamp in
/// milliseconds and every declared metric a number at the top level).
fn metric_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with('{') && l.contains("\"_aws\""))
        .map(|l| {
            let doc: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a metric line is not JSON alone ({e}): {l}"));
            let meta = &doc["_aws"];
            assert!(
                meta["Timestamp"]
                    .as_u64()
                    .is_some_and(|t| t > 1_600_000_000_000),
                "{l}"
            );
            let directive = &meta["CloudWatchMetrics"][0];
            // The project sets BACKLOG_MIRROR_METRICS_NAMESPACE to what its alarms query.
            assert_eq!(
                directive["Namespace"], "BacklogMirror/backlog-mirror",
                "{l}"
            );
            assert!(
                directive["Dimensions"]
                    .as_array()
                    .is_some_and(|sets| sets.contains(&serde_json::json!(["Mirror"]))),
                "{l}"
            );
            let names: Vec<&str> = directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap())
                .collect();
            for metric in ["Succeeded", "Rounds", "RefsChanged", "Seconds"] {
                assert!(names.contains(&metric), "{metric} missing: {l}");
                assert!(doc[metric].is_number(), "{metric} is not a number: {l}");
            }
            assert_eq!(doc["Succeeded"], 1, "{l}");
            doc["Mirror"]
                .as_str()
                .expect("a Mirror dimension value")
                .to_string()
        })
        .collect()
}

/// `python3 -m http.server` on 127.0.0.1 serving `dir`, stopped on drop.
struct HttpDir {
    child: Child,
    port: u16,
}

impl HttpDir {
    fn start(dir: &Path) -> HttpDir {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "http.server exited on port {port}"
            );
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpDir { child, port }
    }
}

impl Drop for HttpDir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BinaryUrl, for teams hosting releases: the download is checked like the S3 copy, and DNS and
/// connection failures are retried (curl's --retry alone counts a failed lookup as transient but
/// not a refused connection; --retry-all-errors covers both).
#[test]
fn a_binary_url_is_downloaded_checked_and_retried_through_dns_and_connection_errors() {
    let binary = dist_binary();
    let sha = sha256(&binary);
    let sb = Sandbox::new();
    let served = sb.join("releases");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::copy(&binary, served.join(format!("backlog-mirror-{TARGET}"))).unwrap();
    let http = HttpDir::start(&served);
    let spec = stack::buildspec();
    let work = sb.join("src");
    std::fs::create_dir_all(&work).unwrap();
    // The install phase copies the mirror list from the stack's bucket first.
    let moto = Moto::start(None);
    moto.boto(&format!(
        "boto3.client('s3', **kw).create_bucket(Bucket='{BUCKET}', \
         CreateBucketConfiguration={{'LocationConstraint': '{REGION}'}})"
    ));
    let list = sb.join("mirrors.toml");
    std::fs::write(&list, "[[mirror]]\nname = \"PROJ/app\"\n").unwrap();
    let list_sha = sha256(&list);
    s3_put(&moto, &format!("config/{list_sha}/mirrors.toml"), &list);
    let run_install = |name: &str, url: String| {
        let t = stack::template();
        let project = stack::Stack::new(
            &t,
            &[
                ("Architecture", "x86_64"),
                ("BinarySha256", &sha),
                ("BinaryUrl", "https://releases.example.com/backlog-mirror"),
                ("MirrorListSha256", &list_sha),
            ],
        )
        .with_physical("ArtifactBucket", BUCKET)
        .build_env();
        let bin_dir = sb.join(&format!("bin-{name}"));
        let env = build_env(
            &sb,
            &spec,
            &project,
            &[
                ("MIRROR_BIN_URL", url),
                ("MIRROR_BIN_DIR", path_str(&bin_dir)),
                (
                    "BACKLOG_MIRROR_CONFIG",
                    path_str(&sb.join(&format!("list-{name}/mirrors.toml"))),
                ),
                ("AWS_ENDPOINT_URL_S3", moto.endpoint()),
                ("AWS_ACCESS_KEY_ID", "testing".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ],
        );
        let (code, log) = run_phases(&spec, &env, &work, &["install"]);
        (code, log, bin_dir.join("backlog-mirror").exists())
    };

    let (code, log, installed) = run_install(
        "ok",
        format!("http://127.0.0.1:{}/backlog-mirror-{TARGET}", http.port),
    );
    assert_eq!(code, 0, "{log}");
    assert!(installed && log.contains("backlog-mirror 0.1"), "{log}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let failing = [
        ("dns", "http://backlog-mirror-release.invalid/x".to_string()),
        ("refused", format!("http://127.0.0.1:{closed}/x")),
    ];
    let run_install = &run_install;
    std::thread::scope(|scope| {
        let runs: Vec<_> = failing
            .iter()
            .map(|(name, url)| scope.spawn(move || (name, run_install(name, url.clone()))))
            .collect();
        for run in runs {
            let (name, (code, log, installed)) = run.join().unwrap();
            assert_ne!(code, 0, "{name}: {log}");
            assert_eq!(
                log.matches("Will retry").count(),
                5,
                "{name}: not retried five times:\n{log}"
            );
            assert!(!installed, "{name}: {log}");
        }
    });
}
