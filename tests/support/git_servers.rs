//! git daemon and git http-backend, served on 127.0.0.1 by the test itself.
//!
//! Each listener is bound (port 0) before the constructor returns, so a client can connect at
//! once: no port races, no readiness polling. Every connection is handed to the real git program
//! (`git daemon --inetd`, or `git http-backend` as CGI), exactly as inetd or a web server would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Accepts connections in a thread until dropped; a self-connection wakes it to stop.
struct Acceptor {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    children: Arc<Mutex<Vec<Child>>>,
}

impl Acceptor {
    fn start(handle: impl Fn(TcpStream, &Mutex<Vec<Child>>) + Send + Sync + 'static) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let handle = Arc::new(handle);
        let thread = {
            let stop = stop.clone();
            let children = children.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let handle = handle.clone();
                    let children = children.clone();
                    std::thread::spawn(move || handle(stream, &children));
                }
            })
        };
        Acceptor {
            port,
            stop,
            thread: Some(thread),
            children,
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for child in self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn git_env(cmd: &mut Command) {
    super::isolate(cmd);
}

/// `git daemon` serving every repository under a base directory, receive-pack enabled.
pub struct GitDaemon {
    acceptor: Acceptor,
    connections: Arc<AtomicUsize>,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        std::fs::create_dir_all(base).expect("base dir");
        let base = base.to_path_buf();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let acceptor = Acceptor::start(move |stream, children| {
            counter.fetch_add(1, Ordering::SeqCst);
            let input: OwnedFd = stream.try_clone().expect("clone socket").into();
            let output: OwnedFd = stream.into();
            let mut cmd = Command::new("git");
            git_env(&mut cmd);
            cmd.arg("daemon")
                .arg("--inetd")
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .arg("--informative-errors")
                .arg(format!("--base-path={}", base.display()))
                .arg(&base)
                .stdin(Stdio::from(input))
                .stdout(Stdio::from(output))
                .stderr(Stdio::null());
            if let Ok(child) = cmd.spawn() {
                children
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(child);
            }
        });
        GitDaemon {
            acceptor,
            connections,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.acceptor.port)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Either server, for tests that run once per network transport: "git" is git daemon, anything
/// else git http-backend.
pub enum GitServer {
    Daemon(GitDaemon),
    Http(HttpGit),
}

impl GitServer {
    pub fn start(kind: &str, root: &Path) -> GitServer {
        match kind {
            "git" => GitServer::Daemon(GitDaemon::start(root)),
            _ => GitServer::Http(HttpGit::start(root)),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        match self {
            GitServer::Daemon(d) => d.url(repo),
            GitServer::Http(h) => h.url(repo),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            GitServer::Daemon(d) => d.acceptor.port,
            GitServer::Http(h) => h.acceptor.port,
        }
    }
}

/// One HTTP request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
}

impl Request {
    pub fn service(&self) -> Option<&str> {
        for service in ["git-upload-pack", "git-receive-pack"] {
            if self.path.ends_with(service) || self.query.contains(&format!("service={service}")) {
                return Some(service);
            }
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Slow responses down to about this many bytes per second (a slow transport).
    pub throttle_bytes_per_sec: Option<u64>,
    /// Require HTTP basic auth with this user and password; anything else gets 401.
    pub basic_auth: Option<(String, String)>,
}

/// Smart HTTP: `git http-backend` as CGI behind a minimal HTTP/1.1 server.
pub struct HttpGit {
    acceptor: Acceptor,
    log: Arc<Mutex<Vec<Request>>>,
}

impl HttpGit {
    pub fn start(root: &Path) -> HttpGit {
        Self::start_with(root, HttpOptions::default())
    }

    pub fn start_with(root: &Path, options: HttpOptions) -> HttpGit {
        std::fs::create_dir_all(root).expect("root dir");
        let root = root.to_path_buf();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let acceptor = Acceptor::start(move |stream, _| {
            serve(stream, &root, &options, &|request| {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(request)
            });
        });
        HttpGit { acceptor, log }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.acceptor.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests that reached `service` (`git-upload-pack` or `git-receive-pack`), advertisement
    /// included.
    pub fn count_service(&self, service: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.service() == Some(service))
            .count()
    }
}

/// Serve one request on `stream` (we answer `Connection: close`, which git and libgit2 accept).
/// The request is recorded before it is answered: a client may exit as soon as it has the
/// answer, and a test counting requests then must already see it.
fn serve(
    stream: TcpStream,
    root: &Path,
    options: &HttpOptions,
    record: &dyn Fn(Request),
) -> Option<()> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        body
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    record(Request {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    if let Some((user, password)) = &options.basic_auth {
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        if header("authorization").as_deref() != Some(expected.as_str()) {
            let mut writer = stream;
            let _ = writer.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return Some(());
        }
    }
    let mut cmd = Command::new("git");
    git_env(&mut cmd);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", "tester")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(v) = header("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    let mut child = cmd.spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = BufReader::new(child.stdout.take()?);
    let mut status = 200u16;
    let mut response_headers = Vec::new();
    loop {
        let mut h = String::new();
        if out.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Status:") {
            status = v.trim().split(' ').next()?.parse().ok()?;
        } else {
            response_headers.push(h);
        }
    }
    // libgit2 needs a Content-Length (or chunking) on responses, so the CGI output is buffered.
    let mut response = Vec::new();
    out.read_to_end(&mut response).ok()?;
    let mut writer = stream;
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for h in &response_headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.len()
    ));
    writer.write_all(head.as_bytes()).ok()?;
    let started = std::time::Instant::now();
    let mut sent = 0;
    for chunk in response.chunks(16 * 1024) {
        if writer.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if let Some(rate) = options.throttle_bytes_per_sec {
            // Pace the response: wait until the elapsed time matches the bytes sent so far.
            let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = writer.flush();
    let _ = feeder.join();
    let _ = child.wait();
    Some(())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            let mut trailer = String::new();
            while reader.read_line(&mut trailer).ok()? > 2 {
                trailer.clear();
            }
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
