//! Our own receive-pack client for HTTP(S) and git:// targets, its pack made by
//! `git pack-objects` in the cache.
//!
//! `git push` over HTTPS hands send-pack one refspec per ref, and send-pack matches each against
//! every local and every remote ref: with thousands of refs that is most of a mirror's time
//! (issue 12: 13 s of CPU for 7,000 refs, 22 s for 10,000). libgit2's push rebuilds every delta
//! and re-sends trees and blobs the target already holds behind its tips. Here each batch is one
//! request: the commands, each with the plan's old id as its lease (receive-pack refuses a ref
//! that moved since, which the mirror's look-again loop reads as a lost race), then the pack
//! `pack-objects --revs --thin` makes for the batch's new tips minus everything the target
//! advertises that the cache has; so no object goes twice, and stored deltas are reused.
//!
//! Local-path targets keep `git receive-pack` through git push (their hooks run in our child),
//! and SSH targets keep libgit2 (our key and host-key policy live there): this speaks only
//! HTTP(S) and git://. Credentials go with the first request (CodeCommit's SigV4 password is
//! computed up front), never after a 401. TLS trusts the system's roots, `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` included, as OpenSSL under libgit2 does. A redirect is refused: credentials are
//! given for one origin, and a push body cannot be replayed anyway.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use git2::{Oid, Repository};

use crate::base::net_error::NetError;
use crate::base::process_group::Group;
use crate::base::progress::Progress;
use crate::base::refname;
use crate::base::secret::Secret;
use crate::base::transfer::{PushOutcome, RefOutcome, TransferStats, remote_messages};
use crate::base::url::Scheme;
use crate::engine::plan::Change;
use crate::protocol::pktline::PktReader;
use crate::transport::http::{Http, Request};
use crate::transport::remote::{Login, Remote};
use http::{HeaderValue, Method};

/// Whether this client can push to `remote`.
pub(crate) fn serves(remote: &Remote) -> bool {
    matches!(
        remote.url.scheme(),
        Scheme::Http | Scheme::Https | Scheme::Git
    )
}

/// Where and how to reach one target.
pub(crate) struct Client<'a> {
    remote: &'a Remote,
    login: &'a Login,
    scheme: Scheme,
    host: String,
    port: u16,
    /// The repository path, percent-encoded as written (HTTP) or decoded (git://).
    path: String,
    timeout: Duration,
}

