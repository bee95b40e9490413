//! Our own SSH transport under libgit2: one authenticated SSH connection per remote for the
//! whole run, one exec channel per git conversation on it.
//!
//! libgit2's SSH transport opens a new connection for every conversation: TCP, a key exchange,
//! an authentication and a new sshd process. A sync with work looks at the source twice (the
//! fetch, then the catch-up look after the push), so it paid all that twice where `git fetch`
//! pays it once. An SSH connection carries any number of channels, each running one command, so
//! this module is registered with libgit2 as the transport for `ssh://` and `user@host:path`
//! (libgit2 picks transports by scheme, so pushes to SSH targets come here too): each
//! conversation runs `git-upload-pack '<path>'` or `git-receive-pack '<path>'` on a channel of
//! the connection the run already holds, and the connection goes back to the run's pool once the
//! command has ended. Code that speaks git's protocol itself gets the same channels (`exec`).
//!
//! What a connection is made of stays this tool's own, as under libgit2: `transport::socket`'s socket (connect
//! and I/O timeouts from `--network-timeout`, keepalive, cut by
//! `socket::cut_connections_of_this_thread` after a failure), `known_hosts`' host key policy and
//! `auth`'s key or agent, with the same messages. libgit2 calls a transport without saying for
//! which mirror, and several mirrors run on threads at once, each with its own credentials and
//! pool: `libgit2::Session` names its `Auth` and the `Remote` for the length of each call
//! (`for_remote`), on the calling thread, where libgit2 then calls the transport.
//!
//! A connection is lent to one conversation at a time (a second at the same moment opens a
//! second connection), so no two threads wait on one socket; it is kept only when its channel
//! closed cleanly, and one that failed or timed out is cut, never reused.
//!
//! `BACKLOG_MIRROR_LIBGIT2_SSH=1` leaves SSH to libgit2's own transport (one connection per
//! conversation), should this one ever misbehave in the field. `BACKLOG_MIRROR_LIBGIT2_SOCKET`
//! does not concern this transport: it never hands its socket to libgit2.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{ErrorClass, ErrorCode};
use tracing::{debug, warn};

use anyhow::Context as _;

use crate::base::secret::Secret;
use crate::base::url::{RemoteUrl, Scheme};
use crate::protocol::advertisement::{Advertisement, read_service_advertisement};
use crate::protocol::pktline::PktReader;
use crate::transport::auth::Auth;
use crate::transport::known_hosts::{PresentedKey, Verdict};
use crate::transport::remote::{End, Remote};

/// libssh2's error codes this module tells apart (`libssh2.h`).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;

/// `--network-timeout` in milliseconds, for connecting and for every wait on a connection.
static TIMEOUT_MS: AtomicU32 = AtomicU32::new(0);

/// What a command's failure quotes of its stderr, at most.
const STDERR_LIMIT: u64 = 64 * 1024;

/// What a channel closed before the end of its output reads and drops, at most, so that its
/// command ends on its own (a post-receive hook finishes); beyond, the command is stopped.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Whether `BACKLOG_MIRROR_LIBGIT2_SSH=1` (or `true`) leaves SSH to libgit2's own transport.
pub(crate) fn disabled() -> bool {
    crate::base::hatch::is_set("BACKLOG_MIRROR_LIBGIT2_SSH")
}

/// Register the transport with libgit2 for `ssh://` (and so for `user@host:path`, which libgit2
/// resolves as `ssh://`). Call once, from `libgit2::init`, before any connection.
pub(crate) fn register(timeout_ms: u32) -> Result<(), git2::Error> {
    TIMEOUT_MS.store(timeout_ms, Ordering::SeqCst);
    // SAFETY: called once, from `libgit2::init`, before any transport is created.
    unsafe { git2::transport::register("ssh", |remote| Transport::smart(remote, false, Ssh)) }
}

/// The mirror a libgit2 call on this thread works for: set by `for_remote` for its length.
#[derive(Clone, Copy)]
struct Context {
    auth: *const Auth,
    pool: *const Arc<Pool>,
    remote: *const Remote,
}

thread_local! {
    static CURRENT: Cell<Option<Context>> = const { Cell::new(None) };
}

