//! Git's wire format as a receive-pack client needs it: pkt-lines, the ref advertisement,
//! side-band-64k and report-status.
//!
//! We speak it ourselves (see `receive_pack`) because `git push` over HTTPS matches every refspec
//! against every local and remote ref (quadratic in refs) and libgit2 rebuilds every delta. The
//! parsers are strict: a line this module does not know is an error that quotes it, never a
//! silent "the target said nothing", since a push whose report we misread could call a refused
//! ref mirrored.

use std::io::Read;

use anyhow::{Context, Result, bail};

use crate::transport::error::NetError;

/// The longest pkt-line, length prefix included (git's `LARGE_PACKET_MAX`).
pub(crate) const MAX_PKT: usize = 65520;

/// The longest push report read: 16 MiB, 4,000 refs' report is about 250 KiB.
const MAX_REPORT: usize = 16 << 20;

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

    /// The next packet; the end of the stream is an error here.
    fn expect(&mut self, what: &str) -> Result<Packet> {
        self.next()?.with_context(|| {
            format!(
                "{}'s answer ended before {what} (unexpected eof)",
                self.peer
            )
        })
    }
}

/// A 40-hex object id.
pub(crate) fn parse_id(hex: &[u8]) -> Option<git2::Oid> {
    if hex.len() != 40 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    git2::Oid::from_str(std::str::from_utf8(hex).ok()?).ok()
}

/// What receive-pack advertised: its refs (names as bytes, as on the wire) and capabilities.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Advertisement {
    pub(crate) refs: Vec<(Vec<u8>, git2::Oid)>,
    pub(crate) capabilities: Vec<String>,
}

impl Advertisement {
    /// The branch `HEAD` names (`symref=HEAD:refs/heads/x`), when an upload-pack says.
    pub(crate) fn head(&self) -> Option<String> {
        self.capabilities
            .iter()
            .find_map(|c| c.strip_prefix("symref=HEAD:"))
            .filter(|name| name.starts_with("refs/"))
            .map(|name| crate::base::refname::escape(name.as_bytes()))
    }

    pub(crate) fn has(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == capability || c.split_once('=').is_some_and(|(k, _)| k == capability))
    }
}

/// What one ref advertisement may hold: 2,000,000 refs in 256 MiB of ref lines.
///
/// Each pkt-line is bounded (`MAX_PKT`), their number is not: a broken or hostile server could
/// send refs until memory runs out. git itself sets no bound (`get_remote_heads` reads refs
/// until the flush). What is read is kept twice (the advertisement, and the listing made from
/// it), at about 100 bytes a ref besides its name: at the bounds, about a gigabyte, within the
/// smallest CodeBuild machine (3 GB). Both bounds are needed: short names make a count the
/// limit, names of up to 65 KB the bytes. The 7,000 refs of a mirror with its pull-request heads
/// advertise under 1 MiB, and no real repository comes near either bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) bytes: usize,
    pub(crate) refs: usize,
}

pub(crate) const MAX_ADVERTISEMENT: Budget = Budget {
    bytes: 256 << 20,
    refs: 2_000_000,
};

/// Read the advertisement of `service` (`git-receive-pack` or `git-upload-pack`) up to its
/// flush; over smart HTTP after its `# service=...` line and flush. One past
/// `MAX_ADVERTISEMENT`, or that trickles in slower than the pace `timeout` sets (`Pace`), is an
/// error; so is a server's `ERR` line, in its own words.
///
/// Give it a buffered reader: unbuffered, each ref line costs two reads (a socket or SSH channel
/// call each: 14,000 for a mirror of 7,000 refs). A buffer dropped afterwards loses nothing,
/// because a v0 server sends nothing after the advertisement's flush until the client speaks.
pub(crate) fn read_service_advertisement(
    reader: &mut PktReader<impl Read>,
    service: &str,
    smart_http: bool,
    timeout: std::time::Duration,
) -> Result<Advertisement> {
    reader.pace = Some(Pace {
        started: std::time::Instant::now(),
        timeout,
        bytes: 0,
    });
    let ad = read_advertisement_within(reader, service, smart_http, MAX_ADVERTISEMENT);
    reader.pace = None;
    ad
}