impl<'a> Client<'a> {
    pub(crate) fn new(remote: &'a Remote, login: &'a Login, timeout: Duration) -> Result<Self> {
        let url = ::url::Url::parse(remote.url.as_git_url())
            .with_context(|| format!("cannot read {} as a URL", remote.url.redacted()))?;
        let scheme = remote.url.scheme();
        let host = url
            .host_str()
            .with_context(|| format!("{} names no host", remote.url.redacted()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(match scheme {
            Scheme::Git => 9418,
            Scheme::Http => 80,
            _ => 443,
        });
        let path = match scheme {
            Scheme::Git => percent_encoding::percent_decode_str(url.path())
                .decode_utf8()
                .with_context(|| format!("{} has a path that is not UTF-8", remote.url))?
                .into_owned(),
            _ => url.path().trim_end_matches('/').to_string(),
        };
        Ok(Client {
            remote,
            login,
            scheme,
            host,
            port,
            path,
            timeout,
        })
    }

    /// `host[:port]` as the Host header and git://'s `host=` give it.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = match self.scheme {
            Scheme::Git => 9418,
            Scheme::Http => 80,
            _ => 443,
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `Basic ...` for this target, made now (a CodeCommit signature is good for minutes).
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

    fn connect(&self) -> Result<Conn> {
        let url = self.remote.url.redacted();
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
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, last) => {
                return Err(NetError::Connect {
                    url: url.to_string(),
                    detail: last.map_or("the host has no address".to_string(), |e| e.to_string()),
                }
                .into());
            }
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

    /// The target's receive-pack advertisement: over HTTP(S) one GET, credentials up front (so
    /// no 401 round trip); over git:// a connection that ends after it. Kept, it is the first
    /// push's advertisement too (see `push`).
    pub(crate) fn list(&self) -> Result<crate::protocol::advertisement::Advertisement> {
        self.listing("git-receive-pack")
    }

    /// The branch the target's `HEAD` names, from its upload-pack advertisement (receive-pack
    /// does not say): one more request, credentials up front.
    pub(crate) fn head(&self) -> Result<Option<String>> {
        Ok(self.upload_listing()?.head())
    }

    /// The upload-pack advertisement: refs (tags peeled too) and where `HEAD` points, for an
    /// account that may only read.
    pub(crate) fn upload_listing(&self) -> Result<crate::protocol::advertisement::Advertisement> {
        self.listing("git-upload-pack")
    }

    /// `service`'s advertisement alone: over HTTP(S) one GET, credentials up front; over git://
    /// a connection that ends after it.
    fn listing(&self, service: &str) -> Result<crate::protocol::advertisement::Advertisement> {
        let listed = match self.scheme {
            Scheme::Git => self.advertisement_git(service).map(|(conn, ad)| {
                let _ = flush_and_close(conn);
                ad
            }),
            _ => self
                .authorization()
                .and_then(|auth| self.advertisement_http(service, auth.as_ref())),
        };
        listed.map_err(|e| self.in_words(e))
    }

    /// Which end this is, as messages name it.
    fn peer(&self) -> &'static str {
        match self.remote.end {
            crate::transport::remote::End::Source => "the source",
            crate::transport::remote::End::Target => "the target",
        }
    }

    /// A git:// connection to `service`, its advertisement read.
    pub(crate) fn advertisement_git(
        &self,
        service: &str,
    ) -> Result<(Conn, crate::protocol::advertisement::Advertisement)> {
        let url = self.remote.url.redacted();
        let mut conn = self.connect()?;
        let mut hello = Vec::new();
        let request = format!("{service} {}\0host={}\0", self.path, self.host_header());
        crate::protocol::pktline::pkt(&mut hello, request.as_bytes())
            .with_context(|| format!("the path of {url} is too long for git://"))?;
        conn.write_all(&hello)
            .map_err(|e| io_error(e, url, self.timeout))?;
        let ad = {
            // Buffered, as every advertisement is (see `crate::protocol::advertisement::read_service_advertisement`).
            let mut reader = PktReader::from_peer(BufReader::new(&mut conn), self.peer());
            crate::protocol::advertisement::read_service_advertisement(
                &mut reader,
                service,
                false,
                self.timeout,
            )
            .map_err(|e| timed(e, url, self.timeout))
            .with_context(|| format!("cannot read the refs of {url}"))?
        };
        Ok((conn, ad))
    }

    /// `GET info/refs?service=<service>` and its advertisement.
    pub(crate) fn advertisement_http(
        &self,
        service: &str,
        auth: Option<&Secret>,
    ) -> Result<crate::protocol::advertisement::Advertisement> {
        let url = self.remote.url.redacted();
        let request = self.request(
            Method::GET,
            &format!("/info/refs?service={service}"),
            auth,
            &[],
        )?;
        let answer = self.http()?.send(request, None)?.check_success()?;
        answer.check_type(&format!("application/x-{service}-advertisement"), "for Git")?;
        let mut body = answer.body;
        crate::protocol::advertisement::read_service_advertisement(
            &mut PktReader::from_peer(&mut body, self.peer()),
            service,
            true,
            self.timeout,
        )
        .with_context(|| format!("cannot read the refs of {url}"))
    }

    /// `POST git-upload-pack` with `body` (a fetch's wants, haves and `done`), the credentials
    /// up front; returns the answer's body.
    pub(crate) fn upload_pack_http(
        &self,
        auth: Option<&Secret>,
        body: &[u8],
    ) -> Result<Box<dyn Read>> {
        let request = self.request(
            Method::POST,
            "/git-upload-pack",
            auth,
            &[
                ("content-type", "application/x-git-upload-pack-request"),
                ("accept", "application/x-git-upload-pack-result"),
            ],
        )?;
        let answer = self
            .http()?
            .send(request, Some(body.to_vec()))?
            .check_success()?;
        answer.check_type("application/x-git-upload-pack-result", "for fetching")?;
        Ok(Box::new(answer.body))
    }

    /// The process's HTTP client.
    fn http(&self) -> Result<&'static Http> {
        crate::transport::http::shared(self.timeout)
    }

