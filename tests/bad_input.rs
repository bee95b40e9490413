//! Bad input: one clear line naming the flag or value, the documented exit code, and the target
//! left exactly as it was.

use crate::support::*;

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Text the one-line message must contain (the flag or value it names).
    mentions: &'static str,
}

#[test]
fn every_bad_input_gets_one_line_its_exit_code_and_no_change() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("", &[]);
    let stale = WorkRepo::init(&sb.join("stale-target-work"));
    stale.commit("t.txt", "old", "target's old state");
    stale.push_mirror(&target);
    let before = refs(&target);

    let a_file = sb.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let non_bare = WorkRepo::init(&sb.join("non-bare"));
    non_bare.commit("x", "x", "x");
    let src = path_str(&source);
    let tgt = path_str(&target);
    let cache = path_str(&sb.cache_dir());
    let s = |v: &str| v.to_string();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            s("sync"),
            s("--source"),
            src.clone(),
            s("--target"),
            tgt.clone(),
            s("--cache-dir"),
            cache.clone(),
        ];
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    let with = |source: &str, target: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            s("sync"),
            s("--source"),
            s(source),
            s("--target"),
            s(target),
            s("--cache-dir"),
            cache.clone(),
        ];
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    let cases = vec![
        Case {
            name: "missing source",
            args: vec![
                s("sync"),
                s("--target"),
                tgt.clone(),
                s("--cache-dir"),
                cache.clone(),
            ],
            env: vec![],
            code: 2,
            mentions: "--source",
        },
        Case {
            name: "missing target",
            args: vec![
                s("sync"),
                s("--source"),
                src.clone(),
                s("--cache-dir"),
                cache.clone(),
            ],
            env: vec![],
            code: 2,
            mentions: "--target",
        },
        Case {
            name: "unknown flag",
            args: base(&["--frobnicate"]),
            env: vec![],
            code: 2,
            mentions: "--frobnicate",
        },
        Case {
            name: "unsupported scheme",
            args: with("ftp://example.com/r.git", &tgt, &[]),
            env: vec![],
            code: 2,
            mentions: "ftp://",
        },
        Case {
            name: "url without host",
            args: with(&src, "https:///repo.git", &[]),
            env: vec![],
            code: 2,
            mentions: "--target",
        },
        Case {
            name: "url without path",
            args: with("https://example.com", &tgt, &[]),
            env: vec![],
            code: 2,
            mentions: "--source",
        },
        Case {
            name: "scp form without path",
            args: with("git@example.com:", &tgt, &[]),
            env: vec![],
            code: 2,
            mentions: "--source",
        },
        Case {
            name: "source path missing",
            args: with("/nonexistent/repo.git", &tgt, &[]),
            env: vec![],
            code: 2,
            mentions: "/nonexistent/repo.git",
        },
        Case {
            // Not bad usage: the run says how to create it, or --create-target does.
            name: "target path missing",
            args: with(&src, "/nonexistent/target.git", &[]),
            env: vec![],
            code: 1,
            mentions: "git init --bare",
        },
        Case {
            name: "target not a repository",
            args: with(&src, &path_str(&sb.join("home")), &[]),
            env: vec![],
            code: 2,
            mentions: "not a git repository",
        },
        Case {
            name: "source equals target",
            args: with(&src, &src, &[]),
            env: vec![],
            code: 2,
            mentions: "same repository",
        },
        Case {
            name: "cache dir is a file",
            args: vec![
                s("sync"),
                s("--source"),
                src.clone(),
                s("--target"),
                tgt.clone(),
                s("--cache-dir"),
                path_str(&a_file),
            ],
            env: vec![],
            code: 2,
            mentions: "--cache-dir",
        },
        Case {
            name: "cache dir not writable",
            args: vec![
                s("sync"),
                s("--source"),
                src.clone(),
                s("--target"),
                tgt.clone(),
                s("--cache-dir"),
                s("/proc/backlog-mirror-cache"),
            ],
            env: vec![],
            code: 2,
            mentions: "--cache-dir",
        },
        Case {
            name: "cache dir is a work tree",
            args: vec![
                s("sync"),
                s("--source"),
                src.clone(),
                s("--target"),
                tgt.clone(),
                s("--cache-dir"),
                path_str(&non_bare.path),
            ],
            env: vec![],
            code: 2,
            mentions: "git repository itself",
        },
        Case {
            name: "bad include glob",
            args: base(&["--include", "refs/[oops"]),
            env: vec![],
            code: 2,
            mentions: "--include",
        },
        Case {
            name: "exclude without refs/",
            args: base(&["--exclude", "pull/*"]),
            env: vec![],
            code: 2,
            mentions: "refs/pull/*",
        },
        Case {
            name: "max-delete not a number",
            args: base(&["--max-delete", "lots"]),
            env: vec![],
            code: 2,
            mentions: "--max-delete",
        },
        Case {
            name: "max-rounds zero",
            args: base(&["--max-rounds", "0"]),
            env: vec![],
            code: 2,
            mentions: "--max-rounds",
        },
        Case {
            name: "batch-size negative",
            args: base(&["--batch-size", "-5"]),
            env: vec![],
            code: 2,
            mentions: "--batch-size",
        },
        Case {
            name: "lock-timeout unit",
            args: base(&["--lock-timeout", "10 parsecs"]),
            env: vec![],
            code: 2,
            mentions: "--lock-timeout",
        },
        Case {
            name: "unknown push engine",
            args: base(&["--push-engine", "rsync"]),
            env: vec![],
            code: 2,
            mentions: "--push-engine",
        },
        Case {
            name: "bad mirror name",
            args: base(&["--mirror-name", "../escape"]),
            env: vec![],
            code: 2,
            mentions: "--mirror-name",
        },
        Case {
            name: "bad env value",
            args: base(&[]),
            env: vec![("BACKLOG_MIRROR_MAX_ROUNDS", s("many"))],
            code: 2,
            mentions: "--max-rounds",
        },
        Case {
            name: "two key sources",
            args: base(&["--ssh-key-env", "K", "--ssh-key-file", "/k"]),
            env: vec![],
            code: 2,
            mentions: "--ssh-key",
        },
        Case {
            name: "two key sources, one from the environment",
            args: base(&["--ssh-key-file", "/k"]),
            env: vec![("BACKLOG_MIRROR_SSH_KEY_SSM", s("/backlog-mirror/ssh-key"))],
            code: 2,
            mentions: "--ssh-key-ssm",
        },
        Case {
            name: "two passwords for the target",
            args: base(&["--target-password-env", "T", "--target-password-file", "/t"]),
            env: vec![],
            code: 2,
            mentions: "--target-password-",
        },
        Case {
            name: "two host key policies",
            args: base(&["--known-hosts", "/k", "--host-key-fingerprint", "SHA256:x"]),
            env: vec![],
            code: 2,
            mentions: "--host-key-fingerprint",
        },
        Case {
            name: "trust on first use with a known_hosts file",
            args: base(&["--known-hosts", "/k", "--accept-new-host-key"]),
            env: vec![],
            code: 2,
            mentions: "--accept-new-host-key",
        },
        Case {
            name: "source and the backlog shorthand",
            args: base(&["--backlog-space", "space"]),
            env: vec![],
            code: 2,
            mentions: "--backlog-space",
        },
        Case {
            name: "target and the codecommit shorthand",
            args: base(&[]),
            env: vec![("BACKLOG_MIRROR_CODECOMMIT_REPO", s("app"))],
            code: 2,
            mentions: "--codecommit-repo",
        },
        Case {
            name: "key env var unset",
            args: with(
                "git@example.com:/p/r.git",
                &tgt,
                &["--ssh-key-env", "NO_SUCH_VAR_FOR_TEST"],
            ),
            env: vec![],
            code: 2,
            mentions: "NO_SUCH_VAR_FOR_TEST",
        },
        Case {
            name: "ssh source without key",
            args: with("git@example.com:/p/r.git", &tgt, &[]),
            env: vec![],
            code: 2,
            mentions: "--ssh-key",
        },
        Case {
            name: "bad fingerprint",
            args: base(&["--host-key-fingerprint", "MD5:aa:bb"]),
            env: vec![],
            code: 2,
            mentions: "SHA256:",
        },
        Case {
            name: "bad backlog domain",
            args: vec![
                s("sync"),
                s("--backlog-space"),
                s("space"),
                s("--backlog-domain"),
                s("backlog.net"),
                s("--backlog-project"),
                s("P"),
                s("--backlog-repo"),
                s("r"),
                s("--target"),
                tgt.clone(),
                s("--cache-dir"),
                cache.clone(),
            ],
            env: vec![],
            code: 2,
            mentions: "--backlog-domain",
        },
        Case {
            name: "unreachable target",
            args: with(
                &src,
                "git://127.0.0.1:1/nothing.git",
                &["--network-timeout", "5s"],
            ),
            env: vec![],
            code: 1,
            mentions: "127.0.0.1:1",
        },
    ];
    assert!(cases.len() >= 20);
    for case in &cases {
        let mut cmd = bin();
        cmd.env("HOME", sb.home()).args(&case.args);
        for (k, v) in &case.env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert_eq!(out.code, case.code, "{}: {}", case.name, out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected one error line:\n{}",
            case.name,
            out.stderr
        );
        if case.code == 2 {
            assert_eq!(
                out.stderr.trim().lines().count(),
                1,
                "{}: more than one line:\n{}",
                case.name,
                out.stderr
            );
        }
        assert!(
            lines[0].contains(case.mentions),
            "{}: the message does not name {:?}: {}",
            case.name,
            case.mentions,
            lines[0]
        );
        assert_eq!(refs(&target), before, "{}: the target changed", case.name);
    }
}

/// The reference buildspec's variables (`BACKLOG_SPACE_KEY`, `CODECOMMIT_REPOSITORY_NAME`) are
/// defaults a project may carry: a flag wins over them. A boolean set to false by its variable
/// is not a choice: `BACKLOG_MIRROR_ACCEPT_NEW_HOST_KEY=false` goes with `--known-hosts`.
#[test]
fn flags_win_over_the_reference_buildspecs_variables() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("", &[]);
    let known_hosts = sb.join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let out = run(sb
        .sync(&path_str(&source), &path_str(&target))
        .arg("--known-hosts")
        .arg(&known_hosts)
        .env("BACKLOG_SPACE_KEY", "space")
        .env("BACKLOG_PROJECT_KEY", "PROJ")
        .env("BACKLOG_REPOSITORY_NAME", "app")
        .env("CODECOMMIT_REPOSITORY_NAME", "app")
        .env("BACKLOG_MIRROR_ACCEPT_NEW_HOST_KEY", "false"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
}
