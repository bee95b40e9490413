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

const START_BUILD: &str = "CodeBuild_20161006.StartBuild";
const BATCH_GET_PROJECTS: &str = "CodeBuild_20161006.BatchGetProjects";

/// What each post renders to, checked: StartBuild's body (JSON, its keys projectName and at most
/// the one override), or `ignored()` for the harmless read that starts nothing (BatchGetProjects
/// of this project alone, X-Amz-Target overridden). Always the two static-shaped headers, and
/// each body accepted by botocore's model of its operation.
fn start_builds(method: &str, posts: &[Post]) -> Vec<Value> {
    let integration = integration(method);
    let jobs: Vec<Value> = posts.iter().map(|p| p.job(&integration)).collect();
    let (mut started, mut reads) = (Vec::new(), Vec::new());
    let got: Vec<Value> = apigw::render(&jobs)
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
            let target = r["headers"]["X-Amz-Target"].as_str().unwrap_or_default();
            assert_eq!(
                r["headers"],
                json!({"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
            );
            let text = r["body"].as_str().unwrap();
            let body: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {text:.300}"));
            if target == BATCH_GET_PROJECTS {
                assert_eq!(body, json!({"names": [PROJECT]}), "{:.200}", p.body);
                reads.push(body);
                return ignored();
            }
            assert_eq!(target, START_BUILD, "{:.200}", p.body);
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            assert!(
                keys == ["environmentVariablesOverride", "projectName"] || keys == ["projectName"],
                "keys {keys:?} in {text:.300}"
            );
            started.push(body.clone());
            body
        })
        .collect();
    for (operation, bodies) in [("StartBuild", started), ("BatchGetProjects", reads)] {
        if !bodies.is_empty() {
            apigw::assert_valid_inputs(operation, &bodies);
        }
    }
    got
}

/// Each post, at the webhook URL, renders to what it is paired with.
fn assert_routes(cases: Vec<(Post, Value)>) {
    let (posts, want): (Vec<Post>, Vec<Value>) = cases.into_iter().unzip();
    let got = start_builds("WebhookMethod", &posts);
    for ((got, want), p) in got.iter().zip(&want).zip(&posts) {
        assert_eq!(got, want, "{} body {:.300}", p.content_type, p.body);
    }
}

