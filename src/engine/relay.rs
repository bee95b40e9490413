//! The stateless sync's relay: the source's thin pack of exactly what the target lacks, streamed
//! into the target's receive-pack, with no cache in between.
//!
//! A run with no cache on disk (CodeBuild's `CacheMode None`, every Lambda run) used to clone the
//! whole target first so the source would send only the difference: on a 1 GiB repository 50 s
//! and 1 GB of memory for a change of a few commits. The source can be told what the target has
//! instead: every target tip goes to its upload-pack as a `have`, the changed source tips as
//! `want`s, and the thin pack it answers is handed, as it arrives, to receive-pack as the push's
//! pack (receive-pack completes thin packs against what it holds, and checks connectivity before
//! it moves a ref, so a source that sends too little or the wrong thing moves nothing). A `have`
//! the source does not know (a tip force-pushed away on the source) only makes the pack bigger.
//! Time and memory then follow the change, not the repository.
//!
//! What is checked here: the pack's header, and its trailing SHA-1 over the bytes relayed. The
//! last 20 bytes are held back until the checksum is known good, so a damaged pack never reaches
//! receive-pack whole and moves no ref. Anything off (a source that cannot send thin packs or
//! side-band, a checksum mismatch, an unpack error) fails the relay, and the run falls back to the
//! cache (`mirror`).

use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use git2::Oid;

use crate::base::transfer::TransferStats;
use crate::base::url::Scheme;
use crate::engine::plan::Change;
use crate::engine::receive_pack::{Client, Conn, Cut, Packer};
use crate::protocol::negotiation::{Ask, fetch_request, read_acknowledgments};
use crate::protocol::pack::{PackCheck, empty_pack};
use crate::protocol::pktline::PktReader;
use crate::protocol::side_band::{Ending, demultiplex};
use crate::transport::local::UploadPack;
use crate::transport::remote::{Login, Remote};

/// How the source's upload-pack is reached.
enum Transport<'a> {
    /// git:// (TCP): stateful, one connection per fetch.
    Git(Client<'a>),
    /// Smart HTTP(S), CodeCommit included: stateless, the credentials up front (made per
    /// request: a CodeCommit signature is good for minutes).
    Http(Client<'a>),
    /// A local path or `file://`: `git upload-pack <path>` in its own process group, whose guard
    /// holds the mirror's lock (`upload_pack::UploadPack`).
    Local(PathBuf),
    /// SSH: `git-upload-pack '<path>'` on a channel of the run's connection to the host (the
    /// one the catch-up look and any fallback reuse), one channel per fetch.
    Ssh(&'a crate::engine::libgit2::Session, &'a Remote),
}

/// A two-way byte stream to a stateful upload-pack.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

/// The source's upload-pack, for one run.
pub(crate) struct Source<'a> {
    transport: Transport<'a>,
    /// A stateful transport's connection whose advertisement was read and which has not asked
    /// for anything yet: the next fetch goes over it.
    open: Option<Box<dyn Duplex + 'a>>,
    hold: std::os::fd::BorrowedFd<'a>,
    url: String,
    /// Which end this upload-pack serves, as messages name it: the source, or the target a new
    /// cache is seeded from.
    peer: &'static str,
    timeout: Duration,
}

/// Why the relay cannot serve this source (the run uses the cache instead).
pub(crate) type Declined = String;

