//! Our own receive-pack client for HTTP(S) and git:// targets, over `transport::Connection`.
//!
//! `git push` over HTTPS hands send-pack one refspec per ref, and send-pack matches each against
//! every local and every remote ref: with thousands of refs that is most of a mirror's time.
//! libgit2's push rebuilds every delta and re-sends trees and blobs the target already holds
//! behind its tips. Here each batch is one request: the commands, each with the plan's old id as
//! its lease (receive-pack refuses a ref that moved since, which the run's look-again loop reads
//! as a lost race), then the pack (`engine::pack`: `pack-objects --revs --thin` for the batch's
//! new tips minus what the target advertises and the cache has, or the relay's); so no object
//! goes twice, and stored deltas are reused.
//!
//! Local-path targets keep `git receive-pack` through git push (their hooks run in our child),
//! and SSH targets keep libgit2 (our key and host-key policy live there).

use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use git2::{Oid, Repository};

use crate::base::progress::Progress;
use crate::base::refname;
use crate::base::transfer::{
    PushOutcome, RefOutcome, TransferStats, UNPACKER_ERROR, remote_messages,
};
use crate::base::url::Scheme;
use crate::engine::pack::{Cut, PackObjects, Packer};
use crate::engine::plan::Change;
use crate::protocol::advertisement::Advertisement;
use crate::protocol::pktline::PktReader;
use crate::protocol::side_band::read_answer;
use crate::transport::connection::Stateful;
use crate::transport::git_daemon::GitDaemon;
use crate::transport::remote::{Login, Remote};
use crate::transport::smart_http::SmartHttp;
use crate::transport::{Body, Connection, Service};

/// Whether this client can push to `remote`.
pub(crate) fn serves(remote: &Remote) -> bool {
    matches!(
        remote.url.scheme(),
        Scheme::Http | Scheme::Https | Scheme::Git
    )
}

/// A target's receive-pack, over HTTP(S) or git://.
pub(crate) struct Client<'a> {
    conn: Box<dyn Connection + 'a>,
    /// Whether each request stands alone (HTTP): a listing's advertisement then serves as the
    /// push's own.
    stateless: bool,
}

impl<'a> Client<'a> {
    pub(crate) fn new(remote: &'a Remote, login: &'a Login, timeout: Duration) -> Result<Self> {
        Ok(match remote.url.scheme() {
            Scheme::Git => Client {
                conn: Box::new(Stateful::new(GitDaemon::new(remote, timeout)?)),
                stateless: false,
            },
            _ => Client {
                conn: Box::new(SmartHttp::new(remote, login, timeout)?),
                stateless: true,
            },
        })
    }

    /// The target's receive-pack advertisement: over HTTP(S) one GET, credentials up front (so
    /// no 401 round trip); over git:// a connection that ends after it. Kept, it is the first
    /// push's advertisement too (see `push`).
    pub(crate) fn list(&mut self) -> Result<Advertisement> {
        self.listing(Service::ReceivePack)
    }

    /// The branch the target's `HEAD` names, from its upload-pack advertisement (receive-pack
    /// does not say).
    pub(crate) fn head(&mut self) -> Result<Option<String>> {
        Ok(self.upload_listing()?.head())
    }

    /// The upload-pack advertisement: refs (tags peeled too) and where `HEAD` points, for an
    /// account that may only read.
    pub(crate) fn upload_listing(&mut self) -> Result<Advertisement> {
        self.listing(Service::UploadPack)
    }

    fn listing(&mut self, service: Service) -> Result<Advertisement> {
        let ad = self.conn.handshake(service);
        self.conn.close();
        ad
    }

    /// Push one batch of `changes` from the cache at `repo` (its git directory), the pack
    /// built by `git pack-objects` in a process group whose guard holds `hold`. `listed` is the
    /// target's advertisement as this run's listing read it, when the plan was made from that
    /// listing: over HTTP(S) it stands for the GET this push would make (receive-pack still
    /// checks each command's old id, so a ref moved since is refused as a lost race). git://
    /// reads the advertisement its own connection opens with anyway.
    pub(crate) fn push(
        &mut self,
        repo: &Repository,
        changes: &[&Change],
        hold: BorrowedFd<'_>,
        progress: &mut Progress,
        listed: Option<Advertisement>,
        cut: Cut,
    ) -> Result<PushOutcome> {
        let mut packer = PackObjects {
            repo,
            hold,
            progress,
            cut,
        };
        let result = self.push_with(changes, &mut packer, listed);
        packer.progress.finish();
        result
    }

