//! Ref names chosen to break a mirror, mirrored through every push engine and over a local path
//! and git daemon: names that are not UTF-8, kilobytes long, made to drive a terminal or look
//! like options, and names git itself refuses (planted in packed-refs, which git's upload-pack
//! still advertises). Where git can represent a ref and this tool can carry it, the target must
//! hold it exactly; where not, the run names it (escaped, shortened), mirrors every other ref and
//! exits 1, run after run, without a panic.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// One hostile name: exact on the target, or reported with a reason containing `why`.
struct Row {
    name: Vec<u8>,
    why: Option<&'static str>,
}

fn exact(name: impl AsRef<[u8]>) -> Row {
    Row {
        name: name.as_ref().to_vec(),
        why: None,
    }
}

fn reported(name: impl AsRef<[u8]>, why: &'static str) -> Row {
    Row {
        name: name.as_ref().to_vec(),
        why: Some(why),
    }
}

/// `refs/heads/` followed by components of 200 bytes, `total` bytes in all.
fn long_name(total: usize) -> Vec<u8> {
    let mut name = b"refs/heads/".to_vec();
    let mut component = 0;
    while name.len() < total {
        if component == 200 {
            name.push(b'/');
            component = 0;
        } else {
            name.push(b'l');
            component += 1;
        }
    }
    name
}

fn table() -> Vec<Row> {
    vec![
        exact(b"refs/heads/caf\xe9"),
        exact("refs/heads/caf\u{e9}"),
        exact("refs/heads/cafe\u{301}"),
        exact("refs/heads/HEAD"),
        exact("refs/heads/-rf"),
        exact("refs/tags/--upload-pack=touch"),
        exact("refs/heads/\u{202e}gpj.exe"),
        exact(b"refs/heads/\x9b31m"),
        exact("refs/heads/\u{9b}31m"),
        exact("refs/heads/\u{65e5}\u{672c}/\u{30d6}\u{30e9}\u{30f3}\u{30c1}"),
        exact("refs/heads/a@b{c}"),
        exact(long_name(1023)),
        reported(long_name(4030), "4030 bytes long"),
        reported(
            [b"refs/heads/".as_slice(), &[b'w'; 300]].concat(),
            "longer than 255 bytes",
        ),
        reported("refs/heads/a..b", "'..'"),
        reported("refs/heads/x@{1}", "'@{'"),
        reported("refs/heads/y.lock", "'.lock'"),
        reported("refs/heads/sp ace", "space"),
        reported(b"refs/heads/esc\x1b[31mred", "control character"),
        reported("refs/heads/.hidden", "starting with '.'"),
    ]
}

fn git_bytes(repo: &Path, args: &[&OsStr]) -> Vec<u8> {
    let mut cmd = Command::new("git");
    isolate(&mut cmd);
    let out = cmd.current_dir(repo).args(args).output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every ref git sees in `repo`, by name as bytes (git ignores, with a warning, names it
/// refuses: they are not refs to it).
fn byte_refs(repo: &Path) -> BTreeMap<Vec<u8>, String> {
    let out = git_bytes(
        repo,
        &[
            OsStr::new("for-each-ref"),
            OsStr::new("--format=%(objectname) %(refname)"),
        ],
    );
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, name) = l.split_at(40);
            (name[1..].to_vec(), String::from_utf8_lossy(id).into_owned())
        })
        .collect()
}

