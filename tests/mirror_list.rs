//! `sync --config`: a list of mirrors in one run. Each is synced exactly, `--repo` picks some,
//! `--jobs` runs them at once (shown by a mirror whose source stalls while the others finish),
//! one mirror's failure leaves the others alone and the exit code is the most severe, flags win
//! over a mirror's keys which win over `[defaults]`, and every mistake in the file is exit 2
//! naming FILE:LINE and the key, with nothing created.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

/// A source with `main` and a tag, and an empty target, under `<sandbox>/<dir>`.
struct Repo {
    source: PathBuf,
    target: PathBuf,
}

fn repo(sb: &Sandbox, dir: &str) -> Repo {
    let work = WorkRepo::init(&sb.join(&format!("work-{dir}")));
    work.commit("a.txt", dir, "first");
    work.branch("feature");
    work.tag_light("v1");
    let source = init_bare(&sb.join(dir).join("source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join(dir).join("target.git"));
    Repo { source, target }
}

fn write_list(sb: &Sandbox, text: &str) -> PathBuf {
    let path = sb.join("mirrors.toml");
    std::fs::write(&path, text).expect("write list");
    path
}

/// `[[mirror]]` of a local source and target.
fn entry(name: &str, r: &Repo) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nsource = \"{}\"\ntarget = \"{}\"\n",
        path_str(&r.source),
        path_str(&r.target)
    )
}

fn list_sync(sb: &Sandbox, list: &Path) -> Command {
    let mut cmd = bin();
    cmd.env("HOME", sb.home())
        .args(["sync", "--config"])
        .arg(list)
        .arg("--cache-dir")
        .arg(sb.cache_dir());
    cmd
}