    /// Push one batch of `changes`, the pack (when a command needs one) from `packer`.
    pub(crate) fn push_with(
        &mut self,
        changes: &[&Change],
        packer: &mut dyn Packer,
        listed: Option<Advertisement>,
    ) -> Result<PushOutcome> {
        let ad = match listed {
            Some(ad) if self.stateless => ad,
            _ => self.conn.handshake(Service::ReceivePack)?,
        };
        let (changes, stale) = leased(changes, &ad);
        if changes.is_empty() {
            // Nothing to ask: a flush ends the exchange.
            self.conn.close();
            return Ok(stale_only(stale));
        }
        let changes = &changes[..];
        let url = self.conn.url().to_string();
        let (stats, mut answer) = self.conn.request(
            Service::ReceivePack,
            Body::Made(&mut |send| send_body(changes, &ad, packer, send)),
        )?;
        let band = read_answer(&mut PktReader::new(&mut answer), ad.has("side-band-64k"))
            .with_context(|| format!("cannot read the push report of {url}"))?;
        let mut done = outcome(changes, band, stats)?;
        done.refs.extend(stale);
        Ok(done)
    }
}

/// The changes whose lease holds on the advertisement (the ref is where the plan saw it), and a
/// "stale info" refusal for each other one, as `git push --force-with-lease` refuses it before
/// sending anything: the mirror reads it as a lost race and looks again.
fn leased<'c>(
    changes: &[&'c Change],
    ad: &crate::protocol::advertisement::Advertisement,
) -> (Vec<&'c Change>, HashMap<String, RefOutcome>) {
    let now: HashMap<&[u8], Oid> = ad.refs.iter().map(|(n, id)| (n.as_slice(), *id)).collect();
    let mut stale = HashMap::new();
    let mut held = Vec::new();
    for &change in changes {
        let name = refname::to_bytes(&change.name);
        if now.get(name.as_slice()).copied() == change.old {
            held.push(change);
        } else {
            stale.insert(
                change.name.clone(),
                RefOutcome::Rejected("stale info".to_string()),
            );
        }
    }
    (held, stale)
}

fn stale_only(stale: HashMap<String, RefOutcome>) -> PushOutcome {
    PushOutcome {
        refs: stale,
        ..PushOutcome::default()
    }
}

/// The commands of one batch as pkt-lines and their flush. Each update's old id is the plan's
/// (its lease): receive-pack refuses a ref whose value is not that one any more.
fn commands(
    changes: &[&Change],
    ad: &crate::protocol::advertisement::Advertisement,
) -> Result<Vec<u8>> {
    if !ad.has("report-status") {
        bail!("the target does not offer report-status: it could not say which refs it took");
    }
    if changes.iter().any(|c| c.new.is_none()) && !ad.has("delete-refs") {
        bail!("the target does not accept ref deletions (no delete-refs capability)");
    }
    let zero = Oid::ZERO_SHA1;
    let mut caps = String::from("report-status");
    if ad.has("side-band-64k") {
        caps.push_str(" side-band-64k");
    }
    if ad.has("object-format") {
        caps.push_str(" object-format=sha1");
    }
    caps.push_str(&format!(
        " agent=backlog-mirror/{}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let mut line = format!(
            "{} {} ",
            change.old.unwrap_or(zero),
            change.new.unwrap_or(zero)
        )
        .into_bytes();
        line.extend_from_slice(&refname::to_bytes(&change.name));
        if i == 0 {
            line.push(0);
            line.extend_from_slice(caps.as_bytes());
        }
        line.push(b'\n');
        crate::protocol::pktline::pkt(&mut out, &line)?;
    }
    crate::protocol::pktline::flush(&mut out);
    Ok(out)
}

