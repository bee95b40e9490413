//! What an attacker on the same machine, a hostile server or hostile input can make a sync do:
//! planted git configuration, credentials echoed in errors or sent to another host, options
//! smuggled into a git command line. Each test runs the real binary against real servers.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;

/// A source, an attacker's repository with different history, and an empty target.
fn source_and_evil(sb: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "genuine", "genuine history");
    work.branch("release");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    let evil_work = WorkRepo::init(&sb.join("evil-work"));
    evil_work.commit("a.txt", "attacker", "attacker's history");
    evil_work.branch("release");
    let evil = init_bare(&sb.join("evil.git"));
    evil_work.push_mirror(&evil);
    let target = init_bare(&sb.join("srv/target.git"));
    (source, evil, target)
}

/// Every file libgit2 or git could read as system, global or XDG configuration, relative to a
/// directory an attacker may control (the old shared temp directory, HOME, XDG_CONFIG_HOME).
fn plant_config(dir: &Path, text: &str) {
    for file in [".gitconfig", "gitconfig", "config", "git/config"] {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
}

#[test]
fn configuration_planted_in_temp_home_or_xdg_is_never_read() {
    let sb = Sandbox::new();
    let (source, evil, target) = source_and_evil(&sb);
    let src = path_str(&source);
    let evil_url = format!("file://{}", evil.display());
    let planted = format!("[url \"{evil_url}\"]\n\tinsteadOf = {src}\n");
    // The directory earlier versions shared through the temp dir, made first by another user.
    let tmp = sb.join("tmp");
    plant_config(&tmp.join("backlog-mirror-empty-config-dir"), &planted);
    plant_config(&sb.home(), &planted);
    let xdg = sb.join("xdg");
    plant_config(&xdg, &planted);
    plant_config(&xdg.join("git"), &planted);

    for engine in ["git", "libgit2"] {
        let out = run(sb
            .sync(&src, &path_str(&target))
            .args(["--push-engine", engine])
            .env("TMPDIR", &tmp)
            .env("XDG_CONFIG_HOME", &xdg));
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert_mirror(&source, &target);
        assert_ne!(refs(&target), refs(&evil));
    }
}

#[test]
fn no_shared_directory_is_created_in_the_temp_dir() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let tmp = sb.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = run(sb
        .sync(&path_str(&source), &path_str(&target))
        .env("TMPDIR", &tmp));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in the temp dir: {left:?}");
}

/// A TCP listener that counts connections and drops them: a proxy an attacker configured.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, hits)
}

/// A guard rather than a reproduction: libgit2 reads proxy settings only when asked to
/// (`ProxyOptions::auto`) and the git child reads no user configuration. Either changing would
/// route traffic, and credentials, through whoever planted the setting.
#[test]
fn a_planted_http_proxy_never_sees_a_connection() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let http = HttpGit::start(&sb.join("srv"));
    let (proxy_port, hits) = counting_listener();
    let planted = format!("[http]\n\tproxy = http://127.0.0.1:{proxy_port}\n");
    let tmp = sb.join("tmp");
    plant_config(&tmp.join("backlog-mirror-empty-config-dir"), &planted);
    plant_config(&sb.home(), &planted);
    for engine in ["git", "libgit2"] {
        git(
            &source,
            &["update-ref", &format!("refs/heads/{engine}"), "HEAD"],
        );
        let out = run(sb
            .sync(&http.url("source.git"), &http.url("target.git"))
            .args(["--push-engine", engine])
            .env("TMPDIR", &tmp));
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert_mirror(&source, &target);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the planted proxy was used");
}