/// Run `call` (a libgit2 operation on `remote`) with SSH connections made from `auth` and kept
/// in its pool.
pub(crate) fn for_remote<T>(
    auth: &Auth,
    pool: &Arc<Pool>,
    remote: &Remote,
    call: impl FnOnce() -> T,
) -> T {
    struct Restore(Option<Context>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0.take());
        }
    }
    let _restore = Restore(CURRENT.replace(Some(Context { auth, pool, remote })));
    call()
}

/// The run's connections, kept while idle. Held by `Auth`, so each mirror has its own and they
/// are closed when its run ends.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    fn take(&self, key: &Key) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = idle.iter().position(|c| &c.key == key)?;
        Some(idle.swap_remove(at))
    }

    fn put(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        for connection in idle {
            // Goodbye is a courtesy: the server ends its side either way.
            let _ = connection.session.disconnect(None, "done", None);
        }
    }
}

/// Who logs in where: connections are shared only between remotes with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    user: String,
    host: String,
    port: u16,
}

/// One authenticated SSH connection.
struct Connection {
    session: ssh2::Session,
    /// The session's socket, to cut it: after `shutdown` every wait on it ends at once.
    socket: TcpStream,
    key: Key,
}

impl Connection {
    fn cut(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Count the connection among this thread's (see `socket::track`) while a conversation of
    /// this thread uses it.
    fn lend(&self) {
        #[cfg(target_os = "linux")]
        crate::transport::socket::track(std::os::fd::AsRawFd::as_raw_fd(&self.socket));
    }

    fn give_back(&self) {
        #[cfg(target_os = "linux")]
        crate::transport::socket::untrack(std::os::fd::AsRawFd::as_raw_fd(&self.socket));
    }
}

/// An SSH remote: where to log in, and the repository's path as the remote shell gets it.
struct Address {
    key: Key,
    path: String,
}

impl Address {
    fn of(url: &RemoteUrl) -> Result<Address, String> {
        if url.scheme() != Scheme::Ssh {
            return Err(format!("{} is not an SSH address", url.redacted()));
        }
        let host = url
            .host()
            .ok_or_else(|| format!("{} has no host", url.redacted()))?;
        Ok(Address {
            key: Key {
                user: url.user().unwrap_or("git").to_string(),
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: url.port().unwrap_or(22),
            },
            path: repository_path(url)?,
        })
    }
}

/// The repository's path as git sends it to the remote shell: an `ssh://` URL's path
/// percent-decoded (git decodes URLs; `user@host:path` is taken as written), and `/~user/x`
/// as `~user/x`, so that the remote shell finds it in a home directory.
fn repository_path(url: &RemoteUrl) -> Result<String, String> {
    let written = url.as_git_url();
    let path = match written.split_once("://") {
        Some(_) => {
            let parsed = ::url::Url::parse(written)
                .map_err(|e| format!("{} is not a valid URL ({e})", url.redacted()))?;
            percent_encoding::percent_decode_str(parsed.path())
                .decode_utf8()
                .map_err(|_| {
                    format!(
                        "the path of {} is not UTF-8 once decoded; write it as it is",
                        url.redacted()
                    )
                })?
                .into_owned()
        }
        None => written
            .split_once(':')
            .map(|(_, path)| path.to_string())
            .ok_or_else(|| format!("{} has no path after ':'", url.redacted()))?,
    };
    let path = match path.strip_prefix('/') {
        Some(home) if home.starts_with('~') => home.to_string(),
        _ => path,
    };
    if path.is_empty() {
        return Err(format!("{} has no repository path", url.redacted()));
    }
    if path.contains('\0') {
        return Err(format!(
            "the path of {} contains a NUL byte, which no remote command can be given",
            url.redacted()
        ));
    }
    Ok(path)
}

/// The command that serves `program` (`git-upload-pack` or `git-receive-pack`) for the
/// repository at `url`, quoted as git does: `git-upload-pack '/srv/repo.git'`.
pub(crate) fn git_command(program: &str, url: &RemoteUrl) -> anyhow::Result<String> {
    let at = Address::of(url).map_err(anyhow::Error::msg)?;
    Ok(format!(
        "{program} {}",
        crate::base::text::sq_quote(&at.path)
    ))
}

/// Run `command` on `remote`'s SSH host, on the run's connection there (made, host key checked
/// and authenticated first if the run has none free), and return its stdin and stdout.
///
/// For code that speaks git's protocol to a server itself: with `git_command("git-upload-pack",
/// &remote.url)` the channel's first bytes are the v0 ref advertisement. Write requests with
/// `Write`, read answers with `Read` (0 bytes at the end of the command's output; a command that
/// exited non-zero turns that end into an error quoting its stderr's first line). Dropping the
/// channel ends the conversation (its input ended, what is left of its output read and dropped
/// up to 1 MiB) and hands the connection back to the run.
/// Failures read as libgit2's do, through `Auth::explain`.
pub(crate) fn exec(
    auth: &Auth,
    pool: &Arc<Pool>,
    remote: &Remote,
    command: &str,
) -> anyhow::Result<Channel> {
    let at = Address::of(&remote.url).map_err(anyhow::Error::msg)?;
    start(auth, pool, remote.end, &remote.url, &at, command)
        .map_err(|e| auth.explain(remote, "cannot connect to", e))
}

/// libgit2's SSH subtransport: a conversation is a channel from `start`.
struct Ssh;

impl SmartSubtransport for Ssh {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let program = match action {
            Service::UploadPackLs => "git-upload-pack",
            Service::ReceivePackLs => "git-receive-pack",
            // Not stateless (`Transport::smart(.., false, ..)`): git2 hands these the stream
            // of the listing.
            Service::UploadPack | Service::ReceivePack => {
                return Err(git2::Error::from_str(
                    "the SSH transport was asked for a second stream of one conversation",
                ));
            }
        };
        let Some(context) = CURRENT.get() else {
            return Err(git2::Error::from_str(
                "internal error: an SSH connection was asked for outside a mirror's run",
            ));
        };
        // SAFETY: `for_remote` set these from references that outlive its call and clears them
        // when the call returns; libgit2 calls transports synchronously, on the calling thread,
        // so this runs inside that call.
        let (auth, pool, remote) = unsafe { (&*context.auth, &*context.pool, &*context.remote) };
        let url = RemoteUrl::parse(url).map_err(|why| git2::Error::from_str(&why))?;
        let at = Address::of(&url).map_err(|why| git2::Error::from_str(&why))?;
        let command = format!("{program} {}", crate::base::text::sq_quote(&at.path));
        let channel = start(auth, pool, remote.end, &url, &at, &command)?;
        Ok(Box::new(channel))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Run `command` on a channel of the pool's connection to `at`, or of a new one.
fn start(
    auth: &Auth,
    pool: &Arc<Pool>,
    end: End,
    url: &RemoteUrl,
    at: &Address,
    command: &str,
) -> Result<Channel, git2::Error> {
    let program = command.split(' ').next().unwrap_or(command);
    let what = format!("{program} on {}", at.key.host);
    if let Some(kept) = pool.take(&at.key) {
        match Channel::open(kept, pool, command, &what) {
            Ok(channel) => {
                debug!("{what}: on the run's SSH connection");
                return Ok(channel);
            }
            // The server may have dropped an idle connection: one new connection, not a failure.
            Err(e) => debug!(
                "the kept SSH connection to {} failed ({e}); connecting again",
                at.key.host
            ),
        }
    }
    let connection = connect(auth, end, url, &at.key)?;
    debug!("{what}: on a new SSH connection");
    Channel::open(connection, pool, command, &what)
}

fn ssh_failure(what: &str, e: &ssh2::Error) -> git2::Error {
    if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
        let after = crate::base::duration::show(std::time::Duration::from_millis(u64::from(
            TIMEOUT_MS.load(Ordering::SeqCst),
        )));
        git2::Error::new(
            ErrorCode::Timeout,
            ErrorClass::Ssh,
            format!(
                "{what}: timed out after {after} (--network-timeout): {}",
                e.message()
            ),
        )
    } else {
        // The connection itself failed (its banner, key exchange, socket): what another attempt
        // may not meet, said by code so the retry policy reads no words.
        let cut = matches!(
            e.code(),
            ssh2::ErrorCode::Session(-1 | -2 | -3 | -5 | -7 | -8 | -13 | -30 | -43)
        );
        git2::Error::new(
            if cut {
                ErrorCode::Eof
            } else {
                ErrorCode::GenericError
            },
            ErrorClass::Ssh,
            format!("{what}: {}", e.message()),
        )
    }
}

/// A TCP connection to `key`'s host, set up as every connection of this tool is.
fn tcp_connect(key: &Key, timeout_ms: u32) -> Result<TcpStream, git2::Error> {
    let ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
    #[cfg(target_os = "linux")]
    let connected = crate::transport::socket::connect_to(&key.host, key.port, ms, ms).map_err(
        |(code, message)| {
            let code = if code == libgit2_sys::GIT_TIMEOUT {
                ErrorCode::Timeout
            } else {
                ErrorCode::GenericError
            };
            git2::Error::new(code, ErrorClass::Net, message)
        },
    );
    #[cfg(not(target_os = "linux"))]
    let connected = {
        let limit = (ms > 0).then(|| std::time::Duration::from_millis(ms as u64));
        std::net::ToSocketAddrs::to_socket_addrs(&(key.host.as_str(), key.port))
            .and_then(|mut addresses| {
                addresses
                    .next()
                    .ok_or_else(|| std::io::Error::other("no addresses"))
            })
            .and_then(|address| match limit {
                Some(limit) => TcpStream::connect_timeout(&address, limit),
                None => TcpStream::connect(address),
            })
            .and_then(|tcp| {
                tcp.set_nodelay(true)?;
                Ok(tcp)
            })
            .map_err(|e| {
                git2::Error::new(
                    ErrorCode::GenericError,
                    ErrorClass::Net,
                    format!("failed to connect to {}: {e}", key.host),
                )
            })
    };
    connected
}

/// A new connection to `key`: TCP, key exchange, host key checked by the run's policy,
/// authenticated with the run's key or agent.
fn connect(auth: &Auth, end: End, url: &RemoteUrl, key: &Key) -> Result<Connection, git2::Error> {
    let timeout_ms = TIMEOUT_MS.load(Ordering::SeqCst);
    let tcp = tcp_connect(key, timeout_ms)?;
    let socket = tcp.try_clone().map_err(|e| {
        git2::Error::from_str(&format!("cannot use the socket to {}: {e}", key.host))
    })?;
    let mut session =
        ssh2::Session::new().map_err(|e| ssh_failure("cannot start an SSH session", &e))?;
    session.set_timeout(timeout_ms);
    session.set_tcp_stream(tcp);
    let mut connection = Connection {
        session,
        socket,
        key: key.clone(),
    };
    let established = handshake(&mut connection.session, auth, end, url, key);
    if let Err(e) = established {
        connection.cut();
        return Err(e);
    }
    Ok(connection)
}

fn handshake(
    session: &mut ssh2::Session,
    auth: &Auth,
    end: End,
    url: &RemoteUrl,
    key: &Key,
) -> Result<(), git2::Error> {
    let server = match key.port {
        22 => key.host.clone(),
        port => format!("{}:{port}", key.host),
    };
    session
        .handshake()
        .map_err(|e| ssh_failure(&format!("SSH handshake with {server} failed"), &e))?;
    check_host_key(session, auth, end, key)?;
    authenticate(session, auth, url, &key.user)
}

/// The key type named at the start of an SSH public key blob (`ssh-ed25519`, ...).
fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

fn check_host_key(
    session: &ssh2::Session,
    auth: &Auth,
    end: End,
    key: &Key,
) -> Result<(), git2::Error> {
    let raw = session.host_key().map(|(raw, _)| raw);
    let presented = PresentedKey {
        host: &key.host,
        port: Some(key.port),
        key_type: raw.and_then(key_type),
        raw,
        sha256: session.host_key_hash(ssh2::HashType::Sha256),
    };
    match auth.host_keys.check(&presented) {
        Verdict::Trusted => Ok(()),
        Verdict::TrustedOnFirstUse(message) => {
            warn!("{message}");
            Ok(())
        }
        Verdict::Rejected(message) => {
            auth.reject(end, &message);
            Err(git2::Error::new(
                ErrorCode::Certificate,
                ErrorClass::Ssh,
                message,
            ))
        }
    }
}

/// Log in as `auth` does for libgit2: the key given (never printed), else a running ssh-agent
/// when allowed, else a clear error. A refusal is final (`Auth::refused`).
fn authenticate(
    session: &ssh2::Session,
    auth: &Auth,
    url: &RemoteUrl,
    user: &str,
) -> Result<(), git2::Error> {
    let refused = || git2::Error::new(ErrorCode::Auth, ErrorClass::Ssh, auth.refused(url));
    let is_refusal = |e: &ssh2::Error| {
        matches!(
            e.code(),
            ssh2::ErrorCode::Session(
                LIBSSH2_ERROR_AUTHENTICATION_FAILED | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
            )
        )
    };
    if let Some(key) = &auth.ssh_key {
        return match session.userauth_pubkey_memory(
            user,
            None,
            key.private.expose(),
            key.passphrase.as_ref().map(Secret::expose),
        ) {
            Ok(()) => Ok(()),
            Err(e) if is_refusal(&e) => Err(refused()),
            // libssh2's words for a key it cannot read, which `Auth::explain` turns into advice.
            Err(e) => Err(ssh_failure("Failed to authenticate SSH session", &e)),
        };
    }
    if auth.ssh_agent {
        let mut agent = session
            .agent()
            .map_err(|e| ssh_failure("cannot use ssh-agent", &e))?;
        agent
            .connect()
            .map_err(|e| ssh_failure("cannot reach ssh-agent (SSH_AUTH_SOCK)", &e))?;
        agent
            .list_identities()
            .map_err(|e| ssh_failure("cannot list ssh-agent's keys", &e))?;
        let identities = agent
            .identities()
            .map_err(|e| ssh_failure("cannot list ssh-agent's keys", &e))?;
        for identity in identities {
            match agent.userauth(user, &identity) {
                Ok(()) => return Ok(()),
                Err(e) if is_refusal(&e) => continue,
                Err(e) => return Err(ssh_failure("Failed to authenticate SSH session", &e)),
            }
        }
        return Err(refused());
    }
    Err(git2::Error::new(
        ErrorCode::Auth,
        ErrorClass::Ssh,
        format!(
            "{} needs an SSH key: pass --ssh-key-ssm, --ssh-key-env or --ssh-key-file",
            url.redacted()
        ),
    ))
}

/// A command running on an SSH channel: its stdin (`Write`) and stdout (`Read`). See `exec`.
pub(crate) struct Channel {
    channel: ssh2::Channel,
    /// The connection the channel runs on, until it goes back to `pool` (or is cut).
    connection: Option<Connection>,
    pool: Arc<Pool>,
    /// `git-upload-pack on host`, for messages.
    what: String,
    /// How the command ended, once its output has.
    ended: Option<Result<(), String>>,
    /// The connection failed or timed out: it is cut, not kept.
    broken: bool,
}

impl Channel {
    /// Start `command` on a channel of `connection`; on failure the connection is cut.
    fn open(
        connection: Connection,
        pool: &Arc<Pool>,
        command: &str,
        what: &str,
    ) -> Result<Channel, git2::Error> {
        // On failure the connection is cut before the channel is dropped: freeing an open
        // channel waits for the server's answer.
        let mut channel = match connection.session.channel_session() {
            Ok(channel) => channel,
            Err(e) => {
                connection.cut();
                return Err(ssh_failure(
                    &format!("cannot open an SSH channel for {what}"),
                    &e,
                ));
            }
        };
        if let Err(e) = channel.exec(command) {
            connection.cut();
            return Err(ssh_failure(&format!("cannot start {what}"), &e));
        }
        connection.lend();
        Ok(Channel {
            channel,
            connection: Some(connection),
            pool: Arc::clone(pool),
            what: what.to_string(),
            ended: None,
            broken: false,
        })
    }

