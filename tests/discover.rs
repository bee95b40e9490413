//! `[discover]`: the repositories Backlog's API lists become mirrors `PROJECT/repo`. Against a
//! stand-in of the API on 127.0.0.1 (`support::backlog_api`) whose repositories' `httpUrl`s
//! point at real repositories served by git http-backend, into local bare targets, each
//! checked with `git for-each-ref` on both ends: the scheduled run syncs every listed and
//! discovered mirror; `--repo` asks only its project; the list wins; collisions, archived and
//! excluded projects, vanished repositories; 401, 429, 500, a stall and a hostile answer; and
//! the API key, which travels in the URL's query, appears in no output at any log level.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::backlog_api::BacklogApi;
use crate::support::*;

/// The API key: it starts with the suite's canary, so every run is checked for it.
fn key() -> String {
    format!("{CANARY}-backlog-api-key")
}

/// A space: sources served over HTTP, the API stand-in, the key in a file.
struct Space {
    sb: Sandbox,
    http: HttpGit,
    api: BacklogApi,
    key_file: PathBuf,
    /// (project, repository, archived project)
    repos: Vec<(String, String, bool)>,
}

impl Space {
    /// Projects and their repositories: `("PROJ", "app", false)`; a project with no
    /// repository is `("EMPTY", "", false)`.
    fn new(repos: &[(&str, &str, bool)]) -> Space {
        let sb = Sandbox::new();
        let http = HttpGit::start(&sb.join("src"));
        let api = BacklogApi::start(&sb.join("api"), &json!({"key": key()}));
        let key_file = sb.join("backlog-api-key");
        std::fs::write(&key_file, format!("{}\n", key())).expect("key file");
        let mut space = Space {
            sb,
            http,
            api,
            key_file,
            repos: Vec::new(),
        };
        for (project, repo, archived) in repos {
            space.add(project, repo, *archived);
        }
        space.publish();
        space
    }

    /// A repository with history at `src/P/r.git` and an empty target at `dst/P/r.git`.
    fn add(&mut self, project: &str, repo: &str, archived: bool) {
        if !repo.is_empty() {
            let work = WorkRepo::init(&self.sb.join(&format!("work/{project}/{repo}")));
            work.commit("a.txt", &format!("{project}/{repo}"), "first");
            work.branch("feature");
            work.tag_light("v1");
            work.push_mirror(&init_bare(&self.source(project, repo)));
            init_bare(&self.target(project, repo));
        }
        self.repos
            .push((project.to_string(), repo.to_string(), archived));
    }

    fn source(&self, project: &str, repo: &str) -> PathBuf {
        self.sb.join(&format!("src/{project}/{repo}.git"))
    }

    fn target(&self, project: &str, repo: &str) -> PathBuf {
        self.sb.join(&format!("dst/{project}/{repo}.git"))
    }

    /// What the API answers: the repositories added so far (less `hidden`), with `extra`'s
    /// fields over it.
    fn space(&self, hidden: &[&str], extra: Value) -> Value {
        let mut projects: Vec<Value> = Vec::new();
        let mut repositories = serde_json::Map::new();
        for (i, (project, repo, archived)) in self.repos.iter().enumerate() {
            if !projects.iter().any(|p| p["projectKey"] == project.as_str()) {
                projects.push(json!({"id": i + 1, "projectKey": project, "name": format!("{project} project"), "archived": archived}));
            }
            let list = repositories
                .entry(project.clone())
                .or_insert_with(|| json!([]));
            let name = format!("{project}/{repo}");
            if repo.is_empty() || hidden.contains(&name.as_str()) {
                continue;
            }
            list.as_array_mut().expect("array").push(json!({
                "id": i + 1,
                "projectId": 1,
                "name": repo,
                "httpUrl": self.http.url(&format!("{project}/{repo}.git")),
                "sshUrl": format!("space@space.git.backlog.jp:/{project}/{repo}.git"),
            }));
        }
        let mut space = json!({"key": key(), "projects": projects, "repositories": repositories});
        if let (Some(space), Value::Object(extra)) = (space.as_object_mut(), extra) {
            space.extend(extra);
        }
        space
    }

