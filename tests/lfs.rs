//! Git LFS in a mirrored branch: a target without an LFS server gets pointer files, so a run
//! says so once, naming the refs, and counts them in the summary (`--lfs warn`, the default), or
//! exits 1 before pushing anything (`--lfs fail`, `BACKLOG_MIRROR_LFS`). Detection reads the root
//! `.gitattributes` that `git lfs track` writes; the pointer here is what git-lfs commits.

use crate::support::*;

/// A source whose `media` branch tracks `*.bin` with LFS and holds one pointer; `main` does not.
fn lfs_pair(sb: &Sandbox) -> Pair {
    let pair = sb.pair("srv", &[]);
    pair.work.checkout("main");
    git(&pair.work.path, &["checkout", "-q", "-b", "media"]);
    pair.work.commit(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "track *.bin with LFS",
    );
    pair.work.commit(
        "big.bin",
        "version https://git-lfs.github.com/spec/v1\n\
         oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
        "a large file",
    );
    git(&pair.work.path, &["tag", "v1-media"]);
    pair.work.checkout("main");
    pair.work.push_mirror(&pair.source);
    pair
}

#[test]
fn lfs_refs_are_named_once_and_counted() {
    let sb = Sandbox::new();
    let pair = lfs_pair(&sb);
    let out = run(sb
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&pair.source, &pair.target);
    assert_eq!(out.json()["lfs_refs"], 2, "media and its tag");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("Git LFS"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("refs/heads/media") && warnings[0].contains("refs/tags/v1-media"),
        "{}",
        warnings[0]
    );
    assert!(!warnings[0].contains("refs/heads/main"), "{}", warnings[0]);
}

#[test]
fn lfs_fail_pushes_nothing() {
    let sb = Sandbox::new();
    let pair = lfs_pair(&sb);
    for by_env in [false, true] {
        let mut cmd = sb.sync(&path_str(&pair.source), &path_str(&pair.target));
        if by_env {
            cmd.env("BACKLOG_MIRROR_LFS", "fail");
        } else {
            cmd.args(["--lfs", "fail"]);
        }
        let out = run(cmd.arg("--json"));
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.only_error().contains("--lfs fail"), "{}", out.stderr);
        assert!(
            refs(&pair.target).is_empty(),
            "nothing was pushed, not even main"
        );
        assert_eq!(out.json()["lfs_refs"], 2);
    }
    // A repository without LFS is not held up.
    let plain = Sandbox::new();
    let pair = plain.pair("srv", &["dev"]);
    let out = run(plain
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .args(["--lfs", "fail", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["lfs_refs"], 0);
}

#[test]
fn a_bad_lfs_value_is_usage() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let out = run(sb
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .args(["--lfs", "copy"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--lfs"), "{}", out.stderr);
    assert!(refs(&pair.target).is_empty());
}
