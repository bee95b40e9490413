//! The ways to a remote and who we are to it: HTTP(S) (with proxies), git://, SSH (our own
//! transport, libgit2's too), a local `git upload-pack`, the socket libgit2 connects with; the
//! credentials each end answers with, where secrets come from, and the retry policy of a
//! network step.

pub(crate) mod auth;
pub(crate) mod http;
pub(crate) mod known_hosts;
pub(crate) mod local;
pub(crate) mod remote;
pub(crate) mod retry;
pub(crate) mod secret_source;
#[cfg(target_os = "linux")]
pub(crate) mod socket;
pub(crate) mod ssh;
