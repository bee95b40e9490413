//! The answer to a fetch's wants and haves (`pack-protocol`'s packfile negotiation), read whole
//! whatever mode upload-pack answers in, up to the first packet of its pack.

use std::io::Read;

use anyhow::{Result, bail};

use git2::Oid;

use crate::base::net_error::NetError;

use super::pktline::{Packet, PktReader, flush, parse_id, pkt, shown, trim_lf};

/// What upload-pack said of the haves before its pack (`pack-protocol`'s "Packfile
/// Negotiation"), read whole whatever mode it answered in.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Acknowledgments {
    /// Every `ACK <id>` (with or without `continue`, `common` or `ready`), in order. Without
    /// `multi_ack` git acknowledges while it reads the haves, and may send more than one: each
    /// have whose commit it already knew the client holds is answered again while it has
    /// found a single common object.
    pub(crate) acked: Vec<git2::Oid>,
    /// Whether a `NAK` came.
    pub(crate) nak: bool,
    /// The first packet after the acknowledgments: the pack's first side-band packet, or
    /// `None` when the answer ended (or flushed) there.
    pub(crate) first: Option<Packet>,
}

/// The most acknowledgment lines read before a pack: one per have sent, and the client sends
/// far fewer than this.
const MAX_ACKS: usize = 1 << 20;

/// Read upload-pack's answer to `wants, flush, haves, done` up to the start of its pack: any
/// number of `ACK <id>[ status]`, `NAK`, `shallow`/`unshallow <id>` lines, in any order, then
/// the first packet that is none of them. `ERR <text>` is the server's refusal, returned as
/// an error quoting its text. A stream that ends inside this part, or a line that is none of
/// these and does not start a side-band packet, is an error.
pub(crate) fn read_acknowledgments(reader: &mut PktReader<impl Read>) -> Result<Acknowledgments> {
    let mut out = Acknowledgments::default();
    for _ in 0..MAX_ACKS {
        let line = match reader.next()? {
            None => {
                return Err(NetError::Broken {
                    url: reader.peer().to_string(),
                    detail: "its answer ended before its pack (unexpected eof)".to_string(),
                }
                .into());
            }
            // Only after `shallow` lines does a v0 server flush here; the pack follows.
            Some(Packet::Flush) => continue,
            Some(Packet::Data(line)) => line,
        };
        // A side-band packet starts with its channel byte (1, 2 or 3), which no line here does.
        if matches!(line.first(), Some(1..=3)) {
            out.first = Some(Packet::Data(line));
            return Ok(out);
        }
        let text = trim_lf(&line);
        if let Some(rest) = text.strip_prefix(b"ACK ") {
            let id = rest.get(..40).and_then(parse_id);
            let status = rest.get(40..).unwrap_or_default();
            let known_status = matches!(status, b"" | b" continue" | b" common" | b" ready");
            match id {
                Some(id) if known_status => out.acked.push(id),
                _ => bail!(
                    "{} acknowledged with a line this tool does not understand: '{}'",
                    reader.peer(),
                    shown(text)
                ),
            }
        } else if text == b"NAK" {
            out.nak = true;
        } else if let Some(rest) = text
            .strip_prefix(b"shallow ")
            .or_else(|| text.strip_prefix(b"unshallow "))
        {
            if parse_id(rest).is_none() {
                bail!(
                    "{} sent a shallow line this tool does not understand: '{}'",
                    reader.peer(),
                    shown(text)
                );
            }
        } else if let Some(why) = text.strip_prefix(b"ERR ") {
            bail!("{} refused: {}", reader.peer(), shown(why));
        } else {
            bail!(
                "{} answered '{}' where an acknowledgment or its pack belongs",
                reader.peer(),
                shown(text)
            );
        }
    }
    bail!(
        "{} sent more than {MAX_ACKS} acknowledgments before its pack",
        reader.peer()
    )
}

/// What a fetch asks of the source's upload-pack besides objects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask {
    /// A thin pack: deltas against objects the haves reach, left out of the pack.
    pub(crate) thin: bool,
    pub(crate) ofs_delta: bool,
    /// No progress messages on side-band channel 2.
    pub(crate) quiet: bool,
}