    fn publish(&self) {
        self.api.set(&self.space(&[], json!({})));
    }

    /// A list of `[defaults]`, `[discover]` (its extra lines after the standard ones) and
    /// `mirrors`.
    fn list(&self, discover: &str, mirrors: &str) -> PathBuf {
        let text = format!(
            "[defaults]\nretries = 0\n\n[discover]\napi-url = \"{}\"\nbacklog-api-key-file = \
             \"{}\"\nsource-url = \"https\"\ntarget = \"{}/{{project}}/{{repo}}.git\"\n{discover}\n\
             {mirrors}",
            self.api.url(),
            path_str(&self.key_file),
            path_str(&self.sb.join("dst")),
        );
        let path = self.sb.join("mirrors.toml");
        std::fs::write(&path, text).expect("write list");
        path
    }

    fn sync(&self, list: &Path) -> Command {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .args(["sync", "--config"])
            .arg(list)
            .arg("--cache-dir")
            .arg(self.sb.cache_dir());
        cmd
    }
}

/// A listed mirror's source (with history) and empty target, under `<sandbox>/<dir>`.
fn listed_repo(sb: &Sandbox, dir: &str) -> (PathBuf, PathBuf) {
    let work = WorkRepo::init(&sb.join(&format!("{dir}-work")));
    work.commit("a.txt", dir, "first");
    work.branch("dev");
    let source = init_bare(&sb.join(&format!("{dir}/source.git")));
    work.push_mirror(&source);
    (source, init_bare(&sb.join(&format!("{dir}/target.git"))))
}

/// The discovery entry of repository `project/repo`.
fn found<'a>(json: &'a Value, project: &str, repo: &str) -> &'a Value {
    json["discovery"]["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .find(|r| r["project"] == project && r["name"] == repo)
        .unwrap_or_else(|| panic!("no {project}/{repo} in {}", json["discovery"]))
}

