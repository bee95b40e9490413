//! The TCP socket under every libgit2 connection (git://, http://, https://, and SSH through
//! `transport::ssh` or libgit2's own transport), with TCP_NODELAY set.
//!
//! libssh2 sends each SSH packet with its own `send()`, and libgit2's socket leaves Nagle's
//! algorithm on, so a packet sent while the previous one is unacknowledged waits for the server's
//! delayed ACK: about 40 ms, several times per connection (key exchange, service request, channel
//! open). OpenSSH's client avoids this by writing whole batches at once; we cannot change
//! libssh2, so we give libgit2 a socket that sends at once.
//!
//! libgit2 lets a program register its own "standard" stream (`git_stream_register`, a public
//! API). Its SSH transport, however, reaches into the stream for the file descriptor, assuming
//! libgit2's own socket stream layout (`git_socket_stream`, a private struct); `SocketStream`
//! keeps that layout. Cargo.toml pins libgit2-sys exactly, so an upgrade is a deliberate change,
//! and a test reads a stream libgit2 itself made through `SocketStream`, so it fails if the
//! layout moved. Should it ever fail in the field, `BACKLOG_MIRROR_LIBGIT2_SOCKET=1` makes
//! libgit2 connect with its own socket (no TCP_NODELAY, and no cutting of a dead connection: its
//! teardown then waits out the network timeout). Linux only: the socket options, the layout and
//! the tests are Linux's; elsewhere libgit2 keeps its own socket.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{ErrorKind, Read, Write};
use std::mem::ManuallyDrop;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use libgit2_sys as raw;

/// `GIT_STREAM_VERSION` and `GIT_STREAM_STANDARD` of `git2/sys/stream.h`.
const STREAM_VERSION: c_int = 1;
const STREAM_STANDARD: c_int = 1;

/// `git_stream` of `git2/sys/stream.h`.
#[repr(C)]
struct GitStream {
    version: c_int,
    /// The `encrypted` and `proxy_support` bit-fields (both 0 here).
    flags: c_uint,
    timeout: c_int,
    connect_timeout: c_int,
    connect: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    certificate: Option<unsafe extern "C" fn(*mut *mut c_void, *mut GitStream) -> c_int>,
    set_proxy: Option<unsafe extern "C" fn(*mut GitStream, *const c_void) -> c_int>,
    read: Option<unsafe extern "C" fn(*mut GitStream, *mut c_void, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut GitStream, *const c_char, usize, c_int) -> isize>,
    close: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    free: Option<unsafe extern "C" fn(*mut GitStream)>,
}

/// libgit2's `git_socket_stream` layout, which its SSH transport reads `s` from.
#[repr(C)]
struct SocketStream {
    parent: GitStream,
    host: *mut c_char,
    port: *mut c_char,
    s: c_int,
}

/// `git_stream_registration` of `git2/sys/stream.h`.
#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut GitStream, *const c_char, *const c_char) -> c_int>,
    wrap: Option<unsafe extern "C" fn(*mut *mut GitStream, *mut GitStream, *const c_char) -> c_int>,
}

unsafe extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
}

static CONNECT_TIMEOUT_MS: AtomicI32 = AtomicI32::new(0);
static IO_TIMEOUT_MS: AtomicI32 = AtomicI32::new(0);

/// Every connected socket and the thread that opened it. libgit2 calls are synchronous, so a
/// thread's sockets are those of the operation it runs.
static OPEN: Mutex<Vec<(RawFd, ThreadId)>> = Mutex::new(Vec::new());

fn open_sockets() -> std::sync::MutexGuard<'static, Vec<(RawFd, ThreadId)>> {
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shut down the sockets this thread opened, after a network operation on it failed: libgit2
/// then tears its connection down politely (closing an SSH channel waits for the server's
/// answer, once per step, each as long as the network timeout), which against a peer that has
/// stopped answering only multiplies the wait. A shut-down socket fails those steps at once.
pub(crate) fn cut_connections_of_this_thread() {
    let me = std::thread::current().id();
    for (fd, _) in open_sockets().iter().filter(|(_, t)| *t == me) {
        // SAFETY: the descriptor is open: `close` removes it from the list, under the same
        // lock, before closing it.
        unsafe {
            libc::shutdown(*fd, libc::SHUT_RDWR);
        }
    }
}