#[test]
fn a_list_of_three_is_synced_exactly_each_in_its_own_cache() {
    let sb = Sandbox::new();
    let (a, b, c) = (repo(&sb, "a"), repo(&sb, "b"), repo(&sb, "c"));
    let list = write_list(
        &sb,
        &[entry("PROJ/app", &a), entry("b", &b), entry("c.x", &c)].concat(),
    );
    let first = run(list_sync(&sb, &list).arg("--json"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let json = first.json();
    assert_eq!(json["schema"], 2);
    assert_eq!(json["status"], "in_sync");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(list_names(&json), ["PROJ/app", "b", "c.x"]);
    for (name, r) in [("PROJ/app", &a), ("b", &b), ("c.x", &c)] {
        assert_mirror(&r.source, &r.target);
        let m = list_mirror(&json, name);
        assert_eq!(m["schema"], 1, "{m}");
        assert_eq!(m["refs"]["created"], 3, "{m}");
        assert_eq!(m["source"], path_str(&r.source));
        let cache = sb.cache_dir().join(format!("{name}.git"));
        assert!(
            cache.join("HEAD").is_file(),
            "no cache at {}",
            cache.display()
        );
        assert_eq!(m["cache"], path_str(&cache));
    }
    // A second run: nothing to do; the human summary has a line per mirror and a total.
    let again = run(&mut list_sync(&sb, &list));
    assert_eq!(again.code, 0, "{}", again.stderr);
    for name in ["PROJ/app", "b", "c.x"] {
        assert!(
            again
                .stderr
                .lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains("in sync: 0 created")),
            "no line for {name}:\n{}",
            again.stderr
        );
    }
    assert!(
        again
            .stderr
            .contains("backlog-mirror: 3 mirrors: 3 in sync; exit 0"),
        "{}",
        again.stderr
    );
}

#[test]
fn repo_selects_by_name_by_comma_list_and_by_backlog_project_and_repo() {
    let sb = Sandbox::new();
    let (a, b, c) = (repo(&sb, "a"), repo(&sb, "b"), repo(&sb, "c"));
    let backlog = format!(
        "[[mirror]]\nname = \"remote\"\nbacklog-space = \"space\"\nbacklog-project = \"PROJ\"\n\
         backlog-repo = \"app\"\ntarget = \"{}\"\n",
        path_str(&a.target)
    );
    let list = write_list(
        &sb,
        &[entry("a", &a), entry("b", &b), entry("c", &c), backlog].concat(),
    );
    let one = run(list_sync(&sb, &list).args(["--json", "--repo", "b"]));
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(list_names(&one.json()), ["b"]);
    assert_mirror(&b.source, &b.target);
    assert!(refs(&a.target).is_empty() && refs(&c.target).is_empty());

    let two = run(list_sync(&sb, &list)
        .arg("--json")
        .env("BACKLOG_MIRROR_REPO", "c, a"));
    assert_eq!(two.code, 0, "{}", two.stderr);
    assert_eq!(list_names(&two.json()), ["a", "c"]);
    assert_mirror(&a.source, &a.target);

    // PROJ/app is the Backlog identity of 'remote': selecting it reaches that mirror's own
    // checks (its SSH source needs a key), which name it; nothing else runs.
    let by_identity = run(list_sync(&sb, &list).args(["--repo", "PROJ/app"]));
    assert_eq!(by_identity.code, 2, "{}", by_identity.stderr);
    let error = by_identity.only_error();
    assert!(error.contains("mirror 'remote'"), "{error}");
    assert!(error.contains("mirrors.toml:14:"), "{error}");
    assert!(error.contains("private key"), "{error}");

    // An empty selection is every mirror.
    let all = run(list_sync(&sb, &list)
        .args(["--json", "--repo", ""])
        .env("BACKLOG_MIRROR_REPO", ""));
    assert_eq!(
        all.code, 2,
        "the Backlog mirror is selected too: {}",
        all.stderr
    );
    assert!(all.only_error().contains("mirror 'remote'"));
}

#[test]
fn a_repo_that_names_no_mirror_is_exit_2_touching_nothing() {
    let sb = Sandbox::new();
    let a = repo(&sb, "a");
    let list = write_list(&sb, &entry("a", &a));
    for selection in [["--repo", "nope"], ["--repo", "a,nope"]] {
        let run = run(list_sync(&sb, &list).args(selection));
        assert_eq!(run.code, 2, "{}", run.stderr);
        let error = run.only_error();
        assert!(error.contains("--repo 'nope' matches no mirror"), "{error}");
        assert!(error.contains("mirrors.toml"), "{error}");
        assert!(!sb.cache_dir().exists());
        assert!(refs(&a.target).is_empty());
    }
    let without_list = run(sb
        .sync(&path_str(&a.source), &path_str(&a.target))
        .args(["--repo", "a"]));
    assert_eq!(without_list.code, 2);
    assert!(without_list.only_error().contains("--config"));
}

/// A flag naming one repository, left in a buildspec's environment, would send every mirror to
/// one target: refused unless one mirror is selected, where it wins as any flag does.
#[test]
fn a_flag_naming_one_repository_is_refused_for_several_mirrors() {
    let sb = Sandbox::new();
    let (a, b, other) = (repo(&sb, "a"), repo(&sb, "b"), repo(&sb, "other"));
    let list = write_list(&sb, &[entry("a", &a), entry("b", &b)].concat());
    let both = run(list_sync(&sb, &list).env("BACKLOG_MIRROR_TARGET", path_str(&other.target)));
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(
        both.only_error().contains("BACKLOG_MIRROR_TARGET"),
        "{}",
        both.stderr
    );
    assert!(refs(&other.target).is_empty() && !sb.cache_dir().exists());
    let one = run(list_sync(&sb, &list)
        .args(["--repo", "b"])
        .env("BACKLOG_MIRROR_TARGET", path_str(&other.target)));
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_mirror(&b.source, &other.target);
    assert!(refs(&b.target).is_empty());
    let named = run(list_sync(&sb, &list).args(["--repo", "a", "--mirror-name", "x"]));
    assert_eq!(named.code, 2, "{}", named.stderr);
    assert!(
        named.only_error().contains("--mirror-name"),
        "{}",
        named.stderr
    );
    assert!(refs(&a.target).is_empty());
}

/// The first mirror's source stalls (a proxy that forwards nothing back) until the test lets
/// it go. With `--jobs 3` the two others finish while it is stuck: their metric lines, printed
/// as each mirror ends, arrive before the stall is released. With `--jobs 1` they cannot start
/// before the stalled one ends, so its line comes first.
#[test]
fn jobs_run_mirrors_at_once() {
    let sb = Sandbox::new();
    let (b, c) = (repo(&sb, "b"), repo(&sb, "c"));
    let slow = repo(&sb, "srv/slow");
    let daemon = GitDaemon::start(&sb.join("srv"));
    for jobs in ["3", "1"] {
        let proxy = FaultProxy::start(
            daemon_port(&daemon),
            Fault::Stall {
                dir: Direction::Downstream,
                after: 0,
            },
        );
        let slow_entry = format!(
            "[[mirror]]\nname = \"slow\"\nsource = \"{}\"\ntarget = \"{}\"\nretries = 0\n",
            proxy.rewrite(&daemon.url("slow/source.git")),
            path_str(&slow.target)
        );
        let list = write_list(&sb, &[slow_entry, entry("b", &b), entry("c", &c)].concat());
        let mut cmd = list_sync(&sb, &list);
        // With --jobs 3 the stall ends when the test drops the proxy, long before this timeout;
        // with --jobs 1 the timeout ends it.
        let timeout = if jobs == "3" { "120s" } else { "2s" };
        cmd.args([
            "--metrics",
            "emf",
            "--jobs",
            jobs,
            "--network-timeout",
            timeout,
        ]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let drain = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = Vec::new();
        if jobs == "3" {
            for _ in 0..2 {
                let line = lines.next().expect("a metric line").expect("read");
                let emf: serde_json::Value = serde_json::from_str(&line).expect("EMF line");
                seen.push(emf["Mirror"].as_str().expect("Mirror").to_string());
            }
            assert_eq!(proxy.fired(), 1, "the slow source is stuck in its fetch");
            seen.sort();
            assert_eq!(seen, ["b", "c"], "b and c finished while slow was stalled");
            drop(proxy);
        } else {
            let line = lines.next().expect("a metric line").expect("read");
            let emf: serde_json::Value = serde_json::from_str(&line).expect("EMF line");
            assert_eq!(
                emf["Mirror"], "slow",
                "with --jobs 1 nothing overtakes slow"
            );
            drop(proxy);
        }
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().expect("wait");
        let stderr = drain.join().unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(1),
            "slow failed, the others did not:\n{stderr}"
        );
        assert_eq!(rest.len(), if jobs == "3" { 1 } else { 2 }, "{rest:?}");
        assert!(stderr.contains("mirror{name=slow}"), "{stderr}");
        assert_mirror(&b.source, &b.target);
        assert_mirror(&c.source, &c.target);
    }
}

fn daemon_port(daemon: &GitDaemon) -> u16 {
    let url = daemon.url("x");
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("daemon port")
}

#[test]
fn one_failing_mirror_does_not_stop_the_others_and_the_worst_code_wins() {
    let sb = Sandbox::new();
    let (ok, emptied, far) = (repo(&sb, "ok"), repo(&sb, "emptied"), repo(&sb, "far"));
    // 'emptied' was mirrored; then its source lost every ref: the delete guard refuses (3).
    let first = run(sb
        .sync(&path_str(&emptied.source), &path_str(&emptied.target))
        .args(["--mirror-name", "emptied"]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    for name in refs(&emptied.source).keys() {
        delete_ref(&emptied.source, name);
    }
    let unreachable = "[[mirror]]\nname = \"unreachable\"\nsource = \"git://127.0.0.1:1/x.git\"\n\
                       target = \"/dev/null/x\"\nretries = 0\n";
    let unreachable = unreachable.replace("/dev/null/x", &path_str(&far.target));
    let list = write_list(
        &sb,
        &[
            entry("emptied", &emptied),
            unreachable.clone(),
            entry("ok", &ok),
        ]
        .concat(),
    );
    let run1 = run(list_sync(&sb, &list).args(["--json", "--jobs", "1"]));
    assert_eq!(
        run1.code, 3,
        "3 (guard) is worse than 1 (failed):\n{}",
        run1.stderr
    );
    let json = run1.json();
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["status"], "refused");
    assert_eq!(list_mirror(&json, "emptied")["exit_code"], 3);
    assert_eq!(list_mirror(&json, "unreachable")["exit_code"], 1);
    assert_eq!(list_mirror(&json, "ok")["exit_code"], 0);
    assert_mirror(&ok.source, &ok.target);
    assert!(
        !refs(&emptied.target).is_empty(),
        "the guard kept the target"
    );

    // 4 (another sync holds the mirror) is milder than 1.
    let held = std::fs::File::create(sb.cache_dir().join("ok.git.backlog-mirror-lock"))
        .expect("lock file");
    held.lock().expect("hold the lock");
    let list = write_list(&sb, &[unreachable, entry("ok", &ok)].concat());
    let run2 = run(list_sync(&sb, &list).args(["--json", "--lock-timeout", "100ms"]));
    assert_eq!(run2.code, 1, "1 is worse than 4:\n{}", run2.stderr);
    assert_eq!(list_mirror(&run2.json(), "ok")["exit_code"], 4);
    assert!(run2.stderr.contains("ok") && run2.stderr.contains("FAILED (exit 4)"));
    let run3 =
        run(list_sync(&sb, &list).args(["--json", "--lock-timeout", "100ms", "--repo", "ok"]));
    assert_eq!(run3.code, 4, "{}", run3.stderr);
    assert_eq!(run3.json()["status"], "failed");
}

/// Shown by effect: the lock timeout a locked mirror waited (its error says it), and the refs
/// an exclude left out.
#[test]
fn flags_win_over_mirror_keys_which_win_over_defaults() {
    let sb = Sandbox::new();
    let (a, b) = (repo(&sb, "a"), repo(&sb, "b"));
    let text = format!(
        "[defaults]\nlock-timeout = \"150ms\"\nexclude = [\"refs/tags/*\"]\n\n{}{}\
         lock-timeout = \"250ms\"\nexclude = [\"refs/heads/feature\"]\n",
        entry("a", &a),
        entry("b", &b)
    );
    let list = write_list(&sb, &text);
    let held: Vec<std::fs::File> = ["a", "b"]
        .iter()
        .map(|name| {
            std::fs::create_dir_all(sb.cache_dir()).expect("cache dir");
            let f = std::fs::File::create(
                sb.cache_dir()
                    .join(format!("{name}.git.backlog-mirror-lock")),
            )
            .expect("lock file");
            f.lock().expect("lock");
            f
        })
        .collect();
    let locked = run(list_sync(&sb, &list).arg("--json"));
    let json = locked.json();
    let error = |name: &str| {
        list_mirror(&json, name)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        error("a").contains("within 150ms"),
        "a takes [defaults]: {}",
        error("a")
    );
    assert!(
        error("b").contains("within 250ms"),
        "b's own key wins: {}",
        error("b")
    );
    let flagged = run(list_sync(&sb, &list).args(["--json", "--lock-timeout", "350ms"]));
    let json = flagged.json();
    for name in ["a", "b"] {
        let e = list_mirror(&json, name)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(e.contains("within 350ms"), "the flag wins for {name}: {e}");
    }
    drop(held);

    let synced = run(&mut list_sync(&sb, &list));
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let a_refs: Vec<String> = refs(&a.target).into_keys().collect();
    let b_refs: Vec<String> = refs(&b.target).into_keys().collect();
    assert_eq!(
        a_refs,
        ["refs/heads/feature", "refs/heads/main"],
        "[defaults] leaves tags out"
    );
    assert_eq!(
        b_refs,
        ["refs/heads/main", "refs/tags/v1"],
        "b's exclude replaces it"
    );
    // The environment is a flag too, and an empty list in the file is a value.
    let (c, d) = (repo(&sb, "c"), repo(&sb, "d"));
    let text = format!(
        "[defaults]\nexclude = [\"refs/tags/*\"]\n\n{}{}exclude = []\n",
        entry("c", &c),
        entry("d", &d)
    );
    let list = write_list(&sb, &text);
    let env = run(list_sync(&sb, &list)
        .args(["--repo", "c"])
        .env("BACKLOG_MIRROR_EXCLUDE", "refs/heads/feature"));
    assert_eq!(env.code, 0, "{}", env.stderr);
    let c_refs: Vec<String> = refs(&c.target).into_keys().collect();
    assert_eq!(c_refs, ["refs/heads/main", "refs/tags/v1"]);
    // An empty variable is a placeholder: the list's value stays.
    let placeholder = run(list_sync(&sb, &list)
        .args(["--repo", "d", "--dry-run", "--json"])
        .env("BACKLOG_MIRROR_EXCLUDE", "")
        .env("BACKLOG_MIRROR_HOST_KEY_FINGERPRINT", ""));
    assert_eq!(placeholder.code, 0, "{}", placeholder.stderr);
    let own_empty = run(list_sync(&sb, &list).args(["--repo", "d"]));
    assert_eq!(own_empty.code, 0, "{}", own_empty.stderr);
    assert_mirror(&d.source, &d.target);
}

/// Each mistake: exit 2, one error line naming `mirrors.toml:LINE` and the key, no cache
/// directory made, no target touched.
#[test]
fn mistakes_in_the_list_name_file_line_and_key_and_touch_nothing() {
    let sb = Sandbox::new();
    let (a, b) = (repo(&sb, "a"), repo(&sb, "b"));
    let good = entry("a", &a);
    let s = path_str(&a.source);
    let t = path_str(&a.target);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            format!("{good}colour = \"blue\"\n"),
            ":5: unknown key 'colour'",
        ),
        (
            "duplicate name",
            format!("{good}{good}"),
            ":6: key 'name': 'a' is already the name of the mirror at line 2",
        ),
        (
            "bad name",
            format!("[[mirror]]\nname = \"../up\"\nsource = \"{s}\"\ntarget = \"{t}\"\n"),
            ":2: key 'name': '../up' is not a mirror name",
        ),
        (
            "a name whose cache would sit inside another mirror's",
            format!(
                "{good}[[mirror]]\nname = \"a.git/b\"\nsource = \"{s}\"\ntarget = \"{}\"\n",
                path_str(&b.target)
            ),
            ":6: key 'name': 'a.git/b' is not a mirror name",
        ),
        (
            "no name",
            format!("[[mirror]]\nsource = \"{s}\"\ntarget = \"{t}\"\n"),
            ":2: a [[mirror]] has no key 'name'",
        ),
        (
            "no source",
            format!("[[mirror]]\nname = \"x\"\ntarget = \"{t}\"\n"),
            ":2: mirror 'x' has no key 'source'",
        ),
        (
            "no target",
            format!("[[mirror]]\nname = \"x\"\nsource = \"{s}\"\n"),
            ":2: mirror 'x' has no key 'target'",
        ),
        (
            "wrong type",
            format!("{good}dry-run = \"yes\"\n"),
            ":5: key 'dry-run' must be true or false",
        ),
        (
            "wrong type in [defaults]",
            format!("[defaults]\nmax-rounds = 1.5\n{good}"),
            ":2: key 'max-rounds' must be a string or a number",
        ),
        (
            "per-run key",
            format!("[defaults]\njobs = 8\n{good}"),
            ":2: key 'jobs' is set per run",
        ),
        (
            "per-run key in a mirror",
            format!("{good}json = true\n"),
            ":5: key 'json' is set per run",
        ),
        (
            "value clap refuses",
            format!("{good}max-rounds = 0\n"),
            ":5: mirror 'a', key 'max-rounds':",
        ),
        (
            "value config refuses",
            format!("{good}include = [\"refs/[\"]\n"),
            ":5: mirror 'a', key 'include':",
        ),
        (
            "keys that exclude each other in one table",
            format!("{good}backlog-repo = \"x\"\n"),
            ":5: mirror 'a', key 'backlog-repo':",
        ),
        (
            "name in [defaults]",
            format!("[defaults]\nname = \"x\"\n{good}"),
            ":2: unknown key 'name'",
        ),
        (
            "network timeouts that differ",
            format!("{good}{}network-timeout = \"5s\"\n", entry("b", &b)),
            "key 'network-timeout'",
        ),
        (
            "two mirrors into one target",
            format!(
                "{good}{}",
                entry("b", &b).replace(&path_str(&b.target), &format!("{t}/"))
            ),
            "is the same target as mirror 'a' (line 4:",
        ),
        (
            "a target that is the mirror's own cache",
            format!(
                "[[mirror]]\nname = \"a\"\nsource = \"{s}\"\ntarget = \"{}\"\n",
                path_str(&sb.cache_dir().join("a.git"))
            ),
            ":4: mirror 'a', key 'target': --target",
        ),
        (
            "clap's own flag",
            format!("{good}help = true\n"),
            ":5: unknown key 'help'",
        ),
        (
            "not TOML",
            format!("{good}retries = = 1\n"),
            "mirrors.toml:5:",
        ),
        (
            "no mirrors",
            "[defaults]\nretries = 1\n".to_string(),
            "no [[mirror]] table",
        ),
        (
            "mirror as a table",
            format!("[mirror]\nname = \"a\"\nsource = \"{s}\"\n"),
            ":1: 'mirror' must be an array of tables",
        ),
    ];
    for (label, text, want) in cases {
        let list = write_list(&sb, &text);
        let run = run(&mut list_sync(&sb, &list));
        assert_eq!(run.code, 2, "{label}: {}", run.stderr);
        let error = run.only_error();
        assert!(error.contains("mirrors.toml"), "{label}: {error}");
        assert!(error.contains(want), "{label}: want '{want}' in: {error}");
        assert!(!sb.cache_dir().exists(), "{label}: the cache dir was made");
        assert!(
            refs(&a.target).is_empty(),
            "{label}: the target was touched"
        );
        assert!(
            refs(&b.target).is_empty(),
            "{label}: the target was touched"
        );
    }
}

