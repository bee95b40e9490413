//! What the protocol's tests share: packets made from lines, and ids.

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

pub(crate) const T: std::time::Duration = std::time::Duration::from_secs(60);
pub(crate) const A: &str = "1111111111111111111111111111111111111111";
pub(crate) const B: &str = "2222222222222222222222222222222222222222";
