//! backlog-mirror keeps an exact mirror of one Git repository in another remote.
//!
//! The binary is one call into [`main`]; everything else is private to the crate, so rustc sees
//! every item that nothing uses. The folders are layers, each importing only those below it:
//! `app` (the edge) over `sync` (the order of a run) over `report` and `settings` over `engine`
//! (cache, plan, fetch, push engines) over `transport` (the ways to a remote) over `aws` over
//! `protocol` (git's wire format) over `base` (what they all share). docs/design.md has the map.
//!
//! # Process-wide state
//!
//! Several mirrors may run in one process, on several threads. What is global, and why that holds:
//! - libgit2's options (no configuration search paths, timeouts), its transports and the socket
//!   stream are set once, by `engine::libgit2::init`, before threads start (libgit2's initialisation sets
//!   OpenSSL's environment variables). The network timeout is process-wide: libgit2's SSH
//!   transport reads it from a global, so `init` refuses a second, different one.
//! - `transport::socket` keeps its sockets by thread, and a failure cuts only the failing thread's: a libgit2
//!   operation runs on one thread. Per-push results (`engine::libgit2_push`) are thread-local.
//! - The SSH transport (`transport::ssh`) is registered once, but its connections are per mirror:
//!   pooled in the mirror's `Session`, found through a thread-local that `engine::libgit2`
//!   sets for the length of each libgit2 call, and lent to one conversation at a time.
//! - Credentials are per mirror (`transport::auth::Auth`, from its config), and a host key refusal is kept
//!   per end; a git child gets the CodeCommit helper's settings in its own environment.
//! - The secret registry (`base::secret`) scrubs every mirror's secrets from every line, the safe
//!   direction; it only grows (one signature per CodeCommit connection).
//! - One async runtime (`base::runtime`, one worker thread) for the AWS SDK and hyper; the HTTP
//!   client (`transport::http`) and each SDK configuration are shared by every mirror.
//! - Each git child runs in its own process group with its own guard, which keeps its cache's
//!   lock and closes every other descriptor it inherited (another mirror's lock or pipe).
//! - Relative paths resolve against the working directory, which nothing changes. Progress lines
//!   of concurrent mirrors interleave on stderr.

mod app;
mod aws;
mod base;
mod engine;
mod protocol;
mod report;
mod settings;
mod sync;
mod transport;

pub use app::main;
