//! What the protocol's tests (and the engine's, above them) share: packets made from lines, and
//! ids.

#![cfg(test)]

use super::pktline::{flush, pkt};

pub(crate) fn packets(lines: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        match line {
            Some(data) => pkt(&mut out, data).unwrap(),
            None => flush(&mut out),
        }
    }
    out
}

/// The id whose 20 bytes are all `n`.
pub(crate) fn id(n: u8) -> git2::Oid {
    git2::Oid::from_bytes(&[n; 20]).expect("20 bytes")
}

pub(crate) const T: std::time::Duration = std::time::Duration::from_secs(60);
pub(crate) const A: &str = "1111111111111111111111111111111111111111";
pub(crate) const B: &str = "2222222222222222222222222222222222222222";