/// `read_service_advertisement` with the bounds as a parameter, so that tests need not send
/// 256 MiB.
fn read_advertisement_within(
    reader: &mut PktReader<impl Read>,
    service: &str,
    smart_http: bool,
    budget: Budget,
) -> Result<Advertisement> {
    if smart_http {
        let expected = format!("# service={service}");
        match reader.expect("the service line")? {
            Packet::Data(line) if trim_lf(&line) == expected.as_bytes() => {}
            other => bail!(
                "the listing does not start with '{expected}' but {}: not a smart Git HTTP \
                 server for {service}",
                shown_packet(&other)
            ),
        }
        if reader.expect("the service line's flush")? != Packet::Flush {
            bail!(
                "{}'s listing has no flush after its service line",
                reader.peer
            );
        }
    }
    let mut ad = Advertisement::default();
    let mut first = true;
    let mut read = 0usize;
    loop {
        let line = match reader.expect("the end of the ref listing")? {
            Packet::Flush => break,
            Packet::Data(line) => line,
        };
        if first && let Some(why) = line.strip_prefix(b"ERR ") {
            return Err(NetError::Protocol(format!(
                "{} refused: {}",
                reader.peer,
                shown(trim_lf(why))
            ))
            .into());
        }
        read += line.len() + 4;
        if read > budget.bytes || ad.refs.len() >= budget.refs {
            bail!(
                "{}'s ref listing goes on past {} or {} refs ({} refs so far): no real \
                 repository advertises that much, so its server is broken or hostile; check \
                 that {} names the repository you mean and what serves it",
                reader.peer,
                crate::base::progress::human_bytes(budget.bytes as u64),
                budget.refs,
                ad.refs.len(),
                if reader.peer == "the source" {
                    "--source"
                } else {
                    "--target"
                }
            );
        }
        let line = trim_lf(&line);
        let (refpart, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) if first => (&line[..nul], Some(&line[nul + 1..])),
            Some(_) => bail!(
                "{}'s listing has capabilities after its first line: '{}'",
                reader.peer,
                shown(line)
            ),
            None => (line, None),
        };
        if let Some(caps) = caps {
            ad.capabilities = String::from_utf8_lossy(caps)
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
        }
        let bad = || {
            anyhow::anyhow!(
                "{}'s listing has a line this tool does not understand: '{}'",
                reader.peer,
                shown(line)
            )
        };
        if refpart.len() < 42 || refpart[40] != b' ' {
            return Err(bad());
        }
        let id = parse_id(&refpart[..40]).ok_or_else(bad)?;
        let name = &refpart[41..];
        // An empty repository advertises its capabilities on a pseudo-ref.
        if first && id.is_zero() && name == b"capabilities^{}" {
            first = false;
            continue;
        }
        // A zero id is how git advertises a ref it holds broken (a name it refuses, planted in
        // packed-refs): a ref of the listing still, which `libgit2::advertised` reports as one
        // this tool cannot carry, as it does for libgit2's own listings.
        if name.is_empty() {
            return Err(bad());
        }
        first = false;
        // `.have` lines name objects of alternates, not refs: they still are objects the
        // target has.
        ad.refs.push((name.to_vec(), id));
    }
    Ok(ad)
}

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
            None => bail!(
                "{}'s answer ended before its pack (unexpected eof)",
                reader.peer
            ),
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
                    reader.peer,
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
                    reader.peer,
                    shown(text)
                );
            }
        } else if let Some(why) = text.strip_prefix(b"ERR ") {
            bail!("{} refused: {}", reader.peer, shown(why));
        } else {
            bail!(
                "{} answered '{}' where an acknowledgment or its pack belongs",
                reader.peer,
                shown(text)
            );
        }
    }
    bail!(
        "{} sent more than {MAX_ACKS} acknowledgments before its pack",
        reader.peer
    )
}

/// What came back on the side-band of one push.
#[derive(Debug, Default)]
pub(crate) struct SideBand {
    /// Channel 1: the report-status pkt-lines, concatenated.
    pub(crate) data: Vec<u8>,
    /// Channel 2: the target's messages and progress.
    pub(crate) progress: Vec<u8>,
}

