//! A pack checked as it streams past: its header, and its trailing SHA-1 over every byte before
//! it. The last 20 bytes are held back until the checksum is known good, so a damaged pack
//! never reaches its receiver whole (receive-pack then moves no ref).

use anyhow::{Result, bail};
use sha1::{Digest, Sha1};

use crate::base::net_error::NetError;
use crate::base::transfer::TransferStats;

/// A pack of no objects.
pub(crate) fn empty_pack() -> Vec<u8> {
    let mut pack = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
    let sum = Sha1::digest(&pack);
    pack.extend_from_slice(&sum);
    pack
}

/// Checks a pack as it streams past: its header, and its trailing SHA-1 over every byte before
/// it. The last 20 bytes seen are held back until the end, so the trailer goes on only once it
/// matches: a damaged pack never reaches receive-pack whole.
#[derive(Default)]
pub(crate) struct PackCheck {
    hasher: Sha1,
    header: Vec<u8>,
    held: Vec<u8>,
    sent: usize,
    objects: usize,
}

const TRAILER: usize = 20;

impl PackCheck {
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.held.extend_from_slice(data);
        if self.held.len() <= TRAILER {
            return Ok(());
        }
        let cut = self.held.len() - TRAILER;
        let out: Vec<u8> = self.held.drain(..cut).collect();
        if self.header.len() < 12 {
            let take = (12 - self.header.len()).min(out.len());
            self.header.extend_from_slice(&out[..take]);
            if self.header.len() == 12 {
                self.objects = header_objects(&self.header)?;
            }
        }
        self.hasher.update(&out);
        self.sent += out.len();
        send(&out)
    }

    pub(crate) fn finish(self, send: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<TransferStats> {
        if self.header.len() < 12 || self.held.len() < TRAILER {
            bail!("the source's pack ended before its header and checksum");
        }
        if self.hasher.finalize().as_slice() != self.held.as_slice() {
            return Err(NetError::Damaged {
                what: "the source's pack".to_string(),
            }
            .into());
        }
        send(&self.held)?;
        Ok(TransferStats {
            objects: self.objects,
            bytes: self.sent + TRAILER,
        })
    }
}

/// The object count of a pack header (`PACK`, version 2 or 3, count).
fn header_objects(header: &[u8]) -> Result<usize> {
    if &header[..4] != b"PACK" {
        bail!("the source sent something that is not a pack");
    }
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if version != 2 && version != 3 {
        bail!("the source sent a pack of version {version}, not 2 or 3");
    }
    Ok(u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(stream: &[u8]) -> Result<(Vec<u8>, TransferStats)> {
        let mut out = Vec::new();
        let mut check = PackCheck::default();
        let mut send = |b: &[u8]| -> Result<()> {
            out.extend_from_slice(b);
            Ok(())
        };
        // In pieces, as a side-band delivers it.
        for piece in stream.chunks(7) {
            check.feed(piece, &mut send)?;
        }
        let stats = check.finish(&mut send)?;
        Ok((out, stats))
    }

    fn pack_of(body: &[u8], objects: u32) -> Vec<u8> {
        let mut pack = b"PACK\0\0\0\x02".to_vec();
        pack.extend_from_slice(&objects.to_be_bytes());
        pack.extend_from_slice(body);
        let sum = Sha1::digest(&pack);
        pack.extend_from_slice(&sum);
        pack
    }

    #[test]
    fn a_sound_pack_goes_through_whole() {
        let pack = pack_of(b"some object bytes, as they come", 3);
        let (out, stats) = relayed(&pack).unwrap();
        assert_eq!(out, pack);
        assert_eq!(stats.objects, 3);
        assert_eq!(stats.bytes, pack.len());
        let (out, _) = relayed(&empty_pack()).unwrap();
        assert_eq!(out, empty_pack());
    }

    #[test]
    fn a_damaged_pack_never_goes_through_whole() {
        let mut pack = pack_of(b"some object bytes, as they come", 3);
        pack[20] ^= 1;
        let mut out = Vec::new();
        let mut check = PackCheck::default();
        let mut send = |b: &[u8]| -> Result<()> {
            out.extend_from_slice(b);
            Ok(())
        };
        check.feed(&pack, &mut send).unwrap();
        let err = check.finish(&mut send).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // The trailer was held back: receive-pack saw a pack cut short, and moves no ref.
        assert_eq!(out.len(), pack.len() - TRAILER);
        let short = &pack_of(b"x", 1)[..15];
        assert!(relayed(short).is_err());
        let mut not_a_pack = pack_of(b"x", 1);
        not_a_pack[0] = b'K';
        assert!(relayed(&not_a_pack).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn check_in_pieces(pack: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, TransferStats)> {
            let mut out = Vec::new();
            let mut check = PackCheck::default();
            let mut send = |b: &[u8]| -> Result<()> {
                out.extend_from_slice(b);
                Ok(())
            };
            let mut at = 0;
            for &size in pieces.iter().cycle().take(pack.len() + 1) {
                if at >= pack.len() {
                    break;
                }
                let end = (at + size.max(1)).min(pack.len());
                check.feed(&pack[at..end], &mut send)?;
                at = end;
            }
            let stats = check.finish(&mut send)?;
            Ok((out, stats))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn a_sound_pack_passes_whole_in_any_pieces_and_a_flipped_bit_never_does(
                body in proptest::collection::vec(any::<u8>(), 0..400),
                objects in 0u32..1000,
                pieces in proptest::collection::vec(1usize..50, 1..8),
                flip in any::<proptest::sample::Index>(),
                bit in 0u8..8,
            ) {
                let pack = pack_of(&body, objects);
                let (out, stats) = check_in_pieces(&pack, &pieces).unwrap();
                prop_assert_eq!(&out, &pack);
                prop_assert_eq!(stats.objects, objects as usize);
                let mut damaged = pack.clone();
                let at = flip.index(damaged.len());
                damaged[at] ^= 1 << bit;
                prop_assert!(check_in_pieces(&damaged, &pieces).is_err());
            }
        }
    }
}