/// A request that starts no build (see `start_builds`).
fn ignored() -> Value {
    json!("ignored: BatchGetProjects, no build")
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
    assert_routes(cases);
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

/// A project webhook's body (Backlog's help, "Webhook": the "Get Recent Updates" activity of the
/// API v2, developer.nulab.com): `type` the activity type, `project` with `projectKey`, and
/// `content` by type (nulab/backlog4j's activity contents). Keys come out sorted (serde_json),
/// which is not Backlog's order: nothing relies on the order.
fn activity(kind: u64, project: &str, content: Value) -> Value {
    json!({
        "id": 3153,
        "project": {
            "id": 92, "projectKey": project, "name": "Subtasking", "chartEnabled": true,
            "subtaskingEnabled": true, "textFormattingRule": "backlog", "archived": false,
            "displayOrder": 3, "useDevAttributes": true
        },
        "type": kind,
        "content": content,
        "notifications": [],
        "createdUser": {
            "id": 1, "userId": "admin", "name": "開発 者", "roleType": 1, "lang": "ja",
            "nulabAccount": {"nulabId": "Prm9ZD9DQD5snNWcSYSwZiQoA9WFBUEa2ySznrSnSQRhdC2X8G",
                             "name": "admin", "uniqueId": "admin"},
            "mailAddress": "eguchi@nulab.example", "lastLoginTime": "2022-09-01T06:35:39Z"
        },
        "created": "2013-12-27T07:50:44Z"
    })
}

/// `content` of "Git pushed" (type 12) to a repository.
fn pushed(repo: &str, comment: &str) -> Value {
    json!({
        "change_type": "update",
        "ref": "refs/heads/main",
        "revision_type": "commit",
        "repository": {"id": 5, "name": repo, "description": "Kanji と \"quotes\" & <tags>"},
        "revisions": [{"rev": "1f2e3d4c5b6a79880a9b8c7d6e5f4a3b2c1d0e9f", "comment": comment}],
        "revision_count": 1
    })
}

/// A commit message that looks like the structure a project webhook is read from.
const LOOK_ALIKE: &str = "Fix it's \"quoting\" \\ {\"type\": 13, \"project\": {\"projectKey\": \"EVIL\"}, \
     \"content\": {\"repository\": {\"name\": \"evil\"}}} $context.requestOverride #set($x = 1)";

/// The activity types that are not about a repository's refs (Backlog API v2 "Get Recent
/// Updates", type 1-26; 12 Git pushed and 13 Git repository created are), each with a content of
/// its shape; the pull request ones carry `repository` too.
fn other_events() -> Vec<Value> {
    (1..=26)
        .filter(|t| *t != 12 && *t != 13)
        .map(|t| {
            let content = match t {
                18..=21 => json!({
                    "id": 2, "number": 3, "summary": "Merge feature", "description": "",
                    "comment": {"id": 7, "content": "LGTM"}, "changes": [],
                    "repository": {"id": 5, "name": "app", "description": ""},
                    "issue": {"id": 4809, "key_id": 121, "summary": "x", "description": ""}
                }),
                15 | 16 => json!({
                    "users": [{"id": 2, "userId": "dev", "name": "dev", "roleType": 2}],
                    "group_project_activities": [{"id": 1, "type": 25}], "comment": ""
                }),
                _ => json!({
                    "id": 4809, "key_id": 121, "summary": "Git pushed to PROJ/app",
                    "description": "", "comment": {"id": 7237, "content": LOOK_ALIKE},
                    "changes": [{"field": "status", "new_value": "4", "old_value": "1",
                                 "type": "standard"}]
                }),
            };
            activity(t, "PROJ", content)
        })
        .collect()
}

/// "Git pushed" and "Git repository created" name PROJECTKEY/repository, as JSON (what Backlog
/// sends) or form-encoded, pretty or compact, in any key order; the repository URL's path still
/// wins below the secret.
#[test]
fn a_project_webhook_of_a_push_or_a_new_repository_syncs_that_repository() {
    let push = activity(12, "PROJ", pushed("app", LOOK_ALIKE));
    let created = activity(
        13,
        "PROJ",
        json!({"repository": {"id": 6, "name": "new-repo", "description": null}}),
    );
    // Backlog's own order and spacing (id, project, type, content, ...).
    let backlog_order = r#"{"id":1,"project":{"id":9,"projectKey":"PROJ","name":"p","archived":false},"type":12,"content":{"change_type":"create","ref":"refs/heads/topic","revision_type":"commit","repository":{"id":5,"name":"app","description":"a {brace}"},"revisions":[],"revision_count":0},"notifications":[],"createdUser":{"id":1,"name":"a"},"created":"2026-11-25T01:00:00Z"}"#;
    let posts = vec![
        post(JSON, push.to_string()),
        post(JSON, serde_json::to_string_pretty(&push).unwrap()),
        post(FORM, form(&push.to_string())),
        post(JSON, push.to_string().replace('/', "\\/")),
        post(JSON, backlog_order),
        post(
            JSON,
            "{ \"type\" :\r\n 12 , \"project\" : { \"projectKey\" : \"PROJ\" } , \"content\" : { \"repository\" : {\t\"name\" : \"app\" } } }",
        ),
        post(JSON, created.to_string()),
        post(FORM, form(&created.to_string())),
        post(
            JSON,
            activity(12, "MY_PROJ2", pushed("web.site-v2_x", "m")).to_string(),
        ),
    ];
    let got = start_builds("WebhookMethod", &posts);
    for got in &got[..6] {
        assert_eq!(got, &syncs("PROJ/app"));
    }
    assert_eq!(got[6], syncs("PROJ/new-repo"));
    assert_eq!(got[7], syncs("PROJ/new-repo"));
    assert_eq!(got[8], syncs("MY_PROJ2/web.site-v2_x"));
    let got = start_builds(
        "WebhookRepositoryMethod",
        &[
            post(JSON, push.to_string()).at("PROJ/app"),
            post(JSON, push.to_string()).at("OTHER/lib"),
        ],
    );
    assert_eq!(got, vec![syncs("PROJ/app"), syncs("OTHER/lib")]);
}

/// Every other event a project webhook can send starts no build (a harmless read, answered 200:
/// tests/apigateway.rs), at the webhook URL and at a repository's own URL alike; so do a push or
/// a new repository that name no repository. Never every mirror.
#[test]
fn other_project_webhook_events_start_no_build() {
    let mut posts: Vec<Post> = Vec::new();
    for event in other_events() {
        posts.push(post(JSON, event.to_string()));
        posts.push(post(FORM, form(&event.to_string())));
    }
    let without = |kind: u64, content: Value| activity(kind, "PROJ", content).to_string();
    for body in [
        without(12, json!({"ref": "refs/heads/main", "revisions": []})),
        without(13, json!({})),
        without(12, json!({"repository": {"id": 5, "description": ""}})),
        // No project.
        json!({"type": 13, "content": {"repository": {"name": "app"}}}).to_string(),
        // A name no mirror can have (over 100 characters).
        activity(12, "PROJ", pushed(&"a".repeat(96), "m")).to_string(),
        // Just the type.
        r#"{"type": 12}"#.to_string(),
    ] {
        posts.push(post(JSON, body));
    }
    let count = posts.len();
    let got = start_builds("WebhookMethod", &posts);
    assert_eq!(got, vec![ignored(); count]);
    let below: Vec<Post> = other_events()
        .iter()
        .map(|e| post(JSON, e.to_string()).at("PROJ/app"))
        .collect();
    let got = start_builds("WebhookRepositoryMethod", &below);
    assert_eq!(got, vec![ignored(); below.len()]);
    // One character less than too long still names it.
    let longest = activity(12, "PROJ", pushed(&"a".repeat(95), "m")).to_string();
    let got = start_builds("WebhookMethod", &[post(JSON, longest)]);
    assert_eq!(got, vec![syncs(&format!("PROJ/{}", "a".repeat(95)))]);
}

/// What a project webhook's body may not do: name anything but one well-formed PROJECTKEY/name
/// of one push or new repository, add a key or an override, or fall back to every mirror.
#[test]
fn hostile_project_webhooks_name_at_most_one_well_formed_mirror_and_never_every_mirror() {
    let push_of = |repo: &str| activity(12, "PROJ", pushed(repo, "m")).to_string();
    let mut second_repository = activity(12, "PROJ", pushed("app", "m"));
    second_repository["project"]["repository"] = json!({"id": 1, "name": "other"});
    let mut second_key = activity(12, "PROJ", pushed("app", "m"));
    second_key["content"]["project"] = json!({"projectKey": "OTHER"});
    let mut issue_with_repository_url = activity(2, "PROJ", json!({"id": 1, "summary": "s"}));
    issue_with_repository_url["repository"] = json!({"url": BACKLOG_URL, "name": "app"});
    let mut nested_push = activity(3, "PROJ", json!({"id": 1}));
    nested_push["content"]["activity"] = activity(12, "PROJ", pushed("app", "m"));
    let mut pull_request_with_push_type = other_events()
        .into_iter()
        .find(|e| e["type"] == 18)
        .unwrap();
    pull_request_with_push_type["content"]["changes"] = json!([{"type": 12}]);
    let mut untyped_push = activity(12, "PROJ", pushed("app", "m"));
    untyped_push.as_object_mut().unwrap().remove("type");
    let huge_comment = "x\"\\{}".repeat(200_000);
    let cases: Vec<(Post, Value)> = vec![
        // Quotes closing the name and opening a second override; backslashes.
        (
            post(
                JSON,
                push_of(r#"app"},{"name":"BACKLOG_MIRROR_TARGET","value":"https://evil.example/x"#),
            ),
            ignored(),
        ),
        (post(JSON, push_of("app\\evil")), ignored()),
        (
            post(JSON, push_of("app\nBACKLOG_MIRROR_TARGET=x")),
            ignored(),
        ),
        (post(JSON, push_of("#set($name = 'x')")), ignored()),
        (post(JSON, push_of("$context.stage")), ignored()),
        (post(FORM, form(&push_of("%2e%2e"))), ignored()),
        // Unicode: not the plain name, so none.
        (post(JSON, push_of("レポ")), ignored()),
        (
            post(
                JSON,
                r#"{"type": 12, "project": {"projectKey": "\u0050ROJ"}, "content": {"repository": {"name": "app"}}}"#,
            ),
            ignored(),
        ),
        // The type as something else than the number 12 or 13.
        (
            post(
                JSON,
                push_of("app").replace("\"type\":12", "\"type\":\"12\""),
            ),
            ignored(),
        ),
        (
            post(JSON, push_of("app").replace("\"type\":12", "\"type\":120")),
            ignored(),
        ),
        (
            post(JSON, push_of("app").replace("\"type\":12", "\"type\":-12")),
            ignored(),
        ),
        (
            post(
                JSON,
                push_of("app").replace("\"type\":12", "\"type\":1.2e1"),
            ),
            ignored(),
        ),
        // Nested look-alikes: a push inside another event, a second repository or project key.
        (post(JSON, nested_push.to_string()), ignored()),
        (
            post(JSON, pull_request_with_push_type.to_string()),
            ignored(),
        ),
        // A project webhook's body without its type is still one: no repository webhook fallback.
        (post(JSON, untyped_push.to_string()), ignored()),
        (post(JSON, second_repository.to_string()), ignored()),
        (post(JSON, second_key.to_string()), ignored()),
        // An issue event carrying a repository webhook's repository.url: still ignored.
        (post(JSON, issue_with_repository_url.to_string()), ignored()),
        (
            post(FORM, form(&issue_with_repository_url.to_string())),
            ignored(),
        ),
        // Huge bodies: a megabyte of quotes, backslashes and braces in a commit message.
        (
            post(
                JSON,
                activity(12, "PROJ", pushed("app", &huge_comment)).to_string(),
            ),
            syncs("PROJ/app"),
        ),
        (
            post(
                FORM,
                form(&activity(5, "PROJ", json!({"content": huge_comment})).to_string()),
            ),
            ignored(),
        ),
        // Form-encoded with garbage around the payload.
        (
            post(
                FORM,
                format!("x=%ZZ&{}&y=%E3%81%&z=%", form(&push_of("app"))),
            ),
            syncs("PROJ/app"),
        ),
        // VTL in the body is data.
        (
            post(
                JSON,
                "{\"type\": 2, \"projectKey\": \"#set($ignore = false)\"}".to_string(),
            ),
            ignored(),
        ),
    ];
    assert_routes(cases);
}

/// The emulation applies a request template's `$context.requestOverride.header` over the static
/// request parameters, and fails a second assignment as API Gateway does (a 5XX).
#[test]
fn a_request_override_replaces_a_static_header_and_only_once() {
    let raw = |template: &str| {
        json!({"PassthroughBehavior": "NEVER",
               "RequestParameters": {"integration.request.header.X-Amz-Target": "'A.Start'"},
               "RequestTemplates": {JSON: template}})
    };
    let set = "#set($context.requestOverride.header.X-Amz-Target = 'A.Read')";
    let results = apigw::render(&[
        post(JSON, "").job(&raw("{}")),
        post(JSON, "").job(&raw(&format!("{set}{{}}"))),
        post(JSON, "").job(&raw(&format!("{set}{set}{{}}"))),
    ]);
    assert_eq!(results[0]["headers"], json!({"X-Amz-Target": "A.Start"}));
    assert_eq!(results[1]["headers"], json!({"X-Amz-Target": "A.Read"}));
    assert!(
        results[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("set twice")),
        "{}",
        results[2]
    );
}
