//! The fetch into the cache (and the seed of a new cache from the target), through our own
//! upload-pack client.
//!
//! libgit2's fetch negotiates from every ref the cache holds and stats each ref twice while
//! updating; on a mirror of thousands of pull-request heads that is most of an incremental
//! sync. A mirror knows better what it holds: its refs are the source's last state. So the
//! source is asked in one request, with the cache's branches and tags and the old ids of the
//! refs that moved as haves (`Cut::Near`, as the relay cuts; every ref for a change of many
//! refs; none for an empty cache), and the pack it answers is stored through libgit2's indexer,
//! which completes a thin pack from the cache's own objects. The refs are recorded by the
//! caller, as after every fetch (`Cache::record`).
//!
//! A pack the indexer refuses is read on to its end: when its checksum holds, the pack was
//! sound and the fault is the cache's (the caller's repair rebuilds it); when it does not, the
//! pack was damaged on the way, a network failure like any other (retried). A remote this
//! client cannot serve (no side-band, SHA-256, SSH through libgit2) leaves the fetch to
//! libgit2, as does `BACKLOG_MIRROR_LIBGIT2_FETCH=1`.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use git2::Oid;

use crate::base::process_group::Group;
use crate::base::progress::Progress;
use crate::base::refname::RefMap;
use crate::base::transfer::TransferStats;
use crate::engine::cache::Cache;
use crate::engine::libgit2::{self, Look, Session};
use crate::engine::pack::Cut;
use crate::engine::upload_pack::{self, UploadPackClient};
use crate::protocol::negotiation::Ask;
use crate::transport::Declined;
use crate::transport::remote::Remote;

/// `BACKLOG_MIRROR_LIBGIT2_FETCH=1` (or `true`): fetch into a warm cache through libgit2, should
/// a source ever answer this client in a way it does not expect.
pub(crate) fn disabled() -> bool {
    crate::base::hatch::is_set("BACKLOG_MIRROR_LIBGIT2_FETCH")
}

/// Look at `remote` and, when `wanted` says so, fetch what the cache (whose refs are `local`)
/// lacks into it; or why this client cannot serve the source, before anything was asked for.
pub(crate) fn look(
    cache: &Cache,
    local: &RefMap,
    remote: &Remote,
    session: &Session,
    timeout: Duration,
    wanted: impl FnOnce(&RefMap) -> bool,
) -> Result<Result<Look, Declined>> {
    let mut source = match UploadPackClient::new(remote, session, timeout, cache.lock()) {
        Ok(source) => source,
        Err(why) => return Ok(Err(why)),
    };
    let ad = source.advertise()?;
    if let Err(why) = upload_pack::can_fetch(&ad) {
        return Ok(Err(why));
    }
    let listing = libgit2::advertised(&ad.refs);
    let mut look = Look {
        refs: listing.refs,
        unsupported: listing.unsupported,
        head: ad.head(),
        fetched: None,
    };
    if !wanted(&look.refs) {
        return Ok(Ok(look));
    }
    let odb = cache
        .repo
        .odb()
        .with_context(|| format!("cannot read the objects of {}", cache.path.display()))?;
    let (wants, haves) = ask(local, &look.refs, look.head.as_deref(), |id| odb.exists(id));
    let fetched = if wants.is_empty() {
        // Refs deleted, or moved to objects the cache has: nothing to download.
        TransferStats::default()
    } else {
        let ask = Ask {
            thin: ad.has("thin-pack"),
            ofs_delta: ad.has("ofs-delta"),
            quiet: ad.has("no-progress"),
        };
        let progress = RefCell::new(Progress::new("fetch", session.progress));
        let stats = store(&mut source, &odb, &wants, &haves, ask, &progress)?;
        progress.borrow_mut().finish();
        stats
    };
    look.fetched = Some(fetched);
    Ok(Ok(look))
}

/// A near cut of more ids than this keeps only the moved refs' old ids and the source's default
/// branch. The source's upload-pack reads every have before it packs: on a mirror of 10,000
/// branches, 10,000 haves cost it 84 ms for a one-commit change that one have serves in 6 ms.
/// The price: a new branch forked from an unmoved branch other than the default brings that
/// branch's commits again (a bigger fetch, never a wrong one).
const NEAR_HAVES: usize = 1_000;

