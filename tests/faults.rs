//! Network faults between the binary and real servers, injected by a TCP proxy: a peer that stops
//! reading or answering ends every step within `--network-timeout`, whichever engine runs it; a
//! transient fault is retried and the run ends exact; what cannot succeed is tried once.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// A source whose push is far larger than the proxy lets through before it stalls.
fn sizeable_source(sb: &Sandbox) -> PathBuf {
    generate_repo(
        &sb.join("srv/source.git"),
        &GenSpec {
            commits: 60,
            files: 20,
            fresh_bytes: 40_000,
            branches: 1,
            ..GenSpec::default()
        },
    )
}

/// Run `cmd` to its end, or kill it after `limit` (a hung run must fail the test, not hang it).
/// Returns what it printed and how long it took.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Run, Duration) {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let pid = child.id() as i32;
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(limit) {
        Ok(output) => output,
        Err(_) => {
            // SAFETY: killing the child we started; it has not been reaped (the waiting
            // thread still holds it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            finished.recv().expect("the child ends once killed")
        }
    }
    .expect("wait for the binary");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_no_secret(&run, &[]);
    (run, start.elapsed())
}

const TIMEOUT: &str = "3s";
/// The timeout, what the run does besides (about a second here), and room for a loaded machine;
/// below what one wait too many costs (over SSH, libgit2's teardown waited three more timeouts).
const BOUND: Duration = Duration::from_secs(10);

fn assert_timed_out(label: &str, run: &Run, took: Duration, remote: &str) {
    assert!(
        took < BOUND,
        "{label}: still running after {took:?}: --network-timeout {TIMEOUT} did not end it in time:\n{}",
        run.stderr
    );
    assert_eq!(run.code, 1, "{label}: {}", run.stderr);
    let error = run.only_error();
    eprintln!("{label}: ended after {took:.1?}: {error}");
    assert!(
        error.contains(remote),
        "{label}: the error does not name {remote}: {error}"
    );
}

#[test]
fn a_target_that_stops_reading_ends_the_push_within_the_timeout() {
    for transport in ["git", "http"] {
        for engine in ["git", "libgit2", "wire"] {
            let label = format!("push over {transport} via {engine}");
            let sb = Sandbox::new();
            let source = sizeable_source(&sb);
            init_bare(&sb.join("srv/target.git"));
            let server = GitServer::start(transport, &sb.join("srv"));
            let proxy = FaultProxy::start(
                server.port(),
                Fault::Stall {
                    dir: Direction::Upstream,
                    after: 200 * 1024,
                },
            );
            let target = proxy.rewrite(&server.url("target.git"));
            let (out, took) = run_bounded(
                sb.sync(&path_str(&source), &target).args([
                    "--push-engine",
                    engine,
                    "--network-timeout",
                    TIMEOUT,
                    "--retries",
                    "0",
                ]),
                Duration::from_secs(60),
            );
            assert!(proxy.fired() > 0, "{label}: the stall never happened");
            assert_timed_out(&label, &out, took, &target);
        }
    }
}

#[test]
fn a_source_or_target_that_stops_answering_ends_the_run_within_the_timeout() {
    for transport in ["git", "http"] {
        // (what stalls, after how many bytes from the server)
        for (side, after) in [
            ("source listing", 0),
            ("source fetch", 20 * 1024),
            ("target listing", 0),
        ] {
            let label = format!("{side} over {transport}");
            let sb = Sandbox::new();
            let source = sizeable_source(&sb);
            let target = init_bare(&sb.join("srv/target.git"));
            let server = GitServer::start(transport, &sb.join("srv"));
            if side == "target listing" {
                // An existing mirror, so the target is listed (not seeded from) on the next run.
                let first = run(&mut sb.sync(&path_str(&source), &path_str(&target)));
                assert_eq!(first.code, 0, "{label}: {}", first.stderr);
            }
            let proxy = FaultProxy::start(
                server.port(),
                Fault::Stall {
                    dir: Direction::Downstream,
                    after,
                },
            );
            let (src, tgt, stalled) = if side == "target listing" {
                let tgt = proxy.rewrite(&server.url("target.git"));
                (path_str(&source), tgt.clone(), tgt)
            } else {
                let src = proxy.rewrite(&server.url("source.git"));
                (src.clone(), path_str(&target), src)
            };
            let (out, took) = run_bounded(
                sb.sync(&src, &tgt)
                    .args(["--network-timeout", TIMEOUT, "--retries", "0"]),
                Duration::from_secs(60),
            );
            assert!(proxy.fired() > 0, "{label}: the stall never happened");
            assert_timed_out(&label, &out, took, &stalled);
        }
    }
}

