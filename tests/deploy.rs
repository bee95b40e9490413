//! scripts/deploy.sh, run for real: the AWS CLI v2 against moto's server on 127.0.0.1, deploying
//! the real template (cloudformation/backlog-mirror.yaml).
//!
//! What moto covers: CloudFormation's change sets (create, update, and the empty one the second
//! identical run gets), stack parameters and outputs, the S3 artifact bucket (versioned; the
//! upload, its content and its versions), IAM roles, the API Gateway REST API with its resource,
//! method and deployments (so a new deployment logical id really replaces the old resource),
//! log groups and EventBridge rules, STS, and deleting the stack. What it does not: the resource
//! types it does not model are created as inert placeholders (`moto_cfn.py` prints them; the
//! tests print the list), moto validates almost no resource properties (cfn-lint does, in
//! tests/cloudformation.rs), and nothing runs a build or serves the webhook.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::deploy::{self, BINARY, FINGERPRINT, Fixture, SCRIPT};
use crate::support::moto::REGION;
use crate::support::*;

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/cloudformation/backlog-mirror.yaml"
);
const STACK: &str = "mirror-test";
const RUST_TARGET: &str = "x86_64-unknown-linux-musl";
/// Another small x86_64 ELF executable than `BINARY`.
const OTHER_BINARY: &str = "/usr/bin/false";

fn fixture() -> Fixture {
    Fixture::new(STACK)
}

/// The parameters every stack needs, as flags.
fn base_args() -> Vec<String> {
    deploy::args(
        STACK,
        &[
            "--backlog-project",
            "PROJ",
            "--backlog-repo",
            "app",
            "--codecommit-repo",
            "app",
        ],
    )
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

fn assert_webhook_url(url: &str) -> &str {
    let prefix = format!(".execute-api.{REGION}.amazonaws.com/prod/");
    let (host, secret) = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once(prefix.as_str()))
        .unwrap_or_else(|| panic!("not a webhook URL: {url}"));
    assert!(
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric()),
        "{url}"
    );
    assert!(
        secret.len() == 48
            && secret
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "the secret is not 48 lowercase hex digits: {url}"
    );
    secret
}

