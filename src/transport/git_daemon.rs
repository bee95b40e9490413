//! git:// (`git daemon`): a TCP connection per conversation, opened with the service and the
//! repository's path, then the advertisement, then the request on the same connection.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result};

use super::connection::{Opener, Service, peer};
use super::remote::Remote;
use crate::base::net_error::NetError;
use crate::protocol::advertisement::{Advertisement, read_service_advertisement};
use crate::protocol::pktline::{PktReader, pkt};

/// One remote's services over git://.
pub(crate) struct GitDaemon<'a> {
    remote: &'a Remote,
    host: String,
    port: u16,
    /// The repository's path, decoded.
    path: String,
    timeout: Duration,
    url: String,
}

impl<'a> GitDaemon<'a> {
    pub(crate) fn new(remote: &'a Remote, timeout: Duration) -> Result<Self> {
        let url = ::url::Url::parse(remote.url.as_git_url())
            .with_context(|| format!("cannot read {} as a URL", remote.url.redacted()))?;
        let host = url
            .host_str()
            .with_context(|| format!("{} names no host", remote.url.redacted()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = percent_encoding::percent_decode_str(url.path())
            .decode_utf8()
            .with_context(|| format!("{} has a path that is not UTF-8", remote.url))?
            .into_owned();
        Ok(GitDaemon {
            remote,
            host,
            port: url.port().unwrap_or(9418),
            path,
            timeout,
            url: remote.url.redacted().to_string(),
        })
    }

    /// `host[:port]` as git://'s `host=` gives it.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            9418 => host,
            port => format!("{host}:{port}"),
        }
    }

    fn connect(&self) -> Result<Conn> {
        let url = &self.url;
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| NetError::Resolve {
                url: url.to_string(),
                temporary: e.to_string().contains("Temporary failure"),
                detail: e.to_string(),
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(tcp) = tcp else {
            return Err(NetError::Connect {
                url: url.to_string(),
                detail: last.map_or("the host has no address".to_string(), |e| e.to_string()),
            }
            .into());
        };
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        Ok(Conn {
            tcp,
            url: url.to_string(),
            timeout: self.timeout,
        })
    }

    /// A new connection to `service`, its advertisement read.
    fn open_stream(&self, service: Service) -> Result<(Conn, Advertisement)> {
        let url = &self.url;
        let mut conn = self.connect()?;
        let mut hello = Vec::new();
        let request = format!(
            "{} {}\0host={}\0",
            service.name(),
            self.path,
            self.host_header()
        );
        pkt(&mut hello, request.as_bytes())
            .with_context(|| format!("the path of {url} is too long for git://"))?;
        conn.write_all(&hello)
            .map_err(|e| conn.failed(e, "took nothing"))?;
        let ad = {
            // Buffered, as every advertisement is (see `read_service_advertisement`).
            let mut reader = PktReader::from_peer(BufReader::new(&mut conn), peer(self.remote));
            read_service_advertisement(&mut reader, service.name(), false, self.timeout)
                .with_context(|| format!("cannot read the refs of {url}"))?
        };
        Ok((conn, ad))
    }
}

impl Opener for GitDaemon<'_> {
    type Stream = Conn;

    fn open(&self, service: Service) -> Result<(Conn, Advertisement)> {
        self.open_stream(service)
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn sent(&self, conn: &mut Conn, service: Service) {
        if service == Service::ReceivePack {
            // receive-pack reads the pack to its end; the half-close tells a proxy we are done.
            let _ = conn.tcp.shutdown(Shutdown::Write);
        }
    }
}

/// A git:// connection. A read or write that waits past the timeout fails as a stall
/// (`NetError::Stalled`), not as the socket's "resource temporarily unavailable".
pub(crate) struct Conn {
    tcp: TcpStream,
    url: String,
    timeout: Duration,
}

impl Conn {
    fn stalled(&self, err: std::io::Error) -> std::io::Error {
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                NetError::io(&err, &self.url, self.timeout),
            ),
            _ => err,
        }
    }

    /// A write that failed, in the kind the retry policy reads: `doing` says what the remote
    /// did not do when it stalled.
    fn failed(&self, err: std::io::Error, doing: &'static str) -> anyhow::Error {
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow::Error::new(NetError::Stalled {
                    url: self.url.clone(),
                    doing,
                    timeout: self.timeout,
                    why: "it stopped reading or answering",
                })
            }
            _ => anyhow::Error::new(NetError::io(&err, &self.url, self.timeout)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf).map_err(|e| self.stalled(e))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf).map_err(|e| self.stalled(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}
