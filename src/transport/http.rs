//! HTTP(S) for smart Git: hyper's client on the process's runtime, behind a blocking interface.
//!
//! The rest of the tool is a straight line of blocking steps; this module is where it meets an
//! async HTTP library. Requests reuse connections (hyper-util's pool); a push body streams as it
//! is made (chunked), from the caller's thread, through a bounded channel. Proxies are read from
//! the environment as git and curl read them (`http_proxy`, `HTTPS_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, either case): plain HTTP goes to the proxy in absolute form, HTTPS through a
//! `CONNECT` tunnel. TLS trusts the system's roots (`SSL_CERT_FILE`, `SSL_CERT_DIR` honoured), and,
//! as OpenSSL under git does, a self-signed certificate that the trust store holds as it is.
//!
//! Every wait is bounded by the network timeout: connecting, each piece of a body sent or read,
//! and the answer's head (which a server trickling bytes cannot stretch: its whole head must come
//! within the timeout).

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::{Buf, Bytes};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::base::net_error::NetError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP client of a process: one connection pool, one proxy matcher, one TLS setup.
pub(crate) struct Http {
    client: Client<Connector, Body>,
    proxies: Arc<Matcher>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

/// The process's client for `timeout` (the network timeout, one per process).
pub(crate) fn shared(timeout: Duration) -> Result<&'static Http> {
    static HTTP: OnceLock<Http> = OnceLock::new();
    if let Some(http) = HTTP.get() {
        return Ok(http);
    }
    let http = Http::new(timeout)?;
    Ok(HTTP.get_or_init(|| http))
}

impl Http {
    fn new(timeout: Duration) -> Result<Http> {
        let runtime = crate::base::runtime::get()?.handle().clone();
        let proxies = Arc::new(Matcher::from_env());
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        let connector = Connector {
            tcp,
            tls: tls_config().map_err(|e| anyhow::anyhow!(e))?,
            proxies: proxies.clone(),
            timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Http {
            client,
            proxies,
            timeout,
            runtime,
        })
    }