/// A password in a source URL of the list appears in no message: not in toml's syntax error
/// (which would quote the line), not in a value refused, not in a failed mirror's summary.
#[test]
fn secrets_in_the_list_are_never_printed() {
    let sb = Sandbox::new();
    let a = repo(&sb, "a");
    let url = format!("http://bob:{CANARY}-pw@127.0.0.1:1/x.git");
    let mirror_text = format!(
        "[[mirror]]\nname = \"x\"\nsource = \"{url}\"\ntarget = \"{}\"\nretries = 0\n",
        path_str(&a.target)
    );
    let cases = [
        format!("{mirror_text}broken = \"{url}\n"),
        format!("{mirror_text}colour = \"{url}\"\n"),
        format!("{mirror_text}max-rounds = \"{url}\"\n"),
        format!(
            "[defaults]\nsource = \"{url}\"\n{}",
            entry("a", &a).replace("source", "backlog-repo")
        ),
    ];
    for text in cases {
        let list = write_list(&sb, &text);
        let run = run(list_sync(&sb, &list).arg("--json"));
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert_no_secret(&run, &[&url]);
    }
    let list = write_list(&sb, &mirror_text);
    let failed = run(list_sync(&sb, &list).args(["--json", "--metrics", "emf", "-v"]));
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert_no_secret(&failed, &[&url]);
    assert!(failed.stderr.contains("127.0.0.1:1"), "{}", failed.stderr);
}

