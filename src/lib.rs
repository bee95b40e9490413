//! backlog-mirror keeps an exact mirror of one Git repository in another remote.
//!
//! The binary is one call into [`main`]; everything else is private to the crate, so rustc sees
//! every item that nothing uses. The modules read top-down: `app` (the edge: logging, secrets,
//! printing, running a list's mirrors on a pool of threads) over `cli` (the flags), `mirror_list`
//! (a list's keys turned into those flags, per mirror) and `config` (their validation into one
//! mirror's settings), over `mirror`, the only one that knows the order of a sync's steps, over
//! the modules that do each step (`cache`, `plan`, `push`, `libgit2`, `gitcli`...), over the
//! leaves they share (`remote`, `url`, `refname`, `secret`, `error`...). Nothing below `app` and
//! `mirror_list` imports `cli`.
//!
//! # Process-wide state
//!
//! Several mirrors may run in one process, on several threads. What is global, and why that holds:
//! - libgit2's options (no configuration search paths, timeouts), its transports and the socket
//!   stream are set once, by `libgit2::init`, before threads start (libgit2's initialisation sets
//!   OpenSSL's environment variables). The network timeout is process-wide: libgit2's SSH
//!   transport reads it from a global, so `init` refuses a second, different one.
//! - `tcp` keeps its sockets by thread, and a failure cuts only the failing thread's: a libgit2
//!   operation runs on one thread. Per-push results (`git2_bytes`) are thread-local.
//! - The SSH transport (`ssh_transport`) is registered once, but its connections are per mirror:
//!   pooled in the mirror's `auth::Auth`, found through a thread-local that `libgit2::Session`
//!   sets for the length of each libgit2 call, and lent to one conversation at a time.
//! - Credentials are per mirror (`auth::Auth`, from its config), and a host key refusal is kept
//!   per end; a git child gets the CodeCommit helper's settings in its own environment.
//! - The secret registry (`secret`) scrubs every mirror's secrets from every line, the safe
//!   direction; it only grows (one signature per CodeCommit connection).
//! - One current-thread AWS runtime (`aws`): `block_on` from several threads takes turns.
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