/// Demultiplex side-band-64k packets until the closing flush (or the end of the stream). Channel 3
/// (the target's fatal error) ends it with that error.
pub(crate) fn read_side_band(reader: &mut PktReader<impl Read>) -> Result<SideBand> {
    let mut out = SideBand::default();
    loop {
        let packet = match reader.next()? {
            None | Some(Packet::Flush) => return Ok(out),
            Some(Packet::Data(p)) => p,
        };
        let Some((&band, rest)) = packet.split_first() else {
            bail!("the target sent an empty side-band packet");
        };
        match band {
            1 => {
                out.data.extend_from_slice(rest);
                // A report names each ref once (about 60 bytes each): a stream without end is
                // not one, and must not fill memory.
                if out.data.len() > MAX_REPORT {
                    bail!("the target's push report goes on past {MAX_REPORT} bytes");
                }
            }
            2 => {
                out.progress.extend_from_slice(rest);
                // A server that talks without end cannot fill memory.
                if out.progress.len() > 1 << 20 {
                    let cut = out.progress.len() - (1 << 19);
                    out.progress.drain(..cut);
                }
            }
            3 => bail!(
                "the target reported a fatal error: {}",
                crate::base::text::clip(&String::from_utf8_lossy(rest), 300)
            ),
            other => bail!("the target sent side-band channel {other}, which does not exist"),
        }
    }
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

/// receive-pack's report: whether it unpacked the pack, then each ref's result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Report {
    /// `Err(reason)` when `unpack <reason>` was not `ok`.
    pub(crate) unpack: Result<(), String>,
    /// Each ref named, with `None` for `ok` and the reason for `ng`.
    pub(crate) refs: Vec<(Vec<u8>, Option<String>)>,
}

/// Parse report-status (the pkt-lines of side-band channel 1, or the bare answer without
/// side-band): `unpack ok|<error>`, then `ok <ref>` or `ng <ref> <reason>` per command, then a
/// flush.
pub(crate) fn parse_report(data: &[u8]) -> Result<Report> {
    let mut reader = PktReader::new(data);
    let unpack = match reader.expect("the push's report")? {
        Packet::Data(line) => {
            let line = trim_lf(&line);
            match line.strip_prefix(b"unpack ") {
                Some(b"ok") => Ok(()),
                Some(reason) => Err(crate::base::text::clip(
                    &String::from_utf8_lossy(reason),
                    300,
                )),
                None => bail!(
                    "the target's push report starts with '{}', not 'unpack'",
                    shown(line)
                ),
            }
        }
        Packet::Flush => bail!("the target's push report is empty"),
    };
    let mut refs = Vec::new();
    loop {
        let line = match reader.next()? {
            Some(Packet::Flush) => break,
            None => bail!("the target's push report ended without its flush (unexpected eof)"),
            Some(Packet::Data(line)) => line,
        };
        let line = trim_lf(&line);
        if let Some(name) = line.strip_prefix(b"ok ") {
            if name.is_empty() {
                bail!("the target's push report has an 'ok' without a ref name");
            }
            refs.push((name.to_vec(), None));
        } else if let Some(rest) = line.strip_prefix(b"ng ") {
            let Some(space) = rest.iter().position(|&b| b == b' ') else {
                bail!(
                    "the target's push report has an 'ng' line without a reason: '{}'",
                    shown(line)
                );
            };
            let reason = crate::base::text::clip(&String::from_utf8_lossy(&rest[space + 1..]), 300);
            refs.push((rest[..space].to_vec(), Some(reason)));
        } else {
            bail!(
                "the target's push report has a line this tool does not understand: '{}'",
                shown(line)
            );
        }
    }
    if reader.next()?.is_some() {
        bail!("the target's push report goes on after its flush");
    }
    Ok(Report { unpack, refs })
}

fn trim_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// A line as it may be quoted in an error: lossy, escaped, at most 200 characters.
fn shown(line: &[u8]) -> String {
    crate::base::text::clip(&String::from_utf8_lossy(line), 200)
}