/// A user name and password in a URL that is refused, however it is refused: by our own
/// parsing, by the command line parser, or as the wrong kind of value for another flag.
#[test]
fn userinfo_in_refused_input_is_never_printed() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let (src, tgt) = (path_str(&source), path_str(&target));
    let cache = path_str(&sb.cache_dir());
    let urls = [
        format!("https://bob:{CANARY}/9f3e@git.example.com/team/app.git"),
        format!("https://bob:{CANARY}@127.0.0.1:99999/team/app.git"),
        format!("https://bob:{CANARY}@git example.com/team/app.git"),
        format!("https://bob:{CANARY}@[::1/team/app.git"),
        format!("https://bob:{CANARY}%40x@127.0.0.1:99999/team/app.git"),
        format!("ftp://bob:{CANARY}@git.example.com/team/app.git"),
        format!("bob:{CANARY}@git.example.com:team/app.git"),
        // Short passwords are not registered as secrets; the shape alone must be enough.
        "https://bob:pw1@127.0.0.1:99999/team/app.git".to_string(),
    ];
    /// (what the case is, arguments, environment)
    type Case<'a> = (String, Vec<String>, Vec<(&'a str, String)>);
    let mut cases: Vec<Case> = Vec::new();
    for url in &urls {
        let base = |flag: &str, value: &str| {
            let mut args = vec!["sync".to_string(), "--cache-dir".into(), cache.clone()];
            if flag != "--source" {
                args.extend(["--source".into(), src.clone()]);
            }
            if flag != "--target" {
                args.extend(["--target".into(), tgt.clone()]);
            }
            args.extend([flag.to_string(), value.to_string()]);
            args
        };
        cases.push((format!("--target {url}"), base("--target", url), vec![]));
        cases.push((format!("--source {url}"), base("--source", url), vec![]));
        let mut from_env = base("--cache-dir", &cache);
        from_env.retain(|a| a != "--target" && a != &tgt);
        cases.push((
            format!("BACKLOG_MIRROR_TARGET={url}"),
            from_env,
            vec![("BACKLOG_MIRROR_TARGET", url.clone())],
        ));
        cases.push((
            format!("--push-engine {url}"),
            base("--push-engine", url),
            vec![],
        ));
        cases.push((
            format!("BACKLOG_MIRROR_PUSH_ENGINE={url}"),
            base("--cache-dir", &cache),
            vec![("BACKLOG_MIRROR_PUSH_ENGINE", url.clone())],
        ));
        cases.push((format!("--include {url}"), base("--include", url), vec![]));
        cases.push((
            format!("--mirror-name {url}"),
            base("--mirror-name", url),
            vec![],
        ));
        cases.push((
            format!("--codecommit-endpoint {url}"),
            vec![
                "sync".into(),
                "--source".into(),
                src.clone(),
                "--target".into(),
                "codecommit::us-east-1://app".into(),
                "--cache-dir".into(),
                cache.clone(),
                "--codecommit-endpoint".into(),
                url.clone(),
            ],
            vec![],
        ));
        let mut stray = base("--cache-dir", &cache);
        stray.push(url.clone());
        cases.push((format!("stray argument {url}"), stray, vec![]));
    }
    let codecommit = format!("https://bob:{CANARY}@git-codecommit.us-east-1.amazonaws.com/a/b");
    cases.push((
        format!("--target {codecommit}"),
        vec![
            "sync".into(),
            "--source".into(),
            src.clone(),
            "--cache-dir".into(),
            cache.clone(),
            "--target".into(),
            codecommit.clone(),
        ],
        vec![],
    ));
    for (name, args, env) in cases {
        let mut cmd = bin();
        cmd.env("HOME", sb.home()).args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        out.only_error();
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            for secret in [CANARY, "bob:", "pw1"] {
                assert!(
                    !text.contains(secret),
                    "{name}: {secret} in {stream}: {text}"
                );
            }
        }
    }
    assert!(refs(&target).is_empty());
}

/// A local target whose path is an option to `git push`: before the fix git ran the "receive
/// pack" command it named.
#[test]
fn a_target_path_that_looks_like_an_option_is_a_path() {
    let sb = Sandbox::new();
    let (source, _evil, _target) = source_and_evil(&sb);
    let name = "--receive-pack=touch pwned";
    let target = init_bare(&sb.join(name));
    for engine in ["git", "auto"] {
        git(
            &source,
            &["update-ref", &format!("refs/heads/{engine}"), "HEAD"],
        );
        let mut cmd = bin();
        cmd.current_dir(sb.path())
            .env("HOME", sb.home())
            .env("BACKLOG_MIRROR_TARGET", name)
            .args(["sync", "--source", &path_str(&source), "--cache-dir"])
            .arg(sb.cache_dir())
            .args(["--push-engine", engine]);
        let out = run(&mut cmd);
        assert!(!sb.join("pwned").exists(), "{engine}: git ran the command");
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert_mirror(&source, &target);
    }
}

