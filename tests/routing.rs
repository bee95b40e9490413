//! Webhook routing: the request mapping names the one mirror a webhook is about, as the StartBuild
//! environment variable override BACKLOG_MIRROR_REPO, from the path after the secret (a
//! repository's own URL) or from the payload's repository.url, and no request of any shape adds a
//! key or a second override to what CodeBuild receives.
//!
//! Every request runs through the real template, evaluated for its parameters by
//! tests/support/stack.rs, in airspeed-ext (LocalStack's Velocity engine) driven by
//! tests/support/apigw_render.py, whose strings behave as java.lang.String and whose
//! $util.urlDecode fails as java.net.URLDecoder does. Every StartBuild body is parsed and checked
//! against botocore's model of StartBuild's input; the exact body is asserted.

use crate::support::{apigw, stack};

use serde_json::{Value, json};

const PROJECT: &str = "team-mirror";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// The Integration of a webhook method, for a stack named `PROJECT`.
fn integration(method: &str) -> Value {
    let t = stack::template();
    stack::Stack::new(&t, &[("ProjectName", PROJECT)]).properties(method)["Integration"].clone()
}

/// A POST as API Gateway hands it to the integration.
struct Post {
    content_type: &'static str,
    body: String,
    path: Option<String>,
    query: Option<(&'static str, &'static str)>,
    header: Option<(&'static str, &'static str)>,
}

fn post(content_type: &'static str, body: impl Into<String>) -> Post {
    Post {
        content_type,
        body: body.into(),
        path: None,
        query: None,
        header: None,
    }
}

impl Post {
    fn at(mut self, path: impl Into<String>) -> Post {
        self.path = Some(path.into());
        self
    }

    fn job(&self, integration: &Value) -> Value {
        let mut headers =
            json!({"User-Agent": "Backlog Webhook", "Content-Type": self.content_type});
        if let Some((k, v)) = self.header {
            headers[k] = json!(v);
        }
        let mut request = json!({"method": "POST", "headers": headers, "body": self.body});
        if let Some(p) = &self.path {
            request["path"] = json!({"mirror": p});
        }
        if let Some((k, v)) = self.query {
            request["query"] = json!({k: v});
        }
        json!({"mode": "request", "integration": integration, "request": request})
    }
}

/// The StartBuild bodies the posts render to, each checked: StartBuild is called with the two
/// static headers, the body is JSON, its keys are projectName and at most the one override, and
/// botocore's StartBuild model accepts it.
fn start_builds(method: &str, posts: &[Post]) -> Vec<Value> {
    let integration = integration(method);
    let jobs: Vec<Value> = posts.iter().map(|p| p.job(&integration)).collect();
    let bodies: Vec<Value> = apigw::render(&jobs)
        .into_iter()
        .zip(posts)
        .map(|(r, p)| {
            assert!(
                r.get("error").is_none(),
                "the template failed ({}) for body {:.200}",
                r["error"],
                p.body
            );
            assert_eq!(r["status"], 200, "{r}");
            assert_eq!(
                r["headers"],
                json!({"X-Amz-Target": "CodeBuild_20161006.StartBuild",
                       "Content-Type": "application/x-amz-json-1.1"})
            );
            let text = r["body"].as_str().unwrap();
            let body: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {text:.300}"));
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            assert!(
                keys == ["environmentVariablesOverride", "projectName"] || keys == ["projectName"],
                "keys {keys:?} in {text:.300}"
            );
            body
        })
        .collect();
    apigw::assert_valid_start_builds(&bodies);
    bodies
}

fn syncs(name: &str) -> Value {
    json!({"projectName": PROJECT, "environmentVariablesOverride": [
        {"name": "BACKLOG_MIRROR_REPO", "value": name, "type": "PLAINTEXT"}
    ]})
}

fn syncs_every_mirror() -> Value {
    json!({"projectName": PROJECT})
}