    /// A request for `path_and_query` under the repository's URL. The credentials go in its
    /// headers, never in a message.
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        auth: Option<&Secret>,
        extra: &[(&'static str, &str)],
    ) -> Result<Request> {
        let scheme = if self.scheme == Scheme::Https {
            "https"
        } else {
            "http"
        };
        let uri: http::Uri = format!(
            "{scheme}://{}{}{path_and_query}",
            self.host_header(),
            self.path
        )
        .parse()
        .with_context(|| {
            format!(
                "cannot make a request URL of {}",
                self.remote.url.redacted()
            )
        })?;
        let mut headers = Vec::new();
        if let Some(auth) = auth {
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
            shown: self.remote.url.redacted().to_string(),
        })
    }

    /// Push one batch of `changes` from the cache at `repo` (its git directory), the pack
    /// built by `git pack-objects` in a process group whose guard holds `hold`. `listed` is the
    /// target's advertisement as this run's listing read it, when the plan was made from that
    /// listing: over HTTP(S) it stands for the GET this push would make (receive-pack still
    /// checks each command's old id, so a ref moved since is refused as a lost race). git://
    /// reads the advertisement its own connection opens with anyway.
    pub(crate) fn push(
        &self,
        repo: &Repository,
        changes: &[&Change],
        hold: BorrowedFd<'_>,
        progress: &mut Progress,
        listed: Option<crate::protocol::advertisement::Advertisement>,
        cut: Cut,
    ) -> Result<PushOutcome> {
        let mut packer = PackObjects {
            repo,
            hold,
            progress,
            cut,
        };
        let result = self.push_with(changes, &mut packer, listed);
        packer.progress.finish();
        result
    }

    /// Push one batch of `changes`, the pack (when a command needs one) from `packer`.
    pub(crate) fn push_with(
        &self,
        changes: &[&Change],
        packer: &mut dyn Packer,
        listed: Option<crate::protocol::advertisement::Advertisement>,
    ) -> Result<PushOutcome> {
        let result = match self.scheme {
            Scheme::Git => self.push_git(changes, packer),
            _ => self.push_http(changes, packer, listed),
        };
        result.map_err(|e| self.in_words(e))
    }

    /// An error with every copy of a credential scrubbed (they are registered secrets).
    pub(crate) fn in_words(&self, err: anyhow::Error) -> anyhow::Error {
        let text = crate::base::secret::redact_userinfo(&format!("{err:#}")).into_owned();
        if text == format!("{err:#}") {
            err
        } else {
            anyhow::anyhow!(text)
        }
    }

    fn push_git(&self, changes: &[&Change], packer: &mut dyn Packer) -> Result<PushOutcome> {
        let url = self.remote.url.redacted();
        let (mut conn, ad) = self.advertisement_git("git-receive-pack")?;
        let (changes, stale) = leased(changes, &ad);
        if changes.is_empty() {
            // Nothing to ask: a flush ends the exchange.
            let _ = conn.write_all(b"0000");
            return Ok(stale_only(stale));
        }
        let changes = &changes[..];
        let stats = send_body(changes, &ad, packer, &mut |chunk| {
            conn.write_all(chunk)
                .map_err(|e| io_error(e, url, self.timeout))
        })?;
        // receive-pack reads the pack to its end; the half-close tells a proxy we are done.
        let _ = conn.tcp.shutdown(Shutdown::Write);
        self.report(&mut conn, &ad, changes, stats, stale)
    }