/// `cmd` logs in to `sshd` with `key`, its host keys pinned, and gives up at the first
/// timeout.
fn ssh_once(cmd: &mut Command, sshd: &Sshd, key: &KeyPair) {
    cmd.args(["--network-timeout", TIMEOUT, "--retries", "0"])
        .arg("--ssh-key-file")
        .arg(&key.private_path);
    for fp in sshd.host_key_fingerprints() {
        cmd.args(["--host-key-fingerprint", &fp]);
    }
}

#[test]
fn an_ssh_peer_that_stops_ends_the_run_within_the_timeout() {
    // (what stalls, direction, after how many bytes)
    for (side, dir, after) in [
        ("source handshake", Direction::Downstream, 0),
        // The key exchange is about 1,700 bytes from sshd: stalled while logging in, then
        // while opening the channel.
        ("source login", Direction::Downstream, 1_700),
        ("source channel", Direction::Downstream, 2_000),
        ("source fetch", Direction::Downstream, 30 * 1024),
        ("target push", Direction::Upstream, 200 * 1024),
    ] {
        let label = format!("ssh {side}");
        let sb = Sandbox::new();
        let source = sizeable_source(&sb);
        let target = init_bare(&sb.join("srv/target.git"));
        let sshd = Sshd::start();
        let key = keygen(&sb.join("keys"), "id", "ed25519", "openssh", None);
        sshd.authorize(&key.public_line);
        let proxy = FaultProxy::start(sshd.port(), Fault::Stall { dir, after });
        let (src, tgt, stalled) = if side == "target push" {
            let tgt = proxy.rewrite(&sshd.url(&target));
            (path_str(&source), tgt.clone(), tgt)
        } else {
            let src = proxy.rewrite(&sshd.url(&source));
            (src.clone(), path_str(&target), src)
        };
        let mut cmd = sb.sync(&src, &tgt);
        ssh_once(&mut cmd, &sshd, &key);
        let (out, took) = run_bounded(&mut cmd, Duration::from_secs(60));
        assert!(proxy.fired() > 0, "{label}: the stall never happened");
        assert_timed_out(&label, &out, took, &stalled);
    }
}

/// One transient fault, once: the step is retried (logged as a warning, counted in the JSON
/// summary) and the run ends exact.
#[test]
fn a_transient_fault_once_succeeds_on_retry() {
    let push_cut = Fault::Cut {
        dir: Direction::Upstream,
        after: 100 * 1024,
    };
    let push_502 = Fault::HttpStatusOn {
        status: 502,
        request: "POST /target.git/git-receive-pack",
    };
    // (label, transport, whose connection, fault, engine)
    let cases = [
        (
            "fetch cut",
            "git",
            "source",
            Fault::Cut {
                dir: Direction::Downstream,
                after: 20 * 1024,
            },
            "auto",
        ),
        (
            "fetch cut",
            "http",
            "source",
            Fault::Cut {
                dir: Direction::Downstream,
                after: 20 * 1024,
            },
            "auto",
        ),
        ("source refused", "git", "source", Fault::Refuse, "auto"),
        (
            "source answers 503",
            "http",
            "source",
            Fault::HttpStatus(503),
            "auto",
        ),
        ("push cut", "git", "target", push_cut, "git"),
        ("push cut", "git", "target", push_cut, "libgit2"),
        ("push cut", "http", "target", push_cut, "git"),
        ("push cut", "http", "target", push_cut, "libgit2"),
        ("push answers 502", "http", "target", push_502, "git"),
        ("push answers 502", "http", "target", push_502, "libgit2"),
        ("push cut", "git", "target", push_cut, "wire"),
        ("push cut", "http", "target", push_cut, "wire"),
        ("push answers 502", "http", "target", push_502, "wire"),
    ];
    for (what, transport, side, fault, engine) in cases {
        let label = format!("{what} over {transport} via {engine}");
        let sb = Sandbox::new();
        let source = sizeable_source(&sb);
        let target = init_bare(&sb.join("srv/target.git"));
        let server = GitServer::start(transport, &sb.join("srv"));
        let proxy = FaultProxy::start_times(server.port(), fault, 1);
        let (src, tgt) = if side == "target" {
            (path_str(&source), proxy.rewrite(&server.url("target.git")))
        } else {
            (proxy.rewrite(&server.url("source.git")), path_str(&target))
        };
        let (out, _) = run_bounded(
            sb.sync(&src, &tgt)
                .args(["--json", "--push-engine", engine, "--no-seed"]),
            Duration::from_secs(120),
        );
        assert_eq!(
            proxy.fired(),
            1,
            "{label}: the fault never happened:\n{}",
            out.stderr
        );
        assert_eq!(out.code, 0, "{label}: {}", out.stderr);
        assert_mirror(&source, &target);
        let report = out.json();
        assert_eq!(report["retries"], 1, "{label}: {report}");
        assert!(
            out.stderr.contains("WARN") && out.stderr.contains("retrying"),
            "{label}: the retry was not logged:\n{}",
            out.stderr
        );
    }
}

