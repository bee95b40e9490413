//! A run killed with SIGKILL at any point of fetch or push leaves nothing the next run cannot
//! repair: the next run succeeds, the target is exact, and `git fsck` is clean on both sides.

use std::path::{Path, PathBuf};

use crate::support::*;

fn big_source(sb: &Sandbox) -> PathBuf {
    generate_repo(
        &sb.join("srv/source.git"),
        &GenSpec {
            commits: 1500,
            files: 300,
            blob_bytes: 3000,
            branches: 3,
            packed: true,
            ..GenSpec::default()
        },
    )
}

fn sync_cmd(sb: &Sandbox, source: &str, target: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = sb.sync(source, target);
    cmd.args(["--progress", "plain", "--progress-interval", "100ms"])
        .args(extra);
    cmd
}

fn stale_files(cache_dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![cache_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && name.starts_with('.') && name.contains(".git.new-") {
                count += 1;
            } else if entry.path().is_dir() {
                stack.push(entry.path());
            } else if name.ends_with(".lock") && !name.ends_with("backlog-mirror-lock")
                || name.starts_with("pack_git2_")
                || name.starts_with("tmp_")
            {
                count += 1;
            }
        }
    }
    count
}

/// The port of a `scheme://127.0.0.1:PORT/...` URL.
fn port_of(url: &str) -> u16 {
    let rest = &url[url.find("127.0.0.1:").expect("a loopback URL") + "127.0.0.1:".len()..];
    rest[..rest.find('/').expect("a path")]
        .parse()
        .expect("a port")
}

/// Where a kill lands.
enum KillAt {
    /// At the first stderr line `pred` accepts.
    Line(fn(&str) -> bool),
    /// In the middle of the push: the link to the target stalls once after 1 MiB of it, and the
    /// kill comes once it has.
    MidPush,
}

/// Kill a sync at `at`, then prove the next run repairs and finishes. How many stale files and
/// half-made mirrors the kill left.
fn kill_then_recover(label: &str, extra: &[&str], at: KillAt) -> usize {
    let sb = Sandbox::new();
    let source = big_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    let daemon = GitDaemon::start(&sb.join("srv"));
    let fault = match at {
        KillAt::Line(_) => Fault::None,
        KillAt::MidPush => Fault::Stall {
            dir: Direction::Upstream,
            after: 1024 * 1024,
        },
    };
    let link = FaultProxy::start_times(port_of(&daemon.url("x")), fault, 1);
    let (src, tgt) = (
        daemon.url("source.git"),
        link.rewrite(&daemon.url("target.git")),
    );

    match at {
        KillAt::Line(pred) => {
            let (killed_run, killed) =
                spawn_and_kill_when(&mut sync_cmd(&sb, &src, &tgt, extra), pred);
            assert!(
                killed,
                "{label}: the sync finished before the kill point:\n{}",
                killed_run.stderr
            );
        }
        KillAt::MidPush => {
            let mut sync = sync_cmd(&sb, &src, &tgt, extra)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            link.wait_fired();
            sync.kill().unwrap();
            sync.wait().unwrap();
        }
    }
    let leftovers = stale_files(&sb.cache_dir());

    let next = run(&mut sync_cmd(&sb, &src, &tgt, extra));
    assert_eq!(
        next.code, 0,
        "{label}: the run after the kill failed:\n{}",
        next.stderr
    );
    if leftovers > 0 {
        assert!(
            next.stderr.contains("repaired cache"),
            "{label}: {leftovers} stale files but no repair line:\n{}",
            next.stderr
        );
    }
    assert_eq!(
        stale_files(&sb.cache_dir()),
        0,
        "{label}: stale files remain"
    );
    assert_mirror(&source, &target);
    fsck(&target);
    fsck(&mirror_in(&sb.cache_dir()));
    leftovers
}

/// `--no-seed` where the kill is to land in the fetch into the cache or a push from it: with it,
/// a first mirror fills the cache before it pushes (without it, one relays: see below).
#[test]
fn killed_as_the_fetch_starts() {
    kill_then_recover(
        "fetch start",
        &["--no-seed"],
        KillAt::Line(|l| l.contains("fetching from")),
    );
}