#[test]
fn first_deploy_creates_the_stack_and_uploads_the_binary_and_a_second_run_changes_nothing() {
    let fx = fixture();
    // Most parameters from an env file, one overridden by a flag: flags win.
    let env_file = fx.sb.join("prod.env");
    std::fs::write(
        &env_file,
        format!(
            "# the mirror of PROJ/app\n\
             BACKLOG_MIRROR_STACK_NAME={STACK}\n\
             BACKLOG_MIRROR_REGION={REGION}\n\
             BACKLOG_MIRROR_BACKLOG_SPACE=myspace\n\
             BACKLOG_MIRROR_BACKLOG_PROJECT=PROJ\n\
             BACKLOG_MIRROR_BACKLOG_REPO=from-the-file\n\
             BACKLOG_MIRROR_CODECOMMIT_REPO=app\n\
             BACKLOG_MIRROR_HOST_KEY_FINGERPRINT=\"{FINGERPRINT}\"\n\
             \n\
             BACKLOG_MIRROR_ARCHITECTURE=x86_64\n"
        ),
    )
    .expect("env file");
    let args: Vec<String> = [
        "--env-file",
        &env_file.to_string_lossy(),
        "--binary",
        BINARY,
        "--backlog-repo",
        "app",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let (url, first) = fx.deploy_url(&args);
    let secret = assert_webhook_url(&url).to_string();
    let stack = fx.stack();
    assert_eq!(stack["StackStatus"], "CREATE_COMPLETE", "{stack}");
    // The list of one mirror written from the flags (the flag's repository, not the file's).
    let list = fx.sb.join("mirrors.toml");
    fx.aws(&[
        "s3api",
        "get-object",
        "--bucket",
        &fx.output("ArtifactBucketName"),
        "--key",
        &format!("config/{}/mirrors.toml", fx.parameter("MirrorListSha256")),
        &list.to_string_lossy(),
    ]);
    let list = std::fs::read_to_string(&list).expect("mirror list");
    assert!(
        list.contains("name = \"PROJ/app\"\nbacklog-project = \"PROJ\"\nbacklog-repo = \"app\"\n"),
        "{list}"
    );
    assert_eq!(fx.parameter("BacklogSpaceKey"), "myspace");
    assert_eq!(fx.parameter("Architecture"), "x86_64");
    assert_eq!(fx.parameter("WebhookSecret"), secret);
    assert_eq!(fx.output("WebhookURL"), url);

    // The binary, content-addressed, pinned by the stack.
    let sha = sha256_of(Path::new(BINARY));
    assert_eq!(fx.parameter("BinarySha256"), sha);
    let bucket = fx.output("ArtifactBucketName");
    let key = format!("bin/{sha}/backlog-mirror-{RUST_TARGET}");
    let downloaded = fx.sb.join("downloaded");
    fx.aws(&[
        "s3api",
        "get-object",
        "--bucket",
        &bucket,
        "--key",
        &key,
        &downloaded.to_string_lossy(),
    ]);
    assert_eq!(
        sha256_of(&downloaded),
        sha,
        "the uploaded object is not the binary"
    );
    let (versions, _) = fx.versions(&bucket);
    assert_eq!(
        versions.len(),
        2,
        "the binary and the mirror list: {versions:?}"
    );
    assert!(
        first.stderr.contains("uploading the binary"),
        "{}",
        first.stderr
    );

    // Again, same arguments: no change set executed, no upload, the same URL.
    let events = fx.event_count();
    let (again, second) = fx.deploy_url(&args);
    assert_eq!(again, url);
    assert!(
        second.stderr.contains("no change set executed"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("uploading"),
        "re-uploaded:\n{}",
        second.stderr
    );
    assert_eq!(fx.event_count(), events, "the stack changed on a no-op run");
    assert_eq!(
        fx.versions(&bucket).0,
        versions,
        "the binary was uploaded again"
    );

    // A first run stopped between the create and the upload: the next run uploads, and still
    // changes nothing else.
    fx.aws(&["s3api", "delete-object", "--bucket", &bucket, "--key", &key]);
    let (again, third) = fx.deploy_url(&args);
    assert_eq!(again, url);
    assert!(
        third.stderr.contains("uploading the binary"),
        "{}",
        third.stderr
    );
    assert!(
        third.stderr.contains("no change set executed"),
        "{}",
        third.stderr
    );
    fx.aws(&["s3api", "head-object", "--bucket", &bucket, "--key", &key]);
    fx.report_placeholders(&[
        "AWS::S3::Bucket",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Deployment",
    ]);
}

#[test]
fn the_webhook_url_is_kept_across_updates_and_changes_only_with_rotate_webhook_secret() {
    let fx = fixture();
    let (url, _) = fx.deploy_url(&base_args());
    let old_secret = assert_webhook_url(&url).to_string();

    // A real update that does not touch the secret (and turns the alerts on: resources whose
    // condition was false are created).
    let (updated, out) = fx.deploy_url(&with(
        base_args(),
        &[
            "--throttle-rate-limit",
            "2",
            "--alert-email",
            "ops@example.com",
        ],
    ));
    assert!(
        out.stderr.contains("stack mirror-test deployed"),
        "{}",
        out.stderr
    );
    assert_eq!(fx.parameter("ThrottleRateLimit"), "2");
    assert_eq!(fx.parameter("AlertEmail"), "ops@example.com");
    assert!(fx.output("AlertTopicArn").starts_with("arn:aws:sns:"));
    assert_eq!(updated, url, "an update changed the webhook URL");

    let (rotated, out) = fx.deploy_url(&with(base_args(), &["--rotate-webhook-secret"]));
    let new_secret = assert_webhook_url(&rotated).to_string();
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        rotated.replace(&new_secret, ""),
        url.replace(&old_secret, ""),
        "only the secret may change"
    );
    assert!(out.stderr.contains("rotated"), "{}", out.stderr);
    assert!(!out.stderr.contains(&old_secret), "{}", out.stderr);
    assert_eq!(fx.parameter("WebhookSecret"), new_secret);

    let (kept, _) = fx.deploy_url(&base_args());
    assert_eq!(kept, rotated, "a plain run changed the rotated secret");
}

/// The deployment logical id a rendered template uses (every occurrence must agree).
fn deployment_id(rendered: &str) -> String {
    let mut ids: Vec<String> = rendered
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("WebhookDeployment"))
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "want one deployment id: {ids:?}");
    let hash = ids[0].strip_prefix("WebhookDeployment").expect("prefix");
    assert!(
        hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "not WebhookDeployment<12 hex>: {}",
        ids[0]
    );
    ids[0].clone()
}