    /// The push report that ends an exchange, as per-ref outcomes (the locally stale ones added).
    fn report(
        &self,
        answer: &mut dyn Read,
        ad: &crate::protocol::advertisement::Advertisement,
        changes: &[&Change],
        stats: TransferStats,
        stale: HashMap<String, RefOutcome>,
    ) -> Result<PushOutcome> {
        let url = self.remote.url.redacted();
        let band = crate::protocol::side_band::read_answer(
            &mut PktReader::new(answer),
            ad.has("side-band-64k"),
        )
        .map_err(|e| timed(e, url, self.timeout))
        .with_context(|| format!("cannot read the push report of {url}"))?;
        let mut done = outcome(changes, band, stats)?;
        done.refs.extend(stale);
        Ok(done)
    }

    fn push_http(
        &self,
        changes: &[&Change],
        packer: &mut dyn Packer,
        listed: Option<crate::protocol::advertisement::Advertisement>,
    ) -> Result<PushOutcome> {
        let auth = self.authorization()?;
        let ad = match listed {
            Some(ad) => ad,
            None => self.advertisement_http("git-receive-pack", auth.as_ref())?,
        };
        let (changes, stale) = leased(changes, &ad);
        if changes.is_empty() {
            return Ok(stale_only(stale));
        }
        let changes = &changes[..];
        let request = self.request(
            Method::POST,
            "/git-receive-pack",
            auth.as_ref(),
            &[
                ("content-type", "application/x-git-receive-pack-request"),
                ("accept", "application/x-git-receive-pack-result"),
            ],
        )?;
        // A body cut short (the pack could not be built, the connection broke) is never
        // completed, so the server takes none of it.
        let (stats, answer) = self
            .http()?
            .send_streaming(request, |send| send_body(changes, &ad, packer, send))?;
        let answer = answer.check_success()?;
        answer.check_type("application/x-git-receive-pack-result", "for pushing")?;
        let mut body = answer.body;
        self.report(&mut body, &ad, changes, stats, stale)
    }
}

/// A write or read on a git:// connection that failed, in the kind the retry policy reads.
fn io_error(err: std::io::Error, url: &str, timeout: Duration) -> anyhow::Error {
    if let Some(ours) = err.get_ref().and_then(|e| e.downcast_ref::<NetError>()) {
        return anyhow::anyhow!("{ours}").context(NetError::io(&err, url, timeout));
    }
    match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            anyhow::Error::new(NetError::Stalled {
                url: format!("the push to {url}"),
                doing: "moved no data",
                timeout,
                why: "the target stopped reading or answering",
            })
        }
        _ => anyhow::Error::new(NetError::io(&err, url, timeout)),
    }
}

/// A read error from the pkt-line layer, with a timeout said as one.
fn timed(err: anyhow::Error, url: &str, timeout: Duration) -> anyhow::Error {
    match err
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
    {
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            io_error(std::io::ErrorKind::TimedOut.into(), url, timeout)
        }
        _ => err,
    }
}

/// The changes whose lease holds on the advertisement (the ref is where the plan saw it), and a
/// "stale info" refusal for each other one, as `git push --force-with-lease` refuses it before
/// sending anything: the mirror reads it as a lost race and looks again.
fn leased<'c>(
    changes: &[&'c Change],
    ad: &crate::protocol::advertisement::Advertisement,
) -> (Vec<&'c Change>, HashMap<String, RefOutcome>) {
    let now: HashMap<&[u8], Oid> = ad.refs.iter().map(|(n, id)| (n.as_slice(), *id)).collect();
    let mut stale = HashMap::new();
    let mut held = Vec::new();
    for &change in changes {
        let name = refname::to_bytes(&change.name);
        if now.get(name.as_slice()).copied() == change.old {
            held.push(change);
        } else {
            stale.insert(
                change.name.clone(),
                RefOutcome::Rejected("stale info".to_string()),
            );
        }
    }
    (held, stale)
}

