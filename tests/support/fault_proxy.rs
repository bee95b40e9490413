//! A TCP proxy on 127.0.0.1 that breaks connections on purpose: the network faults a mirror meets
//! in production (a peer that stops reading, a connection reset half-way, a refusal, a 5xx from an
//! HTTPS front end), reproduced between the binary and a real server started by the test.
//!
//! The proxy forwards bytes unchanged until its fault fires. A fault applies to connections one
//! after another until it has fired as often as asked; a connection that closes before reaching
//! the fault's byte count does not use it up, so "cut the first connection that sends 200 KB"
//! skips the small listing connections and hits the push. Everything is blocking sockets and
//! threads: the test synchronises on the binary's exit, never on time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (our binary or git) to the server.
    Upstream,
    /// From the server to the client.
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward nothing in the way: a clean proxy.
    None,
    /// Reset the connection once `after` bytes have passed in `dir`.
    Cut { dir: Direction, after: usize },
    /// Once `after` bytes have passed in `dir`, stop reading in that direction and keep the
    /// connection open: a peer that stopped reading (or writing) without closing.
    Stall { dir: Direction, after: usize },
    /// Once `after` bytes have passed in `dir`, flip the low bit of the next byte and forward
    /// the rest unchanged: bytes damaged on the way, which TCP's checksum let through.
    Flip { dir: Direction, after: usize },
    /// Reset every connection as soon as it is accepted.
    Refuse,
    /// Answer the first HTTP request with this status and close.
    HttpStatus(u16),
    /// Answer with `status` an HTTP request whose request line contains `request` (e.g.
    /// `"POST /target.git/git-receive-pack"`); forward other requests unchanged.
    HttpStatusOn { status: u16, request: &'static str },
}

struct Shared {
    stop: AtomicBool,
    /// Signalled on drop, to release stalled pumps.
    stopped: (Mutex<bool>, Condvar),
    fault: Fault,
    /// How many more times the fault may fire (`usize::MAX`: always).
    budget: AtomicUsize,
    fired: AtomicUsize,
    /// Signalled each time the fault fires.
    fired_signal: (Mutex<()>, Condvar),
    connections: AtomicUsize,
    /// Every socket the proxy holds, so drop can wake blocked reads.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    /// Whether the fault may still fire (does not use it up).
    fn armed(&self) -> bool {
        self.fault != Fault::None && self.budget.load(Ordering::SeqCst) > 0
    }