fn shown_packet(packet: &Packet) -> String {
    match packet {
        Packet::Flush => "a flush".to_string(),
        Packet::Data(d) => format!("'{}'", shown(trim_lf(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(lines: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            match line {
                Some(data) => pkt(&mut out, data).unwrap(),
                None => flush(&mut out),
            }
        }
        out
    }

    const T: std::time::Duration = std::time::Duration::from_secs(60);
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

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

    #[test]
    fn reads_an_http_advertisement_with_byte_names() {
        let first = format!("{A} refs/heads/main\0report-status side-band-64k delete-refs\n");
        let mut odd = format!("{B} refs/heads/").into_bytes();
        odd.extend_from_slice(b"caf\xe9\n");
        let body = packets(&[
            Some(b"# service=git-receive-pack\n"),
            None,
            Some(first.as_bytes()),
            Some(&odd),
            None,
        ]);
        let ad =
            read_service_advertisement(&mut PktReader::new(&body[..]), "git-receive-pack", true, T)
                .unwrap();
        assert_eq!(ad.refs.len(), 2);
        assert_eq!(ad.refs[0].0, b"refs/heads/main");
        assert_eq!(ad.refs[1].0, b"refs/heads/caf\xe9");
        assert_eq!(ad.refs[1].1.to_string(), B);
        assert!(ad.has("side-band-64k") && ad.has("delete-refs") && !ad.has("quiet"));
    }

    #[test]
    fn reads_a_broken_ref_advertised_with_a_zero_id() {
        let zero = "0".repeat(40);
        let body = packets(&[
            Some(format!("{A} refs/heads/main\0side-band-64k\n").as_bytes()),
            Some(format!("{zero} refs/heads/a..b\n").as_bytes()),
            None,
        ]);
        let ad =
            read_service_advertisement(&mut PktReader::new(&body[..]), "git-upload-pack", false, T)
                .unwrap();
        assert_eq!(ad.refs.len(), 2);
        assert_eq!(ad.refs[1].0, b"refs/heads/a..b");
        assert!(ad.refs[1].1.is_zero());
        // And a listing sorts it, and a valid name with no object, into what is not carried.
        let listing = crate::libgit2::advertised(&[
            ad.refs[0].clone(),
            ad.refs[1].clone(),
            (b"refs/heads/fine".to_vec(), ad.refs[1].1),
        ]);
        assert_eq!(listing.refs.len(), 1);
        let why: Vec<(&str, &str)> = listing
            .unsupported
            .iter()
            .map(|u| (u.name.as_str(), u.why.as_str()))
            .collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].1.contains("'..'"), "{why:?}");
        assert_eq!(why[1].0, "refs/heads/fine");
        assert!(why[1].1.contains("no object"), "{why:?}");
    }

    #[test]
    fn reads_an_empty_repositorys_advertisement() {
        let zero = "0".repeat(40);
        let line = format!("{zero} capabilities^{{}}\0report-status object-format=sha1\n");
        let body = packets(&[Some(line.as_bytes()), None]);
        let ad = read_service_advertisement(
            &mut PktReader::new(&body[..]),
            "git-receive-pack",
            false,
            T,
        )
        .unwrap();
        assert!(ad.refs.is_empty());
        assert!(ad.has("object-format"));
    }

    #[test]
    fn refuses_what_is_not_an_advertisement() {
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (
                packets(&[Some(b"# service=git-upload-pack\n"), None]),
                true,
                "service",
            ),
            (
                packets(&[Some(b"hello world\n"), None]),
                false,
                "'hello world'",
            ),
            (
                packets(&[Some(format!("{A} refs/heads/a\n").as_bytes())]),
                false,
                "unexpected eof",
            ),
            (
                packets(&[
                    Some(format!("{A} refs/heads/a\0x\n").as_bytes()),
                    Some(format!("{B} refs/heads/b\0y\n").as_bytes()),
                    None,
                ]),
                false,
                "capabilities after",
            ),
        ];
        for (body, http, says) in cases {
            let err = read_service_advertisement(
                &mut PktReader::new(&body[..]),
                "git-receive-pack",
                http,
                T,
            )
            .unwrap_err();
            assert!(format!("{err:#}").contains(says), "{err:#}");
        }
    }

    /// A server that advertises refs without end, made up as they are read (nothing stored),
    /// counting the bytes handed out.
    struct EndlessRefs {
        line: Vec<u8>,
        at: usize,
        handed: usize,
    }

    impl EndlessRefs {
        fn new(smart_http: bool) -> EndlessRefs {
            let mut head = Vec::new();
            if smart_http {
                head = packets(&[Some(b"# service=git-upload-pack\n"), None]);
            }
            head.extend(packets(&[Some(
                format!("{A} refs/heads/main\0side-band-64k\n").as_bytes(),
            )]));
            EndlessRefs {
                line: head,
                at: 0,
                handed: 0,
            }
        }
    }

    impl Read for EndlessRefs {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.line.len() {
                let name = format!("{B} refs/pull/{}/head\n", self.handed);
                self.line = packets(&[Some(name.as_bytes())]);
                self.at = 0;
            }
            let n = buf.len().min(self.line.len() - self.at);
            buf[..n].copy_from_slice(&self.line[self.at..n + self.at]);
            self.at += n;
            self.handed += n;
            Ok(n)
        }
    }

    #[test]
    fn an_advertisement_without_end_is_refused_by_bytes_or_by_count() {
        const BYTES: usize = 64 << 10;
        for (peer, flag, smart_http) in [
            ("the source", "--source", false),
            ("the target", "--target", true),
        ] {
            let mut endless = EndlessRefs::new(smart_http);
            let err = read_advertisement_within(
                &mut PktReader::from_peer(&mut endless, peer),
                "git-upload-pack",
                smart_http,
                Budget {
                    bytes: BYTES,
                    refs: usize::MAX,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with(&format!("{peer}'s ref listing goes on past 64.0 KiB or ")),
                "{err}"
            );
            assert!(err.contains(flag) && !err.contains('\n'), "{err}");
            // It stopped at the bound: one line past it at most.
            assert!(
                endless.handed <= BYTES + 100 && endless.handed > BYTES - 100,
                "read {} bytes for a budget of {BYTES}",
                endless.handed
            );
            // Short names: the count is the bound that holds.
            let mut endless = EndlessRefs::new(smart_http);
            let err = read_advertisement_within(
                &mut PktReader::from_peer(&mut endless, peer),
                "git-upload-pack",
                smart_http,
                Budget {
                    bytes: usize::MAX,
                    refs: 1000,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("or 1000 refs (1000 refs so far)"), "{err}");
        }
        // The bounds the public reader uses, as its documentation says; and an advertisement
        // just under a bound is read whole.
        assert_eq!(MAX_ADVERTISEMENT.bytes, 256 << 20);
        assert_eq!(MAX_ADVERTISEMENT.refs, 2_000_000);
        let body = packets(&[Some(format!("{A} refs/heads/main\0x\n").as_bytes()), None]);
        let exact = Budget {
            bytes: body.len() - 4,
            refs: 1,
        };
        let ad = read_advertisement_within(
            &mut PktReader::new(&body[..]),
            "git-receive-pack",
            false,
            exact,
        )
        .unwrap();
        assert_eq!(ad.refs.len(), 1);
        for tight in [
            Budget {
                bytes: exact.bytes - 1,
                ..exact
            },
            Budget { refs: 0, ..exact },
        ] {
            assert!(
                read_advertisement_within(
                    &mut PktReader::new(&body[..]),
                    "git-receive-pack",
                    false,
                    tight
                )
                .is_err()
            );
        }
    }

    /// A peer that hands out one byte every `every`.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        every: std::time::Duration,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.data.len() || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.every);
            buf[0] = self.data[self.at];
            self.at += 1;
            Ok(1)
        }
    }

    #[test]
    fn an_advertisement_that_trickles_in_ends_at_its_pace() {
        let mut lines: Vec<String> = (0..50).map(|i| format!("{A} refs/heads/b{i}\n")).collect();
        lines[0] = format!("{A} refs/heads/b0\0x\n");
        let mut body: Vec<Option<&[u8]>> = lines.iter().map(|l| Some(l.as_bytes())).collect();
        body.push(None);
        let stream = packets(&body);
        let every = std::time::Duration::from_millis(5);
        // Each read comes well within the timeout; the whole listing cannot.
        let mut trickle = Trickle {
            data: stream.clone(),
            at: 0,
            every,
        };
        let timeout = std::time::Duration::from_millis(200);
        let started = std::time::Instant::now();
        let err = read_service_advertisement(
            &mut PktReader::from_peer(&mut trickle, "the source"),
            "git-upload-pack",
            false,
            timeout,
        )
        .unwrap_err();
        assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
        assert!(trickle.at < stream.len(), "read it all: {err:#}");
        assert!(format!("{err:#}").contains("--network-timeout"), "{err:#}");
        assert!(crate::retry::is_transient(&err), "{err:#}");
        // The same listing at the same pace, with time enough, is read whole.
        let mut trickle = Trickle {
            data: stream.clone(),
            at: 0,
            every: std::time::Duration::ZERO,
        };
        let ad = read_service_advertisement(
            &mut PktReader::from_peer(&mut trickle, "the source"),
            "git-upload-pack",
            false,
            timeout,
        )
        .unwrap();
        assert_eq!(ad.refs.len(), 50);
    }

    #[test]
    fn an_err_line_instead_of_refs_is_the_servers_refusal_in_its_words() {
        let body = packets(&[Some(
            b"ERR access denied or repository not exported: /x.git\n",
        )]);
        let err = read_service_advertisement(
            &mut PktReader::from_peer(&body[..], "the source"),
            "git-upload-pack",
            false,
            T,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the source refused: access denied or repository not exported: /x.git"
        );
    }

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

    /// Properties of every parser of bytes a remote sends, on generated inputs: arbitrary bytes
    /// never panic and never read past the bounds; what this tool writes, or a well-formed
    /// answer, reads back as it was made.
    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn id_hex() -> impl Strategy<Value = String> {
            "[0-9a-f]{40}"
        }

        /// A ref name as the wire may carry it: any bytes but NUL, LF, space and `^`, under
        /// `refs/`.
        fn ref_name() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                any::<u8>().prop_filter("no NUL/LF/space/^", |b| {
                    !matches!(b, 0 | b'\n' | b' ' | b'^')
                }),
                1..60,
            )
            .prop_map(|tail| {
                let mut name = b"refs/".to_vec();
                name.extend(tail);
                name
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn pkt_lines_read_back_as_written(
                lines in proptest::collection::vec(
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)), 0..40),
            ) {
                let mut out = Vec::new();
                for line in &lines {
                    match line {
                        Some(data) => pkt(&mut out, data).unwrap(),
                        None => flush(&mut out),
                    }
                }
                let mut reader = PktReader::new(&out[..]);
                for line in &lines {
                    let packet = reader.next().unwrap();
                    // An empty data packet ("0004") is legal and stays one.
                    match line {
                        Some(data) => prop_assert_eq!(packet, Some(Packet::Data(data.clone()))),
                        None => prop_assert_eq!(packet, Some(Packet::Flush)),
                    }
                }
                prop_assert_eq!(reader.next().unwrap(), None);
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_packets_stay_bounded(
                bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            ) {
                let mut reader = PktReader::new(&bytes[..]);
                for _ in 0..bytes.len() + 1 {
                    match reader.next() {
                        Ok(Some(Packet::Data(d))) => prop_assert!(d.len() <= MAX_PKT - 4),
                        Ok(Some(Packet::Flush)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                let _ = read_service_advertisement(
                    &mut PktReader::new(&bytes[..]), "git-upload-pack", false, T);
                let _ = read_service_advertisement(
                    &mut PktReader::new(&bytes[..]), "git-receive-pack", true, T);
                let _ = read_acknowledgments(&mut PktReader::new(&bytes[..]));
                let _ = read_side_band(&mut PktReader::new(&bytes[..]));
                let _ = read_answer(&mut PktReader::new(&bytes[..]), false);
                let _ = parse_report(&bytes);
            }

            #[test]
            fn arbitrary_packets_never_panic_the_parsers(
                lines in proptest::collection::vec(
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..120)), 0..30),
            ) {
                let mut out = Vec::new();
                for line in &lines {
                    match line {
                        Some(data) => pkt(&mut out, data).unwrap(),
                        None => flush(&mut out),
                    }
                }
                let _ = read_service_advertisement(
                    &mut PktReader::new(&out[..]), "git-upload-pack", false, T);
                let _ = read_service_advertisement(
                    &mut PktReader::new(&out[..]), "git-receive-pack", true, T);
                let _ = read_acknowledgments(&mut PktReader::new(&out[..]));
                let _ = read_side_band(&mut PktReader::new(&out[..]));
                let _ = parse_report(&out);
            }

            #[test]
            fn an_advertisement_reads_back_its_refs_and_capabilities(
                refs in proptest::collection::vec((ref_name(), id_hex()), 1..30),
                caps in proptest::collection::vec("[a-z0-9-]{1,12}(=[a-z0-9/._-]{1,10})?", 0..8),
                smart_http in any::<bool>(),
            ) {
                let service = "git-upload-pack";
                let mut out = Vec::new();
                if smart_http {
                    pkt(&mut out, format!("# service={service}\n").as_bytes()).unwrap();
                    flush(&mut out);
                }
                for (i, (name, id)) in refs.iter().enumerate() {
                    let mut line = format!("{id} ").into_bytes();
                    line.extend_from_slice(name);
                    if i == 0 {
                        line.push(0);
                        line.extend_from_slice(caps.join(" ").as_bytes());
                    }
                    line.push(b'\n');
                    pkt(&mut out, &line).unwrap();
                }
                flush(&mut out);
                let ad = read_service_advertisement(
                    &mut PktReader::new(&out[..]), service, smart_http, T).unwrap();
                let want: Vec<(Vec<u8>, git2::Oid)> = refs
                    .iter()
                    .map(|(n, id)| (n.clone(), git2::Oid::from_str(id).unwrap()))
                    .collect();
                prop_assert_eq!(ad.refs, want);
                prop_assert_eq!(ad.capabilities, caps);
            }

            #[test]
            fn acknowledgments_in_any_mode_read_whole_before_the_pack(
                acks in proptest::collection::vec(
                    (id_hex(), prop_oneof![Just(""), Just(" continue"), Just(" common"),
                        Just(" ready")]), 0..12),
                nak in any::<bool>(),
                channel in 1u8..=3,
                first in proptest::collection::vec(any::<u8>(), 0..50),
            ) {
                let mut out = Vec::new();
                for (id, status) in &acks {
                    pkt(&mut out, format!("ACK {id}{status}\n").as_bytes()).unwrap();
                }
                if nak {
                    pkt(&mut out, b"NAK\n").unwrap();
                }
                let mut packet = vec![channel];
                packet.extend_from_slice(&first);
                pkt(&mut out, &packet).unwrap();
                let got = read_acknowledgments(&mut PktReader::new(&out[..])).unwrap();
                let want: Vec<git2::Oid> =
                    acks.iter().map(|(id, _)| git2::Oid::from_str(id).unwrap()).collect();
                prop_assert_eq!(got.acked, want);
                prop_assert_eq!(got.nak, nak);
                prop_assert_eq!(got.first, Some(Packet::Data(packet)));
            }

            #[test]
            fn a_report_reads_back_through_side_band_in_any_pieces(
                results in proptest::collection::vec(
                    (ref_name(), proptest::option::of("[a-z ]{1,20}")), 1..20),
                unpack_ok in any::<bool>(),
                piece in 1usize..200,
                progress in proptest::collection::vec(any::<u8>(), 0..100),
            ) {
                let mut report = Vec::new();
                let unpack = if unpack_ok { "unpack ok\n" } else { "unpack index-pack failed\n" };
                pkt(&mut report, unpack.as_bytes()).unwrap();
                for (name, reason) in &results {
                    let mut line = match reason {
                        None => b"ok ".to_vec(),
                        Some(_) => b"ng ".to_vec(),
                    };
                    line.extend_from_slice(name);
                    if let Some(reason) = reason {
                        line.push(b' ');
                        line.extend_from_slice(reason.as_bytes());
                    }
                    line.push(b'\n');
                    pkt(&mut report, &line).unwrap();
                }
                flush(&mut report);
                // Channel 1 in pieces of `piece` bytes, progress on channel 2 between them.
                let mut stream = Vec::new();
                for chunk in report.chunks(piece) {
                    let mut one = vec![1u8];
                    one.extend_from_slice(chunk);
                    pkt(&mut stream, &one).unwrap();
                    let mut two = vec![2u8];
                    two.extend_from_slice(&progress);
                    pkt(&mut stream, &two).unwrap();
                }
                flush(&mut stream);
                let band = read_side_band(&mut PktReader::new(&stream[..])).unwrap();
                prop_assert_eq!(&band.data, &report);
                let parsed = parse_report(&band.data).unwrap();
                prop_assert_eq!(parsed.unpack.is_ok(), unpack_ok);
                prop_assert_eq!(parsed.refs.len(), results.len());
                for ((name, reason), (got_name, got_reason)) in results.iter().zip(&parsed.refs) {
                    prop_assert_eq!(name, got_name);
                    prop_assert_eq!(reason.is_some(), got_reason.is_some());
                }
            }
        }
    }
}