fn stale_only(stale: HashMap<String, RefOutcome>) -> PushOutcome {
    PushOutcome {
        refs: stale,
        ..PushOutcome::default()
    }
}

/// The commands of one batch as pkt-lines and their flush. Each update's old id is the plan's
/// (its lease): receive-pack refuses a ref whose value is not that one any more.
fn commands(
    changes: &[&Change],
    ad: &crate::protocol::advertisement::Advertisement,
) -> Result<Vec<u8>> {
    if !ad.has("report-status") {
        bail!("the target does not offer report-status: it could not say which refs it took");
    }
    if changes.iter().any(|c| c.new.is_none()) && !ad.has("delete-refs") {
        bail!("the target does not accept ref deletions (no delete-refs capability)");
    }
    let zero = Oid::ZERO_SHA1;
    let mut caps = String::from("report-status");
    if ad.has("side-band-64k") {
        caps.push_str(" side-band-64k");
    }
    if ad.has("object-format") {
        caps.push_str(" object-format=sha1");
    }
    caps.push_str(&format!(
        " agent=backlog-mirror/{}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let mut line = format!(
            "{} {} ",
            change.old.unwrap_or(zero),
            change.new.unwrap_or(zero)
        )
        .into_bytes();
        line.extend_from_slice(&refname::to_bytes(&change.name));
        if i == 0 {
            line.push(0);
            line.extend_from_slice(caps.as_bytes());
        }
        line.push(b'\n');
        crate::protocol::pktline::pkt(&mut out, &line)?;
    }
    crate::protocol::pktline::flush(&mut out);
    Ok(out)
}

/// A plan of at most this many ref changes, pushed in one batch, cuts its pack against the
/// advertised ids near it only (`Cut::Near`).
const NEAR_CUT_CHANGES: usize = 100;

/// Which of the target's advertised ids a pack is cut against (the objects it need not carry).
///
/// Every id makes the smallest pack, but git's walk (`pack-objects --revs`, and a source's
/// upload-pack given them as haves) starts from each: on a mirror with 7,000 pull-request heads
/// on side commits (the bench's pulls dataset), a one-commit change's pack took 0.36-0.39 s cut
/// against every id and 0.03 s against the branches and tags, the same 1.3 KiB either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Every advertised id: a large plan (a first mirror's), or one in several batches, whose
    /// later batches build on the tips the earlier ones left on the target. There the walk is
    /// small beside the pack, and no object may go twice.
    Every,
    /// The batch's own refs' old ids, and the target's branches, tags and `.have`s: a few
    /// changes. A new ref based on commits only some other ref (a pull request) reaches then
    /// brings objects the target has: a bigger pack, still a correct one (receive-pack
    /// completes a thin pack against all it holds).
    Near,
    /// The target's tips where the new history meets it, as the pre-push walk found them
    /// (`push::check_connectivity`), and the changed refs' old ids: the near cut of a target
    /// whose branches are many (10,000 branches made git's walk cost 70 ms for one commit).
    /// Only a walk that ended at a target tip on every path gives one.
    Boundary(Vec<Oid>),
}

impl Cut {
    /// The cut for a plan of `changes` ref changes pushed in `batches` batches.
    pub(crate) fn for_plan(changes: usize, batches: usize) -> Cut {
        if batches <= 1 && changes <= NEAR_CUT_CHANGES {
            Cut::Near
        } else {
            Cut::Every
        }
    }

    /// The advertised ids `changes` are cut against, each once.
    pub(crate) fn haves(
        &self,
        ad: &crate::protocol::advertisement::Advertisement,
        changes: &[&Change],
    ) -> Vec<Oid> {
        self.pick(
            ad.refs.iter().map(|(name, id)| (name.as_slice(), *id)),
            changes.iter().filter_map(|c| c.old),
        )
    }

