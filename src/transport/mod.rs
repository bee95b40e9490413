//! The ways to a remote and who we are to it: HTTP(S) (with proxies), git://, SSH (our own
//! transport, libgit2's too), a local `git upload-pack`, the socket libgit2 connects with; the
//! credentials each end answers with, where secrets come from, and the retry policy of a
//! network step.
//!
//! Every way to a Git service offers the same two steps (`Connection`): a handshake that ends
//! in the service's ref advertisement, and a request whose answer is read as a stream. The
//! fetch, the relay and the wire push speak git's protocol over that, whatever carries it.

pub(crate) mod auth;
pub(crate) mod git_daemon;
pub(crate) mod http;
pub(crate) mod known_hosts;
pub(crate) mod local;
pub(crate) mod remote;
pub(crate) mod retry;
pub(crate) mod secret_source;
pub(crate) mod smart_http;
#[cfg(target_os = "linux")]
pub(crate) mod socket;
pub(crate) mod ssh;

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::base::transfer::TransferStats;
use crate::base::url::Scheme;
use crate::protocol::advertisement::Advertisement;
use auth::Auth;
use remote::{End, Remote};

/// The Git services this tool asks a server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
}

/// What hands a request's body out, piece by piece, to the function it is given.
pub(crate) type Produce<'b> =
    &'b mut dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<TransferStats>;

/// A request's body: whole (a fetch's wants and haves), or made as it is sent (a push's pack).
pub(crate) enum Body<'b> {
    Whole(&'b [u8]),
    Made(Produce<'b>),
}

/// A remote's Git services, however they are reached.
pub(crate) trait Connection {
    /// Open `service` and read the ref advertisement it opens with. A stateful connection stays
    /// open for the next `request`.
    fn handshake(&mut self, service: Service) -> Result<Advertisement>;

    /// Send a request to `service` and return what its body's maker said of it and the
    /// answer's stream. Over a stateful connection the request goes on the one the handshake
    /// opened (a new one, its advertisement skipped, when none is open); over HTTP it is a POST.
    fn request<'s>(
        &'s mut self,
        service: Service,
        body: Body<'_>,
    ) -> Result<(TransferStats, Box<dyn Read + 's>)>;

    /// End a connection whose advertisement was read and that was asked nothing.
    fn close(&mut self) {}

    /// The remote as messages name it (no credentials).
    fn url(&self) -> &str;
}

/// Why this tool's own client cannot reach a remote (the caller hands the step to libgit2).
pub(crate) type Declined = String;

/// A connection to `remote`'s services, or why there is none of this tool's. `hold` (the
/// mirror's lock) is held by any git child it starts.
pub(crate) fn connect<'a>(
    remote: &'a Remote,
    auth: &'a Auth,
    ssh: &'a Arc<ssh::Pool>,
    timeout: Duration,
    hold: BorrowedFd<'a>,
) -> Result<Box<dyn Connection + 'a>, Declined> {
    let login = match remote.end {
        End::Source => &auth.source,
        End::Target => &auth.target,
    };
    Ok(match remote.url.scheme() {
        Scheme::Git => Box::new(git_daemon::GitDaemon::new(remote, timeout).map_err(say)?),
        Scheme::Http | Scheme::Https => {
            Box::new(smart_http::SmartHttp::new(remote, login, timeout).map_err(say)?)
        }
        Scheme::Local => match remote.url.local_path() {
            Some(path) if crate::base::git::version().is_some() => {
                Box::new(local::Local::new(path, remote, hold, timeout))
            }
            _ => {
                return Err(
                    "a local repository is read through git, which is not installed".into(),
                );
            }
        },
        Scheme::Ssh if ssh::disabled() => {
            return Err("BACKLOG_MIRROR_LIBGIT2_SSH is set: SSH goes through libgit2".into());
        }
        Scheme::Ssh => Box::new(ssh::SshService::new(remote, auth, ssh, timeout)),
    })
}

/// Write a request's body to a stateful connection, and flush it.
fn write_body(conn: &mut dyn std::io::Write, body: Body<'_>, url: &str) -> Result<TransferStats> {
    use anyhow::Context as _;
    let stats = match body {
        Body::Whole(bytes) => {
            conn.write_all(bytes)
                .with_context(|| format!("cannot send the request to {url}"))?;
            TransferStats {
                objects: 0,
                bytes: bytes.len(),
            }
        }
        Body::Made(produce) => produce(&mut |piece| {
            conn.write_all(piece)
                .with_context(|| format!("cannot send the request to {url}"))
        })?,
    };
    conn.flush()
        .with_context(|| format!("cannot send the request to {url}"))?;
    Ok(stats)
}

fn say(err: anyhow::Error) -> Declined {
    format!("{err:#}")
}

/// Which end a remote is, as messages name it.
pub(crate) fn peer(remote: &Remote) -> &'static str {
    match remote.end {
        End::Source => "the source",
        End::Target => "the target",
    }
}
