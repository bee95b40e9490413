//! scripts/deploy.sh, run for real: the AWS CLI v2 against moto's server on 127.0.0.1, deploying
//! the real template (cloudformation/backlog-mirror.yaml).
//!
//! What moto covers: CloudFormation's change sets (create, update from a template in S3, and the
//! empty one the second identical run gets), stack parameters (NoEcho shown as `****`) and
//! outputs, the S3 artifact bucket (versioned; the uploads, their content and versions), IAM
//! roles, the API Gateway REST API with its resource, method and deployments (so a new
//! deployment logical id really replaces the old resource), log groups, EventBridge rules,
//! CodeBuild projects and builds, CloudWatch alarms and metrics, SNS, STS, and deleting the
//! stack. What it does not: the resource types it does not model are created as inert
//! placeholders (`moto_cfn.py` prints them; the tests print the list), moto validates almost no
//! resource properties (cfn-lint does, in tests/cloudformation.rs), its CodeBuild runs nothing
//! (every build SUCCEEDED), its alarms are never evaluated, and API Gateway's test-invoke-method
//! runs the stack's mapping through the emulation of tests/apigateway.rs (moto_cfn.py).

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
            "--codecommit-prefix",
            "app",
        ],
    )
}

fn without(args: Vec<String>, flag: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect("flag");
    args[..at].iter().chain(&args[at + 2..]).cloned().collect()
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

/// The secret is printed once, inside the URL, and is in no stack parameter or output (it is
/// NoEcho): `--show-webhook-url` reads it back from API Gateway, where it is the API's path.
#[test]
fn first_deploy_prints_the_url_once_uploads_first_and_a_second_run_changes_nothing() {
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
             BACKLOG_MIRROR_CODECOMMIT_PREFIX=app\n\
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
    // Created holding its bucket, then updated to the whole template.
    let stack = fx.stack();
    assert_eq!(stack["StackStatus"], "UPDATE_COMPLETE", "{stack}");
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
    assert_eq!(
        fx.parameter("WebhookSecret"),
        "****",
        "the secret is echoed"
    );
    assert_eq!(format!("{}{secret}", fx.output("WebhookEndpoint")), url);
    let described = fx.stack().to_string();
    assert!(
        !described.contains(&secret),
        "DescribeStacks shows the secret: {described}"
    );

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
    let mut keys: Vec<&str> = versions
        .iter()
        .map(|(k, _)| k.split('/').next().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["bin", "config", "templates"],
        "the binary, the mirror list and the template: {versions:?}"
    );
    assert!(
        first.stderr.contains("uploading the binary"),
        "{}",
        first.stderr
    );

    // Again, same arguments: no change set executed, no upload, the same URL, not printed.
    let events = fx.event_count();
    let second = fx.deploy_update(&args);
    assert_eq!(fx.show_url(), url);
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
    let third = fx.deploy_update(&args);
    assert_eq!(fx.show_url(), url);
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
        "AWS::CodeBuild::Project",
    ]);
}

