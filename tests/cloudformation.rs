//! The stack: cfn-lint and checkov pass in every mode a user can deploy, the rules refuse the
//! modes that cannot work, and the template wires what the product relies on (the artifact
//! bucket, least-privilege roles, the compute each Architecture and ComputeMode pick, a
//! deployment renamed with every API change, failure alerts EventBridge can publish).
//!
//! Templates are evaluated for given parameters by tests/support/stack.rs; the webhook's mapping
//! templates run in tests/apigateway.rs, the buildspec in tests/buildspec_run.rs.

use crate::support::stack;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use stack::{DEPLOYMENT, Stack, TEMPLATE};

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{name} is not installed ({e}): run ./scripts/test.sh, which installs it")
        })
}

/// The (ComputeMode, CacheMode) pairs a user can deploy.
const MODES: &[(&str, &str)] = &[
    ("Lambda", "None"),
    ("EC2", "None"),
    ("EC2", "S3"),
    ("EC2", "EFS"),
];

/// What turns every optional part on (alerts, KMS grants, IP allow list, schedule, per-mirror
/// metrics, discovery's API key).
const EVERYTHING: &[(&str, &str)] = &[
    ("AlertEmail", "ops@example.com"),
    (
        "SshKeyKmsKeyArn",
        "arn:aws:kms:ap-northeast-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    ),
    ("AllowedSourceIps", "203.0.113.0/24,198.51.100.7/32"),
    ("MirrorMetrics", "emf"),
    ("BacklogApiKeyParameterName", "/backlog-mirror/api-key"),
    (
        "BacklogApiKeyKmsKeyArn",
        "arn:aws:kms:ap-northeast-1:123456789012:key/99999999-2222-3333-4444-555555555555",
    ),
];

fn efs_network() -> Vec<(&'static str, &'static str)> {
    vec![
        ("VpcId", "vpc-0123456789abcdef0"),
        ("PrivateSubnetId1", "subnet-0123456789abcdef0"),
        ("PrivateSubnetId2", "subnet-0fedcba9876543210"),
    ]
}

fn mode(compute: &str, cache: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("ComputeMode", compute.to_string()),
        ("CacheMode", cache.to_string()),
    ];
    if cache == "EFS" {
        v.extend(efs_network().into_iter().map(|(k, x)| (k, x.to_string())));
    }
    v
}