/// What to ask the source for, the cache holding `local` and the source `remote` (whose default
/// branch is `head`): the new ids the cache has no object for, and the haves the cut of a change
/// of that size keeps.
fn ask(
    local: &RefMap,
    remote: &RefMap,
    head: Option<&str>,
    has: impl Fn(Oid) -> bool,
) -> (Vec<Oid>, Vec<Oid>) {
    let moved: Vec<(&String, Oid)> = remote
        .iter()
        .filter(|(name, id)| local.get(*name) != Some(id))
        .map(|(name, id)| (name, *id))
        .collect();
    let mut wants: Vec<Oid> = moved
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !has(*id))
        .collect();
    wants.sort_unstable();
    wants.dedup();
    let olds = || {
        moved
            .iter()
            .filter_map(|(name, _)| local.get(*name).copied())
    };
    let cut = Cut::for_plan(moved.len(), 1);
    let mut haves = cut.pick(
        local.iter().map(|(name, id)| (name.as_bytes(), *id)),
        olds(),
    );
    if cut == Cut::Near && haves.len() > NEAR_HAVES {
        haves = olds()
            .chain(head.and_then(|h| local.get(h)).copied())
            .collect();
        haves.sort_unstable();
        haves.dedup();
    }
    (wants, haves)
}

/// Fetch the pack of `wants` into the cache's objects (see the module's words on a refused
/// pack).
fn store(
    source: &mut UploadPackClient,
    odb: &git2::Odb,
    wants: &[Oid],
    haves: &[Oid],
    ask: Ask,
    progress: &RefCell<Progress>,
) -> Result<TransferStats> {
    let mut writer = odb
        .packwriter()
        .context("cannot start a pack in the cache")?;
    writer.progress(|p| {
        progress
            .borrow_mut()
            .update(p.received_objects(), p.total_objects(), p.received_bytes());
        true
    });
    let mut refused: Option<git2::Error> = None;
    let stats = source.fetch_pack(wants, haves, ask, &mut |data| {
        if refused.is_none() && writer.write_all(data).is_err() {
            refused = Some(git2::Error::last_error(-1));
        }
        Ok(())
    })?;
    let stored = match refused {
        Some(err) => Err(err),
        None => writer.commit().map(drop),
    };
    stored.map_err(CacheRefused)?;
    Ok(stats)
}

/// A pack stored into a repository on a thread of its own as its pieces are handed over: the
/// first mirror's pack, relayed to the target and kept as the new cache at once
/// (`engine::relay`), indexed beside the relay rather than in its way. At most `QUEUED` pieces
/// wait (up to 1 MiB with side-band-64k): a slower disk slows the relay, never fills memory.
///
/// Where git is installed, `git index-pack --stdin` stores it, as `git clone` does: git's
/// indexer resolves deltas on every core and in a process of its own, so the run's own memory
/// does not grow with the pack's deltas (libgit2's indexer held 6 MiB of resolved bases for a
/// 3.5 MiB pack). Without git, libgit2's indexer stores it in this process.
pub(crate) struct PackSink {
    queue: Option<std::sync::mpsc::SyncSender<Piece>>,
    worker: Option<std::thread::JoinHandle<Result<()>>>,
}

enum Piece {
    Data(Vec<u8>),
    /// The pack was handed over whole: store it.
    End,
}

const QUEUED: usize = 16;

/// How much of git index-pack's stderr is kept for the error.
const STDERR_KEPT: u64 = 16 << 10;

fn refused(err: git2::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the new cache could not store the relayed pack: {}",
        err.message()
    )
}

/// Who stores the pack.
enum Store {
    Git {
        group: Group,
        stdin: std::process::ChildStdin,
        stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    },
    Libgit2(git2::Repository),
}