/// Every git command line this program starts, from git's own trace (`GIT_TRACE2_EVENT`): the
/// argv of each process whose session id has no parent, i.e. that we started, not git itself.
fn traced_command_lines(trace: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "start")
        .filter(|event| event["sid"].as_str().is_some_and(|sid| !sid.contains('/')))
        .map(|event| {
            event["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().expect("string").to_string())
                .collect()
        })
        .collect()
}

/// A `-c` value this program writes itself: one of its own keys with a number (from a validated
/// flag such as --network-timeout), never text from input.
fn is_our_config(arg: &str) -> bool {
    ["http.lowSpeedLimit=", "http.lowSpeedTime="]
        .iter()
        .any(|key| {
            arg.strip_prefix(key)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// A lease (`--force-with-lease=<ref>:<expected id>`, the id empty for a create): git takes the
/// whole argument as one option, so a ref name inside it cannot become an option of its own; it
/// is still checked to be a full ref name and an id, nothing else.
fn is_our_lease(arg: &str) -> bool {
    arg.strip_prefix("--force-with-lease=refs/")
        .and_then(|rest| rest.rsplit_once(':'))
        .is_some_and(|(name, id)| {
            !name.is_empty()
                && (id.is_empty() || (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())))
        })
}

/// The options this program itself writes before `--`; anything else there came from input.
const OUR_OPTIONS: &[&str] = &[
    "git",
    "-c",
    "--version",
    "push",
    "--porcelain",
    "--progress",
    "--no-verify",
    "repack",
    "-a",
    "-d",
    "-q",
    "pack-refs",
    "--all",
    "--prune",
    "upload-pack",
];

#[test]
fn no_input_reaches_a_git_command_line_before_the_double_dash() {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    let head = work.commit("a.txt", "one", "first");
    let source = init_bare(&sb.join("srv/source.git"));
    work.push_mirror(&source);
    for branch in ["-f", "--upload-pack=touch", "--receive-pack=x", "-"] {
        update_ref(&source, &format!("refs/heads/{branch}"), &head);
    }
    let daemon = GitDaemon::start(&sb.join("srv"));
    let http = HttpGit::start(&sb.join("srv"));
    let targets = [
        ("local", path_str(&init_bare(&sb.join("srv/local.git")))),
        ("relative", "-dash-target.git".to_string()),
        ("git daemon", daemon.url("daemon.git")),
        ("http", http.url("http.git")),
    ];
    init_bare(&sb.join("-dash-target.git"));
    init_bare(&sb.join("srv/daemon.git"));
    init_bare(&sb.join("srv/http.git"));
    let trace = sb.join("trace2.json");
    let mut pushes = 0;
    for (label, target) in &targets {
        for engine in ["git", "auto"] {
            let mut cmd = bin();
            cmd.current_dir(sb.path())
                .env("HOME", sb.home())
                .env("GIT_TRACE2_EVENT", &trace)
                .env("BACKLOG_MIRROR_TARGET", target)
                .args(["sync", "--source", &path_str(&source), "--cache-dir"])
                .arg(sb.join(&format!("cache-{engine}")))
                .args(["--push-engine", engine]);
            let out = run(&mut cmd);
            assert_eq!(out.code, 0, "{label} via {engine}: {}", out.stderr);
        }
        for argv in traced_command_lines(&trace) {
            let dashes = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
            for arg in &argv[..dashes] {
                assert!(
                    OUR_OPTIONS.contains(&arg.as_str()) || is_our_config(arg) || is_our_lease(arg),
                    "{label}: '{arg}' precedes '--' in {argv:?}"
                );
            }
            let subcommand = argv[1..]
                .iter()
                .find(|a| *a != "-c" && !is_our_config(a))
                .map(String::as_str);
            if subcommand == Some("push") {
                pushes += 1;
                assert!(
                    argv[dashes + 1..]
                        .iter()
                        .any(|a| a.contains("refs/heads/-f"))
                );
            }
        }
        std::fs::remove_file(&trace).ok();
    }
    assert!(
        pushes >= targets.len(),
        "only {pushes} git pushes were traced"
    );
}

/// libgit2 reads any location with a `:` as an SSH address and git reads `name::rest` as a
/// remote helper: local paths that look like either are still the paths they are.
#[test]
fn local_paths_that_look_like_ssh_or_a_remote_helper_are_paths() {
    let sb = Sandbox::new();
    let (source, _evil, _target) = source_and_evil(&sb);
    let odd_source = sb.join("host:team.git");
    assert!(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&source)
            .arg(&odd_source)
            .status()
            .unwrap()
            .success()
    );
    for (engine, name) in [
        ("git", "ext::a.git"),
        ("libgit2", "fd::b.git"),
        ("auto", "x:c.git"),
    ] {
        let target = init_bare(&sb.join(name));
        let mut cmd = bin();
        cmd.current_dir(sb.path())
            .env("HOME", sb.home())
            .args(["sync", "--source", &path_str(&odd_source), "--target", name])
            .arg("--cache-dir")
            .arg(sb.cache_dir())
            .args(["--push-engine", engine]);
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{engine} to {name}: {}", out.stderr);
        assert_mirror(&odd_source, &target);
    }
}

/// A source or target that redirects to another host (127.0.0.2 is another host to any client)
/// must not be handed the credentials given for it, whether they came in the URL or from a
/// password flag, and whether the first host asked for them before redirecting or not.
#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    use crate::support::redirect::{CredentialSink, Redirector};
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let (src, tgt) = (path_str(&source), path_str(&target));
    let sink = CredentialSink::start("127.0.0.2");
    for challenge in [false, true] {
        let redirector = Redirector::start(&sink.origin, challenge);
        let with_userinfo = redirector
            .url("team/app.git")
            .replace("http://", &format!("http://bob:{CANARY}@"));
        let plain = redirector
            .url("team/app.git")
            .replace("http://", "http://bob@");
        let cases: Vec<(&str, Vec<String>)> = vec![
            (
                "source with userinfo",
                vec![
                    "--source".into(),
                    with_userinfo.clone(),
                    "--target".into(),
                    tgt.clone(),
                ],
            ),
            (
                "source with a password flag",
                vec![
                    "--source".into(),
                    plain.clone(),
                    "--target".into(),
                    tgt.clone(),
                    "--source-password-env".into(),
                    "TOKEN".into(),
                ],
            ),
            (
                "target with userinfo",
                vec![
                    "--source".into(),
                    src.clone(),
                    "--target".into(),
                    with_userinfo,
                ],
            ),
            (
                "target with a password flag",
                vec![
                    "--source".into(),
                    src.clone(),
                    "--target".into(),
                    plain,
                    "--target-password-env".into(),
                    "TOKEN".into(),
                ],
            ),
        ];
        for (name, args) in cases {
            let before = sink.requests();
            let mut cmd = bin();
            cmd.env("HOME", sb.home())
                .env("TOKEN", CANARY)
                .args(["sync", "--cache-dir"])
                .arg(sb.cache_dir())
                .args(&args);
            let out = run(&mut cmd);
            let case = format!("{name} (challenge first: {challenge})");
            // libgit2 follows a redirect without the credentials; our receive-pack client (which
            // lists and pushes HTTP targets) refuses it before following.
            assert!(
                sink.requests() > before || out.stderr.contains("the redirect is not followed"),
                "{case}: the redirect was neither followed nor refused: {}",
                out.stderr
            );
            assert_eq!(sink.authorizations(), Vec::<String>::new(), "{case}");
            assert_eq!(out.code, 1, "{case}: {}", out.stderr);
            let error = out.only_error();
            assert!(
                error.contains("redirected") && error.contains("127.0.0.2"),
                "{case}: {error}"
            );
        }
    }
    assert!(refs(&target).is_empty());
}

