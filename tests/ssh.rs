//! SSH sources against a real OpenSSH sshd on 127.0.0.1: every key type and format, encrypted
//! keys, wrong keys, and each host-key policy, with no secret ever printed.

use std::path::{Path, PathBuf};

use crate::support::*;

struct Fixture {
    sb: Sandbox,
    sshd: Sshd,
    source: PathBuf,
    target: PathBuf,
}

fn fixture(options: SshdOptions) -> Fixture {
    let sb = Sandbox::new();
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    work.tag_annotated("v1", "one");
    let source = init_bare(&sb.join("source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join("target.git"));
    Fixture {
        sshd: Sshd::start_with(options),
        sb,
        source,
        target,
    }
}

impl Fixture {
    fn sync(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .args(["sync", "--source", &self.sshd.url(&self.source), "--target"])
            .arg(&self.target)
            .arg("--cache-dir")
            .arg(self.sb.cache_dir())
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    fn pinned(&self) -> Vec<String> {
        let mut args = Vec::new();
        for fp in self.sshd.host_key_fingerprints() {
            args.push("--host-key-fingerprint".to_string());
            args.push(fp);
        }
        args
    }

    fn key(&self, name: &str, kind: &str, format: &str, passphrase: Option<&str>) -> KeyPair {
        let key = keygen(&self.sb.join("keys"), name, kind, format, passphrase);
        self.sshd.authorize(&key.public_line);
        key
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn every_key_type_and_format_from_a_file() {
    let fx = fixture(SshdOptions {
        host_key_kinds: vec!["ed25519", "ecdsa", "rsa"],
        pubkey_accepted_algorithms: None,
        force_command: None,
    });
    let pinned = fx.pinned();
    for (kind, format) in [
        ("ed25519", "openssh"),
        ("ecdsa", "openssh"),
        ("ecdsa", "pem"),
        ("rsa", "openssh"),
        ("rsa", "pem"),
    ] {
        let key = fx.key(&format!("{kind}-{format}"), kind, format, None);
        let mut args = strs(&pinned);
        let path = key.private_path.to_str().unwrap().to_string();
        args.extend(["--ssh-key-file", &path]);
        let out = fx.sync(&args, &[]);
        assert_eq!(out.code, 0, "{kind}/{format}: {}", out.stderr);
        assert_mirror(&fx.source, &fx.target);
        assert_no_secret(&out, &[key.private_text.lines().nth(1).unwrap()]);
    }
}

#[test]
fn rsa_works_against_a_server_that_refuses_sha1_signatures() {
    let fx = fixture(SshdOptions {
        host_key_kinds: vec!["ed25519"],
        pubkey_accepted_algorithms: Some("ssh-ed25519,rsa-sha2-256,rsa-sha2-512".into()),
        force_command: None,
    });
    let key = fx.key("rsa", "rsa", "openssh", None);
    let pinned = fx.pinned();
    let mut args = strs(&pinned);
    let path = key.private_path.to_str().unwrap().to_string();
    args.extend(["--ssh-key-file", &path]);
    let out = fx.sync(&args, &[]);
    assert_eq!(out.code, 0, "{}\nsshd log:\n{}", out.stderr, fx.sshd.log());
    assert_mirror(&fx.source, &fx.target);
}

#[test]
fn encrypted_key_with_passphrase_from_env_and_mangled_key_from_env() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("enc", "ed25519", "openssh", Some(CANARY));
    let pinned = fx.pinned();
    // The key as a console paste leaves it: newlines turned into spaces, CRLF elsewhere.
    let mangled = key.private_text.trim().replace('\n', " ");
    let mut args = strs(&pinned);
    args.extend([
        "--ssh-key-env",
        "SSH_PRIVATE_KEY",
        "--ssh-passphrase-env",
        "KEY_PASS",
    ]);
    let out = fx.sync(
        &args,
        &[("SSH_PRIVATE_KEY", &mangled), ("KEY_PASS", CANARY)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    assert_no_secret(&out, &[key.private_text.lines().nth(1).unwrap()]);

    // Without the passphrase: one clear line, exit 2, nothing fetched.
    let out = fx.sync(
        &{
            let mut a = strs(&pinned);
            a.extend(["--ssh-key-env", "SSH_PRIVATE_KEY"]);
            a
        },
        &[("SSH_PRIVATE_KEY", &mangled)],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("passphrase"), "{}", out.stderr);
}

#[test]
fn a_wrong_key_gives_one_clear_auth_error() {
    let fx = fixture(SshdOptions::default());
    fx.key("good", "ed25519", "openssh", None);
    let stranger = keygen(&fx.sb.join("keys"), "stranger", "ed25519", "openssh", None);
    let pinned = fx.pinned();
    let mut args = strs(&pinned);
    let path = stranger.private_path.to_str().unwrap().to_string();
    args.extend(["--ssh-key-file", &path]);
    let out = fx.sync(&args, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.only_error();
    assert!(error.contains("refused the SSH key"), "{}", error);
    assert!(refs(&fx.target).is_empty());
}

#[test]
fn known_hosts_plain_and_hashed_are_accepted() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("k", "ed25519", "openssh", None);
    let path = key.private_path.to_str().unwrap().to_string();
    for hashed in [false, true] {
        let known = fx.sb.join(&format!("known_hosts_{hashed}"));
        fx.sshd.write_known_hosts(&known, hashed);
        let known_str = known.to_str().unwrap().to_string();
        let out = fx.sync(&["--known-hosts", &known_str, "--ssh-key-file", &path], &[]);
        assert_eq!(out.code, 0, "hashed={hashed}: {}", out.stderr);
    }
    // The default is ~/.ssh/known_hosts.
    std::fs::create_dir_all(fx.sb.home().join(".ssh")).unwrap();
    fx.sshd
        .write_known_hosts(&fx.sb.home().join(".ssh/known_hosts"), true);
    let out = fx.sync(&["--ssh-key-file", &path], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
}

fn cache_objects(cache_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
        .map(|e| refs(&e.path()).len())
        .sum()
}

#[test]
fn a_host_key_mismatch_is_refused_before_any_transfer() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("k", "ed25519", "openssh", None);
    let path = key.private_path.to_str().unwrap().to_string();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let seen = fx.sshd.host_key_fingerprints()[0].clone();

    let out = fx.sync(
        &["--host-key-fingerprint", wrong, "--ssh-key-file", &path],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&seen),
        "does not name the key it saw: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("127.0.0.1"),
        "does not name the host: {}",
        out.stderr
    );
    assert_eq!(cache_objects(&fx.sb.cache_dir()), 0, "refs were fetched");
    assert!(refs(&fx.target).is_empty());

    // A known_hosts entry for the host with another key: refused too, even with accept-new.
    let other = Sshd::start();
    let known = fx.sb.home().join(".ssh/known_hosts");
    std::fs::create_dir_all(known.parent().unwrap()).unwrap();
    other.write_known_hosts(&known, false);
    let text = std::fs::read_to_string(&known).unwrap().replace(
        &format!(":{}", other.port()),
        &format!(":{}", fx.sshd.port()),
    );
    std::fs::write(&known, text).unwrap();
    for policy in [vec![], vec!["--accept-new-host-key"]] {
        let mut args = policy.clone();
        args.extend(["--ssh-key-file", &path]);
        let out = fx.sync(&args, &[]);
        assert_eq!(out.code, 1, "{policy:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("does not match"),
            "{policy:?}: {}",
            out.stderr
        );
    }
    assert!(refs(&fx.target).is_empty());
}

/// A key that known_hosts marks `@revoked` is refused wherever that line stands: after a plain
/// line listing the same key (which used to win), before it, from `--known-hosts`, from
/// `~/.ssh/known_hosts` by default, and with `--accept-new-host-key`.
#[test]
fn a_revoked_host_key_is_refused_wherever_its_line_stands() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("k", "ed25519", "openssh", None);
    let path = key.private_path.to_str().unwrap().to_string();
    let known = fx.sb.home().join(".ssh/known_hosts");
    std::fs::create_dir_all(known.parent().unwrap()).unwrap();
    fx.sshd.write_known_hosts(&known, false);
    let plain = std::fs::read_to_string(&known).unwrap();
    let revoked: String = plain.lines().map(|l| format!("@revoked {l}\n")).collect();
    let known_str = path_str(&known);
    let policies = [
        vec!["--known-hosts", known_str.as_str()],
        vec![],
        vec!["--accept-new-host-key"],
    ];
    for (order, text) in [
        ("plain first", format!("{plain}{revoked}")),
        ("revoked first", format!("{revoked}{plain}")),
    ] {
        std::fs::write(&known, text).unwrap();
        for policy in &policies {
            let mut args = policy.clone();
            args.extend(["--ssh-key-file", &path]);
            let out = fx.sync(&args, &[]);
            assert_eq!(out.code, 1, "{order} {policy:?}: {}", out.stderr);
            let error = out.only_error();
            assert!(error.contains("@revoked"), "{order} {policy:?}: {error}");
            assert_eq!(
                cache_objects(&fx.sb.cache_dir()),
                0,
                "{order} {policy:?}: refs were fetched"
            );
        }
    }
    assert!(refs(&fx.target).is_empty());
    // The same file without its revocations lets the run in: the refusal was the revocation.
    std::fs::write(&known, plain).unwrap();
    let out = fx.sync(&["--ssh-key-file", &path], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
}

#[test]
fn accept_new_trusts_on_first_use_with_a_warning_and_no_policy_refuses() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("k", "ed25519", "openssh", None);
    let path = key.private_path.to_str().unwrap().to_string();
    let out = fx.sync(&["--ssh-key-file", &path], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--accept-new-host-key"),
        "{}",
        out.stderr
    );

    let out = fx.sync(&["--accept-new-host-key", "--ssh-key-file", &path], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = fx.sshd.host_key_fingerprints()[0].clone();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&seen)),
        "{}",
        out.stderr
    );
    assert_mirror(&fx.source, &fx.target);
}

/// The escape hatches: `BACKLOG_MIRROR_LIBGIT2_SSH=1` hands SSH back to libgit2's own transport
/// (src/ssh_transport.rs), and `BACKLOG_MIRROR_LIBGIT2_SOCKET=1` (for a libgit2 whose socket
/// layout changed, see src/tcp.rs) hands connections back to libgit2's own socket; libgit2's SSH,
/// which reads the socket's descriptor out of the stream, still works on it.
#[test]
fn libgit2s_own_socket_still_mirrors_over_ssh() {
    let fx = fixture(SshdOptions::default());
    let key = fx.key("k", "ed25519", "openssh", None);
    let pinned = fx.pinned();
    let mut args = strs(&pinned);
    let path = key.private_path.to_str().unwrap().to_string();
    args.extend(["--ssh-key-file", &path, "-v"]);
    let out = fx.sync(
        &args,
        &[
            ("BACKLOG_MIRROR_LIBGIT2_SOCKET", "1"),
            ("BACKLOG_MIRROR_LIBGIT2_SSH", "1"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for said in [
        "libgit2 connects with its own socket",
        "SSH goes through libgit2's own transport",
    ] {
        assert!(out.stderr.contains(said), "{said}: {}", out.stderr);
    }
    assert_mirror(&fx.source, &fx.target);
}

impl Fixture {
    fn key_args(&self) -> Vec<String> {
        let key = self.key("k", "ed25519", "openssh", None);
        let mut args = self.pinned();
        args.push("--ssh-key-file".to_string());
        args.push(key.private_path.to_str().unwrap().to_string());
        args
    }
}

/// A sync with work looks at the source twice (the fetch, then the catch-up look after the push):
/// both on one SSH connection, as `git fetch` needs one. libgit2's own transport, still there
/// behind `BACKLOG_MIRROR_LIBGIT2_SSH=1`, opens a connection per look.
#[test]
fn a_one_commit_incremental_sync_opens_one_ssh_connection() {
    let fx = fixture(SshdOptions::default());
    let args = fx.key_args();
    let out = fx.sync(&strs(&args), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (n, (env, connections)) in [
        (vec![], 1),
        (vec![("BACKLOG_MIRROR_LIBGIT2_SSH", "1")], 2),
        (vec![("BACKLOG_MIRROR_LIBGIT2_SOCKET", "1")], 1),
    ]
    .into_iter()
    .enumerate()
    {
        push_a_commit(
            &fx.source,
            &fx.sb.join(&format!("work{n}")),
            &format!("f{n}.txt"),
            &format!("change {n}"),
        );
        let before = fx.sshd.connections();
        let out = fx.sync(&strs(&args), &env);
        assert_eq!(out.code, 0, "{env:?}: {}", out.stderr);
        assert_mirror(&fx.source, &fx.target);
        assert_eq!(
            fx.sshd.connections() - before,
            connections,
            "{env:?}: SSH connections of a one-commit sync"
        );
    }
}

/// SSH targets are pushed through the same transport (libgit2 picks transports by scheme): an
/// initial mirror and an incremental one from an SSH source to an SSH target end exact.
#[test]
fn an_ssh_target_is_pushed_over_the_runs_connection() {
    let fx = fixture(SshdOptions::default());
    let args = fx.key_args();
    let target = fx.sshd.url(&fx.target);
    let sync = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("HOME", fx.sb.home())
            .args([
                "sync",
                "--source",
                &fx.sshd.url(&fx.source),
                "--target",
                &target,
            ])
            .arg("--cache-dir")
            .arg(fx.sb.cache_dir())
            .args(strs(&args))
            .args(extra);
        run(&mut cmd)
    };
    let before = fx.sshd.connections();
    let out = sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    // Source and target live on one host for one user: one connection serves the look, the
    // target's listing and the push; the catch-up look and the listing that checks the push
    // overlap, on a connection each.
    assert!(fx.sshd.connections() - before <= 2);
    push_a_commit(&fx.source, &fx.sb.join("work2"), "b.txt", "second");
    let before = fx.sshd.connections();
    let out = sync(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    // The source's look and the target's listing overlap, on a connection each.
    assert!(fx.sshd.connections() - before <= 2);
}

/// A path is handed to the remote shell quoted as git quotes it: quotes, `;`, `!`, `$(...)` in
/// the URL (as written or percent-encoded) reach git-upload-pack as part of a path that does not
/// exist, nothing runs, and the server's own words make the one error line.
#[test]
fn a_hostile_path_runs_nothing_on_the_server() {
    let fx = fixture(SshdOptions::default());
    let args = fx.key_args();
    let marker = fx.sb.join("pwned");
    let base = format!(
        "ssh://{}@127.0.0.1:{}{}",
        fx.sshd.user(),
        fx.sshd.port(),
        fx.sb.path().display()
    );
    let m = marker.display().to_string();
    for source in [
        format!("{base}/x';touch {m};'.git"),
        format!("{base}/x'!;touch {m};$(touch {m})`touch {m}`'.git"),
        format!("{base}/x%27%3Btouch%20{}%3B%27.git", m.replace('/', "%2F")),
    ] {
        let mut cmd = bin();
        cmd.env("HOME", fx.sb.home())
            .args(["sync", "--source", &source, "--target"])
            .arg(&fx.target)
            .arg("--cache-dir")
            .arg(fx.sb.cache_dir())
            .args(strs(&args));
        let out = run(&mut cmd);
        assert_eq!(out.code, 1, "{source}: {}", out.stderr);
        let error = out.only_error();
        eprintln!("{error}");
        assert!(
            error.contains("does not appear to be a git repository"),
            "{source}: {error}"
        );
        assert!(!marker.exists(), "{source}: the path ran a command");
    }
    assert!(refs(&fx.target).is_empty());
}

/// A server whose command stops mid-pack (the channel ends cleanly, the pack does not): one
/// clear error line and nothing mirrored; with a retry allowed, the retry runs on a fresh
/// channel and the mirror ends exact.
#[test]
fn a_channel_that_ends_mid_pack_is_one_clear_error_or_one_retry() {
    let sb = Sandbox::new();
    let source = generate_repo(
        &sb.join("source.git"),
        &GenSpec {
            commits: 30,
            files: 10,
            fresh_bytes: 20_000,
            branches: 1,
            ..GenSpec::default()
        },
    );
    let target = init_bare(&sb.join("target.git"));
    let flag = sb.join("cut-next");
    let script = sb.join("cut.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{flag}' ]; then rm -f '{flag}'; eval \"$SSH_ORIGINAL_COMMAND\" \
             | dd bs=1 count=20000 2>/dev/null; else eval \"$SSH_ORIGINAL_COMMAND\"; fi\n",
            flag = flag.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(script.display().to_string()),
        ..SshdOptions::default()
    });
    let key = keygen(&sb.join("keys"), "id", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let sync = |retries: &str| {
        std::fs::write(&flag, "").unwrap();
        let mut cmd = sb.sync(&sshd.url(&source), &path_str(&target));
        cmd.args([
            "--json",
            "--network-timeout",
            "5s",
            "--retries",
            retries,
            "--ssh-key-file",
        ])
        .arg(&key.private_path);
        for fp in sshd.host_key_fingerprints() {
            cmd.args(["--host-key-fingerprint", &fp]);
        }
        run(&mut cmd)
    };
    let out = sync("0");
    assert!(!flag.exists(), "the cut never happened");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.only_error();
    eprintln!("{error}");
    assert!(error.contains(&sshd.url(&source)), "{error}");
    assert!(refs(&target).is_empty());

    let out = sync("1");
    assert!(!flag.exists(), "the cut never happened");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["retries"], 1, "{}", out.stderr);
    assert_mirror(&source, &target);
}

/// With no key flag and `SSH_AUTH_SOCK` set, the running ssh-agent's keys log in; an agent
/// holding only keys the server does not know is a refusal, said once.
#[test]
fn an_ssh_agent_logs_in_when_no_key_is_given() {
    let fx = fixture(SshdOptions::default());
    let good = fx.key("agent-good", "ed25519", "openssh", None);
    let stranger = keygen(&fx.sb.join("keys"), "stranger", "ed25519", "openssh", None);
    let pinned = fx.pinned();
    for (key, code) in [(&stranger, 1), (&good, 0)] {
        let socket = fx.sb.join(&format!("agent-{code}.sock"));
        // Without -D the agent forks once its socket is listening, and prints its pid.
        let started = std::process::Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .output()
            .expect("ssh-agent");
        let said = String::from_utf8_lossy(&started.stdout);
        let pid: i32 = said
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("ssh-agent said {said}"));
        let added = std::process::Command::new("ssh-add")
            .arg(&key.private_path)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .expect("ssh-add");
        assert!(added.status.success(), "{added:?}");
        let out = fx.sync(
            &strs(&pinned),
            &[("SSH_AUTH_SOCK", socket.to_str().unwrap())],
        );
        // SAFETY: the agent this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(out.code, code, "{}", out.stderr);
        if code == 1 {
            assert!(
                out.only_error().contains("refused the SSH key"),
                "{}",
                out.stderr
            );
            assert!(refs(&fx.target).is_empty());
        } else {
            assert_mirror(&fx.source, &fx.target);
        }
    }
}

/// A server that dropped the run's idle connection (here: its sshd killed by the target's hook,
/// during the push) costs a new connection for the catch-up look, not a failure or a retry.
#[test]
fn a_dropped_idle_connection_is_replaced_without_a_retry() {
    let sb = Sandbox::new();
    let pids = sb.join("sshd-pids");
    let script = sb.join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $PPID >> '{}'\neval \"$SSH_ORIGINAL_COMMAND\"\n",
            pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(script.display().to_string()),
        ..SshdOptions::default()
    });
    let work = WorkRepo::init(&sb.join("work"));
    work.commit("a.txt", "one", "first");
    let source = init_bare(&sb.join("source.git"));
    work.push_mirror(&source);
    let target = init_bare(&sb.join("target.git"));
    install_hook(
        &target,
        "post-receive",
        &format!("#!/bin/sh\nkill $(cat '{}')\n", pids.display()),
    );
    let key = keygen(&sb.join("keys"), "id", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let mut cmd = sb.sync(&sshd.url(&source), &path_str(&target));
    cmd.args(["--json", "--ssh-key-file"])
        .arg(&key.private_path);
    for fp in sshd.host_key_fingerprints() {
        cmd.args(["--host-key-fingerprint", &fp]);
    }
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["retries"], 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    let looks = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(looks.lines().count(), 2, "the look and the catch-up look");
    assert_eq!(sshd.connections(), 2, "the catch-up look connected again");
}

/// A push to an SSH target lets the target's post-receive hook finish, however much it says
/// (3 MB on stderr, more than a channel's window): its conversation ends when receive-pack does.
#[test]
fn a_post_receive_hook_on_an_ssh_target_runs_to_its_end() {
    let fx = fixture(SshdOptions::default());
    let args = fx.key_args();
    let done = fx.sb.join("hook-done");
    install_hook(
        &fx.target,
        "post-receive",
        &format!(
            "#!/bin/sh\nhead -c 3000000 /dev/zero | od -v >&2\ntouch '{}'\n",
            done.display()
        ),
    );
    let mut cmd = bin();
    cmd.env("HOME", fx.sb.home())
        .args(["sync", "--source", &fx.sshd.url(&fx.source), "--target"])
        .arg(fx.sshd.url(&fx.target))
        .arg("--cache-dir")
        .arg(fx.sb.cache_dir())
        .args(strs(&args));
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    assert!(done.exists(), "the hook was cut short");
}

/// A run with no cache on disk relays an SSH source's thin pack into a git:// target: the
/// change arrives exact, no cache is seeded, and the look, the pack and the catch-up look share
/// one SSH connection (a channel each).
#[test]
fn a_stateless_incremental_from_ssh_is_relayed_on_one_connection() {
    let fx = fixture(SshdOptions::default());
    let args = fx.key_args();
    let server = GitServer::start("git", fx.sb.path());
    let target = server.url("target.git");
    let sync = |cache: &str| {
        run(bin()
            .env("HOME", fx.sb.home())
            .args(["sync", "--json", "--source", &fx.sshd.url(&fx.source)])
            .args(["--target", &target, "--cache-dir"])
            .arg(fx.sb.join(cache))
            .args(strs(&args)))
    };
    let first = sync("cache-first");
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_mirror(&fx.source, &fx.target);

    push_a_commit(&fx.source, &fx.sb.join("work2"), "b.txt", "second");
    delete_ref(&fx.source, "refs/tags/v1");
    let before = fx.sshd.connections();
    let out = sync("cache-empty");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    fsck(&fx.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], true, "{json}");
    assert_eq!(json["seeded"], false, "{json}");
    assert_eq!(json["transfer"]["push"]["engine"], "relay", "{json}");
    // The commit, its tree, the new blob.
    assert_eq!(json["relay"]["objects"], 3, "{json}");
    assert_eq!(json["refs"]["deleted"], 1, "{json}");
    assert_eq!(
        fx.sshd.connections() - before,
        1,
        "SSH connections of the relay"
    );
    assert_eq!(
        cache_objects(&fx.sb.join("cache-empty")),
        0,
        "the relay wrote a cache"
    );

    // libgit2's SSH transport behind the escape hatch has no channel to relay over: the run
    // goes through the cache and still ends exact.
    push_a_commit(&fx.source, &fx.sb.join("work3"), "c.txt", "third");
    let mut cmd = bin();
    cmd.env("HOME", fx.sb.home())
        .env("BACKLOG_MIRROR_LIBGIT2_SSH", "1")
        .args(["sync", "--json", "--source", &fx.sshd.url(&fx.source)])
        .args(["--target", &target, "--cache-dir"])
        .arg(fx.sb.join("cache-hatch"))
        .args(strs(&args));
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target);
    let json = out.json();
    assert_eq!(json["relay"]["relayed"], false, "{json}");
    assert!(
        json["relay"]["fallback"]
            .as_str()
            .is_some_and(|why| why.contains("BACKLOG_MIRROR_LIBGIT2_SSH")),
        "{json}"
    );
}