    /// The connection failed: cut it (so nothing waits on it again) and say what failed.
    fn broke(&mut self, doing: &str, e: std::io::Error) -> std::io::Error {
        self.broken = true;
        if let Some(connection) = &self.connection {
            connection.cut();
        }
        if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
            let after = crate::base::duration::show(std::time::Duration::from_millis(u64::from(
                TIMEOUT_MS.load(Ordering::SeqCst),
            )));
            std::io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "could not {doing} {}: timed out after {after} (--network-timeout)",
                    self.what
                ),
            )
        } else {
            std::io::Error::new(
                ErrorKind::ConnectionAborted,
                format!(
                    "could not {doing} {}: unexpected disconnect of the SSH connection ({e})",
                    self.what
                ),
            )
        }
    }

    /// Close the channel and learn how the command ended. Before its output has ended, the
    /// command is told its input has (git's servers then finish or stop) and what it still says
    /// is read up to `DRAIN_LIMIT`. Its stderr is read only once its output has ended: before,
    /// that could wait.
    fn end(&mut self, mut output_ended: bool) -> Result<(), String> {
        if !self.broken && !output_ended {
            output_ended = self.drain();
        }
        if self.broken {
            let outcome = Err(format!("the SSH connection for {} failed", self.what));
            self.ended = Some(outcome.clone());
            return outcome;
        }
        let mut stderr = Vec::new();
        if output_ended {
            let _ = self
                .channel
                .stderr()
                .take(STDERR_LIMIT)
                .read_to_end(&mut stderr);
        }
        let outcome = match self.channel.close() {
            Err(e) => {
                self.broken = true;
                if let Some(connection) = &self.connection {
                    connection.cut();
                }
                Err(format!(
                    "could not close the SSH channel of {}: {}",
                    self.what,
                    e.message()
                ))
            }
            Ok(()) => match self.channel.exit_status() {
                Ok(0) => Ok(()),
                Ok(code) => {
                    let said = String::from_utf8_lossy(&stderr);
                    Err(match said.lines().map(str::trim).find(|l| !l.is_empty()) {
                        Some(line) => {
                            format!("{}: {}", self.what, crate::base::text::clip(line, 300))
                        }
                        None => format!("{} exited with {code}", self.what),
                    })
                }
                Err(e) => Err(format!("{}: no exit status ({})", self.what, e.message())),
            },
        };
        self.ended = Some(outcome.clone());
        outcome
    }
}