/// A fetch's request to upload-pack: the wants (the first with the capabilities), a flush, every have,
/// `done` (no negotiation rounds: the haves are all we know, and what the source does not know
/// it ignores).
pub(crate) fn fetch_request(wants: &[Oid], haves: &[Oid], ask: Ask) -> Result<Vec<u8>> {
    let mut caps = String::from("side-band-64k");
    if ask.thin {
        caps.push_str(" thin-pack");
    }
    if ask.ofs_delta {
        caps.push_str(" ofs-delta");
    }
    if ask.quiet {
        caps.push_str(" no-progress");
    }
    caps.push_str(&format!(
        " agent=backlog-mirror/{}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    for (i, want) in wants.iter().enumerate() {
        let line = if i == 0 {
            format!("want {want} {caps}\n")
        } else {
            format!("want {want}\n")
        };
        pkt(&mut out, line.as_bytes())?;
    }
    flush(&mut out);
    for have in haves {
        pkt(&mut out, format!("have {have}\n").as_bytes())?;
    }
    pkt(&mut out, b"done\n")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::*;

    fn acks(stream: &[u8]) -> Result<Acknowledgments> {
        read_acknowledgments(&mut PktReader::from_peer(stream, "the source"))
    }

    fn id(hex: &str) -> git2::Oid {
        git2::Oid::from_str(hex).unwrap()
    }

    #[test]
    fn reads_every_ack_git_sends_without_multi_ack_before_the_pack() {
        // git's upload-pack without multi_ack acknowledges while it reads the haves, once more
        // for each have whose commit it already knew the client holds: two ACKs, then the pack.
        let stream = packets(&[
            Some(format!("ACK {A}\n").as_bytes()),
            Some(format!("ACK {B}\n").as_bytes()),
            Some(b"\x01PACK"),
            None,
        ]);
        let got = acks(&stream).unwrap();
        assert_eq!(got.acked, vec![id(A), id(B)]);
        assert!(!got.nak);
        assert_eq!(got.first, Some(Packet::Data(b"\x01PACK".to_vec())));
    }

    #[test]
    fn reads_nak_and_each_multi_ack_mode_and_shallow_lines() {
        let stream = packets(&[Some(b"NAK\n"), Some(b"\x02counting")]);
        let got = acks(&stream).unwrap();
        assert!(got.nak && got.acked.is_empty());
        assert_eq!(got.first, Some(Packet::Data(b"\x02counting".to_vec())));

        // multi_ack_detailed: common ids while reading, `ready`, a NAK at a flush, the last ACK
        // after `done`.
        let stream = packets(&[
            Some(format!("shallow {A}\n").as_bytes()),
            Some(format!("unshallow {B}\n").as_bytes()),
            None,
            Some(format!("ACK {A} common\n").as_bytes()),
            Some(format!("ACK {B} continue\n").as_bytes()),
            Some(format!("ACK {B} ready\n").as_bytes()),
            Some(b"NAK"),
            Some(format!("ACK {B}").as_bytes()),
            Some(b"\x01PACK"),
        ]);
        let got = acks(&stream).unwrap();
        assert_eq!(got.acked, vec![id(A), id(B), id(B), id(B)]);
        assert!(got.nak);
    }

    #[test]
    fn an_err_line_is_the_servers_refusal_in_its_own_words() {
        let stream = packets(&[Some(b"ERR upload-pack: not our ref 1234\n")]);
        let err = acks(&stream).unwrap_err().to_string();
        assert_eq!(err, "the source refused: upload-pack: not our ref 1234");
        // Escaped: a server cannot write to the terminal through it.
        let stream = packets(&[Some(b"ERR \x1b]0;title\x07")]);
        let err = acks(&stream).unwrap_err().to_string();
        assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    }

    #[test]
    fn an_answer_that_is_not_a_negotiation_is_refused() {
        for bad in [
            packets(&[]),
            packets(&[Some(format!("ACK {A}\n").as_bytes())]),
            packets(&[Some(b"ACK 12345\n")]),
            packets(&[Some(format!("ACK {A} maybe\n").as_bytes())]),
            packets(&[Some(b"shallow nope\n")]),
            packets(&[Some(b"hello\n")]),
            packets(&[Some(b"")]),
        ] {
            assert!(acks(&bad).is_err(), "{:?}", String::from_utf8_lossy(&bad));
        }
    }

    #[test]
    fn asks_once_with_the_capabilities_and_every_have() {
        let a = Oid::from_bytes(&[1; 20]).unwrap();
        let b = Oid::from_bytes(&[2; 20]).unwrap();
        let ask = Ask {
            thin: true,
            ofs_delta: true,
            quiet: true,
        };
        let bytes = fetch_request(&[a, b], &[b], ask).unwrap();
        let first = match PktReader::new(&bytes[..]).next().unwrap() {
            Some(Packet::Data(line)) => String::from_utf8(line).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(
            first.starts_with(&format!(
                "want {a} side-band-64k thin-pack ofs-delta no-progress agent=backlog-mirror/"
            )),
            "{first}"
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(&format!("0032want {b}\n0000")), "{text}");
        assert!(
            text.ends_with(&format!("0032have {b}\n0009done\n")),
            "{text}"
        );
        let whole = Ask {
            thin: false,
            ofs_delta: false,
            quiet: false,
        };
        let bytes = fetch_request(&[a], &[], whole).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!("want {a} side-band-64k agent=")),
            "a pack for the cache is thin only when asked: {text}"
        );
    }
}