    /// Send `request` (a body in one piece, or none) and wait for the answer's head.
    pub(crate) fn send(&self, request: Request, body: Option<Vec<u8>>) -> Result<Response> {
        let url = request.shown.clone();
        let http = self.build(request, Body::Full(body.map(Bytes::from)))?;
        let answer = self.runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.client.request(http)).await
        });
        self.answered(answer, &url)
    }

    /// Send `request` with a body that `produce` makes, piece by piece, through the function it
    /// is given, and wait for the answer's head. A body `produce` fails to finish is cut off
    /// (the server never sees it end), and its error returned.
    pub(crate) fn send_streaming<T>(
        &self,
        request: Request,
        produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<T>,
    ) -> Result<(T, Response)> {
        let url = request.shown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(4);
        let http = self.build(request, Body::Stream(rx))?;
        let client = self.client.clone();
        let mut answer = self.runtime.spawn(client.request(http));
        let timeout = self.timeout;
        let mut send = |piece: &[u8]| -> Result<()> {
            if piece.is_empty() {
                return Ok(());
            }
            let piece = Bytes::copy_from_slice(piece);
            let sent = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, tx.send(Ok(piece))).await });
            match sent {
                Ok(Ok(())) => Ok(()),
                // The request ended: the server answered early, or the connection broke. What
                // the answer says (below) tells which.
                Ok(Err(_)) => Err(anyhow::Error::new(NetError::Broken {
                    url: url.clone(),
                    detail: "the server stopped reading the request".to_string(),
                })),
                Err(_) => Err(anyhow::Error::new(NetError::Stalled {
                    url: url.clone(),
                    doing: "took none of the request",
                    timeout,
                    why: "the server stopped reading",
                })),
            }
        };
        let produced = produce(&mut send);
        let produced = match produced {
            Ok(value) => value,
            Err(err) => {
                // Cut the body off: an error frame makes hyper drop the connection, so the
                // server never reads a complete request.
                let _ = tx.try_send(Err("the request body could not be made".into()));
                drop(tx);
                // An answer the server already gave says more than the broken pipe does.
                let early = self.runtime.block_on(async {
                    tokio::time::timeout(Duration::from_millis(200), &mut answer).await
                });
                if let Ok(Ok(Ok(head))) = early {
                    let response = self.wrap(head, &url);
                    response.check_success()?;
                }
                answer.abort();
                return Err(err);
            }
        };
        drop(tx);
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, answer).await });
        let answer = match answer {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(join)) => {
                return Err(anyhow::anyhow!("the request to {url} was lost: {join}"));
            }
            Err(elapsed) => Err(elapsed),
        };
        Ok((produced, self.answered(answer, &url)?))
    }

    fn build(&self, request: Request, body: Body) -> Result<http::Request<Body>> {
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(request.uri.clone())
            .header(
                http::header::USER_AGENT,
                concat!("git/backlog-mirror-", env!("CARGO_PKG_VERSION")),
            )
            .header("Git-Protocol", "version=0")
            .header(http::header::PRAGMA, "no-cache");
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if request.uri.scheme() == Some(&http::uri::Scheme::HTTP)
            && let Some(auth) = self
                .proxies
                .intercept(&request.uri)
                .and_then(|p| p.basic_auth().cloned())
        {
            builder = builder.header(http::header::PROXY_AUTHORIZATION, auth);
        }
        builder
            .body(body)
            .with_context(|| format!("cannot make a request to {}", request.shown))
    }

    fn answered(
        &self,
        answer: Result<
            Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
            tokio::time::error::Elapsed,
        >,
        url: &str,
    ) -> Result<Response> {
        match answer {
            Err(_) => Err(anyhow::Error::new(NetError::Stalled {
                url: url.to_string(),
                doing: "sent no complete answer",
                timeout: self.timeout,
                why: "the server did not answer in time",
            })),
            Ok(Err(err)) => Err(anyhow::Error::new(request_error(&err, url))),
            Ok(Ok(head)) => Ok(self.wrap(head, url)),
        }
    }

    fn wrap(&self, head: http::Response<hyper::body::Incoming>, url: &str) -> Response {
        let (parts, body) = head.into_parts();
        Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: BodyReader {
                body,
                piece: Bytes::new(),
                done: false,
                timeout: self.timeout,
                url: url.to_string(),
                runtime: self.runtime.clone(),
            },
            url: url.to_string(),
        }
    }
}

/// One request: method, the URL without credentials, its headers. `shown` is the URL as
/// messages give it (redacted).
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) shown: String,
}

/// An answer: status, headers, and its body as a blocking reader.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BodyReader,
    url: String,
}

impl Response {
    /// Fail unless the answer is a 200: a redirect is not followed (credentials go only where
    /// they were given, and a push body cannot be sent twice), any other status says what it
    /// means and what the server said, escaped and cut short.
    pub(crate) fn check_success(self) -> Result<Response> {
        let url = self.url.clone();
        let status = self.status;
        if (300..400).contains(&status) {
            let to = self
                .headers
                .get(http::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(anyhow::Error::new(NetError::Redirected {
                text: format!(
                    "{url} redirected (HTTP {status}) to {}; the redirect is not followed: \
                     credentials go only where they were given, and a push body cannot be sent \
                     twice. If that is where the repository now lives, use that URL",
                    crate::base::text::clip(&crate::base::secret::redact_userinfo(&to), 200)
                ),
            }));
        }
        if status != 200 {
            let why = match status {
                401 | 403 => ": it refused the credentials (authentication failed)",
                404 => ": repository not found",
                407 => ": the proxy wants credentials (put them in the proxy URL)",
                _ => "",
            };
            let mut said = Vec::new();
            let mut body = self.body;
            let _ = (&mut body).take(400).read_to_end(&mut said);
            let said = crate::base::text::clip(&String::from_utf8_lossy(&said), 200);
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(" ({said})")
            };
            return Err(anyhow::Error::new(NetError::HttpStatus {
                status,
                text: format!("{url} answered HTTP {status}{why}{said}"),
            }));
        }
        Ok(self)
    }

