//! receive-pack's report-status: whether it unpacked the pack, then each ref's `ok` or `ng`.

use anyhow::{Result, bail};

use super::pktline::{Packet, PktReader, shown, trim_lf};
use crate::base::net_error::NetError;

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
            None => {
                return Err(NetError::Broken {
                    url: "the target".to_string(),
                    detail: "its push report ended without its flush (unexpected eof)".to_string(),
                }
                .into());
            }
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
