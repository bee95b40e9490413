//! This tool's own upload-pack client, over any `transport::Connection`: the warm fetch and the
//! seed store its packs in the cache, the stateless relay hands them to the target's
//! receive-pack.
//!
//! It asks once: every want, a flush, every have, `done` (no negotiation rounds: the haves are
//! all it knows, and what the server does not know it ignores); it reads the server's
//! acknowledgments whatever mode they come in, then the pack on side-band, checked as it
//! streams (`protocol::pack`).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use anyhow::{Context, Result};
use git2::Oid;

use crate::base::transfer::TransferStats;
use crate::engine::libgit2::Session;
use crate::protocol::advertisement::Advertisement;
use crate::protocol::negotiation::{Ask, fetch_request, read_acknowledgments};
use crate::protocol::pack::PackCheck;
use crate::protocol::pktline::PktReader;
use crate::protocol::side_band::{Ending, demultiplex};
use crate::transport::remote::Remote;
use crate::transport::{Body, Connection, Declined, Service};

/// A remote's upload-pack, for one run.
pub(crate) struct UploadPackClient<'a> {
    conn: Box<dyn Connection + 'a>,
    peer: &'static str,
}

impl<'a> UploadPackClient<'a> {
    /// `remote`'s upload-pack as this client can reach it, or why it cannot. git children hold
    /// `hold` (the mirror's lock) through their group's guard.
    pub(crate) fn new(
        remote: &'a Remote,
        session: &'a Session,
        timeout: Duration,
        hold: BorrowedFd<'a>,
    ) -> Result<UploadPackClient<'a>, Declined> {
        Ok(UploadPackClient {
            conn: crate::transport::connect(remote, &session.auth, &session.ssh, timeout, hold)?,
            peer: crate::transport::peer(remote),
        })
    }

    /// A fresh look at the advertisement. A stateful connection is kept for the next fetch.
    pub(crate) fn advertise(&mut self) -> Result<Advertisement> {
        self.conn.handshake(Service::UploadPack)
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
        let url = self.conn.url().to_string();
        let (_, answer) = self
            .conn
            .request(Service::UploadPack, Body::Whole(&request))
            .with_context(|| format!("cannot ask {url} for the pack"))?;
        let mut reader = PktReader::from_peer(answer, self.peer);
        let mut check = PackCheck::default();
        (|| {
            let first = read_acknowledgments(&mut reader)?.first;
            demultiplex(&mut reader, first, Ending::Flush, &mut |data| {
                check.feed(data, send)
            })
        })()
        .with_context(|| format!("the pack from {url} failed"))?;
        check.finish(send)
    }
}

/// Whether a source's advertisement lets the relay ask for a thin pack on side-band.
pub(crate) fn can_relay(ad: &Advertisement) -> Result<(), Declined> {
    if !ad.has("thin-pack") {
        return Err("the source does not offer thin-pack".into());
    }
    can_fetch(ad)
}

/// Whether this client can fetch from a source that advertised `ad` at all (the warm fetch
/// needs no more): it reads the pack on side-band and knows SHA-1 ids only.
pub(crate) fn can_fetch(ad: &Advertisement) -> Result<(), Declined> {
    if !ad.has("side-band-64k") {
        return Err("the source does not offer side-band-64k".into());
    }
    if ad.capabilities.iter().any(|c| c == "object-format=sha256") {
        return Err("the source uses SHA-256 object ids".into());
    }
    Ok(())
}