    /// Fail unless the content type is `expected` (parameters aside).
    pub(crate) fn check_type(&self, expected: &str, what: &str) -> Result<()> {
        let kind = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let bare = kind.split(';').next().unwrap_or("").trim();
        if !bare.eq_ignore_ascii_case(expected) {
            return Err(anyhow::Error::new(NetError::Protocol(format!(
                "{} answered with content type '{}', not {expected}: not a smart Git HTTP \
                 server {what}",
                self.url,
                crate::base::text::clip(&kind, 100)
            ))));
        }
        Ok(())
    }
}

/// A response body read as it arrives; a wait for its next piece longer than the timeout is a
/// stall.
pub(crate) struct BodyReader {
    body: hyper::body::Incoming,
    piece: Bytes,
    done: bool,
    timeout: Duration,
    url: String,
    runtime: tokio::runtime::Handle,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout(self.timeout, self.body.frame()).await });
            match next {
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        NetError::Stalled {
                            url: self.url.clone(),
                            doing: "sent nothing",
                            timeout: self.timeout,
                            why: "the server stopped answering",
                        },
                    ));
                }
                Ok(None) => self.done = true,
                Ok(Some(Err(err))) => {
                    return Err(std::io::Error::other(NetError::Broken {
                        url: self.url.clone(),
                        detail: chain_text(&err),
                    }));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.piece = data;
                    }
                }
            }
        }
        let n = out.len().min(self.piece.len());
        out[..n].copy_from_slice(&self.piece[..n]);
        self.piece.advance(n);
        Ok(n)
    }
}

/// A request body: whole, or streamed through a channel.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(piece) => Poll::Ready(piece.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(piece)) => SizeHint::with_exact(piece.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// Opens connections: straight, or through the proxy the environment names for the URL.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: Arc<rustls::ClientConfig>,
    proxies: Arc<Matcher>,
    timeout: Duration,
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            match tokio::time::timeout(timeout, this.connect(uri)).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection within the network timeout",
                )) as BoxError),
            }
        })
    }
}

impl Connector {
    async fn connect(mut self, uri: Uri) -> Result<Stream, BoxError> {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .ok_or("the URL names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let Some(proxy) = self.proxies.intercept(&uri) else {
            let tcp = self.tcp.call(uri).await?;
            return match https {
                true => self.tls(tcp.into_inner(), &host, false).await,
                false => Ok(Stream::Plain(tcp, false)),
            };
        };
        check_proxy(&proxy)?;
        if https {
            let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let tcp = tunnel.call(uri).await?;
            self.tls(tcp.into_inner(), &host, false).await
        } else {
            let tcp = self.tcp.call(proxy.uri().clone()).await?;
            Ok(Stream::Plain(tcp, true))
        }
    }

