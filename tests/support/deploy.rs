//! scripts/deploy.sh run for real against moto's server on 127.0.0.1, for the modules that deploy
//! the real template (tests/deploy.rs, tests/deploy_mirror_list.rs). One fixture, so that every
//! such test runs the script and reads the stack back through the AWS CLI v2 the same way; each
//! module names its own stack.

use std::process::Command;

use serde_json::Value;

use super::moto::{MotoCfn, REGION, aws_cli_v2};
use super::{Run, Sandbox, isolate, run};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy.sh");
pub const FINGERPRINT: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
/// A real x86_64 ELF executable: the deploy command treats the binary as opaque bytes once it has
/// checked it is an ELF file for the stack's architecture, so a small one keeps moto fast.
pub const BINARY: &str = "/usr/bin/true";

/// The flags every stack named STACK needs, then MORE.
pub fn args(stack: &str, more: &[&str]) -> Vec<String> {
    [
        "--stack-name",
        stack,
        "--region",
        REGION,
        "--binary",
        BINARY,
        "--architecture",
        "x86_64",
        "--backlog-space",
        "myspace",
        "--host-key-fingerprint",
        FINGERPRINT,
    ]
    .iter()
    .chain(more)
    .map(|s| s.to_string())
    .collect()
}

/// A sandbox, moto, the AWS CLI v2, and the name of the one stack the test deploys.
pub struct Fixture {
    pub sb: Sandbox,
    pub moto: MotoCfn,
    pub aws: String,
    stack: &'static str,
}

impl Fixture {
    pub fn new(stack: &'static str) -> Fixture {
        let sb = Sandbox::new();
        let moto = MotoCfn::start(sb.path());
        Fixture {
            sb,
            moto,
            aws: aws_cli_v2(),
            stack,
        }
    }