#[test]
fn killed_in_the_middle_of_the_fetch() {
    kill_then_recover(
        "mid fetch",
        &["--no-seed"],
        KillAt::Line(|l| l.starts_with("fetch:") && !l.contains("(0/")),
    );
}

#[test]
fn killed_in_the_middle_of_a_libgit2_push() {
    kill_then_recover(
        "mid push (libgit2)",
        &["--push-engine", "libgit2"],
        KillAt::MidPush,
    );
}

#[test]
fn killed_in_the_middle_of_a_git_push() {
    kill_then_recover("mid push (git)", &["--push-engine", "git"], KillAt::MidPush);
}

#[test]
fn killed_in_the_middle_of_a_wire_push() {
    kill_then_recover(
        "mid push (wire)",
        &["--push-engine", "wire", "--no-seed"],
        KillAt::MidPush,
    );
}

/// A first mirror relays the source's pack to the target and stores it as the new cache at once:
/// killed half-way, it leaves a half-made mirror beside the cache's place (counted by
/// `stale_files`), which the next run removes before it starts again.
#[test]
fn killed_in_the_middle_of_a_first_mirror_relay() {
    let left = kill_then_recover("mid relay (first mirror)", &[], KillAt::MidPush);
    assert!(
        left > 0,
        "the kill left no half-made mirror: it missed the relay"
    );
}

/// Damage that no killed run leaves but disks and people do: the cache is rebuilt, with one
/// log line saying so, and the run still ends exact.
#[test]
fn a_damaged_cache_is_rebuilt_and_the_run_finishes() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("garbage HEAD", |m| {
            std::fs::write(m.join("HEAD"), "garbage").unwrap()
        }),
        ("objects missing", |m| {
            std::fs::remove_dir_all(m.join("objects")).unwrap();
            std::fs::create_dir_all(m.join("objects/pack")).unwrap();
        }),
        ("truncated pack", |m| {
            damage_packs(m, |f, len| f.set_len(len / 2).unwrap());
        }),
        ("garbage after packed-refs", |m| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(m.join("packed-refs"))
                .unwrap();
            std::io::Write::write_all(&mut f, b"garbage that is no ref line\n\x00\x01").unwrap();
        }),
        ("eight bytes overwritten in the pack", |m| {
            damage_packs(m, overwrite_middle);
        }),
    ];
    for (label, damage) in damages {
        let sb = Sandbox::new();
        let work = WorkRepo::init(&sb.join("work"));
        for i in 0..20 {
            work.commit(
                &format!("f{i}.txt"),
                &format!("content {i}\n").repeat(50),
                "c",
            );
        }
        let source = init_bare(&sb.join("srv/source.git"));
        work.push_mirror(&source);
        let target = init_bare(&sb.join("srv/target.git"));
        let (src, tgt) = (path_str(&source), path_str(&target));
        let first = run(&mut sync_cmd(&sb, &src, &tgt, &["--no-seed"]));
        assert_eq!(first.code, 0, "{label}: {}", first.stderr);
        let mirror = mirror_in(&sb.cache_dir());
        git(&mirror, &["repack", "-a", "-d", "-q"]);
        damage(&mirror);
        work.commit("new.txt", "new", "after the damage");
        git(&work.path, &["branch", "-f", "fresh"]);
        work.push_mirror(&source);

        let next = run(&mut sync_cmd(&sb, &src, &tgt, &["--no-seed"]));
        assert_eq!(next.code, 0, "{label}: {}", next.stderr);
        assert!(
            next.stderr.contains("rebuilding the cache"),
            "{label}: {}",
            next.stderr
        );
        assert_mirror(&source, &target);
        fsck(&mirror_in(&sb.cache_dir()));
    }
}

/// The pids of running processes whose command line contains every one of `words`.
fn processes_with(words: &[&str]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            words.iter().all(|w| cmdline.contains(w))
        })
        .collect()
}