impl<'a> Source<'a> {
    /// The source as the relay can reach it, or why it cannot. git children hold `hold` (the
    /// mirror's lock) through their group's guard.
    pub(crate) fn new(
        remote: &'a Remote,
        session: &'a crate::engine::libgit2::Session,
        timeout: Duration,
        hold: std::os::fd::BorrowedFd<'a>,
    ) -> Result<Source<'a>, Declined> {
        let login: &'a Login = match remote.end {
            crate::transport::remote::End::Source => &session.auth.source,
            crate::transport::remote::End::Target => &session.auth.target,
        };
        let client = || Client::new(remote, login, timeout).map_err(|e| format!("{e:#}"));
        let transport = match remote.url.scheme() {
            Scheme::Git => Transport::Git(client()?),
            Scheme::Http | Scheme::Https => Transport::Http(client()?),
            Scheme::Local => match remote.url.local_path() {
                Some(path) if crate::base::git::version().is_some() => {
                    Transport::Local(path.to_path_buf())
                }
                _ => {
                    return Err("a local source is read through git, which is not installed".into());
                }
            },
            Scheme::Ssh if crate::transport::ssh::disabled() => {
                return Err("BACKLOG_MIRROR_LIBGIT2_SSH is set: SSH goes through libgit2".into());
            }
            Scheme::Ssh => Transport::Ssh(session, remote),
        };
        Ok(Source {
            transport,
            open: None,
            hold,
            url: remote.url.redacted().to_string(),
            peer: match remote.end {
                crate::transport::remote::End::Source => "the source",
                crate::transport::remote::End::Target => "the target",
            },
            timeout,
        })
    }

    /// A fresh look at the source's upload-pack advertisement. A stateful transport keeps the
    /// connection for the next fetch.
    pub(crate) fn advertise(&mut self) -> Result<crate::protocol::advertisement::Advertisement> {
        self.close();
        match &self.transport {
            Transport::Http(client) => client
                .authorization()
                .and_then(|auth| client.advertisement_http("git-upload-pack", auth.as_ref()))
                .map_err(|e| client.in_words(e)),
            _ => {
                let (conn, ad) = self.connect()?;
                self.open = Some(conn);
                Ok(ad)
            }
        }
    }

    /// Open a stateful transport's connection and read its advertisement.
    fn connect(
        &self,
    ) -> Result<(
        Box<dyn Duplex + 'a>,
        crate::protocol::advertisement::Advertisement,
    )> {
        match &self.transport {
            Transport::Git(client) => {
                let (conn, ad): (Conn, _) = client
                    .advertisement_git("git-upload-pack")
                    .map_err(|e| client.in_words(e))?;
                Ok((Box::new(conn), ad))
            }
            Transport::Local(path) => {
                let mut child = UploadPack::spawn(path, Some(self.hold))?;
                let ad = crate::protocol::advertisement::read_service_advertisement(
                    &mut PktReader::from_peer(BufReader::new(&mut child), self.peer),
                    "git-upload-pack",
                    false,
                    self.timeout,
                )
                .with_context(|| format!("cannot read the refs of {}", self.url))?;
                Ok((Box::new(child), ad))
            }
            Transport::Ssh(session, remote) => {
                let command = crate::transport::ssh::git_command("git-upload-pack", &remote.url)?;
                let mut channel =
                    crate::transport::ssh::exec(&session.auth, &session.ssh, remote, &command)?;
                // Buffered, as every advertisement is (see `crate::protocol::advertisement::read_service_advertisement`).
                let ad = crate::protocol::advertisement::read_service_advertisement(
                    &mut PktReader::from_peer(BufReader::new(&mut channel), self.peer),
                    "git-upload-pack",
                    false,
                    self.timeout,
                )
                .with_context(|| format!("cannot read the refs of {}", self.url))?;
                Ok((Box::new(channel), ad))
            }
            Transport::Http(_) => bail!("smart HTTP has no connection to keep"),
        }
    }

    /// Ask for `request` (wants, haves, `done`) and return the answer's stream.
    fn fetch(&mut self, request: &[u8]) -> Result<Box<dyn Read + 'a>> {
        if let Transport::Http(client) = &self.transport {
            return client
                .authorization()
                .and_then(|auth| client.upload_pack_http(auth.as_ref(), request))
                .map_err(|e| client.in_words(e));
        }
        let mut conn = match self.open.take() {
            Some(conn) => conn,
            None => self.connect()?.0,
        };
        conn.write_all(request)
            .and_then(|()| conn.flush())
            .with_context(|| format!("cannot ask {} for the pack", self.url))?;
        Ok(Box::new(conn))
    }

    /// Ask for the pack of `wants` less what `haves` reach, and hand it to `send` piece by piece
    /// as it arrives, checked (see `PackCheck`): the trailer goes to `send` only once it matches.
    pub(crate) fn fetch_pack(
        &mut self,
        wants: &[Oid],
        haves: &[Oid],
        ask: Ask,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats> {
        let request = fetch_request(wants, haves, ask)?;
        let answer = self.fetch(&request)?;
        let mut reader = PktReader::from_peer(answer, self.peer);
        let mut check = PackCheck::default();
        (|| {
            let first = read_acknowledgments(&mut reader)?.first;
            demultiplex(&mut reader, first, Ending::Flush, &mut |data| {
                check.feed(data, send)
            })
        })()
        .with_context(|| format!("the pack from {} failed", self.url))?;
        check.finish(send)
    }

    /// End a kept connection: a flush tells upload-pack there is nothing to ask.
    pub(crate) fn close(&mut self) {
        if let Some(mut conn) = self.open.take() {
            let _ = conn.write_all(b"0000").and_then(|()| conn.flush());
        }
    }
}