    /// Of `refs` (a listing's names and ids), those this cut keeps, with `olds` (the old ids of
    /// the refs that change), each once.
    pub(crate) fn pick<'n>(
        &self,
        refs: impl IntoIterator<Item = (&'n [u8], Oid)>,
        olds: impl IntoIterator<Item = Oid>,
    ) -> Vec<Oid> {
        let near = |name: &[u8]| {
            name.starts_with(b"refs/heads/") || name.starts_with(b"refs/tags/") || name == b".have"
        };
        let mut haves: Vec<Oid> = match self {
            Cut::Boundary(tips) => tips.iter().copied().chain(olds).collect(),
            Cut::Every | Cut::Near => refs
                .into_iter()
                .filter(|(name, _)| *self == Cut::Every || near(name))
                .map(|(_, id)| id)
                .chain(olds)
                .collect(),
        };
        haves.sort_unstable();
        haves.dedup();
        haves
    }
}

/// The ids of `cut` that the cache has: what the pack need not carry.
fn haves(
    repo: &Repository,
    ad: &crate::protocol::advertisement::Advertisement,
    changes: &[&Change],
    cut: &Cut,
) -> Vec<Oid> {
    let Ok(odb) = repo.odb() else {
        return Vec::new();
    };
    cut.haves(ad, changes)
        .into_iter()
        .filter(|id| odb.exists(*id))
        .collect()
}

/// Where a push's pack comes from: `git pack-objects` in the cache, or a source's upload-pack
/// relayed (`relay`).
pub(crate) trait Packer {
    /// Hand the pack for `changes` (some of them updates) to `send`, piece by piece, against
    /// the target's advertisement `ad`; returns what was sent.
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &crate::protocol::advertisement::Advertisement,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats>;
}

/// The pack `git pack-objects` makes in the cache, its process group's guard holding `hold`.
struct PackObjects<'r, 'p> {
    repo: &'r Repository,
    hold: BorrowedFd<'r>,
    progress: &'p mut Progress,
    cut: Cut,
}

impl Packer for PackObjects<'_, '_> {
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &crate::protocol::advertisement::Advertisement,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats> {
        send_pack(
            self.repo.path(),
            changes,
            &haves(self.repo, ad, changes, &self.cut),
            ad.has("ofs-delta"),
            self.hold,
            self.progress,
            send,
        )
    }
}