/// Every log line of a list run names its mirror, at any level that lets it through, including
/// those of the thread that lists the target while the source is looked at (a mirror whose cache
/// exists), here a retry warning.
#[test]
fn every_log_line_of_a_mirror_carries_its_name() {
    let sb = Sandbox::new();
    let a = repo(&sb, "a");
    let list = write_list(
        &sb,
        &format!(
            "[[mirror]]\nname = \"PROJ/lt\"\nsource = \"{}\"\ntarget = \"git://127.0.0.1:1/x.git\"\n\
             retries = 1\n",
            path_str(&a.source)
        ),
    );
    for round in ["new cache", "existing cache"] {
        // libgit2 pushes to the target, so the run makes its cache (a run that relays, with
        // the wire engine, makes none).
        let run = run(list_sync(&sb, &list).args(["-q", "--push-engine", "libgit2"]));
        assert_eq!(run.code, 1, "{round}: {}", run.stderr);
        let logs: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with(" WARN") || l.starts_with("ERROR"))
            .collect();
        assert!(
            logs.iter().any(|l| l.contains("retrying")),
            "{round}: no retry warning:\n{}",
            run.stderr
        );
        for line in logs {
            assert!(line.contains("mirror{name=PROJ/lt}"), "{round}: {line}");
        }
        assert!(sb.cache_dir().join("PROJ/lt.git").exists());
    }
}

