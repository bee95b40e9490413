//! Stamps the commit into `--version` (`0.1.0 (abc123def456)`), so a binary found in a bucket or
//! a build log names the source it was built from. `-dirty` marks a build whose sources (`src/`,
//! `build.rs`, the manifest and the lock file) differ from that commit; changes elsewhere (tests,
//! docs) do not change the binary and do not mark it. Outside a git checkout of this crate (a
//! source tarball, a crate vendored into another repository) the commit is `unknown`.
//!
//! Cargo re-runs this script when HEAD, the branch it points to or the sources move, so the stamp
//! follows commits without re-running on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What decides the binary's content, and so whether the build is `-dirty`.
const SOURCES: [&str; 4] = ["src", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let commit = match commit(&dir) {
        Some(Stamp {
            commit,
            dirty,
            watch,
        }) => {
            for path in watch {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            format!("{}{}", &commit[..12], if dirty { "-dirty" } else { "" })
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=BACKLOG_MIRROR_VERSION={version} ({commit})");
}

struct Stamp {
    commit: String,
    dirty: bool,
    /// Git's files that move when HEAD does: the HEAD file, the branch's ref, packed-refs.
    watch: Vec<PathBuf>,
}

fn commit(dir: &Path) -> Option<Stamp> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])?;
    if commit.len() < 12 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut status = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
    ];
    status.extend(SOURCES);
    let dirty = !git(dir, &status)?.is_empty();
    let mut refs = vec!["HEAD".to_string(), "packed-refs".to_string()];
    refs.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    let watch = refs
        .iter()
        .filter_map(|name| git(dir, &["rev-parse", "--git-path", name]))
        .map(|path| dir.join(path))
        .filter(|path| path.exists())
        .collect();
    Some(Stamp {
        commit,
        dirty,
        watch,
    })
}

/// `git -C dir ARGS`, trimmed stdout; None if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        // A checkout owned by another user (a container building a mounted tree) is still ours
        // to read; without this git refuses it and the stamp would silently say `unknown`.
        .arg("-c")
        .arg(format!("safe.directory={}", dir.display()))
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