/// Whether process `pid` (not our child) ends within `limit`: poll(2) on its pidfd.
fn exits_within(pid: i32, limit: std::time::Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return true; // already gone
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the descriptor is ours to close.
    let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as i32) };
    unsafe { libc::close(fd) };
    ready == 1
}

#[test]
fn a_killed_sync_takes_its_git_push_with_it() {
    let sb = Sandbox::new();
    let source = big_source(&sb);
    let target = init_bare(&sb.join("srv/target.git"));
    // The target holds every push in its pre-receive hook until the test lets it go.
    let (started, release) = (sb.join("hook-started"), sb.join("hook-release"));
    for fifo in [&started, &release] {
        let path = std::ffi::CString::new(path_str(fifo)).unwrap();
        // SAFETY: a valid path and mode.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    }
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho started > '{}'\ncat '{}' >/dev/null\n",
            started.display(),
            release.display()
        ),
    );
    let daemon = GitDaemon::start(&sb.join("srv"));
    let (src, tgt) = (daemon.url("source.git"), daemon.url("target.git"));
    let mut sync = sync_cmd(&sb, &src, &tgt, &["--push-engine", "git"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Opening the FIFO blocks until the hook writes: from then on git push is waiting on it.
    std::fs::read_to_string(&started).unwrap();
    let pushes = processes_with(&["push", "--porcelain", &tgt]);
    assert_eq!(pushes.len(), 1, "one git push in flight: {pushes:?}");
    sync.kill().unwrap();
    sync.wait().unwrap();
    let orphan_ended = exits_within(pushes[0], std::time::Duration::from_secs(20));

    // Let the hook go (non-blocking: if nothing reads any more there is nothing to release) and
    // take it away, so the next run pushes freely.
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut fifo) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&release)
    {
        let _ = std::io::Write::write_all(&mut fifo, b"go\n");
    }
    std::fs::remove_file(target.join("hooks/pre-receive")).unwrap();
    assert!(orphan_ended, "git push outlived the sync that started it");
    let next = run(&mut sync_cmd(&sb, &src, &tgt, &["--push-engine", "git"]));
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_mirror(&source, &target);
}

/// Make a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    // SAFETY: a valid path and mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Write a line into the FIFO at `path` if something reads it; do nothing if nothing does.
fn release(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut fifo) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        let _ = std::io::Write::write_all(&mut fifo, b"go\n");
    }
}

/// A source with `main` and the target mirroring it, then a new branch `doomed` on the source:
/// the push that a killed run leaves behind creates it; `moved_on` then deletes it again and
/// moves `main` (an update that does not conflict with the late one, so nothing stops it).
fn doomed_branch_setup(sb: &Sandbox) -> (WorkRepo, PathBuf, PathBuf) {
    let Pair {
        work,
        source,
        target,
    } = sb.pair("srv", &[]);
    // No keepalives from receive-pack: with them, a receive-pack whose client died may die of
    // SIGPIPE first, which only hides the late update when the timing is lucky.
    git(&target, &["config", "receive.keepAlive", "0"]);
    let first = run(&mut sb.sync(&path_str(&source), &path_str(&target)));
    assert_eq!(first.code, 0, "{}", first.stderr);
    work.branch("doomed");
    work.push_mirror(&source);
    (work, source, target)
}

fn moved_on(work: &WorkRepo, source: &Path) {
    git(&work.path, &["branch", "-D", "doomed"]);
    work.commit("b.txt", "two", "second");
    work.push_mirror(source);
}