/// Backlog's push payload (Backlog's help, "Webhook"; BRIEF.md) for a repository URL.
fn payload(url: &str) -> Value {
    json!({
        "before": "8b5b1b4a9e8c6d2f0a7e3c1b5d9f2e4a6c8b0d1e",
        "after": "1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f",
        "ref": "refs/heads/main",
        "repository": {"url": url, "name": "app", "description": "Kanji と \"quotes\" & <tags>"},
        "revisions": [{
            "id": "1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f",
            "url": format!("{url}/commit/1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f"),
            "author": {"email": "dev@example.com", "name": "開発 者"},
            "message": "Fix it's \"quoting\"\n\n$context.requestOverride #set($x = 1)",
            "timestamp": "2026-11-25T10:00:00+09:00",
            "added": ["a.txt"], "removed": [], "modified": ["b.txt"]
        }]
    })
}

/// Backlog's body: one form field, `payload`, holding the JSON.
fn form(json: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish()
}

const BACKLOG_URL: &str = "https://example-space.backlog.jp/git/PROJ/app";

#[test]
fn backlogs_push_names_its_repository_and_the_build_syncs_that_mirror() {
    let json = payload(BACKLOG_URL).to_string();
    let body = form(&json);
    assert!(
        body.starts_with("payload=%7B%22") && body.contains("%2Fgit%2FPROJ%2Fapp%22"),
        "{body}"
    );
    let got = start_builds(
        "WebhookMethod",
        &[
            post(FORM, body.clone()),
            post(JSON, json.clone()),
            // What a JSON encoder that escapes / sends (PHP's, say): still the same repository.
            post(JSON, json.replace('/', "\\/")),
            post(FORM, form(&json.replace('/', "\\/"))),
            // Backlog's key order is not relied on, nor its spacing.
            post(
                JSON,
                r#"{ "repository" : { "name" : "app" , "url" : "https://example-space.backlog.com/git/PROJ/app/" } }"#,
            ),
            // Other form fields, even malformed ones, around the payload.
            post(FORM, format!("x=%ZZ&{body}&y=%E3%81%&z=%")),
            // The names Backlog allows: project keys of letters, digits, _; repositories also . -
            post(
                JSON,
                payload("https://s.backlog.jp/git/MY_PROJ2/web.site-v2_x").to_string(),
            ),
        ],
    );
    for got in &got[..6] {
        assert_eq!(got, &syncs("PROJ/app"));
    }
    assert_eq!(got[6], syncs("MY_PROJ2/web.site-v2_x"));
}

/// Backlog may give repository.url with a trailing `.git`; the list's names have none, so the
/// mapping drops it (a name the list lacks would fail the build and alert on every push). Only
/// a whole `.git` at the end goes: a name that merely contains it keeps it.
#[test]
fn a_repository_url_ending_in_dot_git_names_the_mirror_without_it() {
    let with_git = payload("https://example-space.backlog.jp/git/PROJ/app.git").to_string();
    let got = start_builds(
        "WebhookMethod",
        &[
            post(FORM, form(&with_git)),
            post(JSON, with_git.clone()),
            post(JSON, with_git.replace('/', "\\/")),
            post(FORM, form(&with_git.replace('/', "\\/"))),
            post(
                JSON,
                payload("https://example-space.backlog.jp/git/PROJ/app.git/").to_string(),
            ),
            // And without it, as before.
            post(FORM, form(&payload(BACKLOG_URL).to_string())),
            post(
                JSON,
                payload("https://s.backlog.jp/git/PROJ/app.github.io.git").to_string(),
            ),
            post(
                JSON,
                payload("https://s.backlog.jp/git/PROJ/app.gitx").to_string(),
            ),
            post(
                JSON,
                payload("https://s.backlog.jp/git/PROJ/.git").to_string(),
            ),
        ],
    );
    for got in &got[..6] {
        assert_eq!(got, &syncs("PROJ/app"));
    }
    assert_eq!(got[6], syncs("PROJ/app.github.io"));
    assert_eq!(got[7], syncs("PROJ/app.gitx"));
    // Nothing but the suffix is no name the list can have; it is kept, and the build refuses it.
    assert_eq!(got[8], syncs("PROJ/.git"));
}

