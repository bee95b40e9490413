//! Handing large pushes to the git CLI.
//!
//! libgit2's pack builder recomputes every delta and keeps the whole object graph in memory: a
//! first mirror of a big repository pushes an order of magnitude slower, with three times the
//! memory, than `git push`, whose pack-objects reuses the deltas already stored in the cache's
//! packs. So when `git` is installed and a push is large, git sends it. The child runs with no
//! user or system config and never sees a credential on its command line.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::base::git::{isolated, version};
use crate::base::net_error::NetError;
use crate::base::process_group::Group;
use crate::base::progress::Progress;
use crate::base::refname;
use crate::base::transfer::{PushOutcome, RefOutcome, TransferStats, last_words, remote_messages};
use crate::base::url::RemoteUrl;

/// `git push --porcelain` from the bare repository at `git_dir` of `updates`: each a refspec and
/// its lease (`--force-with-lease=<ref>:<expect>`: git refuses a ref whose value on the target
/// is not the one the plan saw, as "stale info"), with the same per-ref results as the
/// libgit2 path, its process group's guard holding `hold` (the cache lock). A push whose processes move no byte for `timeout` (the
/// target stopped reading or answering) is killed: git has no timeout of its own for git://,
/// and its HTTP one (curl's low-speed limit, set too) does not cover a local receive-pack.
pub(crate) fn push(
    git_dir: &Path,
    url: &RemoteUrl,
    updates: &[(String, String)],
    env: &[(String, String)],
    timeout: Duration,
    progress: &mut Progress,
    hold: BorrowedFd<'_>,
) -> Result<PushOutcome> {
    let low_speed_time = timeout.as_secs_f64().ceil().max(1.0) as u64;
    let mut group = Group::spawn(
        isolated(git_dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["-c", "http.lowSpeedLimit=1", "-c"])
            .arg(format!("http.lowSpeedTime={low_speed_time}"))
            .args(["push", "--porcelain", "--progress", "--no-verify"])
            .args(updates.iter().map(|(_, lease)| os_bytes(lease)))
            .arg("--")
            .arg(repository_argument(url)?)
            .args(updates.iter().map(|(spec, _)| os_bytes(spec)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        hold,
    )
    .context("cannot start git for the push; install git or use --push-engine libgit2")?;
    let child = group.child();
    let stdout = child.stdout.take().context("git push: no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        BufReader::new(stdout)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    });
    let mut stats = TransferStats::default();
    let mut messages = Vec::new();
    let mut said = String::new();
    let mut unpack_error = None;
    let stderr = child.stderr.take().context("git push: no stderr")?;
    let (lines, received) = mpsc::channel();
    let stderr_reader = std::thread::spawn(move || {
        for line in split_progress(stderr) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut last_activity = Instant::now();
    let mut moved = group.io_bytes();
    let mut stalled = false;
    loop {
        let line = match received.recv_timeout(tick) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = group.io_bytes();
                if now != moved {
                    moved = now;
                    last_activity = Instant::now();
                } else if last_activity.elapsed() >= timeout {
                    stalled = true;
                    group.kill();
                    break;
                }
                continue;
            }
        };
        last_activity = Instant::now();
        if let Some((done, total, bytes)) = parse_writing(&line) {
            stats = TransferStats {
                objects: total,
                bytes,
            };
            progress.update(done, total, bytes);
        } else if line.starts_with("remote:") || line.starts_with("error: remote unpack") {
            // send-pack's own words (git runs with LC_ALL=C) when receive-pack's report began
            // `unpack <reason>`, not `unpack ok`.
            if let Some(why) = line.strip_prefix("error: remote unpack failed: ") {
                unpack_error = Some(crate::base::text::clip(why.trim(), 200));
            }
            said.push_str(&line);
            said.push('\n');
        } else if !line.trim().is_empty() && !is_progress_noise(&line) {
            messages.push(line);
        }
    }
    let remote_lines = remote_messages(&said);
    progress.finish();
    let status = group.wait().context("git push did not finish")?;
    let _ = stderr_reader.join();
    if stalled {
        return Err(NetError::Stalled {
            url: format!("git push to {}", url.redacted()),
            doing: "moved no data",
            timeout,
            why: "the target stopped reading or answering",
        }
        .into());
    }
    let porcelain = reader
        .join()
        .map_err(|_| anyhow::anyhow!("git push: stdout reader panicked"))?
        .context("cannot read git push's output")?;
    let refs = parse_porcelain(&porcelain)?;
    if refs.is_empty() && !status.success() {
        // Every error line, not only the last: "RPC failed; HTTP 502" comes before the
        // "remote end hung up" that follows from it.
        let mut errors: Vec<&str> = messages
            .iter()
            .map(|l| l.trim())
            .filter(|l| l.starts_with("fatal:") || l.starts_with("error:"))
            .collect();
        errors.dedup();
        let reason = if errors.is_empty() {
            messages
                .last()
                .map_or("no message", |l| l.trim())
                .to_string()
        } else {
            errors[errors.len().saturating_sub(3)..].join("; ")
        };
        let said = if remote_lines.is_empty() {
            String::new()
        } else {
            format!("; the target said: {}", last_words(&remote_lines))
        };
        return Err(NetError::Git {
            text: format!(
                "git push to {} failed: {}{said}",
                url.redacted(),
                reason.trim()
            ),
            spurious: git_says_transient(&messages),
        }
        .into());
    }
    Ok(PushOutcome {
        refs,
        stats,
        remote_lines,
        unpack_error,
    })
}

/// An escaped ref name, refspec or option holding one, as the bytes git must be given.
fn os_bytes(escaped: &str) -> std::ffi::OsString {
    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(refname::to_bytes(escaped))
}

/// Whether git's own lines say its push failed on the way (a connection reset or cut, a 5xx,
/// no connection) rather than for a reason another attempt meets again (credentials, a missing
/// repository, a hook's refusal). git gives nothing but words, so they are read here, where it
/// ran, and nowhere else.
fn git_says_transient(lines: &[String]) -> bool {
    const NEVER: &[&str] = &[
        "authentication",
        "could not read username",
        "could not read password",
        "permission denied",
        "not found",
        "does not appear to be a git repository",
        "http 40",
        "error: 40",
    ];
    const TRANSIENT: &[&str] = &[
        "connection reset",
        "connection refused",
        "connection timed out",
        "timed out",
        "broken pipe",
        "hung up unexpectedly",
        "early eof",
        "unexpected disconnect",
        "rpc failed",
        "http 5",
        "error: 5",
        "failed to connect",
        "unable to connect",
        "could not resolve host",
        "temporary failure in name resolution",
        "network is unreachable",
        "no route to host",
        "could not read from remote repository",
    ];
    let text = lines.join("\n").to_lowercase();
    !NEVER.iter().any(|p| text.contains(p)) && TRANSIENT.iter().any(|p| text.contains(p))
}

/// The repository as `git push` must be given it. Everything from input goes after `--`, so it
/// is never an option; a local path is also made absolute, so git cannot read it as anything but
/// a path either: `host:repo` would be an SSH address to git and `name::rest` a remote helper
/// (`git-remote-name`), while `/...` is always a path.
fn repository_argument(url: &RemoteUrl) -> Result<std::ffi::OsString> {
    match url.local_path() {
        Some(path) => Ok(std::path::absolute(path)
            .with_context(|| format!("cannot make the target path {} absolute", path.display()))?
            .into_os_string()),
        None => Ok(url.without_credentials().into()),
    }
}

/// Run `git ARGS` on the local repository at `git_dir` to the end, in its own process group
/// whose guard holds `hold` (the cache lock): whether it succeeded, or `None` when there is no
/// git to run.
pub(crate) fn run_local(git_dir: &Path, args: &[&str], hold: BorrowedFd<'_>) -> Option<bool> {
    version()?;
    Some(
        Group::spawn(isolated(git_dir).args(args).stdin(Stdio::null()), hold)
            .and_then(|mut group| group.wait())
            .is_ok_and(|s| s.success()),
    )
}

/// Split git's stderr on both `\r` (progress redraws) and `\n`.
fn split_progress(stream: impl Read) -> impl Iterator<Item = String> {
    let mut bytes = BufReader::new(stream).bytes();
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        loop {
            match bytes.next() {
                Some(Ok(b'\r' | b'\n')) => return Some(String::from_utf8_lossy(&line).into()),
                Some(Ok(b)) => line.push(b),
                _ if line.is_empty() => return None,
                _ => return Some(String::from_utf8_lossy(&line).into()),
            }
        }
    })
}

fn is_progress_noise(line: &str) -> bool {
    [
        "Enumerating objects",
        "Counting objects",
        "Delta compression",
        "Compressing objects",
        "Total ",
        "To ",
        "hint:",
        "error: failed to push some refs",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// `Writing objects:  45% (81/179), 20.00 MiB | 10.00 MiB/s` -> (81, 179, bytes).
fn parse_writing(line: &str) -> Option<(usize, usize, usize)> {
    let rest = line.strip_prefix("Writing objects:")?;
    let open = rest.find('(')?;
    let close = rest[open..].find(')')? + open;
    let (done, total) = rest[open + 1..close].split_once('/')?;
    let done = done.trim().parse().ok()?;
    let total = total.trim().parse().ok()?;
    let after = rest[close + 1..].trim_start_matches(',').trim();
    let size = after.split('|').next().unwrap_or("").trim();
    Some((done, total, parse_size(size).unwrap_or(0)))
}

fn parse_size(text: &str) -> Option<usize> {
    let (number, unit) = text.split_once(' ')?;
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim().trim_end_matches(',') {
        "bytes" | "byte" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * scale) as usize)
}

/// Per-ref outcomes from `git push --porcelain`: a `To <url>` line, then
/// `<flag>\t<from>:<to>\t<summary>` per ref (names as the bytes git prints them, escaped:
/// `refname::escape`), then `Done` when every ref was accepted. Any other line is an error that
/// names it: a format this does not understand must not read as "the target said nothing".
fn parse_porcelain(text: &[u8]) -> Result<HashMap<String, RefOutcome>> {
    let mut results = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"Done" || line.starts_with(b"To ") {
            continue;
        }
        let unknown = || {
            anyhow::anyhow!(
                "git push printed a line this tool does not understand: '{}'",
                crate::base::text::clip(&String::from_utf8_lossy(line), 200)
            )
        };
        let mut fields = line.splitn(3, |&b| b == b'\t');
        let (Some(flag), Some(spec), Some(summary)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(unknown());
        };
        let colon = spec.iter().rposition(|&b| b == b':').ok_or_else(unknown)?;
        let outcome = match flag {
            b" " | b"+" | b"-" | b"*" | b"=" => RefOutcome::Accepted,
            b"!" => RefOutcome::Rejected(
                String::from_utf8_lossy(summary)
                    .trim()
                    .trim_start_matches("[remote rejected] ")
                    .trim_start_matches("[rejected] ")
                    .trim_matches(|c| c == '(' || c == ')')
                    .to_string(),
            ),
            _ => return Err(unknown()),
        };
        results.insert(refname::escape(&spec[colon + 1..]), outcome);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_porcelain_results() {
        let text = "To git://127.0.0.1/x\n\
                    *\trefs/heads/a:refs/heads/a\t[new branch]\n\
                    +\trefs/heads/b:refs/heads/b\tabc...def (forced update)\n\
                    -\t:refs/heads/c\t[deleted]\n\
                    !\trefs/heads/d:refs/heads/d\t[remote rejected] (pre-receive hook declined)\n\
                    Done\n";
        let results = parse_porcelain(text.as_bytes()).unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results["refs/heads/a"], RefOutcome::Accepted);
        assert_eq!(results["refs/heads/c"], RefOutcome::Accepted);
        assert_eq!(
            results["refs/heads/d"],
            RefOutcome::Rejected("pre-receive hook declined".to_string())
        );
        for odd in [
            "Everything up-to-date\n",
            "?\trefs/heads/a:refs/heads/a\t[new]\n",
            "*\trefs/heads/a\t[new branch]\n",
        ] {
            let err = parse_porcelain(odd.as_bytes()).unwrap_err().to_string();
            // Quoted escaped: a tab is `\t`.
            assert!(err.contains(&odd.trim_end().replace('\t', "\\t")), "{err}");
        }
    }

    #[test]
    fn parses_writing_progress() {
        assert_eq!(
            parse_writing("Writing objects:  45% (81/179), 2.00 MiB | 1.00 MiB/s"),
            Some((81, 179, 2 * 1024 * 1024))
        );
        assert_eq!(
            parse_writing("Writing objects: 100% (3/3), 250 bytes | 250.00 KiB/s, done."),
            Some((3, 3, 250))
        );
        assert_eq!(parse_writing("Counting objects: 3"), None);
    }
}