/// A killed sync's receive-pack, on a local target, must die with it: left running it updates
/// the target's refs later, after the next run said "in sync".
#[test]
fn a_killed_push_to_a_local_target_never_lands_after_the_next_run() {
    let sb = Sandbox::new();
    let (work, source, target) = doomed_branch_setup(&sb);
    let (started, held) = (sb.join("hook-started"), sb.join("hook-release"));
    mkfifo(&started);
    mkfifo(&held);
    install_hook(
        &target,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho started > '{}'\ncat '{}' >/dev/null\n",
            started.display(),
            held.display()
        ),
    );
    let (src, tgt) = (path_str(&source), path_str(&target));
    let mut killed = sb
        .sync(&src, &tgt)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::fs::read_to_string(&started).unwrap();
    let receive_packs = processes_with(&["receive-pack", &tgt]);
    assert!(!receive_packs.is_empty(), "no receive-pack in flight");
    killed.kill().unwrap();
    killed.wait().unwrap();
    let survivors: Vec<i32> = receive_packs
        .iter()
        .copied()
        .filter(|&pid| !exits_within(pid, std::time::Duration::from_secs(20)))
        .collect();
    std::fs::remove_file(target.join("hooks/pre-receive")).unwrap();

    moved_on(&work, &source);
    let next = run(&mut sb.sync(&src, &tgt));
    assert_eq!(next.code, 0, "{}", next.stderr);

    // Whatever the killed run left now runs to its end, and must not change the target.
    release(&held);
    for &pid in &survivors {
        exits_within(pid, std::time::Duration::from_secs(20));
    }
    assert_mirror(&source, &target);
    assert!(
        survivors.is_empty(),
        "receive-pack {survivors:?} outlived the run that started it"
    );
}

/// Behind a server, a killed run's push is out of our reach: the server's receive-pack, which
/// has the pack, may apply it while the next run pushes. The next run knows an earlier push was
/// interrupted, lists the target again after its own push, and pushes again when it changed.
#[test]
fn a_late_landing_during_the_next_runs_push_is_pushed_over() {
    // Conflicting: the late push also moves `main`, which the next run's push updates from the
    // value it listed: the target refuses that update ("is at X but expected Y").
    for (engine, conflicting) in [
        ("git", false),
        ("libgit2", false),
        ("git", true),
        ("libgit2", true),
        ("wire", false),
        ("wire", true),
    ] {
        let sb = Sandbox::new();
        let (work, source, target) = doomed_branch_setup(&sb);
        if conflicting {
            work.commit("late.txt", "late", "carried by the late push");
            work.push_mirror(&source);
        }
        let engine_label = format!("{engine}, conflicting {conflicting}");
        let engine_label = engine_label.as_str();
        let fifo = |name: &str| {
            let path = sb.join(name);
            mkfifo(&path);
            path
        };
        let (started, held, landed) = (fifo("started"), fifo("held"), fifo("landed"));
        let flag = |name: &str| sb.join(name).display().to_string();
        // The first push waits in its hook until the next run's push releases it; that push
        // then waits until the first one's ref update is committed.
        install_hook(
            &target,
            "pre-receive",
            &format!(
                "#!/bin/sh\ncat >/dev/null\n\
                 if mkdir '{first}' 2>/dev/null; then echo started > '{started}'; cat '{held}' >/dev/null;\n\
                 elif mkdir '{second}' 2>/dev/null; then echo go > '{held}'; cat '{landed}' >/dev/null; fi\n\
                 exit 0\n",
                first = flag("first"),
                second = flag("second"),
                started = started.display(),
                held = held.display(),
                landed = landed.display(),
            ),
        );
        // Landed means the ref the next run's push conflicts with (or, without a conflict, the
        // one it must delete) is committed: receive-pack commits each ref on its own, so the
        // first committed transaction of a two-ref push is not yet the whole push.
        let watched = if conflicting {
            "refs/heads/main"
        } else {
            "refs/heads/doomed"
        };
        install_hook(
            &target,
            "reference-transaction",
            &format!(
                "#!/bin/sh\nupdates=$(cat)\n\
                 if [ \"$1\" = committed ] && printf '%s\\n' \"$updates\" | grep -q ' {watched}$' \
                 && mkdir '{once}' 2>/dev/null; then echo done > '{landed}'; fi\n\
                 exit 0\n",
                once = flag("landed-once"),
                landed = landed.display(),
            ),
        );
        let daemon = GitDaemon::start(&sb.join("srv"));
        let (src, tgt) = (path_str(&source), daemon.url("target.git"));
        let mut killed = sb
            .sync(&src, &tgt)
            .args(["--push-engine", engine])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::fs::read_to_string(&started).unwrap();
        killed.kill().unwrap();
        killed.wait().unwrap();

        moved_on(&work, &source);
        let next = run(sb
            .sync(&src, &tgt)
            .args(["--push-engine", engine, "--json"]));
        assert_eq!(next.code, 0, "{engine_label}: {}", next.stderr);
        assert!(
            sb.join("landed-once").exists(),
            "{engine_label}: the interrupted push never landed: the test proves nothing"
        );
        assert_mirror(&source, &target);
        // Conflicting, the late push broke this run's lease (the target refused the update) and
        // the run looked again; otherwise it saw the change after its own push.
        let noticed = if conflicting {
            "moved on the target since this run listed it"
        } else {
            "the target changed after this run's push"
        };
        assert!(
            next.stderr.contains(noticed),
            "{engine_label}: {}",
            next.stderr
        );
        let report = next.json();
        assert_eq!(report["refs"]["deleted"], 1, "{engine_label}: {report}");
        assert_eq!(report["refs"]["rejected"], 0, "{engine_label}: {report}");
        // Settled: a third run has nothing to check or do.
        let third = run(&mut sb.sync(&src, &tgt));
        assert_eq!(third.code, 0, "{engine_label}: {}", third.stderr);
        assert!(
            !third.stderr.contains("interrupted"),
            "{engine_label}: {}",
            third.stderr
        );
    }
}