fn render(fx: &Fixture, extra: &[&str]) -> (PathBuf, String) {
    let out_path = fx.sb.join(&format!(
        "rendered-{}.yaml",
        extra.join("_").replace('/', "-")
    ));
    let args = with(
        vec![
            "--render-only".into(),
            out_path.to_string_lossy().into_owned(),
        ],
        extra,
    );
    // No endpoint, no credentials: rendering makes no AWS call.
    let mut cmd = Command::new("bash");
    isolate(&mut cmd);
    cmd.arg(SCRIPT).args(&args).env("HOME", fx.sb.home());
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&out_path).expect("rendered template");
    (out_path, text)
}

#[test]
fn a_changed_allowed_source_ips_gives_a_new_deployment() {
    let fx = fixture();
    let original = std::fs::read_to_string(TEMPLATE).expect("template");

    let (path, open) = render(&fx, &[]);
    let (_, open_again) = render(&fx, &[]);
    let (_, limited) = render(&fx, &["--allowed-source-ips", "203.0.113.0/24"]);
    let (_, renamed) = render(&fx, &["--project-name", "other"]);
    assert_eq!(open, open_again, "rendering is not deterministic");
    let ids = [
        deployment_id(&open),
        deployment_id(&limited),
        deployment_id(&renamed),
    ];
    assert_ne!(
        ids[0], ids[1],
        "AllowedSourceIps did not change the deployment id"
    );
    assert_ne!(
        ids[0], ids[2],
        "ProjectName did not change the deployment id"
    );
    assert_eq!(
        open.replace(&ids[0], "WebhookDeployment"),
        original,
        "rendering changed more than the deployment's logical id"
    );
    let lint = Command::new("cfn-lint")
        .arg(&path)
        .output()
        .expect("cfn-lint is not installed: run ./scripts/test.sh");
    assert!(
        lint.status.success(),
        "the rendered template fails cfn-lint:\n{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    // Deployed: the new id replaces the old deployment resource.
    fx.deploy_url(&base_args());
    let before = fx.deployment_ids();
    assert_eq!(before.len(), 1, "{before:?}");
    fx.deploy_url(&with(
        base_args(),
        &["--allowed-source-ips", "203.0.113.0/24"],
    ));
    let after = fx.deployment_ids();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the deployment was not replaced");
    assert_eq!(fx.parameter("AllowedSourceIps"), "203.0.113.0/24");
    // And it stays: the next run with the same list keeps it.
    fx.deploy_url(&with(
        base_args(),
        &["--allowed-source-ips", "203.0.113.0/24"],
    ));
    assert_eq!(fx.deployment_ids(), after);
}

#[test]
fn delete_empties_every_version_and_leaves_no_stack_and_no_objects() {
    let fx = fixture();
    fx.deploy_url(&base_args());
    // A second binary, and what a build's S3 cache leaves in a versioned bucket: an overwritten
    // object and a delete marker.
    fx.deploy_url(&with(base_args(), &["--binary", OTHER_BINARY]));
    let bucket = fx.output("ArtifactBucketName");
    let blob = fx.sb.join("blob");
    std::fs::write(&blob, "cache").expect("blob");
    for _ in 0..2 {
        fx.aws(&[
            "s3api",
            "put-object",
            "--bucket",
            &bucket,
            "--key",
            "cache/mirror.tar",
            "--body",
            &blob.to_string_lossy(),
        ]);
    }
    fx.aws(&[
        "s3api",
        "delete-object",
        "--bucket",
        &bucket,
        "--key",
        "cache/mirror.tar",
    ]);
    let (versions, markers) = fx.versions(&bucket);
    assert_eq!(
        (versions.len(), markers),
        (5, 1),
        "two binaries, the mirror list, the cache object twice: {versions:?}"
    );

    let out = fx.deploy(&[
        "--delete".into(),
        "--stack-name".into(),
        STACK.into(),
        "--region".into(),
        REGION.into(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gone = fx.aws_raw(&["cloudformation", "describe-stacks", "--stack-name", STACK]);
    assert!(gone.stderr.contains("does not exist"), "{gone:?}");
    // moto deletes a stack whose bucket is not empty and leaves the bucket behind (AWS fails the
    // delete): either way, a version left over shows here.
    let buckets = fx.aws(&["s3api", "list-buckets"]);
    assert_eq!(
        buckets["Buckets"].as_array().map_or(0, Vec::len),
        0,
        "a bucket is left: {buckets}"
    );

    let again = fx.deploy(&[
        "--delete".into(),
        "--stack-name".into(),
        STACK.into(),
        "--region".into(),
        REGION.into(),
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing to delete"),
        "{}",
        again.stderr
    );
}

#[test]
fn bad_input_is_exit_2_with_one_line_naming_the_flag_and_creates_nothing() {
    let fx = fixture();
    let bad_env = fx.sb.join("bad.env");
    std::fs::write(
        &bad_env,
        "BACKLOG_MIRROR_BACKLOG_SPACE=myspace\nnot a setting\n",
    )
    .expect("env");
    let unknown_env = fx.sb.join("unknown.env");
    std::fs::write(&unknown_env, "BACKLOG_MIRROR_BACKLOG_SPAEC=myspace\n").expect("env");
    let without_repo: Vec<String> = {
        let args = base_args();
        let at = args
            .iter()
            .position(|a| a == "--codecommit-repo")
            .expect("flag");
        args[..at].iter().chain(&args[at + 2..]).cloned().collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            with(base_args(), &["--no-such-flag", "x"]),
            "--no-such-flag",
        ),
        (
            with(base_args(), &["--architecture", "sparc"]),
            "--architecture",
        ),
        (
            with(base_args(), &["--binary", "/nonexistent/backlog-mirror"]),
            "--binary",
        ),
        (with(base_args(), &["--binary", SCRIPT]), "--binary"),
        // An x86_64 binary for an arm64 stack.
        (with(base_args(), &["--architecture", "arm64"]), "--binary"),
        (
            with(base_args(), &["--allowed-source-ips", "10.0.0.0/33"]),
            "--allowed-source-ips",
        ),
        (
            with(base_args(), &["--host-key-fingerprint", "MD5:aa:bb"]),
            "--host-key-fingerprint",
        ),
        (
            with(base_args(), &["--backlog-domain", "example.com"]),
            "--backlog-domain",
        ),
        (
            with(base_args(), &["--parameter", "WebhookSecret=abc"]),
            "--parameter",
        ),
        (
            with(base_args(), &["--parameter", "NoSuchParameter=1"]),
            "--parameter",
        ),
        (
            with(base_args(), &["--env-file", &bad_env.to_string_lossy()]),
            "--env-file",
        ),
        (
            with(base_args(), &["--env-file", &unknown_env.to_string_lossy()]),
            "BACKLOG_SPAEC",
        ),
        (
            with(base_args(), &["--delete", "--rotate-webhook-secret"]),
            "--delete",
        ),
        (with(base_args(), &["--backlog-space"]), "--backlog-space"),
        (without_repo, "--codecommit-repo"),
    ];
    for (args, flag) in cases {
        let out = fx.deploy(&args);
        assert_eq!(out.code, 2, "{args:?}: want exit 2:\n{}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: want one line:\n{}", out.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(flag),
            "{args:?}: the error does not name {flag}: {}",
            lines[0]
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }

    // No region anywhere (HOME holds no AWS configuration).
    let without_region: Vec<String> = {
        let args = base_args();
        let at = args.iter().position(|a| a == "--region").expect("flag");
        args[..at].iter().chain(&args[at + 2..]).cloned().collect()
    };
    let out = fx.deploy(&without_region);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.only_error().contains("--region"), "{}", out.stderr);

    // An AWS CLI that is not v2.
    let mut cmd = fx.deploy_cmd(&base_args());
    cmd.env("BACKLOG_MIRROR_AWS_CLI", "/bin/false");
    let out = run(&mut cmd);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.only_error().contains("AWS CLI v2"), "{}", out.stderr);

    fx.assert_nothing_created();
}

#[test]
fn help_documents_every_flag_and_every_template_parameter() {
    let mut cmd = Command::new("bash");
    isolate(&mut cmd);
    let out = run(cmd.args([SCRIPT, "--help"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let help = out.stdout;
    // Every parameter of the template is named in the help (its flag, or what sets it).
    let template = std::fs::read_to_string(TEMPLATE).expect("template");
    let parameters: Vec<&str> = template
        .lines()
        .skip_while(|l| *l != "Parameters:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.strip_suffix(':'))
        .collect();
    assert!(parameters.len() > 10, "{parameters:?}");
    for parameter in parameters {
        assert!(
            help.contains(parameter),
            "--help does not mention {parameter}"
        );
    }
    // Every flag the help lists is accepted (an unknown one is refused before anything else).
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.strip_prefix("  --"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(flags.len() > 20, "{flags:?}");
    let sb = Sandbox::new();
    for flag in flags {
        let mut cmd = Command::new("bash");
        isolate(&mut cmd);
        // No AWS CLI, and an endpoint nothing listens on: a flag alone can never reach AWS.
        cmd.arg(SCRIPT)
            .arg(format!("--{flag}"))
            .env("HOME", sb.home())
            .env("BACKLOG_MIRROR_AWS_CLI", "/bin/false")
            .env("BACKLOG_MIRROR_AWS_ENDPOINT_URL", "http://127.0.0.1:9");
        let out = run(&mut cmd);
        assert!(
            !out.stderr.contains("unknown flag"),
            "--{flag} is in --help but refused: {}",
            out.stderr
        );
    }
}

#[test]
fn the_readme_deploy_section_uses_only_flags_and_variables_the_script_has() {
    let mut cmd = Command::new("bash");
    isolate(&mut cmd);
    let help = run(cmd.args([SCRIPT, "--help"])).stdout;
    let flag_listed = |flag: &str| {
        help.lines()
            .any(|l| l.strip_prefix("  ").and_then(|l| l.split(' ').next()) == Some(flag))
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Deploy on AWS\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Deploy on AWS section");
    let mut checked = 0;
    for block in section.split("```").skip(1).step_by(2) {
        let joined = block.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if let Some(args) = line.strip_prefix("scripts/deploy.sh") {
                for flag in args.split_whitespace().filter(|a| a.starts_with("--")) {
                    assert!(
                        flag_listed(flag),
                        "README runs deploy.sh with {flag}, not in --help"
                    );
                    checked += 1;
                }
            }
            if let Some((key, _)) = line.split_once('=')
                && let Some(option) = key.strip_prefix("BACKLOG_MIRROR_")
            {
                let flag = format!("--{}", option.to_lowercase().replace('_', "-"));
                assert!(
                    flag_listed(&flag),
                    "README sets {key}, but {flag} is not in --help"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10,
        "found only {checked} flags in the README's deploy commands"
    );
}
