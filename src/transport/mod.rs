//! The ways to a remote and who we are to it: HTTP(S) (with proxies), git://, SSH (our own
//! transport, libgit2's too), a local `git upload-pack`, the socket libgit2 connects with; the
//! credentials each end answers with, where secrets come from, and the retry policy of a
//! network step; and Backlog's REST API, which says what repositories a space has.
//!
//! Every way to a Git service offers the same two steps (`Connection`): a handshake that ends
//! in the service's ref advertisement, and a request whose answer is read as a stream. The
//! fetch, the relay and the wire push speak git's protocol over that, whatever carries it.

pub(crate) mod auth;
pub(crate) mod backlog_api;
pub(crate) mod connection;
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

use connection::Stateful;
pub(crate) use connection::{Body, Connection, Declined, Service, peer};

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::base::url::Scheme;
use auth::Auth;
use remote::{End, Remote};

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
        Scheme::Git => Box::new(Stateful::new(
            git_daemon::GitDaemon::new(remote, timeout).map_err(say)?,
        )),
        Scheme::Http | Scheme::Https => {
            Box::new(smart_http::SmartHttp::new(remote, login, timeout).map_err(say)?)
        }
        Scheme::Local => match remote.url.local_path() {
            Some(path) if crate::base::git::version().is_some() => Box::new(Stateful::new(
                local::Local::new(path, remote, hold, timeout),
            )),
            _ => {
                return Err(
                    "a local repository is read through git, which is not installed".into(),
                );
            }
        },
        Scheme::Ssh if ssh::disabled() => {
            return Err("BACKLOG_MIRROR_LIBGIT2_SSH is set: SSH goes through libgit2".into());
        }
        Scheme::Ssh => Box::new(Stateful::new(ssh::SshService::new(
            remote, auth, ssh, timeout,
        ))),
    })
}

fn say(err: anyhow::Error) -> Declined {
    format!("{err:#}")
}