/// Set the repository's refs to `refs` by writing packed-refs, as git writes it (sorted by the
/// names' bytes): the one way to give a repository a name git would not create itself.
fn plant(repo: &Path, refs: &BTreeMap<Vec<u8>, String>) {
    for entry in walk(&repo.join("refs")) {
        std::fs::remove_file(entry).unwrap();
    }
    let mut text = b"# pack-refs with: peeled fully-peeled sorted \n".to_vec();
    for (name, id) in refs {
        text.extend_from_slice(id.as_bytes());
        text.push(b' ');
        text.extend_from_slice(name);
        text.push(b'\n');
    }
    std::fs::write(repo.join("packed-refs"), text).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

/// What the target must hold: the source's refs, less the ones reported.
fn expected(source: &Path, rows: &[Row]) -> BTreeMap<Vec<u8>, String> {
    let mut want = byte_refs(source);
    for row in rows.iter().filter(|r| r.why.is_some()) {
        want.remove(&row.name);
    }
    want
}

fn check_run(label: &str, out: &Run, rows: &[Row]) {
    assert_eq!(out.code, 1, "{label}: {}", out.stderr);
    let error = out.only_error();
    assert!(
        error.len() < 1200,
        "{label}: a {}-byte error line",
        error.len()
    );
    for line in out.stderr.lines() {
        assert!(
            line.len() < 400 || line.starts_with("error"),
            "{label}: {line}"
        );
    }
    for bad in ['\u{1b}', '\u{9b}', '\u{202e}', '\u{fffd}'] {
        assert!(
            !out.stderr.contains(bad) && !out.stdout.contains(bad),
            "{label}: {bad:?} printed raw:\n{}",
            out.stderr
        );
    }
    assert!(
        error.contains("refs/heads/llllllll") && error.contains("(4030 bytes)"),
        "{label}: {error}"
    );
    assert!(error.contains("refs/heads/a..b"), "{label}: {error}");
    let report = out.json();
    let reasons: Vec<(String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "rejected")
        .map(|c| {
            (
                c["ref"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<&Row> = rows.iter().filter(|r| r.why.is_some()).collect();
    assert_eq!(reasons.len(), want.len(), "{label}: {reasons:?}");
    for row in want {
        let why = row.why.unwrap();
        assert!(
            reasons
                .iter()
                .any(|(_, reason)| reason.starts_with("cannot be mirrored") && reason.contains(why)),
            "{label}: nothing reported {why}: {reasons:?}"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|(name, _)| name == "refs/heads/esc\u{1b}[31mred"),
        "{label}: JSON names are the escaped names: {reasons:?}"
    );
}

#[test]
fn hostile_ref_names_through_every_engine_and_transport() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    let first = work.commit("a.txt", "one", "first");
    let second = work.commit("a.txt", "two", "second");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let rows = table();
    let mut planted: BTreeMap<Vec<u8>, String> = byte_refs(&source);
    for (i, row) in rows.iter().enumerate() {
        let id = if i % 2 == 0 { &first } else { &second };
        planted.insert(row.name.clone(), id.clone());
    }
    plant(&source, &planted);
    // git itself sees exactly the names it can represent.
    let seen = byte_refs(&source);
    for row in &rows {
        let git_valid = !matches!(
            row.why,
            Some("'..'" | "'@{'" | "'.lock'" | "space" | "control character" | "starting with '.'")
        );
        assert_eq!(seen.contains_key(&row.name), git_valid, "{:?}", row.why);
    }

    let daemon = GitDaemon::start(&sb.join("srv"));
    for transport in ["local path", "git daemon"] {
        // "relay": auto, each run with an empty cache of its own (as a build in CodeBuild's
        // CacheMode None): after the first mirror, every run over git daemon is relayed.
        for engine in ["git", "libgit2", "auto", "wire", "relay"] {
            let name = format!("{}-{engine}.git", transport.replace(' ', "-"));
            let target = init_bare(&sb.join(&format!("srv/{name}")));
            let (src, tgt) = match transport {
                "local path" => (path_str(&source), path_str(&target)),
                _ => (daemon.url("source.git"), daemon.url(&name)),
            };
            let label = format!("{transport} via {engine}");
            let runs = std::cell::Cell::new(0);
            let sync = || {
                runs.set(runs.get() + 1);
                let cache = match engine {
                    "relay" => sb.join(&format!("cache-{name}-{}", runs.get())),
                    _ => sb.join(&format!("cache-{name}")),
                };
                let mut cmd = bin();
                cmd.env("HOME", sb.home())
                    .args(["sync", "--source", &src, "--target", &tgt, "--json"])
                    .arg("--cache-dir")
                    .arg(&cache)
                    .args([
                        "--push-engine",
                        if engine == "relay" { "auto" } else { engine },
                    ]);
                let out = run(&mut cmd);
                if engine == "relay" && transport == "git daemon" && runs.get() > 1 {
                    assert_eq!(
                        out.json()["relay"]["relayed"],
                        true,
                        "{transport}: run {} was not relayed: {}",
                        runs.get(),
                        out.stdout
                    );
                }
                out
            };
            let out = sync();
            check_run(&label, &out, &rows);
            assert_eq!(byte_refs(&target), expected(&source, &rows), "{label}");

            // The same again: nothing moved, the same report, no panic.
            let again = sync();
            check_run(&format!("{label}, again"), &again, &rows);
            assert_eq!(byte_refs(&target), expected(&source, &rows), "{label}");

            // Every hostile ref moves, one is deleted: updates and deletions by bytes.
            let mut moved = planted.clone();
            for (name, id) in moved.iter_mut() {
                if name.starts_with(b"refs/heads/") && name.as_slice() != b"refs/heads/main" {
                    *id = if *id == first {
                        second.clone()
                    } else {
                        first.clone()
                    };
                }
            }
            moved.remove(b"refs/heads/caf\xe9".as_slice());
            // A deleted branch makes room for one below its name in the same sync.
            let head = moved.remove(b"refs/heads/HEAD".as_slice()).unwrap();
            moved.insert(b"refs/heads/HEAD/x".to_vec(), head);
            plant(&source, &moved);
            let after = sync();
            check_run(&format!("{label}, moved"), &after, &rows);
            assert_eq!(byte_refs(&target), expected(&source, &rows), "{label}");
            plant(&source, &planted);
        }
    }
}

/// A source whose every odd name is one git and this tool can carry: exact everywhere, exit 0.
#[test]
fn names_git_can_carry_are_mirrored_exactly_with_exit_0() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    let id = work.commit("a.txt", "one", "first");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let mut planted = byte_refs(&source);
    for row in table().into_iter().filter(|r| r.why.is_none()) {
        planted.insert(row.name, id.clone());
    }
    plant(&source, &planted);
    let daemon = GitDaemon::start(&sb.join("srv"));
    let http = HttpGit::start(&sb.join("srv"));
    for transport in ["local path", "git daemon", "http"] {
        for engine in ["git", "libgit2", "auto", "wire"] {
            let name = format!("{}-{engine}.git", transport.replace(' ', "-"));
            let target = init_bare(&sb.join(&format!("srv/{name}")));
            let (src, tgt) = match transport {
                "local path" => (path_str(&source), path_str(&target)),
                "git daemon" => (daemon.url("source.git"), daemon.url(&name)),
                _ => (http.url("source.git"), http.url(&name)),
            };
            let out = run(sb.sync(&src, &tgt).args(["--push-engine", engine]));
            assert_eq!(out.code, 0, "{transport} via {engine}: {}", out.stderr);
            assert_eq!(byte_refs(&target), planted, "{transport} via {engine}");
        }
    }
}