/// Count `fd` among this thread's connections until `untrack`, so that
/// `cut_connections_of_this_thread` cuts it too: a connection `transport::ssh` lends to the
/// operation running on this thread.
pub(crate) fn track(fd: RawFd) {
    open_sockets().push((fd, std::thread::current().id()));
}

/// Stop counting `fd` (see `track`); call before it is closed or lent to another thread.
pub(crate) fn untrack(fd: RawFd) {
    open_sockets().retain(|(open, _)| *open != fd);
}

/// Make every later libgit2 connection use this socket. Call once libgit2 is initialised.
pub(crate) fn register(connect_timeout_ms: i32, io_timeout_ms: i32) -> Result<(), git2::Error> {
    CONNECT_TIMEOUT_MS.store(connect_timeout_ms, Ordering::SeqCst);
    IO_TIMEOUT_MS.store(io_timeout_ms, Ordering::SeqCst);
    let mut registration = Registration {
        version: STREAM_VERSION,
        init: Some(init),
        wrap: None,
    };
    // SAFETY: libgit2 copies the registration; the functions it names live for the program.
    let code = unsafe { git_stream_register(STREAM_STANDARD, &mut registration) };
    if code < 0 {
        return Err(git2::Error::last_error(code));
    }
    Ok(())
}

fn set_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a valid C string for the duration of the call; libgit2 copies it.
    unsafe {
        raw::git_error_set_str(raw::GIT_ERROR_NET as c_int, text.as_ptr());
    }
}

/// Run `body`, turning a panic into libgit2's generic error: unwinding must not cross into C.
fn guarded<T>(failure: T, body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| {
        set_error("internal error in the socket stream");
        failure
    })
}

unsafe extern "C" fn init(
    out: *mut *mut GitStream,
    host: *const c_char,
    port: *const c_char,
) -> c_int {
    guarded(-1, || {
        if out.is_null() || host.is_null() || port.is_null() {
            set_error("socket stream: missing host or port");
            return -1;
        }
        // SAFETY: libgit2 passes NUL-terminated strings valid for this call.
        let (host, port) = unsafe { (CStr::from_ptr(host), CStr::from_ptr(port)) };
        let stream = Box::new(SocketStream {
            parent: GitStream {
                version: STREAM_VERSION,
                flags: 0,
                timeout: IO_TIMEOUT_MS.load(Ordering::SeqCst),
                connect_timeout: CONNECT_TIMEOUT_MS.load(Ordering::SeqCst),
                connect: Some(connect),
                certificate: None,
                set_proxy: None,
                read: Some(read),
                write: Some(write),
                close: Some(close),
                free: Some(free),
            },
            host: host.to_owned().into_raw(),
            port: port.to_owned().into_raw(),
            s: -1,
        });
        // SAFETY: `out` is non-null and libgit2 owns the stream from here, freeing it through
        // `free`. `parent` is the first field of a repr(C) struct, so the pointers coincide.
        unsafe { *out = Box::into_raw(stream).cast() };
        0
    })
}

/// # Safety
/// `stream` must be a stream made by `init`.
unsafe fn socket<'a>(stream: *mut GitStream) -> &'a mut SocketStream {
    // SAFETY: the caller's contract.
    unsafe { &mut *stream.cast::<SocketStream>() }
}

unsafe extern "C" fn connect(stream: *mut GitStream) -> c_int {
    guarded(-1, || {
        // SAFETY: libgit2 calls us with a stream `init` made.
        let st = unsafe { socket(stream) };
        // SAFETY: `init` stored valid C strings.
        let (host, port) = unsafe { (CStr::from_ptr(st.host), CStr::from_ptr(st.port)) };
        let host = host.to_string_lossy().into_owned();
        match open(
            &host,
            &port.to_string_lossy(),
            st.parent.connect_timeout,
            st.parent.timeout,
        ) {
            Ok(fd) => {
                st.s = fd;
                open_sockets().push((fd, std::thread::current().id()));
                0
            }
            Err((code, message)) => {
                set_error(&message);
                code
            }
        }
    })
}

fn millis(ms: c_int) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

fn open(host: &str, port: &str, connect_ms: c_int, io_ms: c_int) -> Result<RawFd, (c_int, String)> {
    let port: u16 = port.parse().map_err(|_| {
        (
            -1,
            format!("failed to connect to {host}: bad port '{port}'"),
        )
    })?;
    connect_to(host, port, connect_ms, io_ms).map(IntoRawFd::into_raw_fd)
}

