//! Two syncs of one mirror at once, from separate caches (two webhook builds with `CacheMode
//! None`), the source moving between their looks: whichever pushes first, the target ends at the
//! source's last state, never goes back to an older value once it held a newer one, and no run
//! exits 0 having left an older value. Each push updates refs under a lease (the value the plan
//! saw); a run whose lease broke looks again instead of failing.
//!
//! The interleaving is made exact by the target's `pre-receive` hook, which holds every push
//! until the test releases it: each push announces itself on a FIFO the test reads, then waits on
//! a FIFO of its own. A `post-receive` hook logs every ref update the target applied, in order.
//! The git engine pushes to a local path (through receive-pack), libgit2 to `git daemon`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use crate::support::*;

/// What the test waits for: a push arriving at the target's hook, or a sync ending.
enum Event {
    /// The FIFO that releases the push, and the commands it carries (`old new ref;...`).
    Arrived {
        release: PathBuf,
        commands: String,
    },
    Exited {
        who: &'static str,
        run: Run,
    },
}

/// The target's gate: every push stops in `pre-receive` until released.
struct Gate {
    events: Receiver<Event>,
    sender: Sender<Event>,
    applied: PathBuf,
}

impl Gate {
    fn install(target: &Path, dir: &Path) -> Gate {
        std::fs::create_dir_all(dir).unwrap();
        let arrive = dir.join("arrive");
        mkfifo(&arrive);
        let applied = dir.join("applied");
        // The push's own FIFO is opened read-write, so opening it never blocks; `read -t` bounds
        // the wait should the test die without releasing it.
        install_hook(
            target,
            "pre-receive",
            &format!(
                "#!/bin/bash\ncommands=$(tr '\\n' ';')\nfifo='{dir}/go.'$$\nmkfifo \"$fifo\"\n\
                 exec 3<>\"$fifo\"\necho \"$fifo $commands\" > '{arrive}'\n\
                 read -t 120 -u 3 line || exit 1\nrm -f \"$fifo\"\n",
                dir = dir.display(),
                arrive = arrive.display(),
            ),
        );
        install_hook(
            target,
            "post-receive",
            &format!("#!/bin/sh\ncat >> '{}'\n", applied.display()),
        );
        let (sender, events) = channel();
        let arrivals = sender.clone();
        // Opened read-write: never blocks, never sees end-of-file between pushes.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&arrive)
            .unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(fifo).lines() {
                let Ok(line) = line else { break };
                let (release, commands) = line.split_once(' ').unwrap_or((&line, ""));
                let event = Event::Arrived {
                    release: PathBuf::from(release),
                    commands: commands.to_string(),
                };
                if arrivals.send(event).is_err() {
                    break;
                }
            }
        });
        Gate {
            events,
            sender,
            applied,
        }
    }

    /// Run `cmd` in the background; its end arrives as an event.
    fn spawn(&self, who: &'static str, mut cmd: Command) {
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            let _ = sender.send(Event::Exited {
                who,
                run: run(&mut cmd),
            });
        });
    }

    fn next(&self) -> Event {
        self.events
            .recv_timeout(Duration::from_secs(120))
            .expect("nothing happened for 120 s: a sync or a push is stuck")
    }

    /// The next push to arrive; fails if a sync ends first.
    fn arrival(&self, what: &str) -> (PathBuf, String) {
        match self.next() {
            Event::Arrived { release, commands } => (release, commands),
            Event::Exited { who, run } => {
                panic!(
                    "waiting for {what}, {who} ended first ({}):\n{}",
                    run.code, run.stderr
                )
            }
        }
    }

    fn release(&self, fifo: &Path) {
        let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        f.write_all(b"go\n").unwrap();
    }

    /// Wait for `who` to end, letting through (and returning) any push that arrives meanwhile.
    fn finish(&self, who: &str) -> (Run, Vec<String>) {
        let mut pushes = Vec::new();
        loop {
            match self.next() {
                Event::Arrived { release, commands } => {
                    pushes.push(commands);
                    self.release(&release);
                }
                Event::Exited { who: w, run } if w == who => return (run, pushes),
                Event::Exited { who: w, run } => {
                    panic!(
                        "waiting for {who}, {w} ended ({}):\n{}",
                        run.code, run.stderr
                    )
                }
            }
        }
    }

    /// Every ref update the target applied, in order: (old, new, ref).
    fn applied(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(&self.applied)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                ))
            })
            .collect()
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    // SAFETY: a valid path and mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// One test's repositories: a source with `main` and `dev`, a target holding the same (S0).
struct Race {
    sb: Sandbox,
    work: WorkRepo,
    source: PathBuf,
    target: PathBuf,
    gate: Gate,
    target_url: String,
    engine: &'static str,
    _daemon: Option<GitDaemon>,
}

impl Race {
    fn new(engine: &'static str) -> Race {
        let sb = Sandbox::new();
        let Pair {
            work,
            source,
            target,
        } = sb.pair("srv", &["dev"]);
        git(&source, &["push", "-q", "--mirror", &path_str(&target)]);
        let gate = Gate::install(&target, &sb.join("gate"));
        let (daemon, target_url) = if engine == "git" {
            (None, path_str(&target))
        } else {
            let daemon = GitDaemon::start(&sb.join("srv"));
            let url = daemon.url("target.git");
            (Some(daemon), url)
        };
        Race {
            sb,
            work,
            source,
            target,
            gate,
            target_url,
            engine,
            _daemon: daemon,
        }
    }