    /// The deploy command pointed at moto, not yet run.
    pub fn deploy_cmd(&self, args: &[String]) -> Command {
        let mut cmd = Command::new("bash");
        isolate(&mut cmd);
        cmd.arg(SCRIPT)
            .args(args)
            .env("HOME", self.sb.home())
            .env("BACKLOG_MIRROR_AWS_CLI", &self.aws)
            .env("BACKLOG_MIRROR_AWS_ENDPOINT_URL", self.moto.endpoint());
        for (k, v) in self.moto.env() {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn deploy(&self, args: &[String]) -> Run {
        run(&mut self.deploy_cmd(args))
    }

    pub fn deploy_ok(&self, args: &[String]) -> Run {
        let out = self.deploy(args);
        assert_eq!(out.code, 0, "deploy failed:\n{}", out.stderr);
        out
    }

    /// Deploy a new webhook URL (a create, or a rotation) and return it: the one line on stdout,
    /// printed this once.
    pub fn deploy_url(&self, args: &[String]) -> (String, Run) {
        let out = self.deploy_ok(args);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "want the URL alone on stdout:\n{}",
            out.stdout
        );
        let url = lines[0].to_string();
        let secret = url.rsplit('/').next().unwrap_or_default();
        assert!(
            !out.stderr.contains(secret),
            "the webhook secret was printed outside the URL:\n{}",
            out.stderr
        );
        assert_eq!(url, self.show_url(), "--show-webhook-url reads another URL");
        (url, out)
    }

    /// Deploy a change that keeps the webhook URL: nothing on stdout, the secret nowhere.
    pub fn deploy_update(&self, args: &[String]) -> Run {
        let out = self.deploy_ok(args);
        assert_eq!(out.stdout, "", "an update printed on stdout");
        let url = self.show_url();
        let secret = url.rsplit('/').next().unwrap_or_default();
        assert!(
            !out.stderr.contains(secret),
            "an update printed the webhook secret:\n{}",
            out.stderr
        );
        out
    }

    /// `--show-webhook-url`: the URL, read back from API Gateway.
    pub fn show_url(&self) -> String {
        let out = self.deploy(&[
            "--show-webhook-url".into(),
            "--stack-name".into(),
            self.stack.into(),
            "--region".into(),
            REGION.into(),
        ]);
        assert_eq!(out.code, 0, "--show-webhook-url failed:\n{}", out.stderr);
        out.stdout.trim_end().to_string()
    }

    /// The AWS CLI against moto; JSON output parsed.
    pub fn aws(&self, args: &[&str]) -> Value {
        let out = self.aws_raw(args);
        assert_eq!(out.code, 0, "aws {args:?} failed:\n{}", out.stderr);
        if out.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
    }

    pub fn aws_raw(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.aws);
        isolate(&mut cmd);
        cmd.args(["--endpoint-url", &self.moto.endpoint(), "--region", REGION])
            .args(["--output", "json"])
            .args(args)
            .env("HOME", self.sb.home());
        for (k, v) in self.moto.env() {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    pub fn stack(&self) -> Value {
        self.aws(&[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            self.stack,
        ])["Stacks"][0]
            .clone()
    }

    pub fn parameter(&self, key: &str) -> String {
        self.stack()["Parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["ParameterKey"] == key)
            .and_then(|p| p["ParameterValue"].as_str())
            .unwrap_or_else(|| panic!("no parameter {key}"))
            .to_string()
    }

    pub fn output(&self, key: &str) -> String {
        self.stack()["Outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["OutputKey"] == key)
            .and_then(|o| o["OutputValue"].as_str())
            .unwrap_or_else(|| panic!("no output {key}"))
            .to_string()
    }

    pub fn bucket(&self) -> String {
        self.output("ArtifactBucketName")
    }

    pub fn event_count(&self) -> usize {
        self.aws(&[
            "cloudformation",
            "describe-stack-events",
            "--stack-name",
            self.stack,
        ])["StackEvents"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// (key, version id) of every object version in the bucket, and the delete markers' count.
    pub fn versions(&self, bucket: &str) -> (Vec<(String, String)>, usize) {
        let listed = self.aws(&["s3api", "list-object-versions", "--bucket", bucket]);
        let versions = listed["Versions"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .map(|v| {
                        (
                            v["Key"].as_str().unwrap_or_default().to_string(),
                            v["VersionId"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let markers = listed["DeleteMarkers"].as_array().map_or(0, Vec::len);
        (versions, markers)
    }

    /// The object at KEY in the stack's bucket, or None.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        let listed = self.aws(&["s3api", "list-objects-v2", "--bucket", &self.bucket()]);
        let present = listed["Contents"]
            .as_array()
            .is_some_and(|c| c.iter().any(|o| o["Key"] == key));
        if !present {
            return None;
        }
        let file = self.sb.join("object");
        self.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            &self.bucket(),
            "--key",
            key,
            &file.to_string_lossy(),
        ]);
        Some(std::fs::read(&file).expect("downloaded object"))
    }

    /// The logical ids of the stack's API deployments.
    pub fn deployment_ids(&self) -> Vec<String> {
        self.aws(&[
            "cloudformation",
            "list-stack-resources",
            "--stack-name",
            self.stack,
        ])["StackResourceSummaries"]
            .as_array()
            .expect("resources")
            .iter()
            .filter(|r| r["ResourceType"] == "AWS::ApiGateway::Deployment")
            .filter_map(|r| r["LogicalResourceId"].as_str().map(str::to_string))
            .collect()
    }

    pub fn assert_nothing_created(&self) {
        let stacks = self.aws(&["cloudformation", "list-stacks"]);
        assert_eq!(
            stacks["StackSummaries"].as_array().map_or(0, Vec::len),
            0,
            "a stack was created: {stacks}"
        );
        let buckets = self.aws(&["s3api", "list-buckets"]);
        assert_eq!(
            buckets["Buckets"].as_array().map_or(0, Vec::len),
            0,
            "a bucket was created: {buckets}"
        );
    }

    /// Say what this run of moto did not exercise, and check it modelled what the test relies on.
    pub fn report_placeholders(&self, relied_on: &[&str]) {
        let placeholders = self.moto.placeholders();
        eprintln!("resource types moto does not model (placeholders): {placeholders:?}");
        for relied_on in relied_on {
            assert!(
                !placeholders.iter().any(|p| p == relied_on),
                "{relied_on} was a placeholder"
            );
        }
    }
}