    async fn tls(&self, tcp: TcpStream, host: &str, proxied: bool) -> Result<Stream, BoxError> {
        let name = ServerName::try_from(host.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(Stream::Tls(Box::new(TokioIo::new(tls)), proxied))
    }
}

/// Only an `http://` proxy is spoken to (as most corporate proxies are); say so for another.
fn check_proxy(proxy: &Intercept) -> Result<(), BoxError> {
    match proxy.uri().scheme_str() {
        Some("http") => Ok(()),
        other => Err(format!(
            "the proxy {}://{} is not an http:// proxy, the only kind this tool speaks to; \
             set HTTPS_PROXY/HTTP_PROXY/ALL_PROXY to an http:// proxy, or leave this host to \
             NO_PROXY",
            other.unwrap_or("?"),
            proxy.uri().authority().map_or("?", |a| a.host())
        )
        .into()),
    }
}

/// A connection, plain or TLS; `bool` says it goes to a proxy (absolute-form requests).
enum Stream {
    Plain(TokioIo<TcpStream>, bool),
    Tls(
        Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>,
        bool,
    ),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(_, proxied) | Stream::Tls(_, proxied) => Connected::new().proxy(*proxied),
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A failed request in the kind the retry policy branches on.
fn request_error(err: &hyper_util::client::legacy::Error, url: &str) -> NetError {
    let detail = chain_text(err);
    // Each cause, and the error an I/O error carries inside (tokio-rustls wraps TLS failures so).
    let causes = || {
        std::iter::successors(Some(err as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .flat_map(|e| {
            let inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            std::iter::once(e).chain(inner)
        })
    };
    let io_kind = causes().find_map(|e| e.downcast_ref::<std::io::Error>().map(|io| io.kind()));
    let tls = causes().any(|e| e.downcast_ref::<rustls::Error>().is_some());
    let unreadable = causes().any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse() || h.is_parse_status())
    });
    if unreadable {
        return NetError::Protocol(format!(
            "{url} answered something this tool cannot read as HTTP/1.1 ({detail}): check the \
             URL and what serves it"
        ));
    }
    if tls {
        return NetError::Tls {
            url: url.to_string(),
            detail,
        };
    }
    if err.is_connect() {
        if detail.contains("dns error") {
            return NetError::Resolve {
                url: url.to_string(),
                temporary: detail.contains("Temporary failure"),
                detail,
            };
        }
        if matches!(io_kind, Some(std::io::ErrorKind::TimedOut)) {
            return NetError::Stalled {
                url: url.to_string(),
                doing: "accepted no connection",
                timeout: Duration::ZERO,
                why: "nothing answered",
            };
        }
        return NetError::Connect {
            url: url.to_string(),
            detail,
        };
    }
    NetError::Broken {
        url: url.to_string(),
        detail,
    }
}

/// An error and its causes on one line, each once.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    crate::base::text::clip(&parts.join(": "), 300)
}

