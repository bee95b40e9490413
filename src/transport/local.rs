//! Local repositories are read through `git upload-pack`, as git itself reads them.
//!
//! libgit2's own local transport opens the repository and looks up every ref by name: one ref
//! whose name it cannot normalise (4 KB long) fails the whole listing, so one hostile branch
//! would stop a mirror of a local path for good. Spoken to over the git protocol, the same
//! repository is an advertisement of names as bytes, which this tool sorts into refs it carries
//! and refs it reports. So when the git CLI is installed, fetches from local paths go through a
//! libgit2 transport registered here that runs `git upload-pack` on the path and talks to it over
//! its stdin and stdout, exactly as `git fetch` from a path does; pushes are not its business.
//!
//! Our own upload-pack client (`relay`: the stateless relay and the warm fetch) runs the same
//! process through the same type, `UploadPack`. Either way it runs in a process group of its own
//! whose guard kills it, and the `pack-objects` it starts, when we die (see `process_group`):
//! left running, they go on reading the source and burning CPU for a pack nobody reads. The
//! relay's guard also holds the mirror's lock, so the next run waits for them. libgit2's cannot:
//! libgit2 creates the transport from a URL and nothing else, so it never sees the cache or its
//! lock. Nor need it: upload-pack only reads the source, and what it sends libgit2 writes into the
//! cache in our own process, which ends with us. And either way, when git stops early, the first
//! line of its stderr is the error (`git upload-pack: fatal: ...`), not a bare "early EOF".

use std::io::{BufReader, Read, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};

use super::connection::{Opener, peer};
use super::remote::Remote;
use crate::base::process_group::Group;
use crate::protocol::advertisement::{Advertisement, read_service_advertisement};
use crate::protocol::pktline::PktReader;

/// The URL scheme of the transport (never seen outside this process).
const SCHEME: &str = "backlog-mirror-upload-pack";
const PREFIX: &str = "backlog-mirror-upload-pack://";

/// How much of git's stderr is kept for the error: its first line is what is shown.
const STDERR_KEPT: u64 = 64 << 10;

/// Register the transport with libgit2. Call once, with the rest of libgit2's set-up.
pub(crate) fn register() -> Result<(), git2::Error> {
    // SAFETY: called once, from `libgit2::init`, before any transport is created.
    unsafe {
        git2::transport::register(SCHEME, |remote| {
            Transport::smart(remote, false, Subtransport)
        })
    }
}

/// The location to give libgit2 to fetch from the local repository at `path` through `git
/// upload-pack`, or `None` when there is no git to run.
pub(crate) fn url(path: &Path) -> Option<String> {
    crate::base::git::version()?;
    let absolute = std::path::absolute(path).ok()?;
    let file = ::url::Url::from_file_path(absolute).ok()?;
    Some(format!(
        "{PREFIX}{}",
        file.as_str().strip_prefix("file://")?
    ))
}

fn path_of(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix(PREFIX)?;
    ::url::Url::parse(&format!("file://{rest}"))
        .ok()?
        .to_file_path()
        .ok()
}

/// libgit2's side: each fetch or listing runs one `UploadPack`, with no lock to hold.
struct Subtransport;

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        if !matches!(action, Service::UploadPackLs | Service::UploadPack) {
            return Err(git2::Error::from_str(
                "the upload-pack transport only fetches; pushes to a local path go elsewhere",
            ));
        }
        let path = path_of(url)
            .ok_or_else(|| git2::Error::from_str(&format!("not a local repository: {url}")))?;
        let stream =
            UploadPack::spawn(&path, None).map_err(|e| git2::Error::from_str(&format!("{e:#}")))?;
        Ok(Box::new(stream))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// `git upload-pack <path>` as a two-way stream, in a process group of its own (see the module
/// doc); the group is killed when the stream is dropped before git ended. Reading past git's
/// output, or writing to a git that has gone, gives git's own words when it failed.
pub(crate) struct UploadPack {
    group: Group,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Collects git's stderr (its first `STDERR_KEPT` bytes) until git closes it.
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// How git ended, once known: `Some(message)` when it failed.
    ended: Option<Option<String>>,
}

impl UploadPack {
    /// Start `git upload-pack` on the repository at `path`. Its group's guard holds `hold` (the
    /// mirror's lock) until the group is dead, when given.
    pub(crate) fn spawn(path: &Path, hold: Option<BorrowedFd<'_>>) -> Result<UploadPack> {
        let mut group = Group::spawn_holding(
            crate::base::git::upload_pack(path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            hold,
        )
        .context("cannot start git upload-pack")?;
        let child = group.child();
        let stderr = child
            .stderr
            .take()
            .map(|pipe| crate::base::process_group::collect_stderr(pipe, STDERR_KEPT));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("git upload-pack: no pipes");
        };
        Ok(UploadPack {
            group,
            stdin,
            stdout,
            stderr,
            ended: None,
        })
    }