#[test]
fn the_webhook_url_is_kept_across_updates_and_changes_only_with_rotate_webhook_secret() {
    let fx = fixture();
    let (url, _) = fx.deploy_url(&base_args());
    let old_secret = assert_webhook_url(&url).to_string();

    // A real update that does not touch the secret (and turns the alerts on: resources whose
    // condition was false are created).
    let out = fx.deploy_update(&with(
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
    assert_eq!(fx.show_url(), url, "an update changed the webhook URL");

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
    assert_eq!(fx.parameter("WebhookSecret"), "****");

    fx.deploy_update(&base_args());
    assert_eq!(
        fx.show_url(),
        rotated,
        "a plain run changed the rotated secret"
    );
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

fn assert_cfn_lint(template: &Path) {
    let lint = Command::new("cfn-lint")
        .arg(template)
        .output()
        .expect("cfn-lint is not installed: run ./scripts/test.sh");
    assert!(
        lint.status.success(),
        "{} fails cfn-lint:\n{}",
        template.display(),
        String::from_utf8_lossy(&lint.stdout)
    );
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
    assert_cfn_lint(&path);

    // Deployed: the new id replaces the old deployment resource.
    fx.deploy_url(&base_args());
    let before = fx.deployment_ids();
    assert_eq!(before.len(), 1, "{before:?}");
    fx.deploy_update(&with(
        base_args(),
        &["--allowed-source-ips", "203.0.113.0/24"],
    ));
    let after = fx.deployment_ids();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the deployment was not replaced");
    assert_eq!(fx.parameter("AllowedSourceIps"), "203.0.113.0/24");
    // And it stays: the next run with the same list keeps it.
    fx.deploy_update(&with(
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
    fx.deploy_update(&with(base_args(), &["--binary", OTHER_BINARY]));
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
        (6, 1),
        "two binaries, the mirror list, the template, the cache object twice: {versions:?}"
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
    let without_repo = without(base_args(), "--codecommit-repo");
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
        (
            with(base_args(), &["--mirror-metrics", "all"]),
            "--mirror-metrics",
        ),
        (with(base_args(), &["--verify", "--delete"]), "--verify"),
        // What the build may force-push to is chosen, never defaulted: every repository only
        // when '' is given (tests/deploy_mirror_list.rs).
        (
            without(base_args(), "--codecommit-prefix"),
            "--codecommit-prefix is required to create stack mirror-test",
        ),
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
    let out = fx.deploy(&without(base_args(), "--region"));
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
fn the_deploy_guide_uses_only_flags_and_variables_the_script_has() {
    let mut cmd = Command::new("bash");
    isolate(&mut cmd);
    let help = run(cmd.args([SCRIPT, "--help"])).stdout;
    let flag_listed = |flag: &str| {
        help.lines()
            .any(|l| l.strip_prefix("  ").and_then(|l| l.split(' ').next()) == Some(flag))
    };
    let section = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md"))
        .expect("docs/deploy.md");
    let mut checked = 0;
    for block in section.split("```").skip(1).step_by(2) {
        let joined = block.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if let Some(args) = line.strip_prefix("scripts/deploy.sh") {
                for flag in args.split_whitespace().filter(|a| a.starts_with("--")) {
                    assert!(
                        flag_listed(flag.split('=').next().unwrap()),
                        "docs/deploy.md runs deploy.sh with {flag}, not in --help"
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
                    "docs/deploy.md sets {key}, but {flag} is not in --help"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10,
        "found only {checked} flags in docs/deploy.md's deploy commands"
    );
}

/// A new stack is its bucket alone until the binary, the list and the template are in it: a
/// create stopped at the upload leaves nothing that could start a build (no project, no
/// schedule, no API), and the next run finishes it. The first version's bucket is the
/// template's, so the whole template leaves it as it is.
#[test]
fn a_create_stopped_at_the_upload_leaves_nothing_that_could_start_a_build() {
    let fx = fixture();
    // The AWS CLI, with every upload failing as a lost connection would make it fail.
    let wrapper = fx.sb.join("aws-without-uploads");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = cp ]; then echo 'upload failed: Connection reset by peer' >&2; exit 1; fi\ndone\nexec {} \"$@\"\n",
            fx.aws
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let mut cmd = fx.deploy_cmd(&base_args());
    cmd.env("BACKLOG_MIRROR_AWS_CLI", &wrapper);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("uploading the binary") && out.stderr.contains("Connection reset"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let resources = fx.aws(&[
        "cloudformation",
        "list-stack-resources",
        "--stack-name",
        STACK,
    ]);
    let mut logical: Vec<&str> = resources["StackResourceSummaries"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["LogicalResourceId"].as_str().unwrap())
        .collect();
    logical.sort();
    assert_eq!(logical, ["ArtifactBucket", "ArtifactBucketPolicy"]);
    for (call, field) in [
        (["codebuild", "list-projects"], "projects"),
        (["events", "list-rules"], "Rules"),
        (["apigateway", "get-rest-apis"], "items"),
    ] {
        let listed = fx.aws(&call);
        assert_eq!(
            listed[field].as_array().map_or(0, Vec::len),
            0,
            "{call:?}: {listed}"
        );
    }
    let first = fx.sb.join("first-version.yaml");
    let body = fx.aws(&["cloudformation", "get-template", "--stack-name", STACK])["TemplateBody"]
        .as_str()
        .expect("a YAML template")
        .to_string();
    std::fs::write(&first, &body).expect("template");
    assert_cfn_lint(&first);
    let (first, whole) = (
        crate::support::stack::load(&first),
        crate::support::stack::template(),
    );
    for resource in ["ArtifactBucket", "ArtifactBucketPolicy"] {
        assert_eq!(
            first["Resources"][resource], whole["Resources"][resource],
            "the first version's {resource} differs from the template's"
        );
    }

    // The next run uploads and finishes the create.
    let (url, out) = fx.deploy_url(&base_args());
    assert_webhook_url(&url);
    assert!(
        out.stderr.contains("uploading the binary"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fx.aws(&["events", "list-rules"])["Rules"]
            .as_array()
            .map_or(0, Vec::len),
        1,
        "the schedule"
    );
}

/// CloudFormation reads the template from the stack's bucket (a TemplateURL takes 1 MB; a
/// TemplateBody 51,200 bytes), so a template past 51,200 bytes is created and updated like any
/// other.
#[test]
fn a_template_past_the_51200_byte_body_limit_is_created_and_updated_through_the_bucket() {
    let fx = fixture();
    let mut text = std::fs::read_to_string(TEMPLATE).expect("template");
    while text.len() <= 60_000 {
        text.push_str(
            "# A comment that stands for the next feature's resources and their reasons.\n",
        );
    }
    let big = fx.sb.join("big.yaml");
    std::fs::write(&big, &text).expect("big template");
    let args = with(base_args(), &["--template", &big.to_string_lossy()]);
    fx.deploy_url(&args);
    let deployed =
        fx.aws(&["cloudformation", "get-template", "--stack-name", STACK])["TemplateBody"]
            .as_str()
            .expect("a YAML template")
            .len();
    assert!(deployed > 60_000, "{deployed} bytes deployed");
    let templates: Vec<String> = fx
        .versions(&fx.bucket())
        .0
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("templates/"))
        .collect();
    assert_eq!(templates.len(), 1, "{templates:?}");
    fx.deploy_update(&with(args, &["--throttle-rate-limit", "2"]));
    assert_eq!(fx.parameter("ThrottleRateLimit"), "2");
}

/// `scripts/deploy.sh --verify` of the test stack, waiting 2 s at most.
fn verify(fx: &Fixture) -> Run {
    fx.deploy(
        &[
            "--verify",
            "--verify-timeout",
            "2",
            "--stack-name",
            STACK,
            "--region",
            REGION,
        ]
        .map(String::from),
    )
}

/// `--verify` with moto standing for AWS: Backlog's request shape through test-invoke-method
/// (moto_cfn.py runs the stack's own mapping as API Gateway would, then StartBuild of moto's
/// CodeBuild), the builds it started, each alarm's metric, the alert subscription, the secret in
/// no stack answer; one line per check. What moto cannot answer shows as AWS would show its
/// failure: its CodeBuild ends every build SUCCEEDED, so the build that must fail is reported
/// FAILED, and its alarms are never evaluated (unconfirmed).
#[test]
fn verify_checks_api_builds_alarm_metrics_and_secret_and_says_what_it_could_not_confirm() {
    let fx = fixture();
    // Discovery's API key, in Parameter Store as a SecureString: --verify describes it, and
    // never reads or shows its value.
    let (key, value) = (
        "/backlog-mirror/api-key",
        "backlog-api-key-0123456789abcdef",
    );
    fx.aws(&[
        "ssm",
        "put-parameter",
        "--name",
        key,
        "--type",
        "SecureString",
        "--value",
        value,
    ]);
    fx.deploy_url(&with(base_args(), &["--backlog-api-key-ssm", key]));
    let verify = || {
        let out = verify(&fx);
        let secret = fx.show_url().rsplit('/').next().unwrap().to_string();
        for hidden in [secret.as_str(), value] {
            assert!(
                !out.stdout.contains(hidden) && !out.stderr.contains(hidden),
                "--verify printed a secret"
            );
        }
        out
    };
    let line = |out: &Run, verdict: &str, text: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{verdict:<11} ")) && l.contains(text))
            .unwrap_or_else(|| panic!("no '{verdict}' line with '{text}':\n{}", out.stdout))
            .to_string()
    };

    // Without alerts: the API, the routing, the build and the secret, all confirmed.
    let quiet = verify();
    assert_eq!(quiet.code, 0, "{}\n{}", quiet.stdout, quiet.stderr);
    line(
        &quiet,
        "ok",
        "the webhook answered 200 to Backlog's push of PROJ/app",
    );
    line(
        &quiet,
        "ok",
        "took the form template for 'application/x-www-form-urlencoded; charset=UTF-8' and named mirror PROJ/app",
    );
    line(&quiet, "ok", "of PROJ/app SUCCEEDED");
    line(
        &quiet,
        "ok",
        "the webhook answered 200 to a project webhook's issue event and started no build",
    );
    line(
        &quiet,
        "ok",
        &format!("parameter {key} is a SecureString under the default aws/ssm key"),
    );
    line(
        &quiet,
        "ok",
        "the webhook secret shows in no CloudFormation answer",
    );
    assert_eq!(quiet.stdout.lines().count(), 6, "{}", quiet.stdout);
    assert!(
        quiet
            .stderr
            .contains("verify: 6 confirmed, 0 failed, 0 unconfirmed"),
        "{}",
        quiet.stderr
    );

    // With alerts: a build that must fail, each alarm's metric, the subscription.
    fx.deploy_update(&with(base_args(), &["--alert-email", "ops@example.com"]));
    let out = verify();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let probe = line(
        &out,
        "FAILED",
        "of a name not in the list ended SUCCEEDED, not FAILED",
    );
    for (alarm, metric) in [
        ("backlog-mirror-mirror-failing", "FailedBuilds"),
        ("backlog-mirror-mirrors-silent", "Builds"),
    ] {
        line(
            &out,
            "unconfirmed",
            &format!(
                "alarm {alarm}: its metric AWS/CodeBuild {metric} (ProjectName=backlog-mirror) has no data"
            ),
        );
    }
    line(
        &out,
        "unconfirmed",
        "alarm backlog-mirror-mirror-failing did not go to ALARM",
    );
    line(&out, "ok", "the alert email subscription is confirmed");
    assert!(
        out.stderr
            .contains("verify: 8 confirmed, 1 failed, 3 unconfirmed"),
        "{}",
        out.stderr
    );
    // What CodeBuild was asked: the mirror, then a name no list holds, as the one override each.
    let build_of = |l: &str| l.split_whitespace().nth(2).unwrap().to_string();
    let synced = build_of(&line(&out, "ok", "of PROJ/app SUCCEEDED"));
    for (build, name) in [
        (synced, "PROJ/app"),
        (build_of(&probe), "backlog-mirror-verify/not-in-the-list"),
    ] {
        let got = fx.aws(&["codebuild", "batch-get-builds", "--ids", &build]);
        assert_eq!(
            got["builds"][0]["environment"]["environmentVariables"],
            serde_json::json!([{"name": "BACKLOG_MIRROR_REPO", "value": name, "type": "PLAINTEXT"}]),
            "{got}"
        );
    }

    // CodeBuild's metrics, as it publishes them for those builds: now they have data.
    for (metric, value) in [
        ("Builds", "2"),
        ("FailedBuilds", "1"),
        ("SucceededBuilds", "1"),
    ] {
        fx.aws(&[
            "cloudwatch",
            "put-metric-data",
            "--namespace",
            "AWS/CodeBuild",
            "--metric-name",
            metric,
            "--dimensions",
            "ProjectName=backlog-mirror",
            "--value",
            value,
            "--unit",
            "Count",
        ]);
    }
    let out = verify();
    for (alarm, metric) in [
        ("backlog-mirror-mirror-failing", "FailedBuilds"),
        ("backlog-mirror-mirrors-silent", "Builds"),
    ] {
        line(
            &out,
            "ok",
            &format!(
                "alarm {alarm}: its metric AWS/CodeBuild {metric} (ProjectName=backlog-mirror) has data"
            ),
        );
    }
}

/// A list that discovers its repositories ([discover]) needs the Backlog API key's parameter,
/// the one the build may read: refused without it (exit 2, nothing created); given, its name
/// reaches the build, and --verify says the parameter is missing, that a project webhook's issue
/// event starts no build, and that no [[mirror]] names a push to post (a parameter that is
/// there: verify_checks_api_builds_alarm_metrics_and_secret_and_says_what_it_could_not_confirm).
#[test]
fn a_discovering_list_needs_the_api_key_which_reaches_the_build_and_verify_checks() {
    let fx = fixture();
    let list = fx.sb.join("space.toml");
    std::fs::write(
        &list,
        "[defaults]\nbacklog-space = \"myspace\"\ncodecommit-prefix = \"app-\"\n\
         create-target = true\n\n[discover]\nprojects = [\"*\"]\n",
    )
    .expect("list");
    let args = deploy::args(
        STACK,
        &[
            "--mirror-list",
            &list.to_string_lossy(),
            "--codecommit-prefix",
            "app-",
        ],
    );
    for (more, names) in [
        (&[][..], "--backlog-api-key-ssm"),
        (
            &["--backlog-api-key-ssm", "api-key"][..],
            "--backlog-api-key-ssm",
        ),
        (
            &[
                "--backlog-api-key-ssm",
                "/k",
                "--backlog-api-key-kms-key-arn",
                "key",
            ][..],
            "--backlog-api-key-kms-key-arn",
        ),
    ] {
        let out = fx.deploy(&with(args.clone(), more));
        assert_eq!(out.code, 2, "{more:?}: {}", out.stderr);
        assert!(out.only_error().contains(names), "{}", out.stderr);
    }
    fx.assert_nothing_created();

    const KEY: &str = "/backlog-mirror/api-key";
    fx.deploy_url(&with(args, &["--backlog-api-key-ssm", KEY]));
    assert_eq!(fx.parameter("BacklogApiKeyParameterName"), KEY);
    let project = fx.aws(&[
        "codebuild",
        "batch-get-projects",
        "--names",
        "backlog-mirror",
    ]);
    let variables = &project["projects"][0]["environment"]["environmentVariables"];
    assert!(
        variables
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "BACKLOG_MIRROR_BACKLOG_API_KEY_SSM" && v["value"] == KEY),
        "{variables}"
    );

    let has = |out: &Run, verdict: &str, text: &str| {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{verdict:<11} ")) && l.contains(text)),
            "no '{verdict}' line with '{text}':\n{}",
            out.stdout
        );
    };
    let out = verify(&fx);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    has(&out, "unconfirmed", "the list has no [[mirror]] to name");
    has(
        &out,
        "ok",
        "the webhook answered 200 to a project webhook's issue event and started no build",
    );
    has(&out, "FAILED", &format!("parameter {KEY} does not exist"));
    let builds = fx.aws(&[
        "codebuild",
        "list-builds-for-project",
        "--project-name",
        "backlog-mirror",
    ]);
    assert_eq!(
        builds["ids"],
        serde_json::json!([]),
        "a build started: {builds}"
    );
}
