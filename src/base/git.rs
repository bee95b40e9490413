//! The git CLI, where a step runs it: whether it is installed, and a command that reads none of
//! the machine's configuration and inherits none of the run's secrets.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `git --version` if a git binary is on PATH.
pub(crate) fn version() -> Option<&'static str> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            // Asked before the secrets are read, so given nothing but where git is.
            let out = Command::new("git")
                .env_clear()
                .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .as_deref()
}

/// A `git` command that ignores the machine's configuration and inherited repository variables,
/// and inherits none of the run's secrets (`process_group::command`).
pub(crate) fn isolated(git_dir: &Path) -> Command {
    let mut cmd = crate::base::process_group::command("git");
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        let keep = key_str.starts_with("GIT_SSL_")
            || key_str.starts_with("GIT_TRACE")
            || key_str == "GIT_CURL_VERBOSE";
        if key_str.starts_with("GIT_") && !keep {
            cmd.env_remove(&key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_DIR", git_dir)
        .env("LC_ALL", "C");
    cmd
}

/// `git upload-pack` serving the local repository at `path` (see `transport::local`), a bare one or
/// the `.git` of a working tree, as `git fetch` from a path does: the path after `--`, so it is
/// never an option, and no `GIT_DIR`, which would name a working tree's top as the repository.
pub(crate) fn upload_pack(path: &Path) -> Command {
    let mut cmd = isolated(path);
    cmd.env_remove("GIT_DIR")
        .args(["upload-pack", "--"])
        .arg(path);
    cmd
}