/// A TCP connection to `host:port`, set up as every connection of this tool is (see
/// `configure`): for `transport::ssh`, which speaks SSH over it itself. The error is libgit2's
/// code for it (`GIT_TIMEOUT` for a connect timeout) and a message naming the host.
pub(crate) fn connect_to(
    host: &str,
    port: u16,
    connect_ms: c_int,
    io_ms: c_int,
) -> Result<TcpStream, (c_int, String)> {
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let addresses = (host_only, port)
        .to_socket_addrs()
        .map_err(|e| (-1, format!("failed to resolve address for {host}: {e}")))?;
    let mut last = None;
    for address in addresses {
        let attempt = match millis(connect_ms) {
            Some(limit) => TcpStream::connect_timeout(&address, limit),
            None => TcpStream::connect(address),
        };
        match attempt {
            Ok(tcp) => {
                configure(&tcp, io_ms)
                    .map_err(|e| (-1, format!("failed to set up the socket to {host}: {e}")))?;
                return Ok(tcp);
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Err((
                    raw::GIT_TIMEOUT as c_int,
                    format!("failed to connect to {host}: Operation timed out"),
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    Err((
        -1,
        match last {
            Some(e) => format!("failed to connect to {host}: {e}"),
            None => format!("failed to resolve address for {host}: no addresses"),
        },
    ))
}

/// No Nagle; keepalive probes after a minute idle (a server computing a large pack says nothing
/// for minutes, and NAT gateways drop silent flows); read and write timeouts. libgit2's own
/// socket, which this one replaces (it never runs beside it), sets the same keepalive for IPv4
/// only, with 3 probes; this one covers IPv6 too and gives a slow link 6.
fn configure(tcp: &TcpStream, io_ms: c_int) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(millis(io_ms))?;
    tcp.set_write_timeout(millis(io_ms))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(tcp);
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6),
    ] {
        let value: c_int = value;
        // SAFETY: a valid socket and a pointer to a c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const c_int).cast(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The connected socket of `stream`, borrowed: dropping it must not close the descriptor.
///
/// # Safety
/// `stream` must be a stream made by `init` and connected.
unsafe fn borrowed(stream: *mut GitStream) -> ManuallyDrop<TcpStream> {
    // SAFETY: the caller's contract; ManuallyDrop keeps the descriptor open.
    ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(socket(stream).s) })
}

fn io_error(what: &str, e: &std::io::Error) -> isize {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        set_error(&format!("could not {what} socket: timed out"));
        raw::GIT_TIMEOUT as isize
    } else {
        set_error(&format!("could not {what} socket: {e}"));
        -1
    }
}

unsafe extern "C" fn read(stream: *mut GitStream, data: *mut c_void, len: usize) -> isize {
    guarded(-1, || {
        // SAFETY: libgit2 reads only from a connected stream, into a buffer of `len` bytes.
        let (mut tcp, buf) = unsafe {
            (
                borrowed(stream),
                std::slice::from_raw_parts_mut(data.cast::<u8>(), len),
            )
        };
        loop {
            match tcp.read(buf) {
                Ok(n) => return n as isize,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return io_error("read from", &e),
            }
        }
    })
}

unsafe extern "C" fn write(
    stream: *mut GitStream,
    data: *const c_char,
    len: usize,
    _flags: c_int,
) -> isize {
    guarded(-1, || {
        // SAFETY: libgit2 writes only to a connected stream, from a buffer of `len` bytes.
        let (mut tcp, buf) = unsafe {
            (
                borrowed(stream),
                std::slice::from_raw_parts(data.cast::<u8>(), len),
            )
        };
        loop {
            match tcp.write(buf) {
                Ok(n) => return n as isize,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return io_error("write to", &e),
            }
        }
    })
}

unsafe extern "C" fn close(stream: *mut GitStream) -> c_int {
    guarded(-1, || {
        // SAFETY: libgit2 closes only streams `init` made.
        let st = unsafe { socket(stream) };
        if st.s >= 0 {
            let mut open = open_sockets();
            open.retain(|(fd, _)| *fd != st.s);
            // SAFETY: we own the descriptor since `connect`; it is closed once.
            drop(unsafe { TcpStream::from_raw_fd(st.s) });
            st.s = -1;
        }
        0
    })
}

unsafe extern "C" fn free(stream: *mut GitStream) {
    guarded((), || {
        // SAFETY: libgit2 frees each stream `init` made exactly once, after its last use.
        unsafe {
            close(stream);
            let st = Box::from_raw(stream.cast::<SocketStream>());
            drop(CString::from_raw(st.host));
            drop(CString::from_raw(st.port));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        /// libgit2's own constructor of the standard stream (internal, linked from the static
        /// library): its registered replacement when there is one, else its own socket.
        fn git_socket_stream_new(
            out: *mut *mut GitStream,
            host: *const c_char,
            port: *const c_char,
        ) -> c_int;
    }

    /// A stream libgit2 itself made and connected, read through `SocketStream`: every field
    /// must be where libgit2 put it. Fails if an upgrade moved a field of `git_stream` or
    /// `git_socket_stream`.
    #[test]
    fn libgit2s_own_socket_stream_reads_back_through_our_layout() {
        libgit2_sys::init();
        // Values to find in the stream's timeout fields (process-wide options; no other unit
        // test opens a connection).
        // SAFETY: libgit2 is initialised; setting options races with no other use here.
        unsafe {
            git2::opts::set_server_timeout_in_milliseconds(4321).unwrap();
            git2::opts::set_server_connect_timeout_in_milliseconds(1234).unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let (host, port) = (
            CString::new("127.0.0.1").unwrap(),
            CString::new(port).unwrap(),
        );
        let mut stream: *mut GitStream = std::ptr::null_mut();
        // SAFETY: valid C strings and an out pointer; libgit2 allocates the stream.
        assert_eq!(
            unsafe { git_socket_stream_new(&mut stream, host.as_ptr(), port.as_ptr()) },
            0
        );
        // SAFETY: libgit2 made `stream`; it is a `git_socket_stream` if its connect is not ours,
        // which the first assertion checks before anything else is read.
        let ours = unsafe { &*stream.cast::<SocketStream>() };
        let connect_fn = ours.parent.connect.expect("connect");
        assert!(
            !std::ptr::fn_addr_eq(
                connect_fn,
                connect as unsafe extern "C" fn(*mut GitStream) -> c_int
            ),
            "our stream is registered: this reads back our own layout"
        );
        assert_eq!(ours.parent.version, STREAM_VERSION);
        assert_eq!(ours.parent.flags, 0);
        assert_eq!(
            (ours.parent.timeout, ours.parent.connect_timeout),
            (4321, 1234)
        );
        assert!(ours.parent.certificate.is_none() && ours.parent.set_proxy.is_none());
        assert!(ours.parent.read.is_some() && ours.parent.write.is_some());
        assert!(ours.parent.close.is_some() && ours.parent.free.is_some());
        // SAFETY: libgit2 stored NUL-terminated copies of the host and port.
        let (got_host, got_port) =
            unsafe { (CStr::from_ptr(ours.host), CStr::from_ptr(ours.port)) };
        assert_eq!((got_host, got_port), (host.as_c_str(), port.as_c_str()));
        assert_eq!(ours.s, -1, "not connected yet");
        // SAFETY: libgit2's own connect on its own stream.
        assert_eq!(unsafe { connect_fn(stream) }, 0);
        let (accepted, peer) = listener.accept().unwrap();
        // The descriptor at `s` is the connection the listener accepted.
        // SAFETY: `s` is the connected socket; borrowed, never closed here.
        let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(ours.s) });
        assert_eq!(socket.local_addr().unwrap(), peer);
        drop(accepted);
        // SAFETY: libgit2's own close and free, once.
        unsafe {
            (ours.parent.close.unwrap())(stream);
            (ours.parent.free.unwrap())(stream);
        }
    }

    #[test]
    fn connects_with_nodelay_and_reports_refusals() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let fd = open("127.0.0.1", &port, 5000, 5000).unwrap();
        // SAFETY: `open` returned a connected socket we now own.
        let tcp = unsafe { TcpStream::from_raw_fd(fd) };
        assert!(tcp.nodelay().unwrap());
        assert_eq!(tcp.read_timeout().unwrap(), Some(Duration::from_secs(5)));
        drop(listener);
        let (code, message) = open("127.0.0.1", &port, 5000, 0).unwrap_err();
        assert_eq!(code, -1);
        assert!(
            message.contains("failed to connect to 127.0.0.1"),
            "{message}"
        );
        let (_, message) = open("127.0.0.1", "ssh", 5000, 0).unwrap_err();
        assert!(message.contains("bad port"), "{message}");
    }
}
