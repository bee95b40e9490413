//! The stateless sync's relay: the source's thin pack of exactly what the target lacks, streamed
//! into the target's receive-pack, with no cache in between.
//!
//! A run with no cache on disk (CodeBuild's `CacheMode None`, every Lambda run) would otherwise
//! clone the whole target first so the source sends only the difference: time and memory that
//! follow the repository, not the change. The source can be told what the target has instead: every target tip goes to its upload-pack as a `have`, the changed source tips as
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
//! cache (`sync::run`).
//!
//! A first mirror (an empty target, no cache) relays too, when its plan goes in one batch: the
//! pack then holds every object the source has, and a copy of it is stored as the new cache as
//! it passes (`keep`). Fetch and push overlap, where a clone and a push take turns.

use anyhow::Result;
use git2::Oid;

use crate::base::transfer::TransferStats;
use crate::engine::fetch::PackSink;
use crate::engine::pack::{Cut, Packer};
use crate::engine::plan::Change;
use crate::engine::upload_pack::UploadPackClient;
use crate::protocol::advertisement::Advertisement;
use crate::protocol::negotiation::Ask;
use crate::protocol::pack::{PackCheck, empty_pack};

/// The pack of one push batch, relayed from the source.
pub(crate) struct Relay<'s, 'a> {
    pub(crate) source: &'s mut UploadPackClient<'a>,
    /// Which of the target's ids the source is told it has.
    pub(crate) cut: Cut,
    /// Whether the source offers `ofs-delta` (the target's advertisement says whether it takes
    /// it).
    pub(crate) source_ofs_delta: bool,
    /// Whether the source can leave out its progress.
    pub(crate) source_quiet: bool,
    /// What all batches relayed so far.
    pub(crate) relayed: TransferStats,
    /// Where a copy of the relayed pack goes, when the run keeps it as the new cache (a first
    /// mirror, one batch: the pack then holds everything the source has).
    pub(crate) keep: Option<PackSink>,
}

impl Packer for Relay<'_, '_> {
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &Advertisement,
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
            match &mut self.keep {
                Some(keep) => self.source.fetch_pack(&wants, &haves, ask, &mut |data| {
                    keep.write(data);
                    send(data)
                })?,
                None => self.source.fetch_pack(&wants, &haves, ask, send)?,
            }
        };
        self.relayed.objects += stats.objects;
        self.relayed.bytes += stats.bytes;
        Ok(stats)
    }
}
