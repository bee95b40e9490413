//! The pack a push sends: which of the target's ids it is cut against (`Cut`), and who makes
//! it (`Packer`): `git pack-objects` in the cache, or the relay's source.

use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use git2::{Oid, Repository};

use crate::base::process_group::Group;
use crate::base::progress::Progress;
use crate::base::transfer::TransferStats;
use crate::engine::plan::Change;

/// A plan of at most this many ref changes, pushed in one batch, cuts its pack against the
/// advertised ids near it only (`Cut::Near`).
const NEAR_CUT_CHANGES: usize = 100;

/// Which of the target's advertised ids a pack is cut against (the objects it need not carry).
///
/// Every id makes the smallest pack, but git's walk (`pack-objects --revs`, and a source's
/// upload-pack given them as haves) starts from each: on a mirror with 7,000 pull-request heads
/// on side commits (the bench's pulls dataset), a one-commit change's pack took 0.36-0.39 s cut
/// against every id and 0.03 s against the branches and tags, the same 1.3 KiB either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Every advertised id: a large plan (a first mirror's), or one in several batches, whose
    /// later batches build on the tips the earlier ones left on the target. There the walk is
    /// small beside the pack, and no object may go twice.
    Every,
    /// The batch's own refs' old ids, and the target's branches, tags and `.have`s: a few
    /// changes. A new ref based on commits only some other ref (a pull request) reaches then
    /// brings objects the target has: a bigger pack, still a correct one (receive-pack
    /// completes a thin pack against all it holds).
    Near,
    /// The target's tips where the new history meets it, as the pre-push walk found them
    /// (`push::check_connectivity`), and the changed refs' old ids: the near cut of a target
    /// whose branches are many (10,000 branches made git's walk cost 70 ms for one commit).
    /// Only a walk that ended at a target tip on every path gives one.
    Boundary(Vec<Oid>),
}

impl Cut {
    /// The cut for a plan of `changes` ref changes pushed in `batches` batches.
    pub(crate) fn for_plan(changes: usize, batches: usize) -> Cut {
        if batches <= 1 && changes <= NEAR_CUT_CHANGES {
            Cut::Near
        } else {
            Cut::Every
        }
    }

    /// The advertised ids `changes` are cut against, each once.
    pub(crate) fn haves(
        &self,
        ad: &crate::protocol::advertisement::Advertisement,
        changes: &[&Change],
    ) -> Vec<Oid> {
        self.pick(
            ad.refs.iter().map(|(name, id)| (name.as_slice(), *id)),
            changes.iter().filter_map(|c| c.old),
        )
    }

    /// Of `refs` (a listing's names and ids), those this cut keeps, with `olds` (the old ids of
    /// the refs that change), each once.
    pub(crate) fn pick<'n>(
        &self,
        refs: impl IntoIterator<Item = (&'n [u8], Oid)>,
        olds: impl IntoIterator<Item = Oid>,
    ) -> Vec<Oid> {
        let near = |name: &[u8]| {
            name.starts_with(b"refs/heads/") || name.starts_with(b"refs/tags/") || name == b".have"
        };
        let mut haves: Vec<Oid> = match self {
            Cut::Boundary(tips) => tips.iter().copied().chain(olds).collect(),
            Cut::Every | Cut::Near => refs
                .into_iter()
                .filter(|(name, _)| *self == Cut::Every || near(name))
                .map(|(_, id)| id)
                .chain(olds)
                .collect(),
        };
        haves.sort_unstable();
        haves.dedup();
        haves
    }
}

/// The ids of `cut` that the cache has: what the pack need not carry.
pub(crate) fn haves(
    repo: &Repository,
    ad: &crate::protocol::advertisement::Advertisement,
    changes: &[&Change],
    cut: &Cut,
) -> Vec<Oid> {
    let Ok(odb) = repo.odb() else {
        return Vec::new();
    };
    cut.haves(ad, changes)
        .into_iter()
        .filter(|id| odb.exists(*id))
        .collect()
}

/// Where a push's pack comes from: `git pack-objects` in the cache, or a source's upload-pack
/// relayed (`relay`).
pub(crate) trait Packer {
    /// Hand the pack for `changes` (some of them updates) to `send`, piece by piece, against
    /// the target's advertisement `ad`; returns what was sent.
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &crate::protocol::advertisement::Advertisement,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats>;
}

/// The pack `git pack-objects` makes in the cache, its process group's guard holding `hold`.
pub(crate) struct PackObjects<'r, 'p> {
    pub(crate) repo: &'r Repository,
    pub(crate) hold: BorrowedFd<'r>,
    pub(crate) progress: &'p mut Progress,
    pub(crate) cut: Cut,
}