fn stack_for<'a>(t: &'a Value, values: &[(&'static str, String)]) -> Stack<'a> {
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Stack::new(t, &pairs)
}

fn cfn_lint(paths: &[&Path]) {
    let mut args = vec!["--format".to_string(), "parseable".to_string()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool("cfn-lint", &args);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cfn_lint_passes_as_committed_and_as_the_deploy_command_renders_it() {
    let text = std::fs::read_to_string(TEMPLATE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(
        &rendered,
        stack::render(&text, "s".repeat(48).as_str(), "", "backlog-mirror"),
    )
    .unwrap();
    cfn_lint(&[Path::new(TEMPLATE), &rendered]);
}

/// checkov evaluates conditions from parameter defaults, so each deployable mode is scanned as
/// a copy whose defaults select it, with every optional part on; and no skip hides a check that
/// does not exist for CloudFormation.
#[test]
fn checkov_passes_in_every_mode_with_every_skip_explained() {
    let t = stack::template();
    let dir = tempfile::tempdir().unwrap();
    for (compute, cache) in MODES {
        let mut copy = t.clone();
        let params = copy["Parameters"].as_object_mut().unwrap();
        let mut defaults = mode(compute, cache);
        defaults.extend(EVERYTHING.iter().map(|(k, v)| (*k, v.to_string())));
        for (name, value) in defaults {
            params[name]["Default"] = json!(value);
        }
        std::fs::write(
            dir.path().join(format!("{compute}-{cache}.json")),
            serde_json::to_string_pretty(&copy).unwrap(),
        )
        .unwrap();
    }
    let d = dir.path().display().to_string();
    let out = tool(
        "checkov",
        &[
            "-d",
            &d,
            "--framework",
            "cloudformation",
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov JSON ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {}", f["file_path"], f["check_id"], f["resource"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed:\n{}", failed.join("\n"));
    assert!(out.status.success(), "{text}");
    // Each copy really had its mode's resources scanned.
    let scanned: BTreeSet<String> = ["passed_checks", "skipped_checks"]
        .iter()
        .flat_map(|k| results[k].as_array().unwrap().iter())
        .map(|c| {
            format!(
                "{}:{}",
                c["file_path"].as_str().unwrap(),
                c["resource"].as_str().unwrap()
            )
        })
        .collect();
    for (file, resource) in [
        ("/Lambda-None.json", "AWS::CodeBuild::Project.MirrorProject"),
        ("/Lambda-None.json", "AWS::S3::Bucket.ArtifactBucket"),
        ("/Lambda-None.json", "AWS::SNS::Topic.AlertTopic"),
        ("/EC2-S3.json", "AWS::S3::Bucket.ArtifactBucket"),
        ("/EC2-EFS.json", "AWS::EFS::FileSystem.MirrorFileSystem"),
        (
            "/EC2-EFS.json",
            "AWS::EC2::SecurityGroup.BuildSecurityGroup",
        ),
    ] {
        assert!(
            scanned.contains(&format!("{file}:{resource}")),
            "checkov never scanned {resource} in {file}: {scanned:?}"
        );
    }

    // Every suppression names a CloudFormation check and carries a reason.
    let listing = tool("checkov", &["--list", "--framework", "cloudformation"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    let cfn_ids: BTreeSet<&str> = listing
        .lines()
        .filter(|l| l.contains("| Cloudformation"))
        .filter_map(|l| l.split('|').nth(2).map(str::trim))
        .collect();
    assert!(cfn_ids.contains("CKV_AWS_18"), "cannot read checkov --list");
    for (name, resource) in t["Resources"].as_object().unwrap() {
        for skip in resource["Metadata"]["checkov"]["skip"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = skip["id"].as_str().unwrap();
            assert!(
                cfn_ids.contains(id),
                "{name}: skip {id} is no CloudFormation check (Terraform-only?)"
            );
            assert!(
                skip["comment"].as_str().unwrap_or("").len() > 40,
                "{name}: skip {id} has no real reason"
            );
        }
    }
}

#[test]
fn the_rules_refuse_what_lambda_compute_or_efs_cannot_do() {
    let t = stack::template();
    for (compute, cache) in MODES {
        let s = stack_for(&t, &mode(compute, cache));
        assert_eq!(s.rule_failures(), Vec::<String>::new(), "{compute} {cache}");
    }
    let refused = |values: Vec<(&'static str, String)>, region: &str, wanted: &str| {
        let s = stack_for(&t, &values).in_region(region);
        let failures = s.rule_failures();
        assert!(
            failures.iter().any(|f| f.contains(wanted)),
            "{values:?} in {region} is not refused with '{wanted}': {failures:?}"
        );
    };
    let mut lambda_efs = mode("Lambda", "EFS");
    lambda_efs.push(("ComputeMode", "Lambda".into()));
    refused(
        lambda_efs,
        "ap-northeast-1",
        "keeps no cache and cannot mount EFS",
    );
    refused(
        mode("Lambda", "S3"),
        "ap-northeast-1",
        "keeps no cache and cannot mount EFS",
    );
    let mut long = mode("Lambda", "None");
    long.push(("BuildTimeoutMinutes", "30".into()));
    refused(long, "ap-northeast-1", "takes no custom build timeout");
    refused(
        mode("Lambda", "None"),
        "eu-west-2",
        "use ComputeMode EC2 in this region",
    );
    refused(
        vec![("ComputeMode", "EC2".into()), ("CacheMode", "EFS".into())],
        "ap-northeast-1",
        "EFS mode needs VpcId",
    );
    // The defaults are the cheapest and fastest mode the limits allow.
    let s = Stack::new(&t, &[]);
    assert_eq!(s.param("ComputeMode"), "Lambda");
    assert_eq!(s.param("CacheMode"), "None");
    assert_eq!(s.param("Architecture"), "arm64");
    assert!(s.rule_failures().is_empty());
}

#[test]
fn each_mode_creates_only_its_resources() {
    let t = stack::template();
    let network = [
        "AWS::EC2::SecurityGroup",
        "AWS::EFS::FileSystem",
        "AWS::EFS::MountTarget",
    ];
    for (compute, cache) in MODES {
        let s = stack_for(&t, &mode(compute, cache));
        let types = s.types();
        let project = s.properties("MirrorProject");
        let env = s.build_env();
        assert!(types.contains(&"AWS::S3::Bucket".to_string()));
        match *cache {
            "EFS" => {
                for kind in network {
                    assert!(types.contains(&kind.to_string()), "EFS mode lacks {kind}");
                }
                assert_eq!(project["VpcConfig"]["Subnets"].as_array().unwrap().len(), 2);
                let location = &project["FileSystemLocations"][0];
                assert_eq!(location["Type"], "EFS");
                assert_eq!(
                    location["Location"], "<MirrorFileSystem>.efs.ap-northeast-1.amazonaws.com:/",
                    "the EFS host must come from AWS::URLSuffix"
                );
                assert_eq!(project["Environment"]["PrivilegedMode"], true);
                assert_eq!(
                    env["BACKLOG_MIRROR_CACHE_DIR"],
                    "/mnt/mirror/backlog-mirror"
                );
                let policies = s.properties("BuildRole")["Policies"].to_string();
                assert!(policies.contains("ec2:CreateNetworkInterface"));
            }
            _ => {
                for kind in network {
                    assert!(!types.contains(&kind.to_string()), "{cache} creates {kind}");
                }
                assert!(project.get("VpcConfig").is_none());
                assert!(project.get("FileSystemLocations").is_none());
                assert_eq!(project["Environment"]["PrivilegedMode"], false);
            }
        }
        match *cache {
            "S3" => {
                assert_eq!(
                    project["Cache"],
                    json!({"Type": "S3", "Location": "<ArtifactBucket>/cache"})
                );
                assert_eq!(
                    env["BACKLOG_MIRROR_CACHE_DIR"],
                    "/root/.cache/backlog-mirror"
                );
                let spec =
                    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml"))
                        .unwrap();
                assert!(
                    spec.contains("- \"/root/.cache/backlog-mirror/**/*\""),
                    "the buildspec does not cache the S3 mode's cache dir"
                );
            }
            _ => assert_eq!(project["Cache"]["Type"], "NO_CACHE"),
        }
        if *cache == "None" {
            // Only /tmp is writable on Lambda compute ("Limitations of AWS Lambda compute").
            assert_eq!(env["BACKLOG_MIRROR_CACHE_DIR"], "/tmp/backlog-mirror");
        }
        if *compute == "Lambda" {
            assert!(project.get("TimeoutInMinutes").is_none());
            assert!(project.get("QueuedTimeoutInMinutes").is_none());
        } else {
            assert_eq!(project["TimeoutInMinutes"], "15");
            assert_eq!(project["QueuedTimeoutInMinutes"], 30);
        }
    }
}

/// One parameter picks compute type, image and binary; the images are the ones CodeBuild
/// documents for each compute mode (user guide, "Docker images provided by CodeBuild" and
/// "Lambda compute images").
#[test]
fn architecture_picks_the_environment_the_image_and_the_binary_together() {
    let t = stack::template();
    let params = t["Parameters"].as_object().unwrap();
    for gone in ["BuildImage", "BuildComputeType"] {
        assert!(
            !params.contains_key(gone),
            "{gone} can still disagree with Architecture"
        );
    }
    for arch in ["arm64", "x86_64"] {
        for compute in ["Lambda", "EC2"] {
            for size in ["Small", "Medium", "Large"] {
                let s = Stack::new(
                    &t,
                    &[
                        ("Architecture", arch),
                        ("ComputeMode", compute),
                        ("BuildSize", size),
                    ],
                );
                let e = &s.properties("MirrorProject")["Environment"];
                let (kind, image, compute_type) = (
                    e["Type"].as_str().unwrap(),
                    e["Image"].as_str().unwrap(),
                    e["ComputeType"].as_str().unwrap(),
                );
                let target = &s.build_env()["MIRROR_BIN_TARGET"];
                let (want_kind, want_image, want_target) = match (arch, compute) {
                    ("arm64", "Lambda") => (
                        "ARM_LAMBDA_CONTAINER",
                        "aws/codebuild/amazonlinux-aarch64-lambda-standard:python3.12",
                        "aarch64-unknown-linux-musl",
                    ),
                    ("arm64", _) => (
                        "ARM_CONTAINER",
                        "aws/codebuild/amazonlinux-aarch64-standard:3.0",
                        "aarch64-unknown-linux-musl",
                    ),
                    (_, "Lambda") => (
                        "LINUX_LAMBDA_CONTAINER",
                        "aws/codebuild/amazonlinux-x86_64-lambda-standard:python3.12",
                        "x86_64-unknown-linux-musl",
                    ),
                    _ => (
                        "LINUX_CONTAINER",
                        "aws/codebuild/amazonlinux-x86_64-standard:5.0",
                        "x86_64-unknown-linux-musl",
                    ),
                };
                assert_eq!(
                    (kind, image, target.as_str()),
                    (want_kind, want_image, want_target),
                    "{arch} {compute}"
                );
                let want_compute = match (compute, size) {
                    ("Lambda", "Small") => "BUILD_LAMBDA_2GB",
                    ("Lambda", "Medium") => "BUILD_LAMBDA_4GB",
                    ("Lambda", _) => "BUILD_LAMBDA_8GB",
                    (_, "Small") => "BUILD_GENERAL1_SMALL",
                    (_, "Medium") => "BUILD_GENERAL1_MEDIUM",
                    _ => "BUILD_GENERAL1_LARGE",
                };
                assert_eq!(compute_type, want_compute, "{arch} {compute} {size}");
            }
        }
    }
}

#[test]
fn the_webhook_starts_exactly_this_project_through_an_aws_integration() {
    let t = stack::template();
    let s = Stack::new(&t, &[]);
    let method = s.properties("WebhookMethod");
    let integration = &method["Integration"];
    assert_eq!(method["HttpMethod"], "POST");
    assert_eq!(integration["Type"], "AWS");
    assert_eq!(integration["PassthroughBehavior"], "NEVER");
    assert_eq!(
        integration["Uri"],
        "arn:aws:apigateway:ap-northeast-1:codebuild:action/StartBuild"
    );
    assert_eq!(
        t["Resources"]["WebhookResource"]["Properties"]["PathPart"],
        json!({"Ref": "WebhookSecret"})
    );
    assert_eq!(
        s.eval(&t["Outputs"]["WebhookEndpoint"]["Value"]).unwrap(),
        "https://<WebhookApi>.execute-api.ap-northeast-1.amazonaws.com/prod/",
        "the deploy command appends the secret it made"
    );
    assert!(
        t["Parameters"]["WebhookSecret"]["MinLength"]
            .as_u64()
            .unwrap()
            >= 32
    );
    let stage = s.properties("WebhookStage");
    assert_eq!(stage["MethodSettings"][0]["ThrottlingRateLimit"], "1");
    // The API's role may start this project, or read it (the harmless call of a project webhook
    // event that names no repository), and nothing else.
    let statements = &s.properties("ApiRole")["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(
        statements,
        &json!([{"Effect": "Allow", "Action": ["codebuild:StartBuild", "codebuild:BatchGetProjects"],
                 "Resource": "<MirrorProject.Arn>"}])
    );
    let project = s.properties("MirrorProject");
    assert_eq!(
        project["ConcurrentBuildLimit"], "3",
        "BuildConcurrency's default"
    );
    assert_eq!(project["Source"]["Type"], "NO_SOURCE");
    assert_eq!(project["Artifacts"]["Type"], "NO_ARTIFACTS");
}

#[test]
fn the_build_role_reaches_the_prefixed_repositories_one_parameter_the_binary_and_the_list() {
    let t = stack::template();
    let s = Stack::new(&t, &[("SshKeyParameterName", "/teams/app/deploy-key")]);
    let all = s.statements("BuildRole");
    let by_sid = |sid: &str| {
        all.iter()
            .find(|st| st["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid}"))
            .clone()
    };
    assert_eq!(
        by_sid("MirrorRepositories")["Resource"],
        "arn:aws:codecommit:ap-northeast-1:123456789012:backlog-*",
        "the repositories under CodeCommitRepositoryPrefix (tests/many_stack.rs)"
    );
    assert_eq!(
        by_sid("SshKey"),
        json!({"Sid": "SshKey", "Effect": "Allow", "Action": "ssm:GetParameters",
               "Resource": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/teams/app/deploy-key"})
    );
    assert_eq!(
        by_sid("BinaryAndMirrorList"),
        json!({"Sid": "BinaryAndMirrorList", "Effect": "Allow", "Action": "s3:GetObject",
               "Resource": ["<ArtifactBucket.Arn>/bin/*", "<ArtifactBucket.Arn>/config/*"]})
    );
    // The default aws/ssm key needs no grant; nothing may decrypt with any key.
    assert!(
        !all.iter().any(|st| st.to_string().contains("kms:")),
        "{all:?}"
    );
    for st in &all {
        assert_ne!(st["Resource"], "*", "{st}");
    }
}

/// A customer-managed key is granted for decryption through Parameter Store only.
#[test]
fn a_customer_managed_key_for_the_ssh_key_is_granted_through_ssm_only() {
    let t = stack::template();
    let key = "arn:aws:kms:ap-northeast-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let s = Stack::new(&t, &[("SshKeyKmsKeyArn", key)]);
    let kms: Vec<Value> = s
        .statements("BuildRole")
        .into_iter()
        .filter(|st| st.to_string().contains("kms:"))
        .collect();
    assert_eq!(
        kms,
        vec![json!({
            "Sid": "DecryptSshKeyThroughSsm",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key,
            "Condition": {"StringEquals": {"kms:ViaService": "ssm.ap-northeast-1.amazonaws.com"}}
        })]
    );
    let pattern = t["Parameters"]["SshKeyKmsKeyArn"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(
        pattern.starts_with("^(") && pattern.ends_with(")?$"),
        "empty must stay allowed: {pattern}"
    );
}

/// Discovery's Backlog API key: with BacklogApiKeyParameterName the build gets its name (and
/// nothing else new) and may read that one parameter, and decrypt with its customer-managed key
/// through Parameter Store only; without it, neither the variable nor any grant.
#[test]
fn the_backlog_api_key_is_readable_only_when_given_and_named_to_the_build() {
    let t = stack::template();
    let key = "arn:aws:kms:ap-northeast-1:123456789012:key/99999999-2222-3333-4444-555555555555";
    let api = |s: &Stack| -> Vec<Value> {
        s.statements("BuildRole")
            .into_iter()
            .filter(|st| st.to_string().contains("BacklogApiKey"))
            .collect()
    };
    let none = Stack::new(&t, &[("BacklogApiKeyKmsKeyArn", key)]);
    assert_eq!(api(&none), Vec::<Value>::new());
    assert!(
        !none
            .build_env()
            .contains_key("BACKLOG_MIRROR_BACKLOG_API_KEY_SSM")
    );

    let given = Stack::new(
        &t,
        &[
            ("BacklogApiKeyParameterName", "/teams/backlog/api-key"),
            ("BacklogApiKeyKmsKeyArn", key),
        ],
    );
    assert_eq!(
        api(&given),
        vec![
            json!({"Sid": "BacklogApiKey", "Effect": "Allow", "Action": "ssm:GetParameters",
                   "Resource": "arn:aws:ssm:ap-northeast-1:123456789012:parameter/teams/backlog/api-key"}),
            json!({"Sid": "DecryptBacklogApiKeyThroughSsm", "Effect": "Allow", "Action": "kms:Decrypt",
                   "Resource": key,
                   "Condition": {"StringEquals": {"kms:ViaService": "ssm.ap-northeast-1.amazonaws.com"}}}),
        ]
    );
    let mut env = given.build_env();
    assert_eq!(
        env.remove("BACKLOG_MIRROR_BACKLOG_API_KEY_SSM").as_deref(),
        Some("/teams/backlog/api-key")
    );
    assert_eq!(
        env,
        none.build_env(),
        "the key adds its variable and nothing else"
    );
    // The default aws/ssm key needs no grant.
    let plain = Stack::new(&t, &[("BacklogApiKeyParameterName", "/k")]);
    assert_eq!(api(&plain).len(), 1);
    assert!(
        !plain
            .statements("BuildRole")
            .iter()
            .any(|st| st.to_string().contains("kms:"))
    );
    for name in ["BacklogApiKeyParameterName", "BacklogApiKeyKmsKeyArn"] {
        assert_eq!(t["Parameters"][name]["Default"], "", "{name}");
        let pattern = t["Parameters"][name]["AllowedPattern"].as_str().unwrap();
        assert!(
            pattern.starts_with("^(") && pattern.ends_with(")?$"),
            "{pattern}"
        );
    }
}

/// The buildspec has no parameter-store block naming a path: the binary reads the parameter the
/// project names (BACKLOG_MIRROR_SSH_KEY_SSM <- SshKeyParameterName). tests/buildspec_run.rs
/// runs it against Parameter Store with a non-default name.
#[test]
fn the_buildspec_follows_ssh_key_parameter_name() {
    let t = stack::template();
    let s = Stack::new(&t, &[("SshKeyParameterName", "/teams/app/deploy-key")]);
    assert_eq!(
        s.build_env()["BACKLOG_MIRROR_SSH_KEY_SSM"],
        "/teams/app/deploy-key"
    );
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml")).unwrap();
    assert!(!spec.contains("parameter-store:"), "{spec}");
    assert!(!spec.contains("--ssh-key-env"), "{spec}");
    let commands: Vec<&str> = spec
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.trim() == "- $MIRROR_BIN_DIR/backlog-mirror sync"),
        "{commands:?}"
    );
}

#[test]
fn the_template_runs_buildspec_yml_verbatim() {
    let t = stack::template();
    let inline = t["Resources"]["MirrorProject"]["Properties"]["Source"]["BuildSpec"]
        .as_str()
        .unwrap();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml")).unwrap();
    assert_eq!(
        inline, file,
        "cloudformation/backlog-mirror.yaml's BuildSpec differs from buildspec.yml"
    );
    let commands: Vec<&str> = file
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    for banned in [
        "pip",
        "ssh-agent",
        "ssh-keyscan",
        "git-remote-codecommit",
        "/usr/local/bin",
        "github.com",
    ] {
        assert!(
            !commands.iter().any(|c| c.contains(banned)),
            "the buildspec runs {banned}"
        );
    }
    // Lambda compute writes only under /tmp: the buildspec's own defaults stay there.
    for var in ["MIRROR_BIN_DIR", "BACKLOG_MIRROR_CACHE_DIR"] {
        let line = file
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var}:")))
            .unwrap_or_else(|| panic!("no {var} default"));
        assert!(line.contains("\"/tmp/"), "{line}");
    }
}

#[test]
fn the_artifact_bucket_is_private_encrypted_versioned_and_keeps_pinned_binaries() {
    let t = stack::template();
    let s = stack_for(&t, &mode("EC2", "S3"));
    let b = s.properties("ArtifactBucket");
    assert!(
        b.get("BucketName").is_none(),
        "a fixed name collides across regions"
    );
    assert_eq!(
        b["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    assert_eq!(
        b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    let rules = b["LifecycleConfiguration"]["Rules"].as_array().unwrap();
    for r in rules {
        if r.get("ExpirationInDays").is_some() {
            assert!(
                r["Prefix"] == "cache/" || r["Prefix"] == "templates/",
                "a pinned binary or list expires: {r}"
            );
        }
    }
    assert!(
        rules
            .iter()
            .any(|r| r["Prefix"] == "cache/" && r["ExpirationInDays"] == 30)
    );
    let policy = s.properties("ArtifactBucketPolicy");
    assert_eq!(
        policy["PolicyDocument"]["Statement"][0]["Condition"],
        json!({"Bool": {"aws:SecureTransport": "false"}})
    );
    assert_eq!(policy["PolicyDocument"]["Statement"][0]["Effect"], "Deny");
    // The S3 cache shares the bucket under cache/, and the build may write only there.
    let cache: Vec<Value> = s
        .statements("BuildRole")
        .into_iter()
        .filter(|st| st.to_string().contains("s3:PutObject"))
        .collect();
    assert_eq!(
        cache,
        vec![
            json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "<ArtifactBucket.Arn>/cache/*"})
        ]
    );
    let outputs = &t["Outputs"];
    assert_eq!(
        s.eval(&outputs["ArtifactBucketName"]["Value"]).unwrap(),
        "<ArtifactBucket>"
    );
    assert_eq!(
        t["Resources"]["ArtifactBucket"]["DeletionPolicy"], "Delete",
        "scripts/deploy.sh --delete empties the bucket; the stack deletes it"
    );
}

/// IAM is global: a name derived from ProjectName alone collides when the same project name is
/// deployed in a second region. Regional names (project, log group, API, topic) are fine.
#[test]
fn no_resource_name_collides_across_regions() {
    let t = stack::template();
    for (name, r) in t["Resources"].as_object().unwrap() {
        let kind = r["Type"].as_str().unwrap();
        let props = &r["Properties"];
        if kind.starts_with("AWS::IAM::") {
            for field in ["RoleName", "ManagedPolicyName", "UserName", "GroupName"] {
                assert!(props.get(field).is_none(), "{name} sets the global {field}");
            }
        }
        if kind == "AWS::S3::Bucket" {
            assert!(props.get("BucketName").is_none(), "{name} names its bucket");
        }
    }
}

#[test]
fn efs_uses_elastic_throughput_and_no_infrequent_access_by_default() {
    let t = stack::template();
    let s = stack_for(&t, &mode("EC2", "EFS"));
    let fs = s.properties("MirrorFileSystem");
    assert_eq!(fs["ThroughputMode"], "elastic");
    assert_eq!(fs["Encrypted"], true);
    assert!(fs.get("LifecyclePolicies").is_none(), "{fs}");
    let text = std::fs::read_to_string(TEMPLATE).unwrap();
    assert!(
        !text.contains(".amazonaws.com:/"),
        "an EFS host name hard-codes amazonaws.com"
    );
}

/// The contract's rendering gives each API shape its own deployment: a changed AllowedSourceIps
/// (or secret, or template) makes a new logical id, and the stage serves it.
#[test]
fn every_change_to_the_api_makes_a_new_deployment_the_stage_serves() {
    let text = std::fs::read_to_string(TEMPLATE).unwrap();
    let word_like = text
        .match_indices(DEPLOYMENT)
        .filter(|(i, _)| {
            let after = text[i + DEPLOYMENT.len()..].chars().next();
            let before = text[..*i].chars().next_back();
            after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                || before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .count();
    assert_eq!(word_like, 0, "{DEPLOYMENT} is part of another identifier");
    let secret = "s".repeat(48);
    let a = stack::render(&text, &secret, "203.0.113.0/24", "backlog-mirror");
    let a2 = stack::render(&text, &secret, "203.0.113.0/24", "backlog-mirror");
    let b = stack::render(&text, &secret, "198.51.100.0/24", "backlog-mirror");
    let c = stack::render(&text, &"t".repeat(48), "203.0.113.0/24", "backlog-mirror");
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (name, rendered) in [("a", &a), ("a2", &a2), ("b", &b), ("c", &c)] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, rendered).unwrap();
        let t = stack::load(&path);
        let deployments: Vec<String> = t["Resources"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::ApiGateway::Deployment")
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(deployments.len(), 1);
        let id = deployments[0].clone();
        assert!(
            id.len() == DEPLOYMENT.len() + 12 && id.starts_with(DEPLOYMENT),
            "{id}"
        );
        assert_eq!(
            t["Resources"]["WebhookStage"]["Properties"]["DeploymentId"],
            json!({"Ref": id}),
            "the stage does not serve the rendered deployment"
        );
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "the same API must keep its deployment");
    assert_ne!(
        ids[0], ids[2],
        "a new IP allow list reuses the old deployment"
    );
    assert_ne!(
        ids[0], ids[3],
        "a new secret path reuses the old deployment"
    );
    // The allow list itself lands in the API's resource policy.
    let t = stack::template();
    let s = Stack::new(
        &t,
        &[("AllowedSourceIps", "203.0.113.0/24,198.51.100.7/32")],
    );
    assert_eq!(
        s.properties("WebhookApi")["Policy"]["Statement"][1]["Condition"]["NotIpAddress"]["aws:SourceIp"],
        json!(["203.0.113.0/24", "198.51.100.7/32"])
    );
    assert!(
        Stack::new(&t, &[])
            .properties("WebhookApi")
            .get("Policy")
            .is_none()
    );
}

/// A number an evaluated property holds, whether a number or (from a parameter) a string.
fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The state changes of a standard alarm over `seconds`, evaluated every minute as CloudWatch
/// documents it (user guide, "Evaluating an alarm"): the alarm's N most recent periods, each
/// the Sum of the datapoints in it (a period without one is missing data, good or bad as
/// TreatMissingData says); ALARM when M of them breach, else OK. Each change is one
/// notification (AlarmActions, OKActions).
fn alarm_changes(alarm: &Value, points: &[(u64, f64)], seconds: u64) -> Vec<(u64, &'static str)> {
    let period = num(&alarm["Period"]) as u64;
    let n = num(&alarm["EvaluationPeriods"]) as u64;
    let m = num(&alarm["DatapointsToAlarm"]) as usize;
    let threshold = num(&alarm["Threshold"]);
    let missing_breaches = alarm["TreatMissingData"] == "breaching";
    let breaches = |sum: f64| match alarm["ComparisonOperator"].as_str().unwrap() {
        "GreaterThanOrEqualToThreshold" => sum >= threshold,
        "LessThanThreshold" => sum < threshold,
        other => panic!("{other}"),
    };
    let (mut state, mut changes) = ("OK", Vec::new());
    for now in (60..=seconds).step_by(60) {
        let breaching = (0..n)
            .filter(|k| {
                let (from, to) = (
                    now.saturating_sub((k + 1) * period),
                    now.saturating_sub(k * period),
                );
                let values: Vec<f64> = points
                    .iter()
                    .filter(|(at, _)| (from..to).contains(at))
                    .map(|(_, v)| *v)
                    .collect();
                if values.is_empty() {
                    missing_breaches
                } else {
                    breaches(values.iter().sum())
                }
            })
            .count();
        let next = if breaching >= m { "ALARM" } else { "OK" };
        if next != state {
            changes.push((now, next));
            state = next;
        }
    }
    changes
}

/// Alerts are alarm state changes, never one email per build: nothing but this stack's alarms may
/// publish to the topic (no EventBridge rule does), each alarm tells when it goes to ALARM and
/// when it is OK again, and a mirror failing on every build for hours is one alarm, under the
/// 10-minute schedule and under an hourly one with its jitter. Nothing local evaluates alarms
/// (moto stores them), so the documented evaluation runs here over the FailedBuilds CodeBuild
/// would publish.
#[test]
fn alerts_are_alarm_state_changes_never_one_email_per_build() {
    let t = stack::template();
    let s = Stack::new(&t, &[("AlertEmail", "ops@example.com")])
        .with_physical("MirrorProject", "backlog-mirror");
    let topic = s.properties("AlertTopic");
    assert!(
        topic.get("KmsMasterKeyId").is_none(),
        "CloudWatch cannot publish under alias/aws/sns"
    );
    assert_eq!(
        topic["Subscription"],
        json!([{"Protocol": "email", "Endpoint": "ops@example.com"}])
    );
    assert!(!Stack::new(&t, &[]).exists("AlertTopic"));
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] == "AWS::Events::Rule" && s.exists(name) {
            for target in s.properties(name)["Targets"].as_array().unwrap() {
                assert_ne!(
                    target["Arn"], "<AlertTopic>",
                    "{name} publishes every build it matches"
                );
            }
        }
    }
    assert_eq!(
        s.properties("AlertTopicPolicy")["PolicyDocument"]["Statement"],
        json!([{
            "Sid": "MirrorAlarmsOnly",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": "<AlertTopic>",
            "Condition": {
                "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:backlog-mirror-mirror*"},
                "StringEquals": {"aws:SourceAccount": "123456789012"}
            }
        }])
    );
    let everything = Stack::new(
        &t,
        &[("AlertEmail", "ops@example.com"), ("MirrorMetrics", "emf")],
    );
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] == "AWS::CloudWatch::Alarm" {
            let a = everything.properties(name);
            assert_eq!(a["AlarmActions"], json!(["<AlertTopic>"]), "{name}");
            assert_eq!(
                a["OKActions"], a["AlarmActions"],
                "{name} never says it cleared"
            );
            assert!(
                a["AlarmName"]
                    .as_str()
                    .unwrap()
                    .starts_with("backlog-mirror-mirror"),
                "the topic's policy does not admit {name}"
            );
        }
    }

    let failing = s.properties("MirrorFailingAlarm");
    const MIN: u64 = 60;
    // The 10-minute schedule: every build fails from 0:30 to 4:30, then every build succeeds.
    let builds: Vec<(u64, f64)> = (1..60)
        .map(|i| i * 10 * MIN)
        .map(|at| {
            (
                at,
                if (30 * MIN..270 * MIN).contains(&at) {
                    1.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    let states = |changes: &[(u64, &'static str)]| changes.iter().map(|c| c.1).collect::<Vec<_>>();
    let changes = alarm_changes(&failing, &builds, 10 * 60 * MIN);
    assert_eq!(
        states(&changes),
        ["ALARM", "OK"],
        "24 failed builds in a row: {changes:?}"
    );
    assert!(
        changes[0].0 <= 30 * MIN + 15 * MIN,
        "ALARM comes late: {changes:?}"
    );
    assert!(
        (260 * MIN + 2 * 60 * MIN..=260 * MIN + 2 * 60 * MIN + 15 * MIN).contains(&changes[1].0),
        "OK two hours after the last failure: {changes:?}"
    );
    // An hourly schedule, a few minutes early or late each time, failing for 5 hours.
    let hourly: Vec<(u64, f64)> = [61, 118, 183, 239, 302]
        .iter()
        .map(|m| (m * MIN, 1.0))
        .collect();
    let changes = alarm_changes(&failing, &hourly, 10 * 60 * MIN);
    assert_eq!(states(&changes), ["ALARM", "OK"], "{changes:?}");
}

#[test]
fn the_outputs_are_the_contracts() {
    let t = stack::template();
    let outputs: BTreeSet<&str> = t["Outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        outputs,
        BTreeSet::from([
            "WebhookEndpoint",
            "ProjectName",
            "ArtifactBucketName",
            "AlertTopicArn"
        ])
    );
    // The secret is in no output, and DescribeStacks shows its parameter as ****; API Gateway's
    // GET of the API's resources shows it, as the path it is (docs/deploy.md: who can read it).
    let s = Stack::new(&t, &[]);
    for (name, output) in t["Outputs"].as_object().unwrap() {
        if output.get("Condition").is_none() {
            let value = s.eval(&output["Value"]).unwrap().to_string();
            assert!(
                !value.contains("0123456789abcdef0123456789abcdef"),
                "output {name} shows the webhook secret: {value}"
            );
        }
    }
    assert_eq!(t["Parameters"]["WebhookSecret"]["NoEcho"], true);
    // What the build may force-push to is chosen for every stack: no default.
    assert!(
        t["Parameters"]["CodeCommitRepositoryPrefix"]
            .get("Default")
            .is_none(),
        "CodeCommitRepositoryPrefix defaults to every repository"
    );
    assert_eq!(t["Outputs"]["AlertTopicArn"]["Condition"], "HasAlerts");
    for name in [
        "ProjectName",
        "LogRetentionDays",
        "BacklogSpaceKey",
        "BacklogDomain",
        "MirrorListSha256",
        "SshKeyParameterName",
        "SshKeyKmsKeyArn",
        "BacklogApiKeyParameterName",
        "BacklogApiKeyKmsKeyArn",
        "BacklogHostKeyFingerprint",
        "CodeCommitRepositoryPrefix",
        "BuildConcurrency",
        "StaleAfterHours",
        "MirrorMetrics",
        "WebhookSecret",
        "ThrottleRateLimit",
        "ThrottleBurstLimit",
        "AllowedSourceIps",
        "Architecture",
        "ComputeMode",
        "BinarySha256",
        "BinaryUrl",
        "BuildTimeoutMinutes",
        "ScheduleExpression",
        "AlertEmail",
        "CacheMode",
        "VpcId",
        "PrivateSubnetId1",
        "PrivateSubnetId2",
    ] {
        assert!(
            t["Parameters"].get(name).is_some(),
            "contract parameter {name} is missing"
        );
    }
    for gone in [
        "BacklogProjectKey",
        "BacklogRepositoryName",
        "CodeCommitRepositoryName",
    ] {
        assert!(
            t["Parameters"].get(gone).is_none(),
            "{gone}: one stack serves a space; the mirror list names the repositories"
        );
    }
    assert_eq!(t["Parameters"]["BinaryUrl"]["Default"], "");
    assert_eq!(t["Parameters"]["SshKeyKmsKeyArn"]["Default"], "");
}