/// `.../prod/<secret>/PROJ/app`: the path names the mirror, whatever the body says; anything in
/// it reaches the build as one string, cut to 101 characters (the build refuses a name that is
/// not in its list, and no name of a list is longer than 100).
#[test]
fn a_repository_url_names_its_mirror_and_anything_in_it_stays_one_string() {
    let other_repo = form(&payload("https://example-space.backlog.jp/git/PROJ/other").to_string());
    let injection = r#"PROJ/app"},{"name":"BACKLOG_MIRROR_TARGET","value":"https://evil.example/x","type":"PLAINTEXT"}],"buildspecOverride":"version: 0.2"#;
    let long = "x".repeat(10 * 1024);
    let emoji = "😀".repeat(200);
    let paths: Vec<String> = vec![
        "PROJ/app".into(),
        "app".into(),
        injection.into(),
        "back\\slash\\\"quote' and 'single".into(),
        "new\nline\r\ttab\u{0}nul\u{1b}esc".into(),
        "$context.requestOverride.header.X-Amz-Target #set($x = 1) $input.body ${x} #if(true)"
            .into(),
        "\u{fffd}\u{fffd} not UTF-8 once decoded, Kanji 漢字, \u{2028}".into(),
        "PROJ/app,PROJ/other".into(),
        long.clone(),
        emoji.clone(),
    ];
    let posts: Vec<Post> = paths
        .iter()
        .map(|p| post(FORM, other_repo.clone()).at(p.clone()))
        .collect();
    let got = start_builds("WebhookRepositoryMethod", &posts);
    let expect: Vec<String> = paths
        .iter()
        .map(|p| p.chars().take(101).collect())
        .collect();
    for ((got, want), path) in got.iter().zip(&expect).zip(&paths) {
        assert_eq!(got, &syncs(want), "path {path:.80}");
    }
    assert_eq!(
        got[8]["environmentVariablesOverride"][0]["value"],
        "x".repeat(101)
    );
    assert_eq!(
        got[9]["environmentVariablesOverride"][0]["value"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        101,
        "characters, not UTF-16 halves"
    );
}

/// What the payload may not do: add keys or overrides, or name anything but PROJECT/repo of a
/// well-formed repository URL. Each gives either exactly that name or no override at all.
#[test]
fn hostile_payloads_name_at_most_one_well_formed_mirror() {
    let url_with =
        |repo: &str| payload(&format!("https://x.backlog.jp/git/PROJ/{repo}")).to_string();
    let cases: Vec<(Post, Value)> = vec![
        // Quotes closing the value and opening a second override.
        (
            post(
                JSON,
                url_with(
                    r#"app"},{"name":"BACKLOG_MIRROR_TARGET","value":"https://evil.example/x"#,
                ),
            ),
            syncs_every_mirror(),
        ),
        (
            post(
                FORM,
                form(&url_with(
                    r#"app\"},{\"name\":\"BACKLOG_MIRROR_TARGET\",\"value\":\"x"#,
                )),
            ),
            syncs_every_mirror(),
        ),
        // The raw JSON text with an escaped quote right after the name.
        (
            post(
                JSON,
                r#"{"repository": {"url": "https://x.backlog.jp/git/PROJ/app\"}, {\"name\": \"X"}}"#,
            ),
            syncs_every_mirror(),
        ),
        (post(JSON, url_with("app\\evil")), syncs_every_mirror()),
        (
            post(JSON, url_with("app\nBACKLOG_MIRROR_TARGET=x")),
            syncs_every_mirror(),
        ),
        (post(JSON, url_with("$context.stage")), syncs_every_mirror()),
        (
            post(JSON, url_with("#set($name = 'x')")),
            syncs_every_mirror(),
        ),
        (post(FORM, form(&url_with("%2e%2e"))), syncs_every_mirror()),
        // JSON unicode escapes: the text is not the plain URL, so no name.
        (
            post(
                JSON,
                r#"{"repository": {"url": "https://x.backlog.jp/git/\u0050ROJ/app"}}"#,
            ),
            syncs_every_mirror(),
        ),
        // A name no mirror can have (more than 100 characters), 10 KB of it.
        (
            post(JSON, url_with(&"a".repeat(10 * 1024))),
            syncs_every_mirror(),
        ),
        (
            post(FORM, form(&url_with(&"a".repeat(10 * 1024)))),
            syncs_every_mirror(),
        ),
        // Just under the limit still names it.
        (
            post(JSON, url_with(&"a".repeat(95))),
            syncs(&format!("PROJ/{}", "a".repeat(95))),
        ),
        // Not a repository's URL.
        (
            post(
                JSON,
                payload("https://x.backlog.jp/projects/PROJ").to_string(),
            ),
            syncs_every_mirror(),
        ),
        (
            post(
                JSON,
                payload("http://x.backlog.jp/git/PROJ/app").to_string(),
            ),
            syncs_every_mirror(),
        ),
        (
            post(JSON, payload("https://x.backlog.jp/git/PROJ").to_string()),
            syncs_every_mirror(),
        ),
        (
            post(
                JSON,
                payload("https://x.backlog.jp/git/PROJ/app/tree/main").to_string(),
            ),
            syncs_every_mirror(),
        ),
        // repository.url only: a URL elsewhere in the payload names nothing.
        (
            post(
                JSON,
                json!({"revisions": [{"url": BACKLOG_URL}], "repository": {"name": "app"}})
                    .to_string(),
            ),
            syncs_every_mirror(),
        ),
        // Two repositories: the first names the mirror, and there is still one override.
        (
            post(
                JSON,
                r#"{"repository": {"url": "https://x.backlog.jp/git/PROJ/one"}, "repository": {"url": "https://x.backlog.jp/git/PROJ/two"}}"#,
            ),
            syncs("PROJ/one"),
        ),
        // Percent-escapes that are not UTF-8, or not escapes at all, around a good payload.
        (
            post(
                FORM,
                format!(
                    "{}&bad=%FF%FE%C3%28&stray=%&zz=%ZZ%G1",
                    form(&url_with("app"))
                ),
            ),
            syncs("PROJ/app"),
        ),
        (
            post(FORM, "payload=%FF%FE%C3%28%22repository%22".to_string()),
            syncs_every_mirror(),
        ),
        // Not JSON, not a form, nothing.
        (post(JSON, "not json at all {{{"), syncs_every_mirror()),
        (post(JSON, ""), syncs_every_mirror()),
        (
            post(FORM, "\u{0}\u{1}\u{ff}é".repeat(10_000)),
            syncs_every_mirror(),
        ),
        (post(FORM, "payload=%"), syncs_every_mirror()),
        // VTL in the body is data.
        (
            post(
                FORM,
                "#set($name = 'PROJ/app')$input.body #if(true)x#end".to_string(),
            ),
            syncs_every_mirror(),
        ),
    ];
    let (posts, want): (Vec<Post>, Vec<Value>) = cases.into_iter().unzip();
    let got = start_builds("WebhookMethod", &posts);
    for ((got, want), p) in got.iter().zip(&want).zip(&posts) {
        assert_eq!(got, want, "{} body {:.200}", p.content_type, p.body);
    }
}

/// The template guards $util.urlDecode: unguarded, the same body fails the template, which on
/// AWS is a 500 to Backlog and no build. (This proves the emulator would catch the missing guard.)
#[test]
fn a_stray_percent_would_fail_url_decode_without_the_guard() {
    let unguarded = json!({
        "PassthroughBehavior": "NEVER",
        "RequestTemplates": {FORM: "$util.urlDecode($input.body)"},
        "RequestParameters": {}
    });
    let results = apigw::render(&[
        post(FORM, "payload=%").job(&unguarded),
        post(FORM, "a=%ZZ").job(&unguarded),
        post(FORM, "a=%41%E3%81%82+b").job(&unguarded),
    ]);
    assert!(
        results[0]["error"].as_str().unwrap().contains("URLDecoder"),
        "{}",
        results[0]
    );
    assert!(
        results[1]["error"].as_str().unwrap().contains("URLDecoder"),
        "{}",
        results[1]
    );
    assert_eq!(results[2]["body"], "a=Aあ b");
    // And the real template, on the same bodies, renders.
    let got = start_builds(
        "WebhookMethod",
        &[post(FORM, "payload=%"), post(FORM, "a=%ZZ")],
    );
    assert_eq!(got, vec![syncs_every_mirror(), syncs_every_mirror()]);
}

/// Only the path after the secret and the payload name a mirror: a query string or a header
/// called `mirror` ($input.params('mirror') would read either) does not.
#[test]
fn query_strings_and_headers_name_no_mirror() {
    let mut by_query = post(JSON, "{}");
    by_query.query = Some(("mirror", "PROJ/evil"));
    let mut by_header = post(JSON, "{}");
    by_header.header = Some(("mirror", "PROJ/evil"));
    let got = start_builds("WebhookMethod", &[by_query, by_header]);
    assert_eq!(got, vec![syncs_every_mirror(), syncs_every_mirror()]);
}

/// The repository URL is the webhook URL plus a greedy path under the secret, and its method is
/// the webhook method in everything but the resource: same integration, template, responses. The
/// API's deployment waits for both methods.
#[test]
fn the_repository_method_is_the_webhook_method_on_the_path_below_the_secret() {
    let t = stack::template();
    let s = stack::Stack::new(&t, &[]);
    let resource = s.properties("WebhookRepositoryResource");
    assert_eq!(resource["PathPart"], "{mirror+}");
    assert_eq!(resource["ParentId"], "<WebhookResource>");
    let plain = s.properties("WebhookMethod");
    let repo = s.properties("WebhookRepositoryMethod");
    assert_eq!(plain["ResourceId"], "<WebhookResource>");
    assert_eq!(repo["ResourceId"], "<WebhookRepositoryResource>");
    assert_eq!(
        repo["RequestParameters"],
        json!({"method.request.path.mirror": true})
    );
    for key in [
        "HttpMethod",
        "AuthorizationType",
        "Integration",
        "MethodResponses",
    ] {
        assert_eq!(
            plain[key], repo[key],
            "{key} differs between the two methods"
        );
    }
    assert_eq!(
        t["Resources"]["WebhookDeployment"]["DependsOn"],
        json!(["WebhookMethod", "WebhookRepositoryMethod"])
    );
    // Both content types, one template.
    let templates = &plain["Integration"]["RequestTemplates"];
    let (form, json) = (
        templates[FORM].as_str().unwrap(),
        templates[JSON].as_str().unwrap(),
    );
    assert!(form.starts_with("#set($project = \"backlog-mirror\")#set($form = true)"));
    assert_eq!(
        form.replacen("#set($form = true)", "#set($form = false)", 1),
        json
    );
}

/// The emulation the tests above stand on reads strings as Java does where the template relies on
/// it, and refuses what it could not emulate faithfully.
#[test]
fn the_emulated_strings_behave_as_java_strings() {
    let raw = |template: &str| {
        json!({"PassthroughBehavior": "NEVER", "RequestParameters": {},
               "RequestTemplates": {JSON: template}})
    };
    let cases = [
        ("#set($s = \"😀a\")$s.length()", Ok("3")),
        ("#set($s = \"abc\")$s.indexOf('z')", Ok("-1")),
        (
            "#set($s = \"PROJ/app\")$s.replaceAll('(P)(R)', '$2$1\\$')",
            Ok("RP$OJ/app"),
        ),
        ("#set($s = \"ab\")$s.matches('a')", Ok("false")),
        (
            "#set($s = \"ab\")$s.substring(1, 5)",
            Err("StringIndexOutOfBounds"),
        ),
        (
            "#set($s = \"a b\")$s.matches('a\\sb')",
            Err("Java and Python read differently"),
        ),
        (
            "#set($s = \"ab\")$s.replaceAll('a', '$x')",
            Err("illegal group reference"),
        ),
    ];
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(t, _)| post(JSON, "").job(&raw(t)))
        .collect();
    for (result, (template, want)) in apigw::render(&jobs).iter().zip(&cases) {
        match want {
            Ok(text) => assert_eq!(result["body"], *text, "{template}: {result}"),
            Err(text) => assert!(
                result["error"].as_str().is_some_and(|e| e.contains(text)),
                "{template}: {result}"
            ),
        }
    }
}