/// Bytes changed inside a pack of the cache, in objects a push sends (a new, empty target gets
/// them all): caught before the push, named as cache damage and repaired, never sent to the
/// target and blamed on it ("unpacker error").
#[test]
fn damaged_objects_are_caught_before_they_are_sent() {
    for engine in ["git", "libgit2"] {
        let sb = Sandbox::new();
        let source = generate_repo(
            &sb.join("srv/source.git"),
            &GenSpec {
                commits: 40,
                files: 30,
                ..GenSpec::default()
            },
        );
        let first_target = init_bare(&sb.join("srv/first.git"));
        let daemon = GitDaemon::start(&sb.join("srv"));
        let src = path_str(&source);
        let first = run(sb
            .sync(&src, &daemon.url("first.git"))
            .args(["--mirror-name", "m"]));
        assert_eq!(first.code, 0, "{engine}: {}", first.stderr);
        assert_mirror(&source, &first_target);
        let mirror = mirror_in(&sb.cache_dir());
        git(&mirror, &["repack", "-a", "-d", "-q"]);
        damage_packs(&mirror, overwrite_middle);

        let second_target = init_bare(&sb.join("srv/second.git"));
        let out = run(sb.sync(&src, &daemon.url("second.git")).args([
            "--mirror-name",
            "m",
            "--push-engine",
            engine,
            "--no-seed",
        ]));
        assert_eq!(out.code, 0, "{engine}: {}", out.stderr);
        assert!(
            out.stderr.contains("rebuilding the cache") && out.stderr.contains("checksum"),
            "{engine}: the damage was not named:\n{}",
            out.stderr
        );
        assert_mirror(&source, &second_target);
        fsck(&second_target);
        fsck(&mirror_in(&sb.cache_dir()));
    }
}

/// Open each pack file of the bare repository `git_dir` for writing and hand it, with its
/// length, to `damage`.
fn damage_packs(git_dir: &Path, damage: impl Fn(&std::fs::File, u64)) {
    for entry in std::fs::read_dir(git_dir.join("objects/pack"))
        .unwrap()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "pack") {
            let len = entry.metadata().unwrap().len();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(entry.path())
                .unwrap();
            damage(&f, len);
        }
    }
}

/// Eight bytes of garbage in the middle of a pack: its checksum no longer matches.
fn overwrite_middle(f: &std::fs::File, len: u64) {
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"\xde\xad\xbe\xef\xde\xad\xbe\xef", len / 2)
        .unwrap();
}