impl PackSink {
    /// Start storing a pack into the bare repository at `dir`, through git when it is
    /// installed; a git child's guard holds `hold` (the mirror's lock) while it lives.
    pub(crate) fn start(dir: &std::path::Path, hold: BorrowedFd<'_>) -> Result<PackSink> {
        Self::start_with(dir, crate::base::git::version().is_some(), hold)
    }

    fn start_with(dir: &std::path::Path, git: bool, hold: BorrowedFd<'_>) -> Result<PackSink> {
        let store = if git {
            let mut group = Group::spawn(
                crate::base::git::isolated(dir)
                    .args(["index-pack", "--stdin"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
                hold,
            )
            .context("cannot start git index-pack for the new cache")?;
            let child = group.child();
            let stderr = child
                .stderr
                .take()
                .map(|pipe| crate::base::process_group::collect_stderr(pipe, STDERR_KEPT));
            let stdin = child.stdin.take().context("git index-pack: no stdin")?;
            Store::Git {
                group,
                stdin,
                stderr,
            }
        } else {
            Store::Libgit2(
                git2::Repository::open_bare(dir)
                    .with_context(|| format!("cannot open {}", dir.display()))?,
            )
        };
        let (queue, pieces) = std::sync::mpsc::sync_channel(QUEUED);
        let worker = std::thread::Builder::new()
            .name("cache-pack".into())
            .spawn(move || match store {
                Store::Git {
                    group,
                    stdin,
                    stderr,
                } => by_git(group, stdin, stderr, pieces),
                Store::Libgit2(repo) => by_libgit2(&repo, pieces),
            })
            .context("cannot start a thread to store the pack")?;
        Ok(PackSink {
            queue: Some(queue),
            worker: Some(worker),
        })
    }

    /// Hand over the pack's next piece. A store that has failed takes no more (`finish` says
    /// why); the relay goes on.
    pub(crate) fn write(&mut self, data: &[u8]) {
        if let Some(queue) = &self.queue
            && queue.send(Piece::Data(data.to_vec())).is_err()
        {
            self.queue = None;
        }
    }

    /// The pack was handed over whole: wait until it is stored, or say why it was not.
    pub(crate) fn finish(mut self) -> Result<()> {
        if let Some(queue) = self.queue.take() {
            // A worker that already failed has dropped its end: its error is the answer.
            let _ = queue.send(Piece::End);
        }
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(stored)) => stored,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

fn by_libgit2(repo: &git2::Repository, pieces: std::sync::mpsc::Receiver<Piece>) -> Result<()> {
    let odb = repo.odb().context("cannot read the new cache's objects")?;
    let mut writer = odb
        .packwriter()
        .context("cannot start a pack in the cache")?;
    for piece in pieces {
        match piece {
            Piece::Data(data) => {
                if writer.write_all(&data).is_err() {
                    return Err(refused(git2::Error::last_error(-1)));
                }
            }
            Piece::End => {
                writer.commit().map_err(refused)?;
                return Ok(());
            }
        }
    }
    anyhow::bail!("the pack was cut short before its end")
}

fn by_git(
    mut group: Group,
    mut stdin: std::process::ChildStdin,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    pieces: std::sync::mpsc::Receiver<Piece>,
) -> Result<()> {
    let mut ended = false;
    for piece in pieces {
        match piece {
            // A git that stopped reading has failed: its status and words say why.
            Piece::Data(data) => {
                if stdin.write_all(&data).is_err() {
                    break;
                }
            }
            Piece::End => {
                ended = true;
                break;
            }
        }
    }
    drop(stdin);
    if !ended {
        // Cut short (or git failed): nothing of it may be stored.
        group.kill();
    }
    let status = group.wait().context("git index-pack did not finish")?;
    let said = stderr.and_then(|s| s.join().ok()).unwrap_or_default();
    if ended && status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&said);
    match said.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => anyhow::bail!(
            "the new cache could not store the relayed pack: git index-pack: {}",
            crate::base::text::clip(&crate::base::text::escape(line), 300)
        ),
        None if ended => {
            anyhow::bail!("the new cache could not store the relayed pack: git index-pack {status}")
        }
        None => anyhow::bail!("the pack was cut short before its end"),
    }
}

impl Drop for PackSink {
    /// Unfinished: the worker stores nothing and is waited for, so the directory it writes in
    /// outlives it.
    fn drop(&mut self) {
        self.queue = None;
        if !std::thread::panicking() {
            let _ = self.join();
        }
    }
}

/// The source's pack arrived whole (its checksum held), and the cache could not store it: the
/// fault is the cache's (a base object of a thin pack unreadable, a full disk), which the
/// caller's repair rebuilds once.
#[derive(Debug)]
pub(crate) struct CacheRefused(git2::Error);

impl std::fmt::Display for CacheRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the source's pack arrived whole, but the cache could not store it: {}",
            self.0.message()
        )
    }
}

