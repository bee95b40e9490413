//! side-band-64k: a remote's answer cut into packets of channel 1 (data), 2 (messages) and 3
//! (a fatal error).

use std::io::Read;

use anyhow::{Result, bail};

use super::pktline::{Packet, PktReader, flush, pkt};
use crate::base::net_error::NetError;

/// The longest push report read: 16 MiB, 4,000 refs' report is about 250 KiB.
const MAX_REPORT: usize = 16 << 20;

/// What came back on the side-band of one push.
#[derive(Debug, Default)]
pub(crate) struct SideBand {
    /// Channel 1: the report-status pkt-lines, concatenated.
    pub(crate) data: Vec<u8>,
    /// Channel 2: the target's messages and progress.
    pub(crate) progress: Vec<u8>,
}

/// How a side-band stream may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// At its flush, or where the stream ends (a push's report).
    FlushOrEnd,
    /// At its flush only: a stream that ends before it was cut (a pack).
    Flush,
}

/// Demultiplex side-band-64k packets to their end (`ending`), `first` being the first when it
/// was read already: channel 1's data to `data` as it comes, channel 2's messages kept (their
/// latest 512 KiB at most) and returned, channel 3 (the peer's fatal error) an error quoting it.
pub(crate) fn demultiplex(
    reader: &mut PktReader<impl Read>,
    mut first: Option<Packet>,
    ending: Ending,
    data: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut progress = Vec::new();
    loop {
        let packet = match first
            .take()
            .map_or_else(|| reader.next(), |p| Ok(Some(p)))?
        {
            Some(Packet::Flush) => return Ok(progress),
            None if ending == Ending::FlushOrEnd => return Ok(progress),
            None => {
                return Err(NetError::Broken {
                    url: reader.peer().to_string(),
                    detail: "its answer ended without its flush (unexpected eof)".to_string(),
                }
                .into());
            }
            Some(Packet::Data(p)) => p,
        };
        let Some((&band, rest)) = packet.split_first() else {
            bail!("{} sent an empty side-band packet", reader.peer());
        };
        match band {
            1 => data(rest)?,
            2 => {
                progress.extend_from_slice(rest);
                // A server that talks without end cannot fill memory.
                if progress.len() > 1 << 20 {
                    let cut = progress.len() - (1 << 19);
                    progress.drain(..cut);
                }
            }
            3 => bail!(
                "{} reported a fatal error: {}",
                reader.peer(),
                crate::base::text::clip(&String::from_utf8_lossy(rest), 300)
            ),
            other => bail!(
                "{} sent side-band channel {other}, which does not exist",
                reader.peer()
            ),
        }
    }
}

/// A push's answer on side-band: the report on channel 1, to the closing flush (or the end of the
/// stream), bounded; the target's messages on 2.
pub(crate) fn read_side_band(reader: &mut PktReader<impl Read>) -> Result<SideBand> {
    let mut report = Vec::new();
    let peer = reader.peer();
    let progress = demultiplex(reader, None, Ending::FlushOrEnd, &mut |piece| {
        report.extend_from_slice(piece);
        // A report names each ref once (about 60 bytes each): a stream without end is not
        // one, and must not fill memory.
        if report.len() > MAX_REPORT {
            bail!("{peer}'s push report goes on past {MAX_REPORT} bytes");
        }
        Ok(())
    })?;
    Ok(SideBand {
        data: report,
        progress,
    })
}

