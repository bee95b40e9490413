//! The webhook's API Gateway wiring, run through a Velocity engine instead of read: the request
//! mapping on what Backlog really posts (and on what an attacker could post), and the integration
//! responses on every kind of answer CodeBuild gives, selected the way API Gateway selects them.
//!
//! The engine is airspeed-ext, LocalStack's, driven by tests/support/apigw_render.py, which
//! emulates `$input`, `$util` and `$context` after LocalStack and AWS's developer guide. The
//! template is evaluated for real parameters by tests/support/stack.rs.

use crate::support::{apigw, stack};

use std::process::Command;

use serde_json::{Value, json};

/// The method's integration and declared method responses, for a stack named `project`.
fn method(project: &str) -> (Value, Vec<String>) {
    let t = stack::template();
    let s = stack::Stack::new(&t, &[("ProjectName", project)]);
    let m = s.properties("WebhookMethod");
    let responses = m["MethodResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["StatusCode"].as_str().unwrap().to_string())
        .collect();
    (m["Integration"].clone(), responses)
}

/// Run jobs through apigw_render.py; one result per job, none of them an error.
fn run(jobs: &[Value]) -> Vec<Value> {
    let results = apigw::render(jobs);
    for (job, result) in jobs.iter().zip(&results) {
        assert!(
            result.get("error").is_none(),
            "rendering failed: {}\nfor {job}",
            result["error"]
        );
    }
    results
}

fn request_job(integration: &Value, content_type: Option<&str>, body: &str) -> Value {
    let mut headers = json!({"User-Agent": "Backlog Webhook", "Accept": "*/*"});
    if let Some(ct) = content_type {
        headers["Content-Type"] = json!(ct);
    }
    json!({
        "mode": "request",
        "integration": integration,
        "request": {"method": "POST", "headers": headers, "body": body},
    })
}

/// What Backlog posts for a push (Backlog's help, "Webhook"; fields in BRIEF.md): one form field
/// `payload` holding the JSON, form-urlencoded.
fn backlog_push_body() -> String {
    let payload = json!({
        "before": "8b5b1b4a9e8c6d2f0a7e3c1b5d9f2e4a6c8b0d1e",
        "after": "1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f",
        "ref": "refs/heads/main",
        "repository": {
            "url": "https://example-space.backlog.jp/git/PROJ/app",
            "name": "app",
            "description": "Kanji と \"quotes\" & <tags>"
        },
        "revisions": [{
            "id": "1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f",
            "url": "https://example-space.backlog.jp/git/PROJ/app/commit/1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f",
            "author": {"email": "dev@example.com", "name": "開発 者"},
            "message": "Fix it's \"quoting\"\n\n$context.requestOverride #set($x = 1)",
            "timestamp": "2026-11-25T10:00:00+09:00",
            "added": ["a.txt"],
            "removed": [],
            "modified": ["b.txt"]
        }]
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

fn start_build_of(result: &Value) -> Value {
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(
        result["headers"],
        json!({
            "X-Amz-Target": "CodeBuild_20161006.StartBuild",
            "Content-Type": "application/x-amz-json-1.1"
        }),
        "the integration request does not call StartBuild"
    );
    serde_json::from_str(result["body"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", result["body"]))
}

#[test]
fn backlogs_push_webhook_renders_exactly_one_start_build_for_this_project() {
    let (integration, _) = method("team-mirror");
    let body = backlog_push_body();
    assert!(body.starts_with("payload=%7B%22"), "{body}");
    let results = run(&[
        request_job(
            &integration,
            Some("application/x-www-form-urlencoded"),
            &body,
        ),
        // Backlog may name the charset; API Gateway keys templates by the media type.
        request_job(
            &integration,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            &body,
        ),
    ]);
    // The payload names its repository: the build syncs that mirror (tests/routing.rs).
    for r in &results {
        assert_eq!(
            start_build_of(r),
            json!({"projectName": "team-mirror", "environmentVariablesOverride": [
                {"name": "BACKLOG_MIRROR_REPO", "value": "PROJ/app", "type": "PLAINTEXT"}
            ]})
        );
    }
}

/// The rendered request is a valid StartBuild for CodeBuild's own API model (botocore's).
#[test]
fn the_rendered_request_is_a_valid_start_build() {
    let (integration, _) = method("backlog-mirror");
    let r = run(&[request_job(
        &integration,
        Some("application/x-www-form-urlencoded"),
        &backlog_push_body(),
    )]);
    let body = r[0]["body"].as_str().unwrap();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    apigw::assert_valid_inputs("StartBuild", &[body]);
}

/// JSON, garbage and hostile bodies that name no repository change nothing: no field of the body
/// reaches CodeBuild (tests/routing.rs: the one name a body can give, and hostile ones).
#[test]
fn no_body_of_any_shape_changes_the_start_build_request() {
    let (integration, _) = method("backlog-mirror");
    let injected = r#"{"projectName": "other", "environmentVariablesOverride": [{"name": "BACKLOG_MIRROR_SOURCE", "value": "https://evil.example/x"}], "buildspecOverride": "version: 0.2"}"#;
    let bodies = [
        (Some("application/json"), injected.to_string()),
        (Some("application/json"), "not json at all {{{".to_string()),
        (Some("application/json"), String::new()),
        (
            Some("application/x-www-form-urlencoded"),
            "payload=%ZZ%00garbage&payload=second&projectName=other".to_string(),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "#set($context.requestOverride.header.X-Amz-Target = 'CodeBuild_20161006.DeleteProject')$input.body".to_string(),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "\u{0}\u{1}\u{ff}é".repeat(10_000),
        ),
        // No Content-Type: API Gateway uses the application/json template.
        (None, injected.to_string()),
    ];
    let jobs: Vec<Value> = bodies
        .iter()
        .map(|(ct, b)| request_job(&integration, *ct, b))
        .collect();
    for (result, (ct, body)) in run(&jobs).iter().zip(&bodies) {
        assert_eq!(
            start_build_of(result),
            json!({"projectName": "backlog-mirror"}),
            "{ct:?} body {:.80}",
            body
        );
    }
}

#[test]
fn other_content_types_are_refused_before_codebuild() {
    let (integration, _) = method("backlog-mirror");
    assert_eq!(integration["PassthroughBehavior"], "NEVER");
    let results = run(&[
        request_job(&integration, Some("text/plain"), "payload=x"),
        request_job(&integration, Some("multipart/form-data; boundary=x"), "--x"),
        request_job(&integration, Some("application/xml"), "<a/>"),
    ]);
    for r in results {
        assert_eq!(r["status"], 415, "{r}");
    }
}

fn response_job(integration: &Value, responses: &[String], status: u16, body: &str) -> Value {
    json!({
        "mode": "response",
        "integration": integration,
        "method_responses": responses,
        "request": {"method": "POST", "headers": {"Accept": "*/*"}},
        "backend": {"status": status, "body": body},
    })
}

/// (status to the client, body as JSON) for each (CodeBuild status, CodeBuild body).
fn respond(cases: &[(u16, String)]) -> Vec<(u64, Value)> {
    let (integration, responses) = method("backlog-mirror");
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(s, b)| response_job(&integration, &responses, *s, b))
        .collect();
    run(&jobs)
        .into_iter()
        .zip(cases)
        .map(|(r, (s, b))| {
            let body = r["body"].as_str().unwrap();
            let parsed = serde_json::from_str(body).unwrap_or_else(|e| {
                panic!("CodeBuild {s} {b} gives a body that is not JSON ({e}): {body}")
            });
            (r["status"].as_u64().unwrap(), parsed)
        })
        .collect()
}

fn error(kind: &str, message: &str) -> String {
    json!({"__type": kind, "message": message}).to_string()
}

#[test]
fn a_started_build_answers_200_with_its_id() {
    let build = json!({"build": {
        "id": "backlog-mirror:7f0c1e2a-3b4d-4c5e-8f90-a1b2c3d4e5f6",
        "arn": "arn:aws:codebuild:ap-northeast-1:123456789012:build/backlog-mirror:7f0c1e2a-3b4d-4c5e-8f90-a1b2c3d4e5f6",
        "buildNumber": 12,
        "buildStatus": "IN_PROGRESS",
        "currentPhase": "QUEUED",
        "projectName": "backlog-mirror"
    }});
    let got = respond(&[(200, build.to_string())]);
    assert_eq!(
        got[0],
        (
            200,
            json!({"started": true, "build": "backlog-mirror:7f0c1e2a-3b4d-4c5e-8f90-a1b2c3d4e5f6"})
        )
    );
}

/// A project webhook event that names no repository (an issue comment, here) makes the harmless
/// read instead of StartBuild (tests/routing.rs), whose answer is a 200 that says so: Backlog
/// counts the webhook as delivered, and no build starts.
#[test]
fn a_project_webhook_event_naming_no_repository_is_answered_200_and_starts_nothing() {
    let (integration, responses) = method("backlog-mirror");
    let comment = json!({
        "id": 3153, "type": 3,
        "project": {"id": 92, "projectKey": "PROJ", "name": "p", "archived": false},
        "content": {"id": 4809, "key_id": 121, "summary": "s", "description": "",
                    "comment": {"id": 7237, "content": "see PROJ/app"}, "changes": []},
        "notifications": [], "createdUser": {"id": 1, "name": "admin"},
        "created": "2013-12-27T07:50:44Z"
    });

    // CodeBuild's answer to BatchGetProjects of the project (AWS JSON 1.1, 200).
    let projects = json!({
        "projects": [{
            "name": "backlog-mirror",
            "arn": "arn:aws:codebuild:ap-northeast-1:123456789012:project/backlog-mirror",
            "environment": {"type": "ARM_LAMBDA_CONTAINER", "environmentVariables": [
                {"name": "BACKLOG_MIRROR_SSH_KEY_SSM", "value": "/backlog-mirror/ssh-key", "type": "PLAINTEXT"}
            ]}
        }],
        "projectsNotFound": []
    });
    let r = run(&[
        request_job(&integration, Some("application/json"), &comment.to_string()),
        response_job(&integration, &responses, 200, &projects.to_string()),
    ]);
    assert_eq!(
        r[0]["headers"]["X-Amz-Target"],
        "CodeBuild_20161006.BatchGetProjects"
    );
    assert_eq!(r[1]["status"], 200, "{}", r[1]);
    let answer: Value = serde_json::from_str(r[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["started"], false, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .is_some_and(|s| s.contains("Git pushed")),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("ssh-key"),
        "the project's settings are not answered: {answer}"
    );
}

/// Every error StartBuild's API model declares (botocore's codebuild model), as CodeBuild sends
/// them (AWS JSON 1.1: HTTP 400, the type in `__type`): the account or project refusal is 429,
/// the others keep 400, and the body names the type and the message.
#[test]
fn each_modelled_start_build_error_keeps_its_type_and_refusals_read_429() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, botocore.session\n\
             m = botocore.session.get_session().get_service_model('codebuild')\n\
             print(json.dumps([e.name for e in m.operation_model('StartBuild').error_shapes]))",
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "botocore: run ./scripts/test.sh");
    let errors: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        errors.contains(&"AccountLimitExceededException".to_string()),
        "{errors:?}"
    );
    let cases: Vec<(u16, String)> = errors
        .iter()
        .map(|e| (400, error(e, &format!("{e} happened"))))
        .collect();
    for ((status, body), name) in respond(&cases).into_iter().zip(&errors) {
        let want = if name == "AccountLimitExceededException" {
            429
        } else {
            400
        };
        assert_eq!(status, want, "{name}");
        assert_eq!(
            body,
            json!({"started": false, "error": name, "message": format!("{name} happened")})
        );
    }
}

/// The project's concurrent build limit refuses a second build (CodeBuild user guide, "Builds in
/// AWS CodeBuild"); it and throttling are refusals, whatever namespace the type carries.
#[test]
fn refusals_and_throttling_read_429() {
    let cases = vec![
        (
            400,
            error(
                "AccountLimitExceededException",
                "Build limit of 1 reached for project backlog-mirror",
            ),
        ),
        (
            400,
            error(
                "com.amazonaws.codebuild#AccountLimitExceededException",
                "Cannot have more than 1 active builds for the account",
            ),
        ),
        (400, error("ThrottlingException", "Rate exceeded")),
        (429, error("TooManyRequestsException", "Slow down")),
    ];
    let got = respond(&cases);
    let kinds = [
        "AccountLimitExceededException",
        "AccountLimitExceededException",
        "ThrottlingException",
        "TooManyRequestsException",
    ];
    for ((status, body), ((_, sent), kind)) in got.iter().zip(cases.iter().zip(kinds)) {
        assert_eq!(*status, 429, "{sent}");
        assert_eq!(body["started"], false);
        assert_eq!(body["error"], kind);
        let message: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(body["message"], message["message"]);
    }
}

#[test]
fn other_client_errors_keep_their_status() {
    let got = respond(&[
        (
            400,
            error(
                "InvalidInputException",
                "Invalid project name: it's 'bad' \"really\" / \\ ok $context.stage #set($x = 1)",
            ),
        ),
        (
            403,
            json!({"__type": "AccessDeniedException", "Message": "User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: codebuild:StartBuild"}).to_string(),
        ),
        (404, error("ResourceNotFoundException", "Project cannot be found: x")),
        (413, error("RequestEntityTooLarge", "too large")),
    ]);
    assert_eq!(got[0].0, 400);
    assert_eq!(
        got[0].1,
        json!({"started": false, "error": "InvalidInputException", "message": "Invalid project name: it's 'bad' \"really\" / \\ ok $context.stage #set($x = 1)"})
    );
    assert_eq!(got[1].0, 403);
    assert_eq!(got[1].1["error"], "AccessDeniedException");
    assert!(
        got[1].1["message"]
            .as_str()
            .unwrap()
            .contains("not authorized"),
        "a capitalised Message is carried too: {}",
        got[1].1
    );
    assert_eq!(got[2].0, 404);
    assert_eq!(got[2].1["error"], "ResourceNotFoundException");
    assert_eq!(
        got[3].0, 400,
        "an unlisted 4xx still reads as a client error"
    );
    assert_eq!(got[3].1["error"], "RequestEntityTooLarge");
}

/// A CodeBuild failure must read as one: Backlog's help says to retry a webhook that got a 5xx.
#[test]
fn server_errors_and_anything_unexpected_read_502_not_success() {
    let got = respond(&[
        (
            500,
            error("InternalFailure", "We encountered an internal error"),
        ),
        (
            503,
            error("ServiceUnavailableException", "Service unavailable 日本"),
        ),
        (504, String::new()),
        (302, String::new()),
    ]);
    for (status, body) in &got {
        assert_eq!(*status, 502, "{body}");
        assert_eq!(body["started"], false, "{body}");
    }
    assert_eq!(got[0].1["error"], "InternalFailure");
    assert_eq!(got[1].1["message"], "Service unavailable 日本");
    assert_eq!(
        got[2].1,
        json!({"started": false, "error": "", "message": ""})
    );
}

/// Every status from 100 to 599 selects exactly one integration response (API Gateway does not
/// order overlapping patterns), and only 2xx selects 200.
#[test]
fn selection_patterns_cover_every_status_once() {
    let (integration, responses) = method("backlog-mirror");
    let jobs: Vec<Value> = (100u16..600)
        .map(|s| response_job(&integration, &responses, s, &error("X", "y")))
        .collect();
    for (result, status) in run(&jobs).iter().zip(100u16..600) {
        let selected = result["selected"].as_str().unwrap();
        let want = match status {
            200..=299 => "200",
            403 => "403",
            404 => "404",
            429 => "429",
            400..=499 => "400",
            _ => "502",
        };
        assert_eq!(selected, want, "CodeBuild status {status}");
    }
}
