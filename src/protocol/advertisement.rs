//! The ref advertisement a service opens with (protocol v0): refs with their ids, the
//! capabilities on the first line, and bounds on what one may hold.

use std::io::Read;

use anyhow::{Result, bail};

use super::pktline::{Packet, PktReader, parse_id, shown, shown_packet, trim_lf};
use crate::base::net_error::NetError;

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
    reader.pace(Some(timeout));
    let ad = read_advertisement_within(reader, service, smart_http, MAX_ADVERTISEMENT);
    reader.pace(None);
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
                reader.peer()
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
                reader.peer(),
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
                reader.peer(),
                crate::base::progress::human_bytes(budget.bytes as u64),
                budget.refs,
                ad.refs.len(),
                if reader.peer() == "the source" {
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
                reader.peer(),
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
                reader.peer(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::*;

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
        let stalled = err.downcast_ref::<crate::base::net_error::NetError>();
        assert!(
            stalled.is_some_and(crate::base::net_error::IsSpurious::is_spurious),
            "{err:#}"
        );
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
}
