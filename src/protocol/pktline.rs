//! pkt-lines, git's framing of every message: a four-hex-digit length, then the data; `0000`
//! flushes. The reader is strict (a length that is not one is an error quoting it) and bounded
//! (no packet passes git's limit), reads again after a signal, and can hold a stream to a pace
//! so that a peer trickling bytes cannot hold a step for ever.

use std::io::Read;

use anyhow::{Context, Result, bail};

use crate::base::net_error::NetError;

/// The longest pkt-line, length prefix included (git's `LARGE_PACKET_MAX`).
pub(crate) const MAX_PKT: usize = 65520;

/// Append `data` as one pkt-line to `out`.
pub(crate) fn pkt(out: &mut Vec<u8>, data: &[u8]) -> Result<()> {
    let len = data.len() + 4;
    if len > MAX_PKT {
        bail!(
            "a pkt-line of {len} bytes is longer than git's limit of {MAX_PKT} (a ref name too long \
             to push?)"
        );
    }
    out.extend_from_slice(format!("{len:04x}").as_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Append a flush packet (`0000`).
pub(crate) fn flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

/// One packet read from the wire.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet {
    Flush,
    Data(Vec<u8>),
}

/// Reads pkt-lines from a byte stream.
pub(crate) struct PktReader<R> {
    inner: R,
    /// Who sends them, for messages: `the target`, or `the source` for the relay's upload-pack.
    peer: &'static str,
    /// While set, the stream must keep a pace (`Pace`): a peer trickling bytes cannot hold a
    /// step that every single read lets pass.
    pace: Option<Pace>,
}

/// A low-speed limit over one step: after `timeout`, at least `PACE_BYTES` more per `timeout`
/// on average. A server sends its ref advertisement at once and at the link's speed (7,000
/// refs are under 1 MiB); one that sends it a byte a second keeps every read under the network
/// timeout, and would otherwise hold the run for days.
#[derive(Debug, Clone, Copy)]
struct Pace {
    started: std::time::Instant,
    timeout: std::time::Duration,
    bytes: u64,
}

/// What a paced step must move per network timeout, past the first.
const PACE_BYTES: u64 = 1 << 20;

impl Pace {
    fn behind(&self) -> bool {
        let allowed = self
            .timeout
            .saturating_add(self.timeout.mul_f64(self.bytes as f64 / PACE_BYTES as f64));
        self.started.elapsed() > allowed
    }
}

impl<R: Read> PktReader<R> {
    /// A reader of the target's packets.
    pub(crate) fn new(inner: R) -> Self {
        Self::from_peer(inner, "the target")
    }

    /// A reader of `peer`'s packets (`the source`): errors name it.
    pub(crate) fn from_peer(inner: R, peer: &'static str) -> Self {
        PktReader {
            inner,
            peer,
            pace: None,
        }
    }

    /// Read from the stream, counting for the pace and failing once it is behind it.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                // A signal landed mid-read (a socket with a receive timeout is not restarted
                // after one): read again, as `read_exact` does.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read.with_context(|| format!("cannot read from {}", self.peer))?,
            }
        };
        if let Some(pace) = &mut self.pace {
            pace.bytes += n as u64;
            if pace.behind() {
                return Err(NetError::Stalled {
                    url: self.peer.to_string(),
                    doing: "sent too little",
                    timeout: pace.timeout,
                    why: "its ref listing trickles in: at least 1 MiB per timeout is due once \
                          the first has passed",
                }
                .into());
            }
        }
        Ok(n)
    }

    /// The next packet, or `None` at a clean end of stream (between packets).
    pub(crate) fn next(&mut self) -> Result<Option<Packet>> {
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.read_some(&mut head[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(self.cut_short("inside a pkt-line length").into());
            }
            got += n;
        }
        let len = std::str::from_utf8(&head)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .with_context(|| {
                format!(
                    "{} sent '{}' where a pkt-line length belongs: not git's protocol",
                    self.peer,
                    String::from_utf8_lossy(&head).escape_debug()
                )
            })?;
        match len {
            0 => return Ok(Some(Packet::Flush)),
            1..=3 => bail!(
                "{} sent a pkt-line of length {len}, which protocol v0 has not",
                self.peer
            ),
            _ if len > MAX_PKT => {
                bail!(
                    "{} sent a pkt-line of {len} bytes, over git's limit",
                    self.peer
                )
            }
            _ => {}
        }
        let mut data = vec![0u8; len - 4];
        let mut got = 0;
        while got < data.len() {
            match self.read_some(&mut data[got..])? {
                0 => return Err(self.cut_short("inside a pkt-line").into()),
                n => got += n,
            }
        }
        Ok(Some(Packet::Data(data)))
    }

    /// The stream ended where more was due: the connection was cut.
    fn cut_short(&self, where_: &str) -> NetError {
        NetError::Broken {
            url: self.peer.to_string(),
            detail: format!("its answer ended {where_} (unexpected eof)"),
        }
    }

    /// Who sends these packets, as messages name it.
    pub(crate) fn peer(&self) -> &'static str {
        self.peer
    }

    /// Hold the stream to a pace (`Pace`) from now on, or no longer (`None`).
    pub(crate) fn pace(&mut self, timeout: Option<std::time::Duration>) {
        self.pace = timeout.map(|timeout| Pace {
            started: std::time::Instant::now(),
            timeout,
            bytes: 0,
        });
    }

    /// The next packet; the end of the stream is an error here.
    pub(crate) fn expect(&mut self, what: &str) -> Result<Packet> {
        match self.next()? {
            Some(packet) => Ok(packet),
            None => Err(self.cut_short(&format!("before {what}")).into()),
        }
    }
}