impl Drop for Source<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Whether a source's advertisement lets the relay ask for a thin pack on side-band.
pub(crate) fn source_can_relay(
    ad: &crate::protocol::advertisement::Advertisement,
) -> Result<(), Declined> {
    if !ad.has("thin-pack") {
        return Err("the source does not offer thin-pack".into());
    }
    source_can_fetch(ad)
}

/// Whether this client can fetch from a source that advertised `ad` at all (the warm fetch
/// needs no more): it reads the pack on side-band and knows SHA-1 ids only.
pub(crate) fn source_can_fetch(
    ad: &crate::protocol::advertisement::Advertisement,
) -> Result<(), Declined> {
    if !ad.has("side-band-64k") {
        return Err("the source does not offer side-band-64k".into());
    }
    if ad.capabilities.iter().any(|c| c == "object-format=sha256") {
        return Err("the source uses SHA-256 object ids".into());
    }
    Ok(())
}

/// The pack of one push batch, relayed from the source.
pub(crate) struct Relay<'s, 'a> {
    pub(crate) source: &'s mut Source<'a>,
    /// Which of the target's ids the source is told it has.
    pub(crate) cut: Cut,
    /// Whether the source offers `ofs-delta` (the target's advertisement says whether it takes
    /// it).
    pub(crate) source_ofs_delta: bool,
    /// Whether the source can leave out its progress.
    pub(crate) source_quiet: bool,
    /// What all batches relayed so far.
    pub(crate) relayed: TransferStats,
}

impl Packer for Relay<'_, '_> {
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &crate::protocol::advertisement::Advertisement,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats> {
        // Every id the target advertises is an object it has (`.have` lines too): after an
        // earlier batch, its advertisement holds that batch's tips. The source is told the
        // cut's share of them (see `Cut`); none is asked for.
        let mut held: Vec<Oid> = ad.refs.iter().map(|(_, id)| *id).collect();
        held.sort_unstable();
        held.dedup();
        let haves = self.cut.haves(ad, changes);
        let mut wants: Vec<Oid> = changes
            .iter()
            .filter_map(|c| c.new)
            .filter(|id| held.binary_search(id).is_err())
            .collect();
        wants.sort_unstable();
        wants.dedup();
        let stats = if wants.is_empty() {
            // Every new tip is already an object the target has: an empty pack.
            let mut check = PackCheck::default();
            check.feed(&empty_pack(), send)?;
            check.finish(send)?
        } else {
            let ask = Ask {
                thin: true,
                ofs_delta: self.source_ofs_delta && ad.has("ofs-delta"),
                quiet: self.source_quiet,
            };
            self.source.fetch_pack(&wants, &haves, ask, send)?
        };
        self.relayed.objects += stats.objects;
        self.relayed.bytes += stats.bytes;
        Ok(stats)
    }
}