/// The SSH key in Parameter Store, shared by every mirror through `[defaults]`, is read once
/// per run: moto answers the set-up call and one read, then refuses every later request (its
/// IAM knows no such user), so a second read would fail that mirror.
#[test]
fn a_shared_parameter_store_key_is_read_once_per_run() {
    use crate::support::ssm::{Moto, REGION};
    let sb = Sandbox::new();
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "k", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let moto = Moto::start(Some(2));
    moto.put_secure_string("/backlog-mirror/ssh-key", &key.private_text);
    let repos: Vec<Repo> = ["a", "b", "c"].iter().map(|n| repo(&sb, n)).collect();
    let mut text = format!(
        "[defaults]\nssh-key-ssm = \"/backlog-mirror/ssh-key\"\nregion = \"{REGION}\"\n\
         host-key-fingerprint = [\"{}\"]\n\n",
        sshd.host_key_fingerprints()[0]
    );
    for (name, r) in ["a", "b", "c"].iter().zip(&repos) {
        text.push_str(&format!(
            "[[mirror]]\nname = \"{name}\"\nsource = \"{}\"\ntarget = \"{}\"\n",
            sshd.url(&r.source),
            path_str(&r.target)
        ));
    }
    let list = write_list(&sb, &text);
    let mut cmd = list_sync(&sb, &list);
    for (k, v) in moto.env("testing", CANARY) {
        cmd.env(k, v);
    }
    let out = run(cmd.args(["--jobs", "3"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for r in &repos {
        assert_mirror(&r.source, &r.target);
    }
    assert_no_secret(&out, &[key.private_text.lines().nth(1).unwrap()]);
}

/// Two mirrors of a list with one target, spelled two ways, are refused before anything runs
/// (exit 2, naming both): each would delete the other's refs, and the target would end as
/// whichever ran last.
#[test]
fn two_spellings_of_one_target_are_refused_naming_both_mirrors() {
    let sb = Sandbox::new();
    let (a, b) = (repo(&sb, "a"), repo(&sb, "b"));
    let served = sb.join("http");
    let dup = init_bare(&served.join("dup.git"));
    git(&dup, &["config", "http.receivepack", "true"]);
    let http = HttpGit::start(&served);
    let url = http.url("dup.git");
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/dup.git");
    let path = path_str(&a.target);
    let pairs = [
        (url.clone(), format!("{url}/")),
        (url.clone(), url.trim_end_matches(".git").to_string()),
        (url.clone(), format!("http://localhost:{port}/dup.git")),
        (url.clone(), format!("http://user:pw@[::1]:{port}/dup.git")),
        (url.clone(), url.replace("/dup.git", "/x/../%64up.git")),
        (path.clone(), format!("file://{path}")),
        (
            "codecommit::us-east-1://app".to_string(),
            "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/app".to_string(),
        ),
    ];
    for (first, second) in pairs {
        let text = format!(
            "[[mirror]]\nname = \"a\"\nsource = \"{}\"\ntarget = \"{first}\"\n\n\
             [[mirror]]\nname = \"b\"\nsource = \"{}\"\ntarget = \"{second}\"\n",
            path_str(&a.source),
            path_str(&b.source)
        );
        let list = write_list(&sb, &text);
        let out = run(&mut list_sync(&sb, &list));
        let label = format!("{first} and {second}");
        assert_eq!(out.code, 2, "{label}: {}", out.stderr);
        let error = out.only_error();
        assert!(
            error.contains("mirrors.toml:9: mirror 'b', key 'target'")
                && error.contains("same target as mirror 'a' (line 4"),
            "{label}: {error}"
        );
        assert!(!error.contains("pw"), "{error}");
        assert!(refs(&dup).is_empty(), "{label}: the target was pushed to");
        assert!(
            refs(&a.target).is_empty(),
            "{label}: the target was pushed to"
        );
        assert!(!sb.cache_dir().exists(), "{label}: the cache dir was made");
    }
}