impl Packer for PackObjects<'_, '_> {
    fn pack(
        &mut self,
        changes: &[&Change],
        ad: &crate::protocol::advertisement::Advertisement,
        send: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<TransferStats> {
        send_pack(
            self.repo.path(),
            changes,
            &haves(self.repo, ad, changes, &self.cut),
            ad.has("ofs-delta"),
            self.hold,
            self.progress,
            send,
        )
    }
}

/// Run `git pack-objects` in `git_dir` for the batch's new tips minus `haves`, handing each
/// piece of the pack to `send` as it comes. Returns what was sent.
fn send_pack(
    git_dir: &Path,
    changes: &[&Change],
    haves: &[Oid],
    ofs_delta: bool,
    hold: BorrowedFd<'_>,
    progress: &mut Progress,
    send: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<TransferStats> {
    let mut revs = String::new();
    for id in changes.iter().filter_map(|c| c.new) {
        revs.push_str(&format!("{id}\n"));
    }
    for id in haves {
        revs.push_str(&format!("^{id}\n"));
    }
    let mut group = Group::spawn(
        crate::base::git::isolated(git_dir)
            .args(["pack-objects", "--revs", "--thin", "--stdout", "-q"])
            .args(ofs_delta.then_some("--delta-base-offset"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        hold,
    )
    .context("cannot start git pack-objects; install git or use --push-engine libgit2")?;
    let child = group.child();
    let mut stdin = child.stdin.take().context("pack-objects: no stdin")?;
    let mut stdout = child.stdout.take().context("pack-objects: no stdout")?;
    let stderr = child.stderr.take().context("pack-objects: no stderr")?;
    let writer = std::thread::spawn(move || stdin.write_all(revs.as_bytes()));
    let errors = crate::base::process_group::collect_stderr(stderr, 64 * 1024);
    let mut stats = TransferStats::default();
    let mut header = Vec::with_capacity(12);
    let mut buf = vec![0u8; 64 * 1024];
    let sent = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(anyhow::anyhow!("cannot read git pack-objects' pack: {e}")),
        };
        if header.len() < 12 {
            let take = (12 - header.len()).min(n);
            header.extend_from_slice(&buf[..take]);
            if header.len() == 12 {
                stats.objects =
                    u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
            }
        }
        if let Err(e) = send(&buf[..n]) {
            break Err(e);
        }
        stats.bytes += n;
        // The pack's object count is known from its header, not how many went yet.
        progress.update(stats.objects, 0, stats.bytes);
    };
    if sent.is_err() {
        group.kill();
    }
    let status = group.wait().context("git pack-objects did not finish")?;
    let _ = writer.join();
    let said = String::from_utf8_lossy(&errors.join().unwrap_or_default()).into_owned();
    sent?;
    if !status.success() || header.len() < 12 || &header[..4] != b"PACK" {
        bail!(
            "git pack-objects could not build the pack ({status}): {}",
            crate::base::text::clip(said.trim(), 300)
        );
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::id;

    #[test]
    fn a_few_changes_are_cut_near_and_a_large_or_batched_plan_against_every_id() {
        assert_eq!(Cut::for_plan(3, 1), Cut::Near);
        assert_eq!(Cut::for_plan(NEAR_CUT_CHANGES, 1), Cut::Near);
        assert_eq!(Cut::for_plan(NEAR_CUT_CHANGES + 1, 1), Cut::Every);
        assert_eq!(Cut::for_plan(2, 2), Cut::Every);
        let ad = crate::protocol::advertisement::Advertisement {
            refs: vec![
                (b"refs/heads/main".to_vec(), id(1)),
                (b"refs/tags/v1".to_vec(), id(2)),
                (b"refs/pull/1/head".to_vec(), id(3)),
                (b"refs/pull/2/head".to_vec(), id(4)),
                (b".have".to_vec(), id(5)),
                (b"refs/heads/dev".to_vec(), id(1)),
            ],
            capabilities: vec![],
        };
        let moved = Change::between("refs/pull/2/head", Some(id(4)), Some(id(9)));
        let created = Change::between("refs/pull/7/head", None, Some(id(8)));
        let changes = [&moved, &created];
        // Branches, tags and `.have`s, the changed refs' old ids; each once.
        assert_eq!(
            Cut::Near.haves(&ad, &changes),
            vec![id(1), id(2), id(4), id(5)]
        );
        assert_eq!(
            Cut::Every.haves(&ad, &changes),
            vec![id(1), id(2), id(3), id(4), id(5)]
        );
        // Where the walk met the target, and the old ids; not the other branches and tags.
        assert_eq!(
            Cut::Boundary(vec![id(3)]).haves(&ad, &changes),
            vec![id(3), id(4)]
        );
    }
}
