//! Backlog's REST API on 127.0.0.1: `backlog_api.py`, which answers the project list and a
//! project's repository list as Nulab's documentation describes them (401, 404, 429 with its
//! headers included), from a JSON file the test rewrites to change the space between runs.
//! It reports its port on its first line, so readiness is read, not polled.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct BacklogApi {
    child: Child,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl BacklogApi {
    /// Serve `space` (see `backlog_api.py` for its fields) from files in `dir`.
    pub fn start(dir: &Path, space: &serde_json::Value) -> BacklogApi {
        std::fs::create_dir_all(dir).expect("api dir");
        let config = dir.join("backlog-space.json");
        let log = dir.join("backlog-requests.log");
        std::fs::write(&config, space.to_string()).expect("write space");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/backlog_api.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--config")
            .arg(&config)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start backlog_api.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY line");
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("backlog_api.py did not start: {line:?}"));
        BacklogApi {
            child,
            port,
            config,
            log,
        }
    }

    /// Serve `space` from the next request on.
    pub fn set(&self, space: &serde_json::Value) {
        let next = self.config.with_extension("json.new");
        std::fs::write(&next, space.to_string()).expect("write space");
        std::fs::rename(&next, &self.config).expect("replace space");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, as path and query without the key.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for BacklogApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
