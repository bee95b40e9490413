//! The deployment files: cfn-lint and checkov pass, and the template wires what the reference
//! article relies on (API Gateway's AWS integration to StartBuild, least-privilege roles, the
//! buildspec) with each cache mode creating only its own resources.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/cloudformation/backlog-mirror.yaml"
);

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{name} is not installed ({e}): run ./scripts/test.sh, which installs it")
        })
}

fn template() -> Value {
    let out = tool(
        "python3",
        &[
            "-c",
            "import json, sys\nfrom cfnlint.decode import decode\nt, errors = decode(sys.argv[1])\nassert not errors, errors\nprint(json.dumps(t, default=str))",
            TEMPLATE,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("template as JSON")
}

#[test]
fn cfn_lint_passes_with_no_errors_or_warnings() {
    let templates: Vec<String> = std::fs::read_dir(Path::new(TEMPLATE).parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(!templates.is_empty());
    let mut args = vec!["--format", "parseable"];
    args.extend(templates.iter().map(String::as_str));
    let out = tool("cfn-lint", &args);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn checkov_passes_with_every_skip_explained() {
    let out = tool(
        "checkov",
        &[
            "-d",
            "cloudformation",
            "--framework",
            "cloudformation",
            "--quiet",
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "checkov found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&text).expect("checkov JSON");
    let summary = &report["summary"];
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        summary["passed"].as_u64().unwrap_or(0) >= 20,
        "checkov ran too few checks: {summary}"
    );
    // Every suppression in the template carries a reason.
    let t = template();
    for (name, resource) in t["Resources"].as_object().unwrap() {
        for skip in resource["Metadata"]["checkov"]["skip"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let comment = skip["comment"].as_str().unwrap_or("");
            assert!(
                comment.len() > 20,
                "{name}: skip {} has no real reason",
                skip["id"]
            );
        }
    }
}

/// Evaluate a condition expression for given parameter values.
fn holds(t: &Value, expr: &Value, params: &Value) -> bool {
    if let Some(name) = expr.get("Condition").and_then(Value::as_str) {
        return holds(t, &t["Conditions"][name], params);
    }
    if let Some(args) = expr.get("Fn::Not") {
        return !holds(t, &args[0], params);
    }
    if let Some(args) = expr.get("Fn::Equals") {
        return resolve(&args[0], params) == resolve(&args[1], params);
    }
    panic!("unsupported condition {expr}");
}

fn resolve(v: &Value, params: &Value) -> Value {
    if let Some(name) = v.get("Ref").and_then(Value::as_str) {
        return params.get(name).cloned().unwrap_or(Value::Null);
    }
    if let Some(args) = v.get("Fn::Join") {
        let sep = args[0].as_str().unwrap();
        let list = resolve(&args[1], params);
        let parts: Vec<String> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_else(|| vec![list.as_str().unwrap_or("").to_string()]);
        return Value::String(parts.join(sep));
    }
    v.clone()
}

fn params(mode: &str) -> Value {
    json!({
        "CacheMode": mode,
        "ScheduleExpression": "rate(1 hour)",
        "AlertEmail": "",
        "AllowedSourceIps": [""],
        "ProjectName": "backlog-mirror",
    })
}

/// Resource types that exist for these parameters.
fn active_types(t: &Value, params: &Value) -> BTreeSet<String> {
    t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| match r.get("Condition").and_then(Value::as_str) {
            Some(c) => holds(t, &t["Conditions"][c], params),
            None => true,
        })
        .map(|r| r["Type"].as_str().unwrap().to_string())
        .collect()
}

/// The branch of an `Fn::If` that applies.
fn pick<'a>(t: &Value, v: &'a Value, params: &Value) -> &'a Value {
    match v.get("Fn::If") {
        Some(args) => {
            let cond = args[0].as_str().unwrap();
            if holds(t, &t["Conditions"][cond], params) {
                &args[1]
            } else {
                &args[2]
            }
        }
        None => v,
    }
}

#[test]
fn each_cache_mode_creates_only_its_resources() {
    let t = template();
    let network = [
        "AWS::EC2::SecurityGroup",
        "AWS::EFS::FileSystem",
        "AWS::EFS::MountTarget",
        "AWS::EC2::NatGateway",
        "AWS::EC2::VPC",
    ];
    let none = active_types(&t, &params("None"));
    for kind in network.iter().chain(["AWS::S3::Bucket"].iter()) {
        assert!(!none.contains(*kind), "None mode creates {kind}");
    }
    let project = &t["Resources"]["MirrorProject"]["Properties"];
    let p = params("None");
    assert_eq!(
        pick(&t, &project["VpcConfig"], &p),
        &json!({"Ref": "AWS::NoValue"})
    );
    assert_eq!(pick(&t, &project["Cache"], &p)["Type"], "NO_CACHE");
    assert_eq!(
        pick(&t, &project["Environment"]["PrivilegedMode"], &p),
        &json!(false)
    );

    let efs = active_types(&t, &params("EFS"));
    for kind in [
        "AWS::EC2::SecurityGroup",
        "AWS::EFS::FileSystem",
        "AWS::EFS::MountTarget",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
    ] {
        assert!(efs.contains(kind), "EFS mode lacks {kind}");
    }
    let p = params("EFS");
    assert!(
        pick(&t, &project["VpcConfig"], &p)["Subnets"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );
    assert_eq!(
        pick(&t, &project["FileSystemLocations"], &p)[0]["Type"],
        "EFS"
    );
    assert_eq!(
        pick(&t, &project["Environment"]["PrivilegedMode"], &p),
        &json!(true)
    );
    let role = &t["Resources"]["BuildRole"]["Properties"]["Policies"];
    let eni = role
        .as_array()
        .unwrap()
        .iter()
        .map(|pol| pick(&t, pol, &p))
        .any(|pol| pol.to_string().contains("ec2:CreateNetworkInterface"));
    assert!(eni, "EFS mode lacks the network-interface permissions");

    let s3 = active_types(&t, &params("S3"));
    assert!(s3.contains("AWS::S3::Bucket") && !s3.contains("AWS::EFS::FileSystem"));
    let bucket = &t["Resources"]["CacheBucket"]["Properties"];
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"],
        true
    );
    assert!(bucket["BucketEncryption"].is_object());
    assert!(bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"].is_number());
}

#[test]
fn the_webhook_starts_exactly_this_project_through_an_aws_integration() {
    let t = template();
    let method = &t["Resources"]["WebhookMethod"]["Properties"];
    let integration = &method["Integration"];
    assert_eq!(method["HttpMethod"], "POST");
    assert_eq!(integration["Type"], "AWS");
    assert_eq!(integration["PassthroughBehavior"], "NEVER");
    assert_eq!(
        integration["Uri"]["Fn::Sub"],
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:codebuild:action/StartBuild"
    );
    let headers = &integration["RequestParameters"];
    assert_eq!(
        headers["integration.request.header.X-Amz-Target"],
        "'CodeBuild_20161006.StartBuild'"
    );
    assert_eq!(
        headers["integration.request.header.Content-Type"],
        "'application/x-amz-json-1.1'"
    );
    // Backlog posts `payload=<urlencoded JSON>`; the mapping ignores the body, so whatever Backlog
    // sends renders to the same StartBuild request for this one project.
    for content_type in ["application/x-www-form-urlencoded", "application/json"] {
        let tpl = integration["RequestTemplates"][content_type]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(
            !tpl.contains("$input"),
            "{content_type} template reads the body"
        );
        let rendered = tpl.replace("${ProjectName}", "backlog-mirror");
        let body: Value = serde_json::from_str(&rendered).expect("renders to JSON");
        assert_eq!(body, json!({"projectName": "backlog-mirror"}));
    }
    // The secret path segment is the only route, and it is in the output URL.
    assert_eq!(
        t["Resources"]["WebhookResource"]["Properties"]["PathPart"],
        json!({"Ref": "WebhookSecret"})
    );
    assert!(
        t["Outputs"]["WebhookURL"]["Value"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with("/prod/${WebhookSecret}")
    );
    assert!(
        t["Parameters"]["WebhookSecret"]["MinLength"]
            .as_u64()
            .unwrap()
            >= 32
    );
    let stage = &t["Resources"]["WebhookStage"]["Properties"];
    assert!(stage["MethodSettings"][0]["ThrottlingRateLimit"].is_object());
    // The API's role may start this project and nothing else.
    let statements =
        &t["Resources"]["ApiRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(statements.as_array().unwrap().len(), 1);
    assert_eq!(statements[0]["Action"], "codebuild:StartBuild");
    assert_eq!(
        statements[0]["Resource"],
        json!({"Fn::GetAtt": ["MirrorProject", "Arn"]})
    );
    let project = &t["Resources"]["MirrorProject"]["Properties"];
    assert_eq!(project["ConcurrentBuildLimit"], 1);
    assert_eq!(project["Source"]["Type"], "NO_SOURCE");
    assert_eq!(project["Artifacts"]["Type"], "NO_ARTIFACTS");
}

#[test]
fn the_build_role_reaches_one_repository_and_one_parameter() {
    let t = template();
    let statements =
        &t["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let by_sid = |sid: &str| {
        statements
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid}"))
            .clone()
    };
    let repo = by_sid("MirrorRepository");
    assert_eq!(
        repo["Action"],
        json!(["codecommit:GitPull", "codecommit:GitPush"])
    );
    assert!(
        repo["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":${CodeCommitRepositoryName}")
    );
    let key = by_sid("SshKey");
    assert_eq!(key["Action"], "ssm:GetParameters");
    assert!(
        key["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":parameter${SshKeyParameterName}")
    );
    let kms = by_sid("DecryptThroughSsmOnly");
    assert_eq!(kms["Action"], "kms:Decrypt");
    assert_eq!(
        kms["Condition"]["StringEquals"]["kms:RequestAlias"],
        "alias/aws/ssm"
    );
    for s in statements.as_array().unwrap() {
        assert_ne!(s["Resource"], "*", "{s}");
    }
    assert_eq!(
        t["Parameters"]["SshKeyParameterName"]["AllowedPattern"]
            .as_str()
            .unwrap()
            .chars()
            .nth(1),
        Some('/')
    );
    assert_eq!(
        t["Parameters"]["BacklogDomain"]["AllowedValues"],
        json!(["backlog.jp", "backlog.com"])
    );
}

#[test]
fn the_template_runs_buildspec_yml_verbatim() {
    let t = template();
    let inline = t["Resources"]["MirrorProject"]["Properties"]["Source"]["BuildSpec"]
        .as_str()
        .unwrap();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml")).unwrap();
    assert_eq!(
        inline, file,
        "cloudformation/backlog-mirror.yaml's BuildSpec differs from buildspec.yml"
    );
    for banned in ["pip", "ssh-agent", "ssh-keyscan", "git-remote-codecommit"] {
        let commands: Vec<&str> = file
            .lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .collect();
        assert!(
            !commands.iter().any(|c| c.contains(banned)),
            "the buildspec runs {banned}"
        );
    }
}

/// glibc of the CodeBuild images a default could name (from AWS's image documentation).
const IMAGE_GLIBC: &[(&str, &str)] = &[
    ("aws/codebuild/amazonlinux-aarch64-standard:3.0", "2.34"),
    ("aws/codebuild/amazonlinux-x86_64-standard:5.0", "2.34"),
    ("aws/codebuild/amazonlinux2-aarch64-standard:2.0", "2.26"),
    ("aws/codebuild/amazonlinux2-x86_64-standard:4.0", "2.26"),
    ("aws/codebuild/standard:7.0", "2.35"),
];

#[test]
fn the_default_build_image_has_the_glibc_the_binary_needs() {
    let t = template();
    let image = t["Parameters"]["BuildImage"]["Default"].as_str().unwrap();
    let glibc = IMAGE_GLIBC
        .iter()
        .find(|(name, _)| *name == image)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| {
            panic!("unknown glibc for the default image {image}: add it to IMAGE_GLIBC")
        });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-glibc.sh");
    let out = tool(script, &[env!("CARGO_BIN_EXE_backlog-mirror"), glibc]);
    assert!(
        out.status.success(),
        "the binary needs a newer glibc than {image} has: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And the check really compares: the article's Amazon Linux 2 image is too old for this build.
    let out = tool(script, &[env!("CARGO_BIN_EXE_backlog-mirror"), "2.17"]);
    assert!(!out.status.success(), "check-glibc.sh accepted glibc 2.17");
}
