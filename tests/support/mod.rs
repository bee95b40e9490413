//! What every integration test shares: the real binary with a clean environment, repositories
//! built with the real git CLI in temporary directories, and real servers (git daemon, git
//! http-backend behind a small HTTP server) on 127.0.0.1. Nothing here imitates a server: each
//! one is the program people run in production, started by the test and stopped on drop.

pub mod apigw;
pub mod backlog_api;
pub mod codecommit;
pub mod deploy;
pub mod fault_proxy;
mod git_servers;
pub mod model;
pub mod moto;
pub mod proxy;
pub mod redirect;
mod repos;
mod ssh_server;
pub mod ssm;
pub mod stack;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use fault_proxy::{Direction, Fault, FaultProxy};
pub use git_servers::{GitDaemon, GitServer, HttpGit, HttpOptions};
pub use repos::*;
pub use ssh_server::{KeyPair, Sshd, SshdOptions, keygen};

/// The binary under test, with an environment that cannot leak the developer's settings in.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backlog-mirror"));
    isolate(&mut cmd);
    cmd
}

/// Strip settings a developer machine or CI may carry, and make git deterministic.
pub fn isolate(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("BACKLOG_")
            || key.starts_with("CODECOMMIT_")
            || key.starts_with("CODE_COMMIT_")
            || key.starts_with("AWS_")
            || key.starts_with("GIT_")
            || key == "SSH_AUTH_SOCK"
            || key == "RUST_LOG"
            || key == "XDG_CACHE_HOME"
            || key.eq_ignore_ascii_case("http_proxy")
            || key.eq_ignore_ascii_case("https_proxy")
            || key.eq_ignore_ascii_case("all_proxy")
            || key.eq_ignore_ascii_case("no_proxy")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1")
        .env("LC_ALL", "C");
}

/// A value planted in a test's secrets; it must never show in any output.
pub const CANARY: &str = "canary-7f3a9c1e5b";

/// Fail if `CANARY` (or any of `also`) shows anywhere in what a run printed.
pub fn assert_no_secret(run: &Run, also: &[&str]) {
    for secret in std::iter::once(CANARY).chain(also.iter().copied()) {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(
                !text.contains(secret),
                "a secret ({}...) leaked into {stream}:\n{text}",
                &secret[..secret.len().min(12)]
            );
        }
    }
}

/// The names of a list run's mirrors in its JSON summary (`--config --json`), in order.
pub fn list_names(json: &serde_json::Value) -> Vec<String> {
    json["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect()
}

/// The summary of mirror `name` in a list run's JSON.
pub fn list_mirror<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no mirror {name} in {json}"))
}

/// A finished process: exit code (-1 when killed by a signal) and its output.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one `error:` line a failed run printed; fails unless there is exactly one.
    pub fn only_error(&self) -> &str {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "want one error line:\n{}", self.stderr);
        errors[0]
    }

    /// The JSON summary on stdout (`--json`): exactly one object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    check_canary(cmd, &run);
    run
}

/// The suite-wide leak check: every run of our binary is searched for `CANARY`, which starts
/// every secret the tests plant, whether or not the test itself thought about secrets. The
/// credential helper is the one exception: printing the password is its job.
fn check_canary(cmd: &Command, run: &Run) {
    let ours = Path::new(cmd.get_program()) == Path::new(env!("CARGO_BIN_EXE_backlog-mirror"));
    let helper = cmd
        .get_args()
        .any(|a| a.to_str() == Some("credential-helper"));
    if ours && !helper {
        assert_no_secret(run, &[]);
    }
}

/// Run `cmd`, reading its stderr line by line, and SIGKILL it at the first line `pred` accepts.
/// Returns what it printed and whether it was killed (false: it finished first).
pub fn spawn_and_kill_when(cmd: &mut Command, pred: impl Fn(&str) -> bool) -> (Run, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut stderr = String::new();
    let mut killed = false;
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        stderr.push_str(&line);
        if !killed && pred(line.trim_end()) {
            let _ = child.kill();
            killed = true;
        }
        line.clear();
    }
    let status = child.wait().expect("wait");
    let stdout = drain.join().unwrap_or_default();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    check_canary(cmd, &run);
    (run, killed)
}

/// A temporary directory for one test, removed on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("bm-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.join("cache")
    }

    pub fn home(&self) -> PathBuf {
        self.join("home")
    }

    /// A source with history and an empty target, in `<sandbox>/<dir>` (see [`Pair::new`]).
    pub fn pair(&self, dir: &str, branches: &[&str]) -> Pair {
        Pair::new(self.path(), dir, branches)
    }

    /// `backlog-mirror sync --source S --target T` with this sandbox's home and cache.
    pub fn sync(&self, source: &str, target: &str) -> Command {
        let mut cmd = bin();
        cmd.env("HOME", self.home())
            .args([
                "sync",
                "--source",
                source,
                "--target",
                target,
                "--cache-dir",
            ])
            .arg(self.cache_dir());
        cmd
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

pub fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}