    /// New commits on both branches, pushed to the source; returns the source's refs.
    fn move_source(&self, label: &str) -> std::collections::BTreeMap<String, String> {
        self.work.checkout("main");
        self.work
            .commit("main.txt", label, &format!("main {label}"));
        self.work.checkout("dev");
        self.work.commit("dev.txt", label, &format!("dev {label}"));
        self.work.checkout("main");
        self.work.push_mirror(&self.source);
        refs(&self.source)
    }

    /// A sync with its own cache, as a stateless build runs it.
    fn sync(&self, cache: &str, extra: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.env("HOME", self.sb.home())
            .args(["sync", "--json", "--source"])
            .arg(&self.source)
            .args(["--target", &self.target_url, "--cache-dir"])
            .arg(self.sb.join(cache))
            .args(["--push-engine", self.engine])
            .args(extra);
        cmd
    }

    /// The target never went back: once a ref held `newest`'s value, nothing else was applied
    /// to it; and it ends equal to the source.
    fn assert_never_older(&self, newest: &std::collections::BTreeMap<String, String>) {
        let mut reached = std::collections::BTreeSet::new();
        for (old, new, name) in self.gate.applied() {
            assert!(
                !reached.contains(&name),
                "{}: {name} went from the newest value {old} back to {new}",
                self.engine
            );
            if newest.get(&name) == Some(&new) {
                reached.insert(name);
            }
        }
        assert_mirror(&self.source, &self.target);
    }
}

fn lease_retries(run: &Run) -> u64 {
    run.json()["lease_retries"].as_u64().expect("lease_retries")
}

/// A looks at S1 and pushes; its push waits at the target while the source moves to S2 and B
/// mirrors S2 completely. A's push then lands on a target that moved under it: its first batch
/// is refused by the target's own check of the old value, its second by its lease before
/// anything is sent. A looks again, finds the target already holding the source, and exits 0.
#[test]
fn the_newer_look_pushing_first_is_never_undone() {
    for engine in ["git", "libgit2", "wire"] {
        let race = Race::new(engine);
        let gate = &race.gate;
        race.move_source("s1");
        // One ref per push: the second goes out after B's push landed.
        gate.spawn("A", race.sync("cache-a", &["--batch-size", "1"]));
        let (a_first, _) = gate.arrival("A's first push");
        let s2 = race.move_source("s2");
        gate.spawn("B", race.sync("cache-b", &[]));
        let (b_push, commands) = gate.arrival("B's push");
        assert!(
            s2.values().all(|id| commands.contains(id.as_str())),
            "{engine}: B pushes S2: {commands}"
        );
        gate.release(&b_push);
        let (b, late) = gate.finish("B");
        assert_eq!(b.code, 0, "{engine}: {}", b.stderr);
        assert!(late.is_empty(), "{engine}: B pushed again: {late:?}");
        assert_mirror(&race.source, &race.target);

        gate.release(&a_first);
        let (a, pushed) = gate.finish("A");
        assert_eq!(a.code, 0, "{engine}: {}", a.stderr);
        assert!(
            pushed.is_empty(),
            "{engine}: A pushed again after B had mirrored S2: {pushed:?}"
        );
        assert!(lease_retries(&a) >= 1, "{engine}: {}", a.stdout);
        assert_eq!(lease_retries(&b), 0, "{engine}");
        race.assert_never_older(&s2);
    }
}

/// A looks at S1 and pushes; B looks at S2 and pushes; A's push lands first, then A catches up
/// to S2 itself. B's push, released last, finds the target moved (its old value is gone): B
/// looks again, finds the target in sync, and exits 0 without pushing S2 over S2 or anything
/// older.
#[test]
fn the_older_look_pushing_first_is_caught_up_and_the_newer_one_looks_again() {
    for engine in ["git", "libgit2", "wire"] {
        let race = Race::new(engine);
        let gate = &race.gate;
        let s1 = race.move_source("s1");
        gate.spawn("A", race.sync("cache-a", &[]));
        let (a_push, commands) = gate.arrival("A's push");
        assert!(
            s1.values().all(|id| commands.contains(id.as_str())),
            "{engine}: A pushes S1: {commands}"
        );
        let s2 = race.move_source("s2");
        gate.spawn("B", race.sync("cache-b", &[]));
        let (b_push, _) = gate.arrival("B's push");

        gate.release(&a_push);
        // A sees the source moved and pushes S2 in its second round.
        let (a_again, commands) = gate.arrival("A's second round");
        assert!(
            s2.values().all(|id| commands.contains(id.as_str())),
            "{engine}: A's second round pushes S2: {commands}"
        );
        gate.release(&a_again);
        let (a, late) = gate.finish("A");
        assert_eq!(a.code, 0, "{engine}: {}", a.stderr);
        assert!(late.is_empty(), "{engine}: {late:?}");
        assert_eq!(a.json()["rounds"], 2, "{engine}");

        gate.release(&b_push);
        let (b, pushed) = gate.finish("B");
        assert_eq!(b.code, 0, "{engine}: {}", b.stderr);
        assert!(pushed.is_empty(), "{engine}: B pushed again: {pushed:?}");
        assert!(lease_retries(&b) >= 1, "{engine}: {}", b.stdout);
        // B saw the target in sync: no push of its is left unsettled for the next run.
        let marks: Vec<_> = std::fs::read_dir(race.sb.join("cache-b"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(".backlog-mirror-push")
            })
            .collect();
        assert!(marks.is_empty(), "{engine}: {marks:?}");
        race.assert_never_older(&s2);
    }
}