#[test]
fn the_scheduled_run_syncs_every_listed_and_discovered_mirror_after_a_dry_run_shows_them() {
    let space = Space::new(&[
        ("PROJ", "app", false),
        ("PROJ", "lib", false),
        ("PROJ", "old-archive", false),
        ("TOOLS", "cli", false),
        ("DROPPED", "x", false),
        ("ARCH", "museum", true),
        ("EMPTY", "", false),
    ]);
    // A listed mirror of another host, beside discovery.
    let (listed_source, listed_target) = listed_repo(&space.sb, "listed");
    let list = space.list(
        "exclude-projects = [\"DROPPED\"]\nexclude-repositories = [\"*-archive\"]\n",
        &format!(
            "[[mirror]]\nname = \"other\"\nsource = \"{}\"\ntarget = \"{}\"\n",
            path_str(&listed_source),
            path_str(&listed_target)
        ),
    );
    let discovered = [("PROJ", "app"), ("PROJ", "lib"), ("TOOLS", "cli")];

    let dry = run(space.sync(&list).args(["--dry-run", "--json"]));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let json = dry.json();
    assert_eq!(json["status"], "dry_run");
    assert_eq!(
        list_names(&json),
        ["other", "PROJ/app", "PROJ/lib", "TOOLS/cli"]
    );
    let d = &json["discovery"];
    assert_eq!(d["scope"], "space");
    assert_eq!(d["api"], space.api.url());
    assert_eq!(d["error"], Value::Null);
    let status = |key: &str| {
        d["projects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .map(|p| p["status"].clone())
    };
    assert_eq!(status("PROJ"), Some(json!("included")));
    assert_eq!(status("DROPPED"), Some(json!("excluded")));
    assert_eq!(status("EMPTY"), Some(json!("included")));
    // The archived project is not even asked for: archived=false.
    assert_eq!(status("ARCH"), None);
    assert!(
        space
            .api
            .requests()
            .contains(&"/api/v2/projects?archived=false".to_string()),
        "{:?}",
        space.api.requests()
    );
    assert_eq!(found(&json, "PROJ", "old-archive")["status"], "excluded");
    for (project, repo) in discovered {
        let entry = found(&json, project, repo);
        assert_eq!(entry["status"], "mirrored", "{entry}");
        assert_eq!(entry["mirror"], format!("{project}/{repo}"));
        assert_eq!(
            list_mirror(&json, &format!("{project}/{repo}"))["refs"]["created"],
            3
        );
        assert!(
            refs(&space.target(project, repo)).is_empty(),
            "dry run pushed"
        );
    }

    let first = run(space.sync(&list).arg("--json"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["status"], "in_sync");
    assert_mirror(&listed_source, &listed_target);
    for (project, repo) in discovered {
        assert_mirror(&space.source(project, repo), &space.target(project, repo));
        assert!(
            space
                .sb
                .cache_dir()
                .join(format!("{project}/{repo}.git/HEAD"))
                .is_file()
        );
    }
    for (project, repo) in [
        ("PROJ", "old-archive"),
        ("DROPPED", "x"),
        ("ARCH", "museum"),
    ] {
        assert!(
            refs(&space.target(project, repo)).is_empty(),
            "{project}/{repo}"
        );
    }
    // The human summary says what discovery found, then a line per mirror.
    let again = run(&mut space.sync(&list));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("3 mirrored, 0 listed, 1 excluded, 0 unusable, 0 vanished"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("4 mirrors: 4 in sync; exit 0"),
        "{}",
        again.stderr
    );
}

#[test]
fn repo_selects_a_repository_created_a_second_ago_asking_only_its_project() {
    let mut space = Space::new(&[("PROJ", "app", false), ("OTHER", "tool", false)]);
    let list = space.list("", "");
    space.add("PROJ", "new", false);
    space.publish();
    let before = space.api.requests().len();
    let one = run(space.sync(&list).args(["--json", "--repo", "PROJ/new"]));
    assert_eq!(one.code, 0, "{}", one.stderr);
    let json = one.json();
    assert_eq!(list_names(&json), ["PROJ/new"]);
    assert_eq!(json["discovery"]["scope"], "repo");
    assert_mirror(&space.source("PROJ", "new"), &space.target("PROJ", "new"));
    assert!(refs(&space.target("PROJ", "app")).is_empty());
    assert_eq!(
        space.api.requests()[before..],
        ["/api/v2/projects/PROJ/git/repositories".to_string()]
    );

    // As the webhook sets it; a repository that is not there is exit 2, naming discovery.
    let mut cmd = space.sync(&list);
    cmd.env("BACKLOG_MIRROR_REPO", "PROJ/nothing");
    let none = run(&mut cmd);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(
        none.only_error()
            .contains("[discover] found no such repository"),
        "{}",
        none.stderr
    );
}

#[test]
fn the_list_wins_and_two_discovered_repositories_with_one_target_are_refused_naming_both() {
    let space = Space::new(&[
        ("ALPHA", "app", false),
        ("BETA", "app", false),
        ("ALPHA", "lib", false),
        ("BETA", "svc", false),
    ]);
    // Targets by repository name alone: ALPHA/app and BETA/app meet in dst/flat/app.git.
    init_bare(&space.sb.join("dst/flat/app.git"));
    init_bare(&space.sb.join("dst/flat/svc.git"));
    let own = init_bare(&space.sb.join("own/lib.git"));
    // A listed mirror of the name discovery would give ALPHA/lib, with a target of its own.
    let text = std::fs::read_to_string(space.list("", ""))
        .unwrap()
        .replace("/{project}/{repo}.git", "/flat/{repo}.git");
    let list = space.sb.join("mirrors.toml");
    std::fs::write(
        &list,
        format!(
            "{text}[[mirror]]\nname = \"ALPHA/lib\"\nsource = \"{}\"\ntarget = \"{}\"\n",
            space.http.url("ALPHA/lib.git"),
            path_str(&own)
        ),
    )
    .unwrap();

    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let json = out.json();
    assert_eq!(
        list_names(&json),
        ["ALPHA/lib", "ALPHA/app", "BETA/app", "BETA/svc"]
    );
    for name in ["ALPHA/app", "BETA/app"] {
        let m = list_mirror(&json, name);
        assert_eq!(m["exit_code"], 2, "{m}");
        let error = m["error"].as_str().unwrap();
        assert!(
            error.contains("mirror 'ALPHA/app' (discovered)")
                && error.contains("mirror 'BETA/app' (discovered)")
                && error.contains("exclude-repositories"),
            "{error}"
        );
    }
    assert!(refs(&space.sb.join("dst/flat/app.git")).is_empty());
    // The listed mirror wins over the discovered one of its name; the others go on.
    let lib = found(&json, "ALPHA", "lib");
    assert_eq!(lib["status"], "listed", "{lib}");
    assert_mirror(&space.source("ALPHA", "lib"), &own);
    assert!(!space.sb.join("dst/flat/lib.git").exists());
    assert_eq!(list_mirror(&json, "BETA/svc")["exit_code"], 0);
    assert_mirror(
        &space.source("BETA", "svc"),
        &space.sb.join("dst/flat/svc.git"),
    );
}

#[test]
fn a_repository_gone_from_backlog_is_reported_and_its_cache_and_target_are_kept() {
    let space = Space::new(&[("PROJ", "app", false), ("PROJ", "gone", false)]);
    let list = space.list("", "");
    let first = run(&mut space.sync(&list));
    assert_eq!(first.code, 0, "{}", first.stderr);
    space.api.set(&space.space(&["PROJ/gone"], json!({})));
    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(list_names(&json), ["PROJ/app"]);
    let gone = found(&json, "PROJ", "gone");
    assert_eq!(gone["status"], "vanished", "{gone}");
    assert_eq!(gone["mirror"], "PROJ/gone");
    assert!(
        out.stderr
            .contains("PROJ/gone vanished: no longer listed by the API"),
        "{}",
        out.stderr
    );
    assert!(space.sb.cache_dir().join("PROJ/gone.git/HEAD").is_file());
    assert_mirror(&space.source("PROJ", "gone"), &space.target("PROJ", "gone"));

    // Directories planted in the cache that no mirror could have made (a name with a terminal
    // escape, a hidden one) are not mirrors that vanished: never reported, never printed.
    for planted in ["PROJ/\u{1b}[2Jevil.git", "PROJ/.hidden.git"] {
        let dir = space.sb.cache_dir().join(planted);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }
    let again = run(space.sync(&list).arg("--json"));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains('\u{1b}'), "{}", again.stderr);
    assert!(!again.stdout.contains("evil") && !again.stdout.contains("hidden"));
    assert!(!again.stderr.contains("evil") && !again.stderr.contains("hidden"));
    assert_eq!(found(&again.json(), "PROJ", "gone")["status"], "vanished");
}

#[test]
fn a_refused_key_or_a_failing_api_names_the_key_source_and_never_shows_the_key() {
    let space = Space::new(&[("PROJ", "app", false)]);
    let (listed_source, listed_target) = listed_repo(&space.sb, "listed");
    let list = space.list(
        "",
        &format!(
            "[[mirror]]\nname = \"other\"\nsource = \"{}\"\ntarget = \"{}\"\n",
            path_str(&listed_source),
            path_str(&listed_target)
        ),
    );
    let echo =
        r#"{"errors":[{"message":"bad key in {url} ({raw}) \u001b[31m","code":11,"moreInfo":""}]}"#;
    // The key as the request's query carries it.
    let encoded = key().replace('-', "%2D");
    for (status, code) in [(401, 1), (500, 1)] {
        space
            .api
            .set(&space.space(&[], json!({"status": [status, echo]})));
        let out = run(space.sync(&list).args(["-vv", "--json"]));
        assert_eq!(out.code, code, "HTTP {status}: {}", out.stderr);
        let json = out.json();
        let error = json["discovery"]["error"].as_str().unwrap().to_string();
        assert!(error.contains(&format!("HTTP {status}")), "{error}");
        assert!(
            !error.contains('\u{1b}') && error.contains("\\u{1b}[31m"),
            "{error}"
        );
        if status == 401 {
            assert!(
                error.contains("fix the key that [discover] backlog-api-key-file"),
                "{error}"
            );
        }
        // The listed mirror is synced all the same.
        assert_eq!(list_mirror(&json, "other")["exit_code"], 0);
        assert_mirror(&listed_source, &listed_target);
        assert!(
            out.stderr.contains("discovery FAILED (exit 1)"),
            "{}",
            out.stderr
        );
        assert_no_secret(&out, &[&key(), &encoded]);
    }
    // A key given in the environment wins over the list's, and is named when refused.
    space.api.set(&space.space(&[], json!({})));
    let wrong = space.sb.join("wrong-key");
    std::fs::write(&wrong, format!("{CANARY}-wrong")).unwrap();
    let mut cmd = space.sync(&list);
    cmd.env("BACKLOG_MIRROR_BACKLOG_API_KEY_FILE", &wrong)
        .args(["--repo", "PROJ/app"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.only_error().contains(
            "fix the key that --backlog-api-key-file (or BACKLOG_MIRROR_BACKLOG_API_KEY_FILE) names"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_rate_limit_is_waited_out_and_a_stall_or_a_flood_fails_bounded() {
    let space = Space::new(&[("PROJ", "app", false)]);
    let list = space.list("", "");
    space.api.set(&space.space(&[], json!({"rate_limit": 1})));
    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("answered HTTP 429 (rate limit); waiting"),
        "{}",
        out.stderr
    );
    assert_mirror(&space.source("PROJ", "app"), &space.target("PROJ", "app"));

    // A reset further away than a minute is not waited for.
    space
        .api
        .set(&space.space(&[], json!({"rate_limit": 100, "reset_in": 3600})));
    let started = Instant::now();
    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(started.elapsed().as_secs() < 10);
    let error = out.json()["discovery"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("kept answering HTTP 429") && error.contains("s away, more than the 60 s"),
        "{error}"
    );

    space.api.set(&space.space(&[], json!({"slow": 4})));
    let started = Instant::now();
    let out = run(space
        .sync(&list)
        .args(["--json", "--network-timeout", "1s"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(started.elapsed().as_secs() < 4, "{:?}", started.elapsed());
    let error = out.json()["discovery"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("--network-timeout"), "{error}");

    space.api.set(&space.space(&[], json!({"huge": true})));
    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.json()["discovery"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("answered more than 8 MiB"), "{error}");
}

#[test]
fn hostile_names_and_urls_from_the_api_are_refused_and_shown_escaped() {
    let space = Space::new(&[("PROJ", "app", false)]);
    let list = space.list("", "");
    let mut answer = space.space(&[], json!({}));
    answer["projects"].as_array_mut().unwrap().push(
        json!({"id": 9, "projectKey": "../etc", "name": "x\u{1b}]0;pwned\u{7}", "archived": false}),
    );
    let repos = answer["repositories"]["PROJ"].as_array_mut().unwrap();
    repos.push(json!({"id": 7, "name": "evil\u{1b}[2J", "httpUrl": "http://127.0.0.1:1/x.git"}));
    repos.push(json!({"id": 8, "name": "local", "httpUrl": "/etc/passwd-repo.git"}));
    space.api.set(&answer);
    let out = run(space.sync(&list).arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains('\u{1b}') && !out.stderr.contains('\u{1b}'));
    let json = out.json();
    assert_eq!(list_names(&json), ["PROJ/app"]);
    let local = found(&json, "PROJ", "local");
    assert_eq!(local["status"], "unusable");
    assert!(
        local["reason"].as_str().unwrap().contains("not a remote"),
        "{local}"
    );
    let evil = &json["discovery"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().unwrap().starts_with("evil"))
        .expect("evil listed")["status"];
    assert_eq!(evil, "unusable");
    let project = json["discovery"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "../etc")
        .expect("project listed")
        .clone();
    assert_eq!(project["status"], "unusable");
    assert!(!space.api.requests().iter().any(|r| r.contains("etc")));
}

#[test]
fn mistakes_in_discover_are_exit_2_naming_the_line_before_the_api_is_asked() {
    let space = Space::new(&[("PROJ", "app", false)]);
    let cases: Vec<(String, &str)> = vec![
        (
            space
                .list("", "")
                .to_str()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .unwrap()
                .replace("backlog-api-key-file", "nothing-here"),
            "unknown key 'nothing-here' in [discover]",
        ),
        (
            format!(
                "[defaults]\ncodecommit-prefix = \"b-\"\n[discover]\napi-url = \"{}\"\n",
                space.api.url()
            ),
            "[discover] needs the Backlog API key",
        ),
        (
            "[defaults]\ncodecommit-prefix = \"b-\"\nbacklog-api-key-ssm = \"/k\"\n[discover]\n"
                .to_string(),
            "key 'backlog-api-key-ssm' belongs in the [discover] table",
        ),
        (
            "[defaults]\ncodecommit-prefix = \"b-\"\n[discover]\nbacklog-api-key-ssm = \"/k\"\n\
             api-url = \"http://backlog.example.com\"\n"
                .to_string(),
            "is plain HTTP",
        ),
        (
            "[discover]\nbacklog-api-key-ssm = \"/k\"\napi-url = \"https://x.backlog.jp\"\n"
                .to_string(),
            "needs a target for each repository",
        ),
        (
            "[defaults]\ncodecommit-prefix = \"b-\"\n[discover]\nbacklog-api-key-ssm = \"/k\"\n"
                .to_string(),
            "[discover] needs the space",
        ),
    ];
    let path = space.sb.join("bad.toml");
    for (text, want) in cases {
        std::fs::write(&path, &text).unwrap();
        let before = space.api.requests().len();
        let out = run(&mut space.sync(&path));
        assert_eq!(out.code, 2, "{text}\n{}", out.stderr);
        let error = out.only_error();
        assert!(
            error.contains(want) && error.contains("bad.toml:"),
            "{text}\n{error}"
        );
        assert_eq!(space.api.requests().len(), before);
    }
}

#[test]
fn the_stack_s_variable_reads_the_key_from_parameter_store_and_wins_over_the_list() {
    use crate::support::ssm::Moto;
    let space = Space::new(&[("PROJ", "app", false)]);
    let moto = Moto::start(None);
    moto.put_secure_string("/backlog-mirror/api-key", &key());
    // The list's own key source does not exist: the variable wins, so it is not even looked at.
    let text = std::fs::read_to_string(space.list("", ""))
        .unwrap()
        .replace(&path_str(&space.key_file), "/nonexistent/backlog-api-key");
    let list = space.sb.join("mirrors.toml");
    std::fs::write(&list, text).unwrap();
    let with_env = |cmd: &mut Command| {
        cmd.env(
            "BACKLOG_MIRROR_BACKLOG_API_KEY_SSM",
            "/backlog-mirror/api-key",
        );
        for (k, v) in moto.env("testing", "testing") {
            cmd.env(k, v);
        }
    };
    let mut cmd = space.sync(&list);
    with_env(&mut cmd);
    let out = run(cmd.arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(list_names(&out.json()), ["PROJ/app"]);
    assert_mirror(&space.source("PROJ", "app"), &space.target("PROJ", "app"));

    // A list without [discover] runs as before with the variable set.
    let (source, target) = listed_repo(&space.sb, "plain");
    let plain = space.sb.join("plain.toml");
    std::fs::write(
        &plain,
        format!(
            "[[mirror]]\nname = \"plain\"\nsource = \"{}\"\ntarget = \"{}\"\n",
            path_str(&source),
            path_str(&target)
        ),
    )
    .unwrap();
    let before = space.api.requests().len();
    let mut cmd = space.sync(&plain);
    with_env(&mut cmd);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    assert_eq!(space.api.requests().len(), before);
}