    /// What git said when it stopped early, as the error libgit2 and the relay report instead
    /// of "early EOF". Waits for git: call it only once git closed its end of a pipe.
    fn failure(&mut self) -> Option<std::io::Error> {
        if self.ended.is_none() {
            let status = self.group.wait().ok()?;
            self.ended = Some((!status.success()).then(|| {
                // git has exited, so its stderr is closed and the reader done.
                let text = self
                    .stderr
                    .take()
                    .and_then(|reader| reader.join().ok())
                    .unwrap_or_default();
                match String::from_utf8_lossy(&text).lines().next() {
                    Some(line) => {
                        format!("git upload-pack: {}", crate::base::text::clip(line, 300))
                    }
                    None => format!("git upload-pack {status}"),
                }
            }));
        }
        self.ended.clone().flatten().map(std::io::Error::other)
    }

    /// A write that met a closed pipe: git has gone, and what it said is the error.
    fn gone(&mut self, error: std::io::Error) -> std::io::Error {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            return error;
        }
        self.failure().unwrap_or(error)
    }
}

impl Read for UploadPack {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.stdout.read(buf)? {
            0 if !buf.is_empty() => match self.failure() {
                Some(error) => Err(error),
                None => Ok(0),
            },
            n => Ok(n),
        }
    }
}

impl Write for UploadPack {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stdin.write(buf).map_err(|e| self.gone(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.flush().map_err(|e| self.gone(e))
    }
}

/// A local repository's upload-pack as a `Connection` (`git upload-pack` per conversation).
/// Pushes to a local path go through `git push`, whose receive-pack runs the target's hooks in
/// our child: this serves fetches only.
pub(crate) struct Local<'a> {
    path: PathBuf,
    remote: &'a Remote,
    hold: BorrowedFd<'a>,
    timeout: std::time::Duration,
    url: String,
}

impl<'a> Local<'a> {
    pub(crate) fn new(
        path: &Path,
        remote: &'a Remote,
        hold: BorrowedFd<'a>,
        timeout: std::time::Duration,
    ) -> Local<'a> {
        Local {
            path: path.to_path_buf(),
            remote,
            hold,
            timeout,
            url: remote.url.redacted().to_string(),
        }
    }

    fn open_stream(
        &self,
        service: super::connection::Service,
    ) -> Result<(UploadPack, Advertisement)> {
        if service != super::connection::Service::UploadPack {
            anyhow::bail!(
                "{} is pushed to through git push, not over a pipe",
                self.url
            );
        }
        let mut child = UploadPack::spawn(&self.path, Some(self.hold))?;
        let ad = read_service_advertisement(
            &mut PktReader::from_peer(BufReader::new(&mut child), peer(self.remote)),
            service.name(),
            false,
            self.timeout,
        )
        .with_context(|| format!("cannot read the refs of {}", self.url))?;
        Ok((child, ad))
    }
}

impl Opener for Local<'_> {
    type Stream = UploadPack;

    fn open(&self, service: super::connection::Service) -> Result<(UploadPack, Advertisement)> {
        self.open_stream(service)
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn bare_repo(dir: &Path) -> PathBuf {
        let path = dir.join("repo.git");
        let status = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    fn alive(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn a_failing_git_is_named_by_its_own_words() {
        let dir = tempfile::tempdir().unwrap();
        let mut git = UploadPack::spawn(dir.path(), None).unwrap();
        let mut out = Vec::new();
        let err = git.read_to_end(&mut out).unwrap_err().to_string();
        assert!(
            err.starts_with("git upload-pack: fatal:") && err.contains("not"),
            "{err}"
        );
        // Writing to it says the same, not "Broken pipe".
        let mut git = UploadPack::spawn(dir.path(), None).unwrap();
        let err = loop {
            if let Err(e) = git.write(&[b'0'; 4096]) {
                break e.to_string();
            }
        };
        assert!(err.starts_with("git upload-pack: fatal:"), "{err}");
    }

    /// Dropped mid-conversation, git dies with its group, and the guard holds the lock given
    /// until then.
    #[test]
    fn runs_in_its_own_group_holding_the_lock_and_dies_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let repo = bare_repo(dir.path());
        let lock_path = dir.path().join("lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        lock.lock().unwrap();
        let mut git = UploadPack::spawn(&repo, Some(lock.as_fd())).unwrap();
        drop(lock);
        let mut head = [0u8; 4];
        git.read_exact(&mut head).unwrap();
        let pid = git.group.child().id() as libc::pid_t;
        // SAFETY: asking for process groups.
        let (theirs, ours) = unsafe { (libc::getpgid(pid), libc::getpgid(0)) };
        assert_ne!(theirs, ours, "git upload-pack shares our process group");
        assert!(
            std::fs::File::open(&lock_path).unwrap().try_lock().is_err(),
            "the lock was released while git runs"
        );
        drop(git);
        assert!(!alive(pid), "git upload-pack outlived its stream");
        assert!(std::fs::File::open(&lock_path).unwrap().try_lock().is_ok());
        // libgit2's have no lock to hold, and a group all the same.
        let mut git = UploadPack::spawn(&repo, None).unwrap();
        git.read_exact(&mut head).unwrap();
        let pid = git.group.child().id() as libc::pid_t;
        // SAFETY: as above.
        assert_ne!(unsafe { libc::getpgid(pid) }, ours);
    }
}