/// An encrypted key with the wrong passphrase is a wrong passphrase, not an "unsupported
/// format", in every format and key type libssh2 reads.
#[test]
fn a_wrong_ssh_passphrase_is_named_as_such() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let sshd = Sshd::start();
    let mut pinned = Vec::new();
    for fp in sshd.host_key_fingerprints() {
        pinned.extend(["--host-key-fingerprint".to_string(), fp]);
    }
    for (kind, format) in [
        ("ed25519", "openssh"),
        ("ecdsa", "pem"),
        ("rsa", "pem"),
        ("rsa", "openssh"),
    ] {
        let key = keygen(
            &sb.join("keys"),
            &format!("{kind}-{format}"),
            kind,
            format,
            Some("right-passphrase"),
        );
        sshd.authorize(&key.public_line);
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .env("KEY_PASS", CANARY)
            .args([
                "sync",
                "--source",
                &sshd.url(&source),
                "--target",
                &path_str(&target),
            ])
            .arg("--cache-dir")
            .arg(sb.cache_dir())
            .arg("--ssh-key-file")
            .arg(&key.private_path)
            .args(["--ssh-passphrase-env", "KEY_PASS"])
            .args(&pinned);
        let out = run(&mut cmd);
        let label = format!("{kind} {format}");
        assert_ne!(out.code, 0, "{label}");
        let error = out.only_error();
        assert!(
            error.contains("passphrase") && error.contains("wrong"),
            "{label}: {error}"
        );
        assert!(!error.contains("Unsupported"), "{label}: {error}");
        assert!(refs(&target).is_empty());
    }
    // The right passphrase from a file written by `echo`, newline and all, is the right one.
    let key = keygen(
        &sb.join("keys"),
        "echoed",
        "ed25519",
        "openssh",
        Some(CANARY),
    );
    sshd.authorize(&key.public_line);
    let file = sb.join("passphrase");
    std::fs::write(&file, format!("{CANARY}\n")).unwrap();
    let mut cmd = bin();
    cmd.env("HOME", sb.home())
        .args([
            "sync",
            "--source",
            &sshd.url(&source),
            "--target",
            &path_str(&target),
        ])
        .arg("--cache-dir")
        .arg(sb.cache_dir())
        .arg("--ssh-key-file")
        .arg(&key.private_path)
        .arg("--ssh-passphrase-file")
        .arg(&file)
        .args(&pinned);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
}