impl std::error::Error for CacheRefused {}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::protocol::testing::id;

    fn refs(list: &[(&str, u8)]) -> RefMap {
        list.iter().map(|(n, i)| (n.to_string(), id(*i))).collect()
    }

    /// A bare repository with one commit, and the pack of that commit.
    fn packed_commit() -> (tempfile::TempDir, Vec<u8>, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let blob = repo.blob(b"kept by the sink\n").unwrap();
        let mut tree = repo.treebuilder(None).unwrap();
        tree.insert("a.txt", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tree.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = repo.commit(None, &sig, &sig, "one", &tree, &[]).unwrap();
        let mut builder = repo.packbuilder().unwrap();
        builder.insert_commit(commit).unwrap();
        let mut buf = git2::Buf::new();
        builder.write_buf(&mut buf).unwrap();
        (dir, buf.to_vec(), commit)
    }

    fn packs_in(repo: &std::path::Path) -> usize {
        std::fs::read_dir(repo.join("objects/pack"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .count()
    }

    /// Each store: git's (when git is installed) and libgit2's.
    fn stores() -> Vec<bool> {
        let mut stores = vec![false];
        if crate::base::git::version().is_some() {
            stores.push(true);
        }
        stores
    }

    #[test]
    fn a_sink_stores_a_whole_pack_handed_over_in_pieces() {
        let (_source, pack, commit) = packed_commit();
        for git in stores() {
            let target = tempfile::tempdir().unwrap();
            git2::Repository::init_bare(target.path()).unwrap();
            let lock = std::fs::File::create(target.path().join("lock")).unwrap();
            let mut sink = PackSink::start_with(target.path(), git, lock.as_fd()).unwrap();
            for piece in pack.chunks(7) {
                sink.write(piece);
            }
            sink.finish().unwrap();
            let repo = git2::Repository::open_bare(target.path()).unwrap();
            assert!(repo.find_commit(commit).is_ok(), "git {git}");
            assert_eq!(packs_in(target.path()), 1, "git {git}");
        }
    }

    #[test]
    fn a_sink_cut_short_or_fed_garbage_stores_nothing_and_never_blocks() {
        let (_source, pack, _) = packed_commit();
        for git in stores() {
            let target = tempfile::tempdir().unwrap();
            git2::Repository::init_bare(target.path()).unwrap();
            let lock = std::fs::File::create(target.path().join("lock")).unwrap();
            let start = || PackSink::start_with(target.path(), git, lock.as_fd()).unwrap();
            // Dropped before the end (the relay failed): nothing stored.
            let mut sink = start();
            sink.write(&pack[..pack.len() / 2]);
            drop(sink);
            assert_eq!(packs_in(target.path()), 0, "git {git}");
            // Finished on half a pack: the indexer refuses it.
            let mut sink = start();
            sink.write(&pack[..pack.len() / 2]);
            let err = sink.finish().unwrap_err();
            assert!(
                format!("{err:#}").contains("could not store the relayed pack"),
                "git {git}: {err:#}"
            );
            assert_eq!(packs_in(target.path()), 0, "git {git}");
            // Garbage: the store fails early, and far more pieces than the queue holds still
            // go by without blocking the relay.
            let mut sink = start();
            for _ in 0..QUEUED * 8 {
                sink.write(&[b'x'; 70_000]);
            }
            let err = sink.finish().unwrap_err();
            assert!(
                format!("{err:#}").contains("could not store the relayed pack"),
                "git {git}: {err:#}"
            );
            assert_eq!(packs_in(target.path()), 0, "git {git}");
        }
    }

    #[test]
    fn asks_for_what_moved_against_the_branches_tags_and_old_ids() {
        let local = refs(&[
            ("refs/heads/main", 1),
            ("refs/tags/v1", 2),
            ("refs/pull/1/head", 3),
            ("refs/pull/2/head", 4),
            ("refs/heads/gone", 5),
        ]);
        let remote = refs(&[
            ("refs/heads/main", 6),
            ("refs/tags/v1", 2),
            ("refs/pull/1/head", 3),
            ("refs/pull/2/head", 7),
            ("refs/heads/new", 8),
            ("refs/heads/back", 3),
        ]);
        let held = [1, 2, 3, 4, 5];
        let held = |i| held.iter().any(|h| id(*h) == i);
        let (wants, haves) = ask(&local, &remote, Some("refs/heads/main"), held);
        // `back` points at an object the cache has: not asked for.
        assert_eq!(wants, vec![id(6), id(7), id(8)]);
        // main's and pull 2's old ids, and the branches and tags; not pull 1's head, which
        // did not move.
        assert_eq!(haves, vec![id(1), id(2), id(4), id(5)]);
    }

    #[test]
    fn a_change_of_many_refs_is_cut_against_every_ref() {
        let local: RefMap = (0..200u8)
            .map(|i| (format!("refs/pull/{i}/head"), id(i)))
            .collect();
        let remote: RefMap = (0..200u8)
            .map(|i| (format!("refs/pull/{i}/head"), id(i.wrapping_add(1))))
            .collect();
        let (wants, haves) = ask(&local, &remote, None, |_| false);
        assert_eq!(haves.len(), 200);
        assert_eq!(wants.len(), 200);
        // Nothing moved and no branch or tag: nothing to ask, nothing to cut against.
        let (wants, haves) = ask(&local, &local, None, |_| true);
        assert!(wants.is_empty() && haves.is_empty());
    }

    #[test]
    fn a_source_without_side_band_or_with_sha256_ids_is_left_to_libgit2() {
        let ad = |caps: &[&str]| crate::protocol::advertisement::Advertisement {
            refs: Vec::new(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
        };
        assert!(upload_pack::can_fetch(&ad(&["side-band-64k", "thin-pack"])).is_ok());
        let why = upload_pack::can_fetch(&ad(&["side-band", "thin-pack"])).unwrap_err();
        assert!(why.contains("side-band-64k"), "{why}");
        let why =
            upload_pack::can_fetch(&ad(&["side-band-64k", "object-format=sha256"])).unwrap_err();
        assert!(why.contains("SHA-256"), "{why}");
    }

    #[test]
    fn a_near_cut_of_too_many_branches_keeps_the_old_ids_and_the_default_branch() {
        let oid = |i: u32| Oid::from_bytes(&[&i.to_be_bytes()[..], &[9; 16]].concat()).unwrap();
        let mut local: RefMap = (0..1_500u32)
            .map(|i| (format!("refs/heads/b{i}"), oid(i)))
            .collect();
        local.insert("refs/heads/main".into(), oid(5_000));
        let mut remote = local.clone();
        remote.insert("refs/heads/b7".into(), oid(6_000));
        let (wants, haves) = ask(&local, &remote, Some("refs/heads/main"), |_| false);
        assert_eq!(wants, vec![oid(6_000)]);
        let mut expected = vec![oid(7), oid(5_000)];
        expected.sort_unstable();
        assert_eq!(haves, expected);
        // Under the cap, every branch stays.
        let few: RefMap = local
            .iter()
            .take(NEAR_HAVES)
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        let mut moved = few.clone();
        moved.insert("refs/heads/b7".into(), oid(6_000));
        let (_, haves) = ask(&few, &moved, Some("refs/heads/main"), |_| false);
        assert_eq!(haves.len(), NEAR_HAVES);
    }
}
