//! Local repositories are read through `git upload-pack`, as git itself reads them.
//!
//! libgit2's own local transport opens the repository and looks up every ref by name: one ref
//! whose name it cannot normalise (4 KB long) fails the whole listing, so one hostile branch
//! would stop a mirror of a local path for good. Spoken to over the git protocol, the same
//! repository is an advertisement of names as bytes, which this tool sorts into refs it carries
//! and refs it reports. So when the git CLI is installed, fetches from local paths go through a
//! libgit2 transport registered here that runs `git upload-pack` on the path and talks to it over
//! its stdin and stdout, exactly as `git fetch` from a path does; pushes are not its business.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};

/// The URL scheme of the transport (never seen outside this process).
const SCHEME: &str = "backlog-mirror-upload-pack";
const PREFIX: &str = "backlog-mirror-upload-pack://";

/// Register the transport with libgit2. Call once, with the rest of libgit2's set-up.
pub(crate) fn register() -> Result<(), git2::Error> {
    // SAFETY: called once, from `libgit2::init`, before any transport is created.
    unsafe {
        git2::transport::register(SCHEME, |remote| Transport::smart(remote, false, UploadPack))
    }
}

/// The location to give libgit2 to fetch from the local repository at `path` through `git
/// upload-pack`, or `None` when there is no git to run.
pub(crate) fn url(path: &Path) -> Option<String> {
    crate::gitcli::version()?;
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

struct UploadPack;

impl SmartSubtransport for UploadPack {
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
        let mut child = crate::gitcli::upload_pack(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| git2::Error::from_str(&format!("cannot start git upload-pack: {e}")))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                text
            })
        });
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(git2::Error::from_str("git upload-pack: no pipes"));
        };
        Ok(Box::new(Stream {
            child,
            stdin,
            stdout,
            stderr,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// One `git upload-pack` process; ended when libgit2 drops the stream.
struct Stream {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Stream {
    /// What git said when it stopped early, as the error libgit2 reports instead of "early EOF".
    fn failure(&mut self) -> Option<std::io::Error> {
        let status = self.child.wait().ok()?;
        if status.success() {
            return None;
        }
        // git has exited, so its stderr is closed and the reader done.
        let text = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        Some(std::io::Error::other(match text.lines().next() {
            Some(line) => format!("git upload-pack: {}", line.trim()),
            None => format!("git upload-pack {status}"),
        }))
    }
}

impl Read for Stream {
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

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stdin.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.flush()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