/// git is never handed a credential, so `--push-engine git` cannot push to a target that needs
/// one: refused before anything is fetched, instead of failing after the whole fetch with
/// "terminal prompts disabled" (or, over SSH, pushing with the machine's ssh and its own idea of
/// the host's key instead of --ssh-key-* and the host key policy).
#[test]
fn push_engine_git_is_refused_for_targets_that_need_credentials() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), CANARY.into())),
            ..HttpOptions::default()
        },
    );
    let src = http
        .url("source.git")
        .replace("http://", &format!("http://mirror:{CANARY}@"));
    let with_userinfo = http
        .url("target.git")
        .replace("http://", &format!("http://mirror:{CANARY}@"));
    let with_user = http.url("target.git").replace("http://", "http://mirror@");
    let sshd = Sshd::start();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "password flag",
            with_user,
            vec!["--target-password-env", "TOKEN"],
        ),
        ("userinfo", with_userinfo, vec![]),
        (
            "ssh",
            sshd.url(&target),
            vec!["--accept-new-host-key", "--ssh-key-env", "TOKEN"],
        ),
    ];
    for (name, tgt, extra) in cases {
        let out = run(sb
            .sync(&src, &tgt)
            .env("TOKEN", CANARY)
            .args(["--push-engine", "git"])
            .args(&extra));
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        let error = out.only_error();
        assert!(error.contains("--push-engine git"), "{name}: {error}");
        assert_eq!(
            http.count_service("git-upload-pack"),
            0,
            "{name}: the source was contacted"
        );
    }
    assert!(refs(&target).is_empty());
    let _ = source;
}

// Not an attack, but the same review: the AWS SDK finds a region in a profile, and so must we.

