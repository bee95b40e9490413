//! Two small HTTP servers for the redirect tests: one that answers every request with a redirect
//! to another origin (after asking for credentials first, if told to), and one at that other
//! origin that asks every request for credentials and counts the `Authorization` headers it is
//! sent. The second is what an attacker who controls a redirect target runs; the count is what
//! the tests assert on.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request's line and headers (names lower-cased).
struct Head {
    target: String,
    headers: Vec<(String, String)>,
}

fn read_head(stream: &TcpStream) -> Option<Head> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some(Head { target, headers })
}

fn serve(listener: TcpListener, handle: impl Fn(&Head) -> String + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(head) = read_head(&stream) {
                let _ = stream.write_all(handle(&head).as_bytes());
            }
        }
    });
}

/// Asks every request for basic credentials and keeps every `Authorization` header it receives.
pub struct CredentialSink {
    pub origin: String,
    received: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
}

impl CredentialSink {
    /// Listen on `ip` (e.g. 127.0.0.2: another host as far as any client can tell).
    pub fn start(ip: &str) -> CredentialSink {
        let listener = TcpListener::bind((ip, 0)).expect("bind the credential sink");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (sink, count) = (received.clone(), requests.clone());
        serve(listener, move |head| {
            count.fetch_add(1, Ordering::SeqCst);
            for (name, value) in &head.headers {
                if name == "authorization" {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(value.clone());
                }
            }
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"elsewhere\"\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string()
        });
        CredentialSink {
            origin,
            received,
            requests,
        }
    }

    /// Every `Authorization` header value received.
    pub fn authorizations(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answers every request with `302 Found` to the same path and query at `to`; with `challenge`,
/// first answers `401` to any request without an `Authorization` header, as a server that
/// authenticates before it redirects does.
pub struct Redirector {
    pub origin: String,
}

impl Redirector {
    pub fn start(to: &str, challenge: bool) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the redirector");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let to = to.to_string();
        serve(listener, move |head| {
            let authorized = head.headers.iter().any(|(k, _)| k == "authorization");
            if challenge && !authorized {
                return "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                        Content-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string();
            }
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}{}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                head.target
            )
        });
        Redirector { origin }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("{}/{repo}", self.origin)
    }
}