/// A request's body, whatever carries it: the commands, then (unless every command deletes) the
/// pack. The commands go in the pack's first piece: one write, one segment, one HTTP chunk.
fn send_body(
    changes: &[&Change],
    ad: &crate::protocol::advertisement::Advertisement,
    packer: &mut dyn Packer,
    send: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<TransferStats> {
    let commands = commands(changes, ad)?;
    if !changes.iter().any(|c| c.new.is_some()) {
        send(&commands)?;
        return Ok(TransferStats::default());
    }
    let mut first = Some(commands);
    packer.pack(changes, ad, &mut |chunk| {
        let mut out = first.take().unwrap_or_default();
        out.extend_from_slice(chunk);
        send(&out)
    })
}

/// Each ref's result from the side-band answer. A ref the report does not name stays out of
/// the map (the caller says "no result").
fn outcome(
    changes: &[&Change],
    band: crate::protocol::side_band::SideBand,
    stats: TransferStats,
) -> Result<PushOutcome> {
    let mut remote_lines = remote_messages(&String::from_utf8_lossy(&band.progress));
    let report = crate::protocol::report_status::parse_report(&band.data)?;
    if let Err(why) = &report.unpack {
        remote_lines.push(format!("unpack failed: {why}"));
    }
    let asked: HashSet<Vec<u8>> = changes.iter().map(|c| refname::to_bytes(&c.name)).collect();
    let mut refs = HashMap::new();
    for (name, result) in report.refs {
        if !asked.contains(&name) {
            bail!(
                "the target reported on {}, a ref this push did not send",
                refname::shown(&refname::escape(&name))
            );
        }
        let outcome = match (result, &report.unpack) {
            (None, Ok(())) => RefOutcome::Accepted,
            (None, Err(why)) => RefOutcome::Rejected(format!("{UNPACKER_ERROR}: {why}")),
            (Some(reason), _) => RefOutcome::Rejected(reason),
        };
        refs.insert(refname::escape(&name), outcome);
    }
    Ok(PushOutcome {
        refs,
        stats,
        remote_lines,
        unpack_error: report.unpack.err(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::id;

    fn advertisement(
        refs: &[(&[u8], Oid)],
        caps: &str,
    ) -> crate::protocol::advertisement::Advertisement {
        crate::protocol::advertisement::Advertisement {
            refs: refs.iter().map(|(n, id)| (n.to_vec(), *id)).collect(),
            capabilities: caps.split(' ').map(str::to_string).collect(),
        }
    }

    #[test]
    fn a_ref_that_moved_since_the_plan_is_stale_and_not_sent() {
        let ad = advertisement(
            &[(b"refs/heads/a", id(1)), (b"refs/heads/moved", id(9))],
            "report-status delete-refs",
        );
        let a = Change::between("refs/heads/a", Some(id(1)), Some(id(2)));
        let moved = Change::between("refs/heads/moved", Some(id(1)), Some(id(2)));
        let created_meanwhile = Change::between("refs/heads/moved", None, Some(id(2)));
        let new = Change::between("refs/heads/new", None, Some(id(3)));
        let (held, stale) = leased(&[&a, &moved, &new], &ad);
        assert_eq!(held.len(), 2);
        assert_eq!(
            stale["refs/heads/moved"],
            RefOutcome::Rejected("stale info".to_string())
        );
        let (held, stale) = leased(&[&created_meanwhile], &ad);
        assert!(held.is_empty() && stale.len() == 1);
    }

    #[test]
    fn commands_carry_the_leases_and_the_capabilities_once() {
        let ad = advertisement(&[], "report-status side-band-64k delete-refs quiet");
        let update = Change::between("refs/heads/caf\\xe9", Some(id(1)), Some(id(2)));
        let delete = Change::between("refs/tags/v1", Some(id(3)), None);
        let bytes = commands(&[&update, &delete], &ad).unwrap();
        let mut reader = PktReader::new(&bytes[..]);
        let first = match reader.next().unwrap() {
            Some(crate::protocol::pktline::Packet::Data(d)) => d,
            other => panic!("{other:?}"),
        };
        let mut want = format!("{} {} refs/heads/caf", id(1), id(2)).into_bytes();
        want.push(0xe9);
        want.push(0);
        want.extend_from_slice(
            format!(
                "report-status side-band-64k agent=backlog-mirror/{}\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        assert_eq!(first, want);
        assert_eq!(
            reader.next().unwrap(),
            Some(crate::protocol::pktline::Packet::Data(
                format!("{} {} refs/tags/v1\n", id(3), Oid::ZERO_SHA1).into_bytes()
            ))
        );
        assert_eq!(
            reader.next().unwrap(),
            Some(crate::protocol::pktline::Packet::Flush)
        );
        // A target that cannot delete refs is told so, not sent a deletion.
        let no_delete = advertisement(&[], "report-status");
        let err = commands(&[&delete], &no_delete).unwrap_err();
        assert!(err.to_string().contains("delete-refs"), "{err}");
    }
}