impl Channel {
    /// Send EOF and read what the command still says, dropped, up to `DRAIN_LIMIT`; whether its
    /// output ended. A failure marks the connection broken.
    fn drain(&mut self) -> bool {
        if let Err(e) = self.channel.send_eof() {
            self.broke("write to", e.into());
            return false;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        while read < DRAIN_LIMIT {
            match self.channel.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => read += n,
                Err(e) => {
                    self.broke("read from", e);
                    return false;
                }
            }
        }
        false
    }
}

impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.broken {
            return Err(std::io::Error::other(format!(
                "the SSH connection for {} failed",
                self.what
            )));
        }
        match self.channel.read(buf) {
            Ok(0) => match &self.ended {
                Some(Ok(())) => Ok(0),
                Some(Err(why)) => Err(std::io::Error::other(why.clone())),
                None => self.end(true).map(|()| 0).map_err(std::io::Error::other),
            },
            Ok(n) => Ok(n),
            Err(e) => Err(self.broke("read from", e)),
        }
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.broken {
            return Err(std::io::Error::other(format!(
                "the SSH connection for {} failed",
                self.what
            )));
        }
        if self.ended.is_some() {
            // The command has ended and the channel is closed: what is written now is for
            // nobody (libgit2 says goodbye with a flush after a fetch), and no reason to give up
            // the connection.
            return Ok(buf.len());
        }
        self.channel
            .write(buf)
            .map_err(|e| self.broke("write to", e))
    }

    /// Nothing to do: each write is sent as it is made. (libssh2's "flush" would discard unread
    /// input instead.)
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.ended.is_none() && !self.broken {
            let _ = self.end(false);
        }
        let Some(connection) = self.connection.take() else {
            return;
        };
        connection.give_back();
        if self.broken {
            connection.cut();
        } else {
            self.pool.put(connection);
        }
    }
}

