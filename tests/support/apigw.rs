//! The driver of apigw_render.py (API Gateway's mapping templates in airspeed-ext, LocalStack's
//! Velocity engine) and of botocore's models of CodeBuild's inputs, shared by the modules that run the
//! webhook's wiring (tests/apigateway.rs, tests/routing.rs) so that both run it the same way.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const RENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/apigw_render.py");

/// Run jobs through apigw_render.py in one process; one result per job (errors included).
pub fn render(jobs: &[Value]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(RENDER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}): run ./scripts/test.sh"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(jobs.to_vec()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apigw_render.py failed (airspeed-ext missing? run ./scripts/test.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("results")
}

/// Check each body against botocore's model of the input of CodeBuild's `operation`.
pub fn assert_valid_inputs(operation: &str, bodies: &[Value]) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, botocore.session, botocore.validate\n\
             model = botocore.session.get_session().get_service_model('codebuild')\n\
             shape = model.operation_model(sys.argv[1]).input_shape\n\
             for body in json.load(sys.stdin):\n\
             \x20   report = botocore.validate.ParamValidator().validate(body, shape)\n\
             \x20   assert not report.has_errors(), report.generate_report()",
            operation,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(Value::Array(bodies.to_vec()).to_string().as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 with botocore");
    assert!(
        out.status.success(),
        "{operation}'s model rejects a rendered body: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