/// The answer to a push: demultiplexed when side-band-64k was asked for, else the report's
/// pkt-lines as they come, to their flush.
pub(crate) fn read_answer(reader: &mut PktReader<impl Read>, side_band: bool) -> Result<SideBand> {
    if side_band {
        return read_side_band(reader);
    }
    let mut out = SideBand::default();
    loop {
        match reader.next()? {
            None => return Ok(out),
            Some(Packet::Flush) => {
                flush(&mut out.data);
                return Ok(out);
            }
            Some(Packet::Data(line)) => {
                pkt(&mut out.data, &line)?;
                if out.data.len() > MAX_REPORT {
                    bail!("the target's push report goes on past {MAX_REPORT} bytes");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report_status::parse_report;
    use crate::protocol::testing::*;

    fn side_band(report: &[u8], messages: &[u8]) -> Vec<u8> {
        let mut one = vec![1u8];
        one.extend_from_slice(report);
        let mut two = vec![2u8];
        two.extend_from_slice(messages);
        packets(&[Some(&two), Some(&one), None])
    }

    #[test]
    fn demultiplexes_and_parses_a_report() {
        let report = packets(&[
            Some(b"unpack ok\n"),
            Some(b"ok refs/heads/main\n"),
            Some(b"ng refs/heads/no pre-receive hook declined\n"),
            Some(b"ok refs/heads/caf\xe9\n"),
            None,
        ]);
        let stream = side_band(&report, b"error: hook says no to refs/heads/no\n");
        let band = read_side_band(&mut PktReader::new(&stream[..])).unwrap();
        assert_eq!(band.progress, b"error: hook says no to refs/heads/no\n");
        let parsed = parse_report(&band.data).unwrap();
        assert_eq!(parsed.unpack, Ok(()));
        assert_eq!(
            parsed.refs,
            vec![
                (b"refs/heads/main".to_vec(), None),
                (
                    b"refs/heads/no".to_vec(),
                    Some("pre-receive hook declined".to_string())
                ),
                (b"refs/heads/caf\xe9".to_vec(), None),
            ]
        );
    }

    #[test]
    fn an_unpack_error_is_kept() {
        let report = packets(&[
            Some(b"unpack index-pack abnormal exit\n"),
            Some(b"ng refs/heads/a unpacker error\n"),
            None,
        ]);
        let parsed = parse_report(&report).unwrap();
        assert_eq!(parsed.unpack, Err("index-pack abnormal exit".to_string()));
        assert_eq!(parsed.refs[0].1.as_deref(), Some("unpacker error"));
    }

    #[test]
    fn refuses_a_report_it_does_not_understand() {
        for (lines, says) in [
            (vec![Some(&b"ok refs/heads/a\n"[..]), None], "not 'unpack'"),
            (
                vec![Some(b"unpack ok\n"), Some(b"option refname x\n"), None],
                "'option refname x'",
            ),
            (
                vec![Some(b"unpack ok\n"), Some(b"ng refs/heads/a\n"), None],
                "without a reason",
            ),
            (
                vec![Some(b"unpack ok\n"), Some(b"ok refs/heads/a\n")],
                "without its flush",
            ),
            (vec![None], "empty"),
        ] {
            let err = parse_report(&packets(&lines)).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{err:#}");
        }
    }

    #[test]
    fn a_report_without_end_is_refused() {
        let mut line = vec![1u8];
        line.extend_from_slice(&[b'x'; 60000]);
        let one = packets(&[Some(&line)]);
        let endless = one.repeat(400);
        let mut reader = PktReader::new(&endless[..]);
        let err = read_side_band(&mut reader).unwrap_err();
        assert!(err.to_string().contains("goes on past"), "{err}");
    }

    #[test]
    fn reads_a_report_without_side_band() {
        let report = packets(&[Some(b"unpack ok\n"), Some(b"ok refs/heads/a\n"), None]);
        let answer = read_answer(&mut PktReader::new(&report[..]), false).unwrap();
        assert_eq!(answer.data, report);
        assert_eq!(parse_report(&answer.data).unwrap().refs.len(), 1);
    }

    #[test]
    fn a_fatal_side_band_message_is_an_error_naming_it() {
        let mut three = vec![3u8];
        three.extend_from_slice(b"disk full\n");
        let stream = packets(&[Some(&three)]);
        let err = read_side_band(&mut PktReader::new(&stream[..])).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        let stream = packets(&[Some(b"\x07what")]);
        assert!(read_side_band(&mut PktReader::new(&stream[..])).is_err());
    }
}