/// A remote's services over SSH as a `Connection`: `git-upload-pack '<path>'` (or
/// receive-pack) on a channel of the run's connection to the host, one channel per
/// conversation.
pub(crate) struct SshService<'a> {
    remote: &'a Remote,
    auth: &'a Auth,
    pool: &'a Arc<Pool>,
    timeout: std::time::Duration,
    url: String,
}

impl<'a> SshService<'a> {
    pub(crate) fn new(
        remote: &'a Remote,
        auth: &'a Auth,
        pool: &'a Arc<Pool>,
        timeout: std::time::Duration,
    ) -> SshService<'a> {
        SshService {
            remote,
            auth,
            pool,
            timeout,
            url: remote.url.redacted().to_string(),
        }
    }

    fn open_channel(
        &self,
        service: super::connection::Service,
    ) -> anyhow::Result<(Channel, Advertisement)> {
        let command = git_command(service.name(), &self.remote.url)?;
        let mut channel = exec(self.auth, self.pool, self.remote, &command)?;
        // Buffered, as every advertisement is (see `read_service_advertisement`).
        let ad = read_service_advertisement(
            &mut PktReader::from_peer(
                std::io::BufReader::new(&mut channel),
                super::connection::peer(self.remote),
            ),
            service.name(),
            false,
            self.timeout,
        )
        .with_context(|| format!("cannot read the refs of {}", self.url))?;
        Ok((channel, ad))
    }
}