/// What cannot succeed is tried once: a refused password, a host key that does not match.
#[test]
fn a_refusal_is_tried_once() {
    // A wrong password on an HTTP source: as many requests with --retries 3 as with none.
    let sb = Sandbox::new();
    let source = sizeable_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some(("mirror".into(), "right-password".into())),
            ..HttpOptions::default()
        },
    );
    let url = http.url("source.git").replace("http://", "http://mirror@");
    let mut requests = Vec::new();
    for retries in ["0", "3"] {
        let before = http.requests().len();
        let (out, _) = run_bounded(
            sb.sync(&url, &path_str(&target))
                .args([
                    "--json",
                    "--retries",
                    retries,
                    "--source-password-env",
                    "PW",
                ])
                .env("PW", format!("{CANARY}-wrong")),
            Duration::from_secs(60),
        );
        assert_eq!(out.code, 1, "--retries {retries}: {}", out.stderr);
        assert_eq!(out.json()["retries"], 0, "--retries {retries}");
        assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
        requests.push(http.requests().len() - before);
    }
    assert_eq!(
        requests[0], requests[1],
        "a refused password was tried again"
    );
    drop(source);

    // A host key that does not match: one connection, whatever --retries says.
    let sb = Sandbox::new();
    let source = sizeable_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "id", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let (out, _) = run_bounded(
        sb.sync(&sshd.url(&source), &path_str(&target))
            .args(["--json", "--retries", "3", "--ssh-key-file"])
            .arg(&key.private_path)
            .args([
                "--host-key-fingerprint",
                "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.json()["retries"], 0, "{}", out.stderr);
    assert_eq!(
        sshd.connections(),
        1,
        "a mismatched host key was tried again"
    );
}

/// The stateless relay over SSH, its source stalled mid-pack: the relay ends within the
/// timeout, the cache path it falls back to meets the same stall and ends too, the target keeps
/// every ref it had (no half-relayed pack moved one), and the next run relays the change exact.
#[test]
fn an_ssh_source_that_stalls_mid_relay_moves_nothing_and_the_next_run_relays() {
    let sb = Sandbox::new();
    let source = sizeable_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let server = GitServer::start("git", &sb.join("srv"));
    let sshd = Sshd::start();
    let key = keygen(&sb.join("keys"), "id", "ed25519", "openssh", None);
    sshd.authorize(&key.public_line);
    let sync = |src: &str, cache: &str| {
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .args(["sync", "--json", "--source", src, "--target"])
            .arg(server.url("target.git"))
            .arg("--cache-dir")
            .arg(sb.join(cache));
        ssh_once(&mut cmd, &sshd, &key);
        cmd
    };
    let first = run(&mut sync(&sshd.url(&source), "cache-first"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_mirror(&source, &target);

    // A change whose pack is far larger than the proxy lets through: 200 KB that do not
    // compress.
    let noise = noise(200_000);
    push_a_commit_on(
        &source,
        &sb.join("work"),
        "main",
        "noise.txt",
        &noise,
        "refs/heads/main",
    );
    let proxy = FaultProxy::start(
        sshd.port(),
        Fault::Stall {
            dir: Direction::Downstream,
            after: 60 * 1024,
        },
    );
    let stalled = proxy.rewrite(&sshd.url(&source));
    let out = assert_relay_stalled(
        &mut sync(&stalled, "cache-stalled"),
        &proxy,
        &stalled,
        &target,
    );
    // The relay's own failure, as the fallback's warning and the summary give it, blames the
    // source it read from, not the target.
    let relay_said = out.json()["relay"]["fallback"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(relay_said.contains("the source"), "{relay_said}");
    assert!(!relay_said.contains("the target"), "{relay_said}");
    assert_relays_exact(
        &mut sync(&sshd.url(&source), "cache-next"),
        &source,
        &target,
    );
}

/// The stateless relay's target stops reading mid-pack (a proxy in front of git daemon): the
/// relay's push ends within the timeout, the cache path it falls back to meets the same stall and
/// ends too; exit 1 naming the target, which keeps every ref it had; the next run relays exact.
#[test]
fn a_target_that_stalls_mid_relay_moves_nothing_and_the_next_run_relays() {
    let sb = Sandbox::new();
    let source = sizeable_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let server = GitServer::start("git", &sb.join("srv"));
    let sync = |tgt: &str, cache: &str| {
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .args(["sync", "--json", "--source"])
            .arg(server.url("source.git"))
            .args(["--target", tgt, "--cache-dir"])
            .arg(sb.join(cache))
            .args(["--network-timeout", TIMEOUT, "--retries", "0"]);
        cmd
    };
    let first = run(&mut sync(&server.url("target.git"), "cache-first"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    push_a_commit_on(
        &source,
        &sb.join("work"),
        "main",
        "noise.txt",
        &noise(400_000),
        "refs/heads/main",
    );
    let proxy = FaultProxy::start(
        server.port(),
        Fault::Stall {
            dir: Direction::Upstream,
            after: 100 * 1024,
        },
    );
    let stalled = proxy.rewrite(&server.url("target.git"));
    assert_relay_stalled(
        &mut sync(&stalled, "cache-stalled"),
        &proxy,
        &stalled,
        &target,
    );
    assert_relays_exact(
        &mut sync(&server.url("target.git"), "cache-next"),
        &source,
        &target,
    );
}

/// Run `cmd`, a stateless sync through `proxy`, which stalls mid-relay: the relay and the cache
/// path it falls back to each end at the timeout; exit 1 naming `stalled`; no ref of `target`
/// moved. Returns the run.
fn assert_relay_stalled(
    cmd: &mut Command,
    proxy: &FaultProxy,
    stalled: &str,
    target: &std::path::Path,
) -> Run {
    let before = refs(target);
    let (out, took) = run_bounded(cmd, Duration::from_secs(60));
    assert!(proxy.fired() > 0, "the stall never happened");
    // The relay's wait and the fallback's: two timeouts, and the run's own work.
    assert!(
        took < BOUND + Duration::from_secs(3),
        "still running after {took:?}:\n{}",
        out.stderr
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    eprintln!(
        "relay stalled: ended after {took:.1?}: {}",
        out.only_error()
    );
    assert!(out.only_error().contains(stalled), "{}", out.stderr);
    assert!(
        out.json()["relay"]["fallback"].is_string(),
        "the relay did not run first: {}",
        out.stdout
    );
    assert_eq!(refs(target), before, "a stalled relay moved a ref");
    out
}

/// Run `cmd`, a stateless sync with nothing in the way: relayed, and `target` exact.
fn assert_relays_exact(cmd: &mut Command, source: &std::path::Path, target: &std::path::Path) {
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(source, target);
    fsck(target);
    assert_eq!(out.json()["relay"]["relayed"], true, "{}", out.stdout);
}