/// The CodeCommit region set only in an AWS profile (`~/.aws/config` with `AWS_PROFILE`, a file
/// named by `AWS_CONFIG_FILE`, or the `PROFILE@` of a codecommit:// URL) is the region used, by
/// `sync` and by `credential-helper`, as the SDK's region chain finds it.
#[test]
fn a_codecommit_region_from_an_aws_profile_is_used() {
    use crate::support::codecommit::CodeCommitServer;
    const REGION: &str = "eu-west-3";
    const AKID: &str = "AKIAEXAMPLEPROFILE01";
    let secret = format!("{CANARY}/profile-secret");
    let sb = Sandbox::new();
    let (source, _evil, _target) = source_and_evil(&sb);
    let root = sb.join("codecommit");
    for repo in ["by-env-profile", "by-config-file", "by-url-profile"] {
        init_bare(&root.join(repo));
    }
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, &secret, None)], 0);
    let aws = sb.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[default]\nregion = us-west-2\n\n[profile mirror]\nregion = {REGION}\n"),
    )
    .unwrap();
    let elsewhere = sb.join("aws-config");
    std::fs::write(&elsewhere, format!("[default]\nregion = {REGION}\n")).unwrap();
    /// (repository, --target, environment)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);
    let cases: [Case; 3] = [
        (
            "by-env-profile",
            "codecommit://by-env-profile",
            vec![("AWS_PROFILE", "mirror".to_string())],
        ),
        (
            "by-config-file",
            "codecommit://by-config-file",
            vec![("AWS_CONFIG_FILE", path_str(&elsewhere))],
        ),
        (
            "by-url-profile",
            "codecommit://mirror@by-url-profile",
            vec![],
        ),
    ];
    for (repo, target, env) in cases {
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .envs(server.client_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["sync", "--source", &path_str(&source), "--target", target])
            .arg("--cache-dir")
            .arg(sb.cache_dir());
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{repo}: {}", out.stderr);
        assert_mirror(&source, &root.join(repo));

        // The helper, asked by plain git, signs for the same region.
        let mut helper = bin();
        helper
            .env("HOME", sb.home())
            .envs(server.client_env())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["credential-helper", "get"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if repo == "by-url-profile" {
            helper.env("AWS_PROFILE", "mirror");
        }
        let mut child = helper.spawn().unwrap();
        use std::io::Write;
        write!(
            child.stdin.take().unwrap(),
            "protocol=https\nhost={}\npath=v1/repos/{repo}\n\n",
            server.endpoint()
        )
        .unwrap();
        let answer = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&answer.stdout);
        assert!(
            answer.status.success(),
            "{repo}: {}",
            String::from_utf8_lossy(&answer.stderr)
        );
        let password = stdout
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap_or_else(|| panic!("{repo}: no password: {stdout}"));
        // Plain git with that answer is let in: the signature is for the profile's region.
        let url = format!(
            "https://{AKID}:{password}@{}/v1/repos/{repo}",
            server.endpoint()
        );
        let mut ls = Command::new("git");
        isolate(&mut ls);
        let listed = ls
            .envs(server.client_env())
            .args(["ls-remote", &url])
            .output()
            .unwrap();
        assert!(
            listed.status.success(),
            "{repo}: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
}

/// A local target's hook sees the environment git was given, and git the one we give it: none
/// of the run's secrets may be in it, whichever route brought them (a variable a `--*-env` flag
/// names, by flag or by `BACKLOG_MIRROR_*_ENV`, a short password, an SSH key and its passphrase,
/// userinfo in a `BACKLOG_MIRROR_*` URL, AWS credentials).
#[test]
fn no_secret_reaches_a_local_targets_hooks() {
    let sb = Sandbox::new();
    let (source, _evil, target) = source_and_evil(&sb);
    let dump = sb.join("hook-env");
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\n{{ echo '--- run'; env; }} >>'{}'\n",
            dump.display()
        ),
    );
    let password = format!("{CANARY}-http");
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), password.clone())),
            ..HttpOptions::default()
        },
    );
    let short = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), "pw1".into())),
            ..HttpOptions::default()
        },
    );
    let sshd = Sshd::start();
    let passphrase = format!("{CANARY}-passphrase");
    let key = keygen(
        &sb.join("keys"),
        "k",
        "ed25519",
        "openssh",
        Some(&passphrase),
    );
    sshd.authorize(&key.public_line);
    let as_mirror = |url: String| url.replace("http://", "http://mirror@");
    let userinfo = http
        .url("source.git")
        .replace("http://", &format!("http://mirror:{password}@"));
    let tgt = path_str(&target);
    let everywhere: Vec<(&str, String)> = vec![
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEHOOKS0001".to_string()),
        ("AWS_SECRET_ACCESS_KEY", format!("{CANARY}-aws-secret")),
        ("AWS_SESSION_TOKEN", format!("{CANARY}-aws-session")),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            format!("{CANARY}-aws-container"),
        ),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("/v2/{CANARY}"),
        ),
        // Inert here (--target wins), but inherited all the same before the fix.
        (
            "BACKLOG_MIRROR_TARGET",
            format!("https://u:{CANARY}-target@git.example.com/x.git"),
        ),
    ];
    /// (what the case is, --source, extra arguments, extra environment)
    type Case = (
        &'static str,
        String,
        Vec<String>,
        Vec<(&'static str, String)>,
    );
    let cases: Vec<Case> = vec![
        (
            "--source-password-env",
            as_mirror(http.url("source.git")),
            vec!["--source-password-env".into(), "TOKEN".into()],
            vec![("TOKEN", password.clone())],
        ),
        (
            "BACKLOG_MIRROR_SOURCE_PASSWORD_ENV",
            as_mirror(http.url("source.git")),
            vec![],
            vec![
                ("BACKLOG_MIRROR_SOURCE_PASSWORD_ENV", "TOKEN".into()),
                ("TOKEN", password.clone()),
            ],
        ),
        (
            "a short password",
            as_mirror(short.url("source.git")),
            vec!["--source-password-env".into(), "SHORT".into()],
            vec![("SHORT", "pw1".into())],
        ),
        (
            "userinfo in BACKLOG_MIRROR_SOURCE",
            String::new(),
            vec![],
            vec![("BACKLOG_MIRROR_SOURCE", userinfo)],
        ),
        (
            "--ssh-key-env",
            sshd.url(&source),
            vec![
                "--ssh-key-env".into(),
                "KEY".into(),
                "--ssh-passphrase-env".into(),
                "KEY_PASS".into(),
                "--accept-new-host-key".into(),
            ],
            vec![
                ("KEY", key.private_text.clone()),
                ("KEY_PASS", passphrase.clone()),
            ],
        ),
    ];
    let work = sb.join("commits");
    for (i, (name, src, args, env)) in cases.iter().enumerate() {
        push_a_commit(&source, &work, &format!("f{i}"), name);
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .args(["sync", "--target", &tgt, "--cache-dir"])
            .arg(sb.cache_dir())
            .args(if src.is_empty() {
                vec![]
            } else {
                vec!["--source", src.as_str()]
            })
            .args(args)
            .envs(everywhere.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_mirror(&source, &target);
        let seen = std::fs::read_to_string(&dump).unwrap_or_default();
        assert_eq!(
            seen.matches("--- run").count(),
            i + 1,
            "{name}: the hook did not run"
        );
        let key_lines = key
            .private_text
            .lines()
            .filter(|l| l.len() > 20 && !l.starts_with("-----"));
        for line in seen.lines() {
            let variable = line.split('=').next().unwrap_or("");
            assert!(
                !line.contains(CANARY)
                    && !line.contains("pw1")
                    && !line.contains("AKIAEXAMPLEHOOKS")
                    && !["TOKEN", "SHORT", "KEY", "KEY_PASS"].contains(&variable)
                    && !variable.starts_with("AWS_")
                    && !variable.starts_with("BACKLOG_"),
                "{name}: the hook saw {line}"
            );
        }
        for line in key_lines {
            assert!(!seen.contains(line), "{name}: the hook saw the SSH key");
        }
    }
}