/// A 40-hex object id.
pub(crate) fn parse_id(hex: &[u8]) -> Option<git2::Oid> {
    if hex.len() != 40 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    git2::Oid::from_str(std::str::from_utf8(hex).ok()?).ok()
}

pub(crate) fn trim_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// A line as it may be quoted in an error: lossy, escaped, at most 200 characters.
pub(crate) fn shown(line: &[u8]) -> String {
    crate::base::text::clip(&String::from_utf8_lossy(line), 200)
}

pub(crate) fn shown_packet(packet: &Packet) -> String {
    match packet {
        Packet::Flush => "a flush".to_string(),
        Packet::Data(d) => format!("'{}'", shown(trim_lf(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::*;

    /// A stream whose every other read is interrupted by a signal, and which hands out one byte
    /// at a time.
    struct Interrupted<'a> {
        data: &'a [u8],
        hit: bool,
    }

    impl Read for Interrupted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.hit = !self.hit;
            if self.hit {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let Some((first, rest)) = self.data.split_first() else {
                return Ok(0);
            };
            match buf.first_mut() {
                Some(slot) => *slot = *first,
                None => return Ok(0),
            }
            self.data = rest;
            Ok(1)
        }
    }

    #[test]
    fn a_read_interrupted_by_a_signal_is_read_again() {
        let bytes = packets(&[Some(b"one\n"), None, Some(b"two\n")]);
        let mut reader = PktReader::new(Interrupted {
            data: &bytes,
            hit: false,
        });
        let mut seen = Vec::new();
        while let Some(packet) = reader.next().unwrap() {
            seen.push(packet);
        }
        assert_eq!(
            seen,
            vec![
                Packet::Data(b"one\n".to_vec()),
                Packet::Flush,
                Packet::Data(b"two\n".to_vec())
            ]
        );
    }

    #[test]
    fn writes_and_reads_pkt_lines() {
        let mut out = Vec::new();
        pkt(&mut out, b"hello\n").unwrap();
        flush(&mut out);
        assert_eq!(out, b"000ahello\n0000");
        let mut reader = PktReader::new(&out[..]);
        assert_eq!(
            reader.next().unwrap(),
            Some(Packet::Data(b"hello\n".to_vec()))
        );
        assert_eq!(reader.next().unwrap(), Some(Packet::Flush));
        assert_eq!(reader.next().unwrap(), None);
        assert!(pkt(&mut out, &vec![b'x'; MAX_PKT]).is_err());
    }

    #[test]
    fn refuses_broken_pkt_lines() {
        for (bytes, says) in [
            (&b"00"[..], "unexpected eof"),
            (b"zzzz", "'zzzz'"),
            (b"0002", "length 2"),
            (b"0009abc", "unexpected eof"),
            (b"ffff", "over git's limit"),
        ] {
            let err = PktReader::new(bytes).next().unwrap_err();
            assert!(format!("{err:#}").contains(says), "{bytes:?}: {err:#}");
        }
    }
}