/// The TLS settings: the system's roots, loaded once (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// honoured), HTTP/1.1.
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs.iter().cloned());
            if added == 0 {
                return Err(format!(
                    "no trusted TLS root certificates found (set SSL_CERT_FILE){}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            let verifier = Arc::new(TrustedAsIs {
                webpki,
                trusted: found.certs,
            });
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

/// The web PKI's verification, and one case more that OpenSSL (so git) accepts: a server whose
/// certificate is, byte for byte, one the trust store holds (a self-signed certificate made
/// with `openssl req -x509`, which marks itself a CA), for the host name asked for.
#[derive(Debug)]
struct TrustedAsIs {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    trusted: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for TrustedAsIs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match verdict {
            Err(rustls::Error::InvalidCertificate(_))
                if self
                    .trusted
                    .iter()
                    .any(|t| t.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    const EXPECTED: &str = "application/x-git-receive-pack-result";

    /// Serve `answer` once on a loopback socket, `pace` between its bytes, and ask for it.
    fn answered_paced(answer: Vec<u8>, pace: Duration, timeout: Duration) -> Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let mut stream = stream;
            if pace.is_zero() {
                let _ = stream.write_all(&answer);
            } else {
                for byte in answer {
                    if stream.write_all(&[byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(pace);
                }
            }
        });
        let http = Http::new(timeout).unwrap();
        let request = Request {
            method: Method::GET,
            uri: format!("http://127.0.0.1:{port}/x.git/info/refs")
                .parse()
                .unwrap(),
            headers: Vec::new(),
            shown: format!("http://127.0.0.1:{port}/x.git"),
        };
        let result = http.send(request, None).and_then(|answer| {
            let answer = answer.check_success()?;
            answer.check_type(EXPECTED, "for pushing")?;
            let mut out = Vec::new();
            let mut body = answer.body;
            body.read_to_end(&mut out)?;
            Ok(out)
        });
        drop(http);
        let _ = server.join();
        result
    }

    fn answered(answer: &[u8]) -> Result<Vec<u8>> {
        answered_paced(answer.to_vec(), Duration::ZERO, Duration::from_secs(10))
    }

    #[test]
    fn reads_a_chunked_answer_after_an_interim_one_and_a_status_without_reason() {
        let body = answered(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\
              Content-Type: application/x-git-receive-pack-result; charset=binary\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        // git accepts a status line with no reason phrase; so does this client.
        let body = answered(
            b"HTTP/1.1 200\r\nContent-Type: application/x-git-receive-pack-result\r\n\
              Content-Length: 2\r\n\r\nok",
        )
        .unwrap();
        assert_eq!(body, b"ok");
    }

    #[test]
    fn an_answer_that_never_ends_its_headers_is_refused() {
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=1000 {
            many.push_str(&format!("X-Flood-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        let err = answered(many.as_bytes()).unwrap_err();
        assert!(!crate::transport::retry::is_transient(&err), "{err:#}");
        assert!(
            format!("{err:#}").contains("cannot read as HTTP"),
            "{err:#}"
        );
    }

    #[test]
    fn a_head_trickled_a_byte_at_a_time_ends_at_the_timeout() {
        // One byte every 50 ms keeps every single read under the timeout; the whole head
        // cannot take longer than it.
        let mut slow = b"HTTP/1.1 200 OK\r\n".to_vec();
        slow.extend_from_slice("X-Slow: a\r\n".repeat(40).as_bytes());
        slow.extend_from_slice(b"\r\n");
        let started = std::time::Instant::now();
        let err = answered_paced(slow, Duration::from_millis(50), Duration::from_millis(600))
            .unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}: {err:#}");
        assert!(format!("{err:#}").contains("--network-timeout"), "{err:#}");
        assert!(crate::transport::retry::is_transient(&err), "{err:#}");
    }

    #[test]
    fn a_redirect_is_refused_and_its_userinfo_not_shown() {
        let err = answered(
            b"HTTP/1.1 302 Found\r\nLocation: http://bob:canary-7f3a9c1e5b@127.0.0.2/x.git\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("redirected") && err.contains("127.0.0.2"),
            "{err}"
        );
        assert!(!err.contains("canary-7f3a9c1e5b"), "{err}");
    }

    #[test]
    fn an_answer_that_is_not_git_is_named_and_a_5xx_is_worth_a_retry() {
        let err =
            answered(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("text/html") && err.contains("not a smart Git HTTP"),
            "{err}"
        );
        let err =
            answered(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad").unwrap_err();
        assert!(crate::transport::retry::is_transient(&err), "{err:#}");
        let err = answered(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert!(!crate::transport::retry::is_transient(&err), "{err:#}");
    }

    /// A self-signed certificate for `name`, as `openssl req -x509` makes one (it marks itself
    /// a CA, which the web PKI refuses as a server's certificate).
    fn self_signed(name: &str) -> CertificateDer<'static> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={name}")])
            .args(["-addext", &format!("subjectAltName=DNS:{name}")])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
        let der = pem_body(&pem);
        CertificateDer::from(der)
    }

    fn pem_body(pem: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let text = String::from_utf8_lossy(pem);
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[test]
    fn a_self_signed_certificate_in_the_trust_store_is_trusted_for_its_own_name_only() {
        let ours = self_signed("git.example.test");
        let other = self_signed("git.example.test");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ours.clone()).unwrap();
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        // What the web PKI alone says: a CA is no server's certificate.
        let name = ServerName::try_from("git.example.test").unwrap();
        let now = UnixTime::now();
        assert!(
            webpki
                .verify_server_cert(&ours, &[], &name, &[], now)
                .is_err()
        );
        let verifier = TrustedAsIs {
            webpki,
            trusted: vec![ours.clone()],
        };
        assert!(
            verifier
                .verify_server_cert(&ours, &[], &name, &[], now)
                .is_ok()
        );
        // Not for another name, and not another certificate of the same name.
        let elsewhere = ServerName::try_from("other.example.test").unwrap();
        assert!(
            verifier
                .verify_server_cert(&ours, &[], &elsewhere, &[], now)
                .is_err()
        );
        assert!(
            verifier
                .verify_server_cert(&other, &[], &name, &[], now)
                .is_err()
        );
    }

    #[test]
    fn what_a_server_says_is_shown_escaped_on_one_line() {
        let err = answered(
            b"HTTP/1.1 500 Oops\r\nContent-Length: 60\r\n\r\n\x1b[31mred\x1b]0;title\x07\nbacklog-mirror: in sync\0\0\0\0\0\0",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.chars().any(|c| c.is_control()), "{err:?}");
        assert!(err.contains("HTTP 500"), "{err}");
    }
}
