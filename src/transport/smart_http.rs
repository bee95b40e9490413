//! Git's smart HTTP protocol: the handshake is `GET info/refs?service=...`, each request a
//! `POST` to the service, over the process's HTTP client (`http`).
//!
//! Credentials go with the first request (CodeCommit's SigV4 password is made afresh for each,
//! a signature being good for minutes), never after a 401; a redirect is refused, credentials
//! being given for one origin and a push body not being sent twice.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use http::{HeaderValue, Method};

use super::connection::{Body, Connection, Service, peer};
use super::http::{Http, Request};
use super::remote::{Login, Remote};
use crate::base::secret::Secret;
use crate::base::transfer::TransferStats;
use crate::base::url::Scheme;
use crate::protocol::advertisement::{Advertisement, read_service_advertisement};
use crate::protocol::pktline::PktReader;

/// One remote's services over smart HTTP(S).
pub(crate) struct SmartHttp<'a> {
    remote: &'a Remote,
    login: &'a Login,
    /// `scheme://host[:port]/path`, without credentials and without a trailing `/`.
    base: String,
    timeout: Duration,
    url: String,
}

impl<'a> SmartHttp<'a> {
    pub(crate) fn new(remote: &'a Remote, login: &'a Login, timeout: Duration) -> Result<Self> {
        let url = ::url::Url::parse(remote.url.as_git_url())
            .with_context(|| format!("cannot read {} as a URL", remote.url.redacted()))?;
        let host = url
            .host_str()
            .with_context(|| format!("{} names no host", remote.url.redacted()))?;
        let scheme = if remote.url.scheme() == Scheme::Https {
            "https"
        } else {
            "http"
        };
        let port = match url.port() {
            Some(port) => format!(":{port}"),
            None => String::new(),
        };
        let base = format!(
            "{scheme}://{host}{port}{}",
            url.path().trim_end_matches('/')
        );
        Ok(SmartHttp {
            remote,
            login,
            base,
            timeout,
            url: remote.url.redacted().to_string(),
        })
    }

    /// `Basic ...` for this remote, made now (a CodeCommit signature is good for minutes).
    pub(crate) fn authorization(&self) -> Result<Option<Secret>> {
        let url = &self.remote.url;
        let pair = match self.login {
            Login::Signed(signer) => {
                let (user, password) = signer.credentials().with_context(|| {
                    format!("cannot sign CodeCommit credentials for {}", url.redacted())
                })?;
                Some(format!("{user}:{}", password.expose()))
            }
            Login::Password(password) => Some(format!(
                "{}:{}",
                url.user().unwrap_or("git"),
                password.expose()
            )),
            Login::Url => url
                .password()
                .map(|p| format!("{}:{p}", url.user().unwrap_or(""))),
        };
        Ok(pair.map(|pair| {
            let header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
            );
            drop(Secret::new(pair));
            Secret::new(header)
        }))
    }

    /// The process's HTTP client.
    fn http(&self) -> Result<&'static Http> {
        super::http::shared(self.timeout)
    }

    /// A request for `path_and_query` under the repository's URL, the credentials in its
    /// headers (never in a message).
    fn request_to(
        &self,
        method: Method,
        path_and_query: &str,
        extra: &[(&'static str, &str)],
    ) -> Result<Request> {
        let uri: http::Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .with_context(|| format!("cannot make a request URL of {}", self.url))?;
        let mut headers = Vec::new();
        if let Some(auth) = self.authorization()? {
            let mut value = HeaderValue::from_str(auth.expose())
                .context("the credentials cannot go in an HTTP header")?;
            value.set_sensitive(true);
            headers.push((http::header::AUTHORIZATION, value));
        }
        for (name, value) in extra {
            headers.push((
                http::header::HeaderName::from_static(name),
                HeaderValue::from_str(value)?,
            ));
        }
        Ok(Request {
            method,
            uri,
            headers,
            shown: self.url.clone(),
        })
    }
}

impl Connection for SmartHttp<'_> {
    fn handshake(&mut self, service: Service) -> Result<Advertisement> {
        let name = service.name();
        let request = self.request_to(Method::GET, &format!("/info/refs?service={name}"), &[])?;
        let answer = self.http()?.send(request, None)?.check_success()?;
        answer.check_type(&format!("application/x-{name}-advertisement"), "for Git")?;
        let mut body = answer.body;
        read_service_advertisement(
            &mut PktReader::from_peer(&mut body, peer(self.remote)),
            name,
            true,
            self.timeout,
        )
        .with_context(|| format!("cannot read the refs of {}", self.url))
    }

    fn request<'s>(
        &'s mut self,
        service: Service,
        body: Body<'_>,
    ) -> Result<(TransferStats, Box<dyn Read + 's>)> {
        let name = service.name();
        let (content, accept) = (
            format!("application/x-{name}-request"),
            format!("application/x-{name}-result"),
        );
        let request = self.request_to(
            Method::POST,
            &format!("/{name}"),
            &[("content-type", &content), ("accept", &accept)],
        )?;
        let (stats, answer) = match body {
            Body::Whole(bytes) => {
                let answer = self.http()?.send(request, Some(bytes.to_vec()))?;
                let stats = TransferStats {
                    objects: 0,
                    bytes: bytes.len(),
                };
                (stats, answer)
            }
            // A body cut short (its pack could not be made, the connection broke) is never
            // completed, so the server takes none of it.
            Body::Made(produce) => self.http()?.send_streaming(request, produce)?,
        };
        let answer = answer.check_success()?;
        let what = match service {
            Service::UploadPack => "for fetching",
            Service::ReceivePack => "for pushing",
        };
        answer.check_type(&accept, what)?;
        Ok((stats, Box::new(answer.body)))
    }

    fn url(&self) -> &str {
        &self.url
    }
}