    /// Use one firing of the fault; false when none is left (another connection took it).
    fn fire(&self) -> bool {
        let took = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b > 0).then(|| if b == usize::MAX { b } else { b - 1 })
            })
            .is_ok();
        if took {
            let (lock, cvar) = &self.fired_signal;
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            self.fired.fetch_add(1, Ordering::SeqCst);
            cvar.notify_all();
        }
        took
    }

    fn wait_for_stop(&self) {
        let (lock, cvar) = &self.stopped;
        let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            stopped = cvar.wait(stopped).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The proxy: listens on 127.0.0.1 and forwards to `127.0.0.1:<upstream port>`.
pub struct FaultProxy {
    port: u16,
    upstream: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy whose fault fires on every connection that reaches it.
    pub fn start(upstream: u16, fault: Fault) -> FaultProxy {
        Self::start_times(upstream, fault, usize::MAX)
    }

    /// A proxy whose fault fires `times` times, then forwards cleanly.
    pub fn start_times(upstream: u16, fault: Fault, times: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stopped: (Mutex::new(false), Condvar::new()),
            fault,
            budget: AtomicUsize::new(times),
            fired: AtomicUsize::new(0),
            fired_signal: (Mutex::new(()), Condvar::new()),
            connections: AtomicUsize::new(0),
            sockets: Mutex::new(Vec::new()),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    std::thread::spawn(move || handle(client, upstream, &shared));
                }
            })
        };
        FaultProxy {
            port,
            upstream,
            shared,
            thread: Some(thread),
        }
    }

    /// `url` (which names the upstream server's port) pointed at the proxy instead.
    pub fn rewrite(&self, url: &str) -> String {
        let from = format!("127.0.0.1:{}", self.upstream);
        assert!(
            url.contains(&from),
            "{url} does not name port {}",
            self.upstream
        );
        url.replace(&from, &format!("127.0.0.1:{}", self.port))
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Block until the fault has fired at least once (a stall: the transfer is now stuck in
    /// its middle, for as long as the test wants).
    pub fn wait_fired(&self) {
        let (lock, cvar) = &self.shared.fired_signal;
        let mut held = lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.fired() == 0 {
            held = cvar.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let (lock, cvar) = &self.shared.stopped;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cvar.notify_all();
        }
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Close `socket` with a TCP reset rather than a FIN (SO_LINGER with a zero timeout).
fn reset(socket: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a pointer to a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn handle(client: TcpStream, upstream: u16, shared: &Arc<Shared>) {
    match shared.fault {
        Fault::Refuse if shared.fire() => {
            reset(&client);
            return;
        }
        Fault::HttpStatus(status) if shared.fire() => {
            let _ = read_head(&client);
            answer_http(client, status);
            return;
        }
        _ => {}
    }
    // For a fault on one kind of request, read the request head first to see which it is.
    let mut head = Vec::new();
    if let Fault::HttpStatusOn { status, request } = shared.fault
        && shared.armed()
    {
        let Some(read) = read_head(&client) else {
            return;
        };
        let line =
            String::from_utf8_lossy(read.split(|&b| b == b'\n').next().unwrap_or(&[])).into_owned();
        if line.contains(request) && shared.fire() {
            answer_http(client, status);
            return;
        }
        head = read;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        reset(&client);
        return;
    };
    if !head.is_empty() && server.write_all(&head).is_err() {
        return;
    }
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    {
        let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for socket in [&client, &server] {
            if let Ok(clone) = socket.try_clone() {
                sockets.push(clone);
            }
        }
    }
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = {
        let shared = shared.clone();
        std::thread::spawn(move || pump(client2, server2, Direction::Upstream, &shared))
    };
    pump(server, client, Direction::Downstream, shared);
    let _ = up.join();
}

/// Copy `from` to `to` until either side closes, applying the fault to this direction.
fn pump(mut from: TcpStream, mut to: TcpStream, dir: Direction, shared: &Shared) {
    let limit = match shared.fault {
        Fault::Cut { dir: d, after }
        | Fault::Stall { dir: d, after }
        | Fault::Flip { dir: d, after }
            if d == dir && shared.armed() =>
        {
            Some(after)
        }
        _ => None,
    };
    let mut passed = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let room = limit.map_or(buf.len(), |l| (l - passed).min(buf.len()));
        if room == 0 {
            if shared.fire() {
                match shared.fault {
                    Fault::Stall { .. } => {
                        shared.wait_for_stop();
                        break;
                    }
                    Fault::Flip { .. } => {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        buf[0] ^= 1;
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        return pump_clean(from, to, &mut buf);
                    }
                    _ => {
                        reset(&from);
                        reset(&to);
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            // Another connection used the last firing: this one forwards cleanly.
            return pump_clean(from, to, &mut buf);
        }
        match from.read(&mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                passed += n;
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_clean(mut from: TcpStream, mut to: TcpStream, buf: &mut [u8]) {
    loop {
        match from.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Read an HTTP request head, byte by byte so nothing after it is consumed.
fn read_head(mut client: &TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Answer a request whose head was read with `status`, as a failing front end would.
fn answer_http(mut client: TcpStream, status: u16) {
    let body = format!("injected {status}\n");
    let _ = write!(
        client,
        "HTTP/1.1 {status} Injected\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Write);
    // Drain what the client still sends (a request body), so closing does not reset the answer.
    let _ = std::io::copy(&mut client, &mut std::io::sink());
}