/// A request's body, whatever carries it: the commands, then (unless every command deletes) the
/// pack. The commands go in the pack's first piece: one write, one segment, one HTTP chunk.
fn send_body(
    changes: &[&Change],
    ad: &crate::protocol::advertisement::Advertisement,
    packer: &mut dyn Packer,
    send: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<TransferStats> {
    let commands = commands(changes, ad)?;
    if !changes.iter().any(|c| c.new.is_some()) {
        send(&commands)?;
        return Ok(TransferStats::default());
    }
    let mut first = Some(commands);
    packer.pack(changes, ad, &mut |chunk| {
        let mut out = first.take().unwrap_or_default();
        out.extend_from_slice(chunk);
        send(&out)
    })
}

/// Run `git pack-objects` in `git_dir` for the batch's new tips minus `haves`, handing each
/// piece of the pack to `send` as it comes. Returns what was sent.
fn send_pack(
    git_dir: &Path,
    changes: &[&Change],
    haves: &[Oid],
    ofs_delta: bool,
    hold: BorrowedFd<'_>,
    progress: &mut Progress,
    send: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<TransferStats> {
    let mut revs = String::new();
    for id in changes.iter().filter_map(|c| c.new) {
        revs.push_str(&format!("{id}\n"));
    }
    for id in haves {
        revs.push_str(&format!("^{id}\n"));
    }
    let mut group = Group::spawn(
        crate::base::git::isolated(git_dir)
            .args(["pack-objects", "--revs", "--thin", "--stdout", "-q"])
            .args(ofs_delta.then_some("--delta-base-offset"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        hold,
    )
    .context("cannot start git pack-objects; install git or use --push-engine libgit2")?;
    let child = group.child();
    let mut stdin = child.stdin.take().context("pack-objects: no stdin")?;
    let mut stdout = child.stdout.take().context("pack-objects: no stdout")?;
    let stderr = child.stderr.take().context("pack-objects: no stderr")?;
    let writer = std::thread::spawn(move || stdin.write_all(revs.as_bytes()));
    let errors = crate::base::process_group::collect_stderr(stderr, 64 * 1024);
    let mut stats = TransferStats::default();
    let mut header = Vec::with_capacity(12);
    let mut buf = vec![0u8; 64 * 1024];
    let sent = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(anyhow::anyhow!("cannot read git pack-objects' pack: {e}")),
        };
        if header.len() < 12 {
            let take = (12 - header.len()).min(n);
            header.extend_from_slice(&buf[..take]);
            if header.len() == 12 {
                stats.objects =
                    u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
            }
        }
        if let Err(e) = send(&buf[..n]) {
            break Err(e);
        }
        stats.bytes += n;
        // The pack's object count is known from its header, not how many went yet.
        progress.update(stats.objects, 0, stats.bytes);
    };
    if sent.is_err() {
        group.kill();
    }
    let status = group.wait().context("git pack-objects did not finish")?;
    let _ = writer.join();
    let said = String::from_utf8_lossy(&errors.join().unwrap_or_default()).into_owned();
    sent?;
    if !status.success() || header.len() < 12 || &header[..4] != b"PACK" {
        bail!(
            "git pack-objects could not build the pack ({status}): {}",
            crate::base::text::clip(said.trim(), 300)
        );
    }
    Ok(stats)
}

/// Each ref's result from the side-band answer. A ref the report does not name stays out of
/// the map (the caller says "no result").
fn outcome(
    changes: &[&Change],
    band: crate::protocol::side_band::SideBand,
    stats: TransferStats,
) -> Result<PushOutcome> {
    let mut remote_lines = remote_messages(&String::from_utf8_lossy(&band.progress));
    let report = crate::protocol::report_status::parse_report(&band.data)?;
    if let Err(why) = &report.unpack {
        remote_lines.push(format!("unpack failed: {why}"));
    }
    let asked: HashSet<Vec<u8>> = changes.iter().map(|c| refname::to_bytes(&c.name)).collect();
    let mut refs = HashMap::new();
    for (name, result) in report.refs {
        if !asked.contains(&name) {
            bail!(
                "the target reported on {}, a ref this push did not send",
                refname::shown(&refname::escape(&name))
            );
        }
        let outcome = match (result, &report.unpack) {
            (None, Ok(())) => RefOutcome::Accepted,
            (None, Err(why)) => RefOutcome::Rejected(format!("unpacker error: {why}")),
            (Some(reason), _) => RefOutcome::Rejected(reason),
        };
        refs.insert(refname::escape(&name), outcome);
    }
    Ok(PushOutcome {
        refs,
        stats,
        remote_lines,
    })
}

/// End a git:// exchange after its advertisement: a flush says "nothing to ask".
fn flush_and_close(mut conn: Conn) -> std::io::Result<()> {
    conn.write_all(b"0000")?;
    conn.flush()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Action;

    #[test]
    fn a_few_changes_are_cut_near_and_a_large_or_batched_plan_against_every_id() {
        assert_eq!(Cut::for_plan(3, 1), Cut::Near);
        assert_eq!(Cut::for_plan(NEAR_CUT_CHANGES, 1), Cut::Near);
        assert_eq!(Cut::for_plan(NEAR_CUT_CHANGES + 1, 1), Cut::Every);
        assert_eq!(Cut::for_plan(2, 2), Cut::Every);
        let ad = crate::protocol::advertisement::Advertisement {
            refs: vec![
                (b"refs/heads/main".to_vec(), id(1)),
                (b"refs/tags/v1".to_vec(), id(2)),
                (b"refs/pull/1/head".to_vec(), id(3)),
                (b"refs/pull/2/head".to_vec(), id(4)),
                (b".have".to_vec(), id(5)),
                (b"refs/heads/dev".to_vec(), id(1)),
            ],
            capabilities: vec![],
        };
        let moved = change("refs/pull/2/head", Some(id(4)), Some(id(9)));
        let created = change("refs/pull/7/head", None, Some(id(8)));
        let changes = [&moved, &created];
        // Branches, tags and `.have`s, the changed refs' old ids; each once.
        assert_eq!(
            Cut::Near.haves(&ad, &changes),
            vec![id(1), id(2), id(4), id(5)]
        );
        assert_eq!(
            Cut::Every.haves(&ad, &changes),
            vec![id(1), id(2), id(3), id(4), id(5)]
        );
        // Where the walk met the target, and the old ids; not the other branches and tags.
        assert_eq!(
            Cut::Boundary(vec![id(3)]).haves(&ad, &changes),
            vec![id(3), id(4)]
        );
    }

    fn id(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    fn change(name: &str, old: Option<Oid>, new: Option<Oid>) -> Change {
        let action = match (old, new) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            _ => Action::Force,
        };
        Change {
            name: name.to_string(),
            action,
            old,
            new,
        }
    }

    fn advertisement(
        refs: &[(&[u8], Oid)],
        caps: &str,
    ) -> crate::protocol::advertisement::Advertisement {
        crate::protocol::advertisement::Advertisement {
            refs: refs.iter().map(|(n, id)| (n.to_vec(), *id)).collect(),
            capabilities: caps.split(' ').map(str::to_string).collect(),
        }
    }

    #[test]
    fn a_ref_that_moved_since_the_plan_is_stale_and_not_sent() {
        let ad = advertisement(
            &[(b"refs/heads/a", id(1)), (b"refs/heads/moved", id(9))],
            "report-status delete-refs",
        );
        let a = change("refs/heads/a", Some(id(1)), Some(id(2)));
        let moved = change("refs/heads/moved", Some(id(1)), Some(id(2)));
        let created_meanwhile = change("refs/heads/moved", None, Some(id(2)));
        let new = change("refs/heads/new", None, Some(id(3)));
        let (held, stale) = leased(&[&a, &moved, &new], &ad);
        assert_eq!(held.len(), 2);
        assert_eq!(
            stale["refs/heads/moved"],
            RefOutcome::Rejected("stale info".to_string())
        );
        let (held, stale) = leased(&[&created_meanwhile], &ad);
        assert!(held.is_empty() && stale.len() == 1);
    }

    #[test]
    fn commands_carry_the_leases_and_the_capabilities_once() {
        let ad = advertisement(&[], "report-status side-band-64k delete-refs quiet");
        let update = change("refs/heads/caf\\xe9", Some(id(1)), Some(id(2)));
        let delete = change("refs/tags/v1", Some(id(3)), None);
        let bytes = commands(&[&update, &delete], &ad).unwrap();
        let mut reader = PktReader::new(&bytes[..]);
        let first = match reader.next().unwrap() {
            Some(crate::protocol::pktline::Packet::Data(d)) => d,
            other => panic!("{other:?}"),
        };
        let mut want = format!("{} {} refs/heads/caf", id(1), id(2)).into_bytes();
        want.push(0xe9);
        want.push(0);
        want.extend_from_slice(
            format!(
                "report-status side-band-64k agent=backlog-mirror/{}\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        assert_eq!(first, want);
        assert_eq!(
            reader.next().unwrap(),
            Some(crate::protocol::pktline::Packet::Data(
                format!("{} {} refs/tags/v1\n", id(3), Oid::ZERO_SHA1).into_bytes()
            ))
        );
        assert_eq!(
            reader.next().unwrap(),
            Some(crate::protocol::pktline::Packet::Flush)
        );
        // A target that cannot delete refs is told so, not sent a deletion.
        let no_delete = advertisement(&[], "report-status");
        let err = commands(&[&delete], &no_delete).unwrap_err();
        assert!(err.to_string().contains("delete-refs"), "{err}");
    }
}