impl super::connection::Opener for SshService<'_> {
    type Stream = Channel;

    fn open(
        &self,
        service: super::connection::Service,
    ) -> anyhow::Result<(Channel, Advertisement)> {
        self.open_channel(service)
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_git_does() {
        for (path, quoted) in [
            ("/srv/repo.git", "'/srv/repo.git'"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("wow!", "'wow'\\!''"),
            ("x';touch /tmp/p;'", "'x'\\'';touch /tmp/p;'\\'''"),
            ("$(id)`id`\"\\", "'$(id)`id`\"\\'"),
        ] {
            assert_eq!(crate::base::text::sq_quote(path), quoted, "{path}");
        }
        // The shell gives the program the path back, whatever it holds.
        for path in ["x';touch /tmp/p;'", "a!b'c\"d$e`f\\g h", "''!!"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", crate::base::text::sq_quote(path)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), path);
        }
    }

    fn path_of(url: &str) -> Result<String, String> {
        repository_path(&RemoteUrl::parse(url).unwrap())
    }

    #[test]
    fn paths_as_git_sends_them() {
        assert_eq!(path_of("ssh://git@h/srv/r.git").unwrap(), "/srv/r.git");
        assert_eq!(path_of("ssh://git@h:2222/~/r.git").unwrap(), "~/r.git");
        assert_eq!(path_of("ssh://h/~bob/r.git").unwrap(), "~bob/r.git");
        assert_eq!(path_of("ssh://h/my%20repo/x%27y").unwrap(), "/my repo/x'y");
        assert_eq!(path_of("ssh://h/a b").unwrap(), "/a b");
        assert_eq!(path_of("git@h:team/app.git").unwrap(), "team/app.git");
        assert_eq!(path_of("gh:/abs/app.git").unwrap(), "/abs/app.git");
        assert_eq!(path_of("gh:/~x/app.git").unwrap(), "~x/app.git");
        assert!(path_of("ssh://h/a%00b").unwrap_err().contains("NUL"));
        assert!(path_of("ssh://h/a%FFb").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn addresses_default_user_and_port() {
        let at = Address::of(&RemoteUrl::parse("ssh://h.example/r.git").unwrap()).unwrap();
        assert_eq!(
            at.key,
            Key {
                user: "git".into(),
                host: "h.example".into(),
                port: 22
            }
        );
        let at = Address::of(&RemoteUrl::parse("ssh://space@[::1]:2200/r.git").unwrap()).unwrap();
        assert_eq!(at.key.user, "space");
        assert_eq!(at.key.host, "::1");
        assert!(Address::of(&RemoteUrl::parse("https://h/r.git").unwrap()).is_err());
    }

    #[test]
    fn key_types_read_from_the_blob() {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(key_type(&[0, 0, 0, 40, b'x']), None);
        assert_eq!(key_type(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(key_type(&[]), None);
    }
}
