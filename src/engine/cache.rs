//! The bare mirror kept between runs, and everything that keeps it trustworthy.
//!
//! The cache lives on EFS or in CodeBuild's cache, so a run can be killed at any instant and a
//! second build can start while the first still runs. One exclusive file lock serialises runs on a
//! cache; under it, anything a killed run left half-done (git's `*.lock` files, libgit2's and git's
//! temporary packs) is stale by definition and removed. A cache that still fails to open or to
//! pass its check is rebuilt from scratch, never pushed from.

use std::fs::{self, File};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use git2::{Oid, Repository};
use tracing::{info, warn};

use crate::base::duration;
use crate::base::error::{Error, usage};
use crate::base::refname::{self, RefMap};
use crate::base::url::RemoteUrl;
use crate::engine::libgit2_push;

/// A file in the mirror's git dir that says the directory is ours to repair or delete.
const MARKER: &str = "backlog-mirror-cache";

/// An open, locked, checked mirror. The lock is released on drop.
pub(crate) struct Cache {
    pub(crate) path: PathBuf,
    pub(crate) repo: Repository,
    /// True when this run created the mirror (it starts with no objects).
    pub(crate) created: bool,
    /// An earlier run started a push from this cache and never saw it settle (it was killed,
    /// or its push failed half-way): the target may still change under this run.
    pub(crate) interrupted_push: bool,
    /// The packs the mirror held when this run opened it; any other was written by this run
    /// (libgit2's indexer checks a pack's checksum as it writes it) and needs no re-reading.
    packs_at_open: Vec<PathBuf>,
    lock: File,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.path.display())
    }
}

impl Cache {
    /// Lock `path` (waiting up to `timeout`), repair or create it.
    #[cfg(test)]
    pub(crate) fn open(path: &Path, timeout: Duration) -> Result<Cache> {
        Cache::open_locked(Lock::take(path, timeout)?)
    }

    /// Open or create the mirror whose lock is `lock`.
    pub(crate) fn open_locked(lock: Lock) -> Result<Cache> {
        let Lock { path, file: lock } = lock;
        let path = path.as_path();
        let (repo, created) = open_or_create(path)?;
        Ok(Cache {
            path: path.to_path_buf(),
            repo,
            created,
            interrupted_push: push_mark_path(path).exists(),
            packs_at_open: if created { Vec::new() } else { packs(path) },
            lock,
        })
    }

    /// The lock's descriptor, for a child's guard to hold while the child lives.
    pub(crate) fn lock(&self) -> BorrowedFd<'_> {
        self.lock.as_fd()
    }

    /// Record, before a push starts, that one is in flight; it outlives the run if the run is
    /// killed, so the next run knows to watch the target.
    pub(crate) fn mark_push(&self, target: &str) -> Result<()> {
        write_push_mark(&self.path, target)
    }

    /// The pushes of this cache have all ended and the target was seen as they left it.
    pub(crate) fn clear_push_mark(&mut self) -> Result<()> {
        self.interrupted_push = false;
        remove_push_mark(&self.path)
    }

    /// Throw the mirror away and start empty: for a cache that failed its check.
    pub(crate) fn rebuild(&mut self, why: &str) -> Result<()> {
        warn!(cache = %self.path.display(), "rebuilding the cache from scratch: {why}");
        remove_entry(&self.path)?;
        self.repo = create(&self.path)?;
        self.created = true;
        self.packs_at_open.clear();
        Ok(())
    }
}

/// A mirror's lock, held without opening (or creating) the mirror: a run that needs no cache
/// (the relay) still keeps every other run of the same mirror out, and leaves no directory
/// behind.
pub(crate) struct Lock {
    path: PathBuf,
    file: File,
}

impl Lock {
    /// Lock the mirror at `path`, waiting up to `timeout`.
    pub(crate) fn take(path: &Path, timeout: Duration) -> Result<Lock> {
        Ok(Lock {
            path: path.to_path_buf(),
            file: acquire_lock(path, timeout)?,
        })
    }

    /// The lock's descriptor, for a child's guard to hold while the child lives.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether the mirror exists on disk.
    pub(crate) fn mirror_exists(&self) -> bool {
        self.path.exists()
    }

    /// An earlier run's push never settled (see `Cache::interrupted_push`).
    pub(crate) fn interrupted_push(&self) -> bool {
        push_mark_path(&self.path).exists()
    }

    /// As `Cache::mark_push`: the mark lives beside the mirror, not in it.
    pub(crate) fn mark_push(&self, target: &str) -> Result<()> {
        write_push_mark(&self.path, target)
    }

    /// As `Cache::clear_push_mark`.
    pub(crate) fn clear_push_mark(&self) -> Result<()> {
        remove_push_mark(&self.path)
    }
}

/// A mirror being made beside its place while a first mirror's pack is relayed to the target
/// (`sync::relay`): the pack goes into it as it passes, and once it is stored and the refs are
/// written the mirror is moved into place whole. Dropped unfinished, it leaves nothing behind.
pub(crate) struct NewMirror {
    temp: tempfile::TempDir,
    path: PathBuf,
}

impl Lock {
    /// Start the mirror this lock guards, beside its place (it must not exist yet).
    pub(crate) fn new_mirror(&self) -> Result<NewMirror> {
        Ok(NewMirror {
            temp: init_beside(&self.path)?,
            path: self.path.clone(),
        })
    }
}

impl NewMirror {
    /// Where the new mirror is being made.
    pub(crate) fn dir(&self) -> &Path {
        self.temp.path()
    }

    /// Record `refs` (every object they need already stored) and move the mirror into place.
    pub(crate) fn finish(self, refs: &RefMap) -> Result<()> {
        {
            let repo = Repository::open_bare(self.temp.path())
                .with_context(|| format!("cannot open {}", self.temp.path().display()))?;
            write_packed_refs(&repo, refs).context("cannot record the refs of the new cache")?;
        }
        let made = self.temp.keep();
        if let Err(err) = fs::rename(&made, &self.path) {
            let _ = fs::remove_dir_all(&made);
            return Err(err).with_context(|| {
                format!("cannot move the new mirror into {}", self.path.display())
            });
        }
        Ok(())
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".backlog-mirror-lock");
    path.with_file_name(name)
}

impl Cache {
    /// The mirror's refs under `refs/`, symbolic ones resolved; names this tool cannot carry
    /// are left out, as they are when a remote advertises them.
    pub(crate) fn refs(&self) -> Result<RefMap> {
        local_refs(&self.repo)
    }

    /// Make the mirror's refs those `from` advertised (`refs`), its objects already
    /// downloaded; with `prune`, also delete the refs it no longer has. The refs are written
    /// here rather than by libgit2's update_tips, which fails the whole fetch on one name it
    /// cannot normalise (4 KB long) and silently skips names it finds invalid: only the refs
    /// this tool can carry reach the cache, each one by its bytes.
    pub(crate) fn record(&self, refs: &RefMap, prune: bool, from: &RemoteUrl) -> Result<()> {
        let repo = &self.repo;
        // git pushes from the cache and does not take a directory whose HEAD it cannot read for
        // a repository: such damage must show here, inside the fetch, where it is repaired.
        repo.find_reference("HEAD")
            .context("the cache's HEAD is unreadable")?;
        if repo.references()?.next().is_none() {
            // A mirror with no refs yet: libgit2 would write one loose file (and a lock file)
            // per ref, 0.5 ms each in a directory of thousands (5 s for 10,000 refs); git's
            // own clone writes packed-refs, and so do we.
            write_packed_refs(repo, refs)
                .with_context(|| format!("cannot record the refs of {}", from.redacted()))
        } else {
            update_refs(repo, refs, prune)
                .with_context(|| format!("cannot update the cache's refs from {}", from.redacted()))
        }
    }

    /// Keep a long-lived mirror fast: libgit2 never repacks, so every fetch adds a pack and
    /// every updated ref a loose file. Past a threshold, git folds them (reusing existing
    /// deltas, so this is cheap) while this run holds the lock; then the repository is opened
    /// afresh, git having rewritten its packs behind libgit2's back.
    pub(crate) fn maintain(&mut self) -> Result<()> {
        let packs = packs(&self.path).len();
        let loose_refs = count_files(&self.path.join("refs"));
        let mut done = Vec::new();
        let failed = |ok: bool| if ok { "" } else { " (failed)" };
        if packs > MAX_PACKS {
            let Some(ok) = crate::engine::git_cli::run_local(
                &self.path,
                &["repack", "-a", "-d", "-q"],
                self.lock(),
            ) else {
                return Ok(());
            };
            done.push(format!("repacked {packs} packs{}", failed(ok)));
        }
        if loose_refs > MAX_LOOSE_REFS {
            let Some(ok) = crate::engine::git_cli::run_local(
                &self.path,
                &["pack-refs", "--all", "--prune"],
                self.lock(),
            ) else {
                return Ok(());
            };
            done.push(format!("packed {loose_refs} loose refs{}", failed(ok)));
        }
        if done.is_empty() {
            return Ok(());
        }
        info!("cache maintenance: {}", done.join(", "));
        self.repo = Repository::open_bare(&self.path)
            .with_context(|| format!("cannot reopen {}", self.path.display()))?;
        Ok(())
    }
}

const MAX_PACKS: usize = 24;
const MAX_LOOSE_REFS: usize = 2000;

fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}

/// Make the cache's refs those of `wanted`: create or move each that differs, and with `prune`
/// delete the cache's refs `wanted` lacks, deletions first (a deleted `a` may make room for a
/// new `a/b`).
fn update_refs(repo: &git2::Repository, wanted: &RefMap, prune: bool) -> Result<()> {
    let current = local_refs(repo)?;
    if prune {
        for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
            libgit2_push::delete_ref(repo, name)
                .with_context(|| format!("cannot delete {}", refname::shown(name)))?;
        }
    }
    for (name, &id) in wanted {
        if current.get(name) != Some(&id) {
            libgit2_push::set_ref(repo, name, id, "backlog-mirror: fetch")
                .with_context(|| format!("cannot update {}", refname::shown(name)))?;
        }
    }
    Ok(())
}

/// Record `refs` as the repository's packed refs (it has none yet), in the format git and libgit2
/// read: sorted by the names' bytes, no peeled lines. Every object must already be in the
/// repository; the file appears whole or not at all.
fn write_packed_refs(repo: &git2::Repository, refs: &RefMap) -> Result<()> {
    let odb = repo.odb()?;
    let mut lines: Vec<(Vec<u8>, Oid)> = Vec::with_capacity(refs.len());
    for (name, id) in refs {
        let bytes = refname::to_bytes(name);
        if let Some(why) = refname::unsupported(&bytes) {
            anyhow::bail!("cannot record {}: {why}", refname::shown(name));
        }
        anyhow::ensure!(
            odb.exists(*id),
            "{} points to {id}, which the fetch did not bring",
            refname::shown(name)
        );
        lines.push((bytes, *id));
    }
    lines.sort();
    let mut text = b"# pack-refs with: sorted \n".to_vec();
    for (name, id) in lines {
        text.extend_from_slice(format!("{id} ").as_bytes());
        text.extend_from_slice(&name);
        text.push(b'\n');
    }
    let path = repo.path().join("packed-refs");
    let lock = repo.path().join("packed-refs.lock");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .with_context(|| format!("cannot create {}", lock.display()))?;
    std::io::Write::write_all(&mut file, &text)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", lock.display()))?;
    std::fs::rename(&lock, &path)
        .with_context(|| format!("cannot move {} into place", lock.display()))?;
    Ok(())
}

/// The refs of a local repository under `refs/`, symbolic ones resolved; names this tool cannot
/// carry are left out, as they are when a remote advertises them.
fn local_refs(repo: &git2::Repository) -> Result<RefMap> {
    let mut refs = RefMap::new();
    for reference in repo.references().context("cannot read the cache's refs")? {
        let reference = reference.context("cannot read a ref in the cache")?;
        let name = reference.name_bytes();
        if !name.starts_with(b"refs/") || refname::unsupported(name).is_some() {
            continue;
        }
        let name = refname::escape(name);
        let oid = match reference.target() {
            Some(oid) => oid,
            None => match reference.resolve() {
                Ok(resolved) => match resolved.target() {
                    Some(oid) => oid,
                    None => continue,
                },
                Err(_) => continue,
            },
        };
        refs.insert(name, oid);
    }
    Ok(refs)
}

/// Packs whose checksums were verified, with the file stamps they had then: a file in the
/// mirror, so a rebuild forgets it.
const VERIFIED: &str = "backlog-mirror-verified-packs";

impl Cache {
    /// Verify the checksum of every pack and index not verified in its current state (size,
    /// times, inode): a pack whose bytes changed on disk is damage that git would send to the
    /// target inside a push the target then refuses ("unpacker error"), so it must be caught
    /// here, before a push. A pack costs one read the first time a run finds it (about 1 s per
    /// GB; none for packs this run wrote) and a `stat` afterwards. Returns the damage found, as
    /// a sentence.
    pub(crate) fn verify_packs(&self) -> Result<(), String> {
        let memo_path = self.path.join(VERIFIED);
        let known: Vec<String> = fs::read_to_string(&memo_path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let mut verified = Vec::new();
        let mut changed = false;
        for pack in packs(&self.path) {
            let idx = pack.with_extension("idx");
            let stamp = format!("{} {}", stamp(&pack)?, stamp(&idx)?);
            if !known.contains(&stamp) {
                if self.packs_at_open.contains(&pack) {
                    verify_pack(&pack, &idx)?;
                }
                changed = true;
            }
            verified.push(stamp);
        }
        if changed || verified.len() != known.len() {
            // A memo that cannot be written only costs a re-read next time.
            let temp = self.path.join(".tmp-verified-packs");
            if fs::write(&temp, verified.join("\n") + "\n").is_ok() {
                let _ = fs::rename(&temp, &memo_path);
            }
        }
        Ok(())
    }
}

/// The mirror's pack files, sorted.
fn packs(path: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = fs::read_dir(path.join("objects/pack"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    packs.sort();
    packs
}

/// A file's name and the stat fields any rewrite changes (ctime cannot be set back by hand).
fn stamp(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    Ok(format!(
        "{}:{}:{}.{}:{}.{}:{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino()
    ))
}

/// SHA-1 of a file's bytes but its last `trailer`, and those last bytes.
fn checksum(path: &Path, trailer: u64) -> Result<([u8; 20], Vec<u8>), String> {
    use sha1::{Digest, Sha1};
    use std::io::Read;
    let fail = |e: std::io::Error| format!("{} cannot be read: {e}", path.display());
    let mut file = File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    if len < trailer {
        return Err(format!("{} is truncated", path.display()));
    }
    let mut hasher = Sha1::new();
    let mut body = (&mut file).take(len - trailer);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(fail)?;
    Ok((hasher.finalize().into(), rest))
}

/// A pack's trailer is the SHA-1 of what precedes it; its index ends with that pack checksum
/// and the SHA-1 of the index itself.
fn verify_pack(pack: &Path, idx: &Path) -> Result<(), String> {
    let name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let (pack_sum, pack_trailer) = checksum(pack, 20)?;
    if pack_trailer != pack_sum {
        return Err(format!(
            "pack {} fails its checksum: its bytes changed on disk",
            name(pack)
        ));
    }
    let (idx_sum, idx_trailer) = checksum(idx, 20)?;
    let (_, both) = checksum(idx, 40)?;
    if idx_trailer != idx_sum || both.get(..20) != Some(&pack_sum[..]) {
        return Err(format!(
            "pack index {} fails its checksum: its bytes changed on disk",
            name(idx)
        ));
    }
    Ok(())
}

/// Beside the mirror, not in it: a rebuilt mirror must not forget a push still in flight.
fn write_push_mark(path: &Path, target: &str) -> Result<()> {
    let mark = push_mark_path(path);
    let text = format!(
        "a push to {target} started by process {} and not yet seen settled\n",
        std::process::id()
    );
    (|| {
        let file = File::create(&mark)?;
        std::io::Write::write_all(&mut &file, text.as_bytes())?;
        file.sync_all()
    })()
    .with_context(|| format!("cannot write {}", mark.display()))
}

fn remove_push_mark(path: &Path) -> Result<()> {
    let mark = push_mark_path(path);
    match fs::remove_file(&mark) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", mark.display()))
        }
        _ => Ok(()),
    }
}

fn push_mark_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".backlog-mirror-push");
    path.with_file_name(name)
}

fn acquire_lock(path: &Path, timeout: Duration) -> Result<File> {
    let lock_path = lock_path(path);
    // The cache directory is made here, once the configuration is known good: validation
    // changes nothing on disk.
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "--cache-dir '{}' cannot be created ({}); choose a writable directory",
                dir.display(),
                crate::base::error::io_reason(&e)
            ))
        })?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the cache lock {}", lock_path.display()))?;
    let start = Instant::now();
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        if start.elapsed() >= timeout {
            return Err(Error::Locked {
                path: path.display().to_string(),
                waited: duration::show(timeout),
            }
            .into());
        }
        if !announced {
            info!(
                "waiting up to {} for another sync to release {}",
                duration::show(timeout),
                path.display()
            );
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(100).min(timeout));
    }
}

/// A mirror's path must hold nothing backlog-mirror did not make (an empty directory is
/// nothing). Checked with the configuration, before anything is created, and again on opening.
pub(crate) fn check_not_foreign(path: &Path) -> Result<()> {
    let empty = || {
        fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    };
    if path.exists() && !path.join(MARKER).is_file() && !empty() {
        return Err(usage(format!(
            "{} exists but was not made by backlog-mirror; remove it or choose another \
             --mirror-name or --cache-dir",
            path.display()
        )));
    }
    Ok(())
}

fn open_or_create(path: &Path) -> Result<(Repository, bool)> {
    if !path.exists() {
        return Ok((create(path)?, true));
    }
    if !path.join(MARKER).is_file() {
        check_not_foreign(path)?;
        fs::remove_dir(path).with_context(|| format!("cannot remove {}", path.display()))?;
        return Ok((create(path)?, true));
    }
    let removed = remove_stale_files(path)?;
    if removed > 0 {
        info!(
            "repaired cache {}: removed {removed} file(s) left by an interrupted run",
            path.display()
        );
    }
    match Repository::open_bare(path) {
        Ok(repo) if repo.is_bare() => match refs_readable(&repo) {
            Ok(()) => Ok((repo, false)),
            Err(why) => {
                drop(repo);
                rebuild(path, &format!("its refs cannot be read ({why})"))
            }
        },
        Ok(_) => rebuild(path, "it is not a bare repository"),
        Err(e) => rebuild(path, &format!("it cannot be opened ({})", e.message())),
    }
}

/// Read every ref once (packed-refs is parsed whole on the first read): refs that cannot be read
/// make a mirror that fails every run outside the repair path.
fn refs_readable(repo: &Repository) -> Result<(), String> {
    let references = repo.references().map_err(|e| e.message().to_string())?;
    for reference in references {
        reference.map_err(|e| e.message().to_string())?;
    }
    Ok(())
}

fn rebuild(path: &Path, why: &str) -> Result<(Repository, bool)> {
    warn!(cache = %path.display(), "rebuilding the cache from scratch: {why}");
    remove_entry(path)?;
    Ok((create(path)?, true))
}

fn remove_entry(path: &Path) -> Result<()> {
    // Move aside first so a crash mid-delete leaves no half-deleted mirror under the real name.
    let doomed = path.with_extension(format!("doomed-{}", std::process::id()));
    fs::rename(path, &doomed)
        .with_context(|| format!("cannot move the damaged cache {} aside", path.display()))?;
    fs::remove_dir_all(&doomed)
        .with_context(|| format!("cannot remove the damaged cache {}", doomed.display()))
}

/// Make a new bare mirror in a temporary directory beside `path` and rename it into place, so a
/// run killed half-way never leaves a half-made mirror under the real name.
fn create(path: &Path) -> Result<Repository> {
    let temp = init_beside(path)?;
    let made = temp.keep();
    fs::rename(&made, path)
        .with_context(|| format!("cannot move the new mirror into {}", path.display()))?;
    Repository::open_bare(path).with_context(|| format!("cannot open {}", path.display()))
}

/// The prefix of the temporary directories a new mirror of `path` is made in: named for the
/// mirror, so the run holding its lock knows any it finds to be left by a killed run.
fn new_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.new-")
}

/// The random part of a half-made mirror's name.
const NEW_SUFFIX: usize = 6;

/// Whether `name` is a half-made mirror of the mirror whose prefix is `prefix`: that prefix and
/// a random suffix, nothing more (`.a.git.new-x.git.new-AbC123` is a mirror named
/// `a.git.new-x`'s, not `a`'s).
fn is_new_of(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == NEW_SUFFIX && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A new, empty bare mirror of `path`, in a temporary directory beside it (removed on drop).
/// Those a killed run left for the same mirror are removed first: the caller holds its lock.
fn init_beside(path: &Path) -> Result<tempfile::TempDir> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let prefix = new_prefix(path);
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        if is_new_of(&entry.file_name().to_string_lossy(), &prefix) {
            let stale = entry.path();
            // A link or a file of that name goes itself: nothing is followed out of the cache.
            let removed = match entry.file_type() {
                Ok(kind) if kind.is_dir() => fs::remove_dir_all(&stale),
                _ => fs::remove_file(&stale),
            };
            removed.with_context(|| {
                format!("cannot remove {}, left by a killed run", stale.display())
            })?;
            info!(
                "repaired cache {}: removed a half-made mirror left by an interrupted run",
                path.display()
            );
        }
    }
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(NEW_SUFFIX)
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    {
        let repo = Repository::init_opts(
            temp.path(),
            git2::RepositoryInitOptions::new()
                .bare(true)
                .mkpath(true)
                .initial_head("main"),
        )
        .context("cannot initialise the bare mirror")?;
        let mut config = repo.config().context("cannot open the mirror's config")?;
        config.set_str("remote.origin.fetch", "+refs/*:refs/*")?;
        config.set_bool("remote.origin.mirror", true)?;
        config.set_bool("gc.auto", false)?;
        config.set_bool("core.logAllRefUpdates", false)?;
        fs::write(temp.path().join(MARKER), "managed by backlog-mirror\n")
            .context("cannot mark the new mirror")?;
    }
    Ok(temp)
}

/// Remove what a killed git or libgit2 leaves behind. Only safe under our exclusive lock.
fn remove_stale_files(path: &Path) -> Result<usize> {
    let mut removed = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let entry_path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name.starts_with("incoming-") || name.starts_with("tmp_objdir") {
                    fs::remove_dir_all(&entry_path).ok();
                    removed += 1;
                } else {
                    stack.push(entry_path);
                }
                continue;
            }
            if is_stale(&entry_path, &name) {
                fs::remove_file(&entry_path)
                    .with_context(|| format!("cannot remove {}", entry_path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn is_stale(path: &Path, name: &str) -> bool {
    if name.ends_with(".lock")
        || name.starts_with("tmp_")
        || name.starts_with("pack_git2_")
        || name.starts_with(".tmp-")
    {
        return true;
    }
    let in_pack_dir = path
        .parent()
        .is_some_and(|p| p.ends_with(Path::new("objects/pack")));
    if !in_pack_dir {
        return false;
    }
    // A pack is usable only with its index and vice versa; `.keep` files are held only while a
    // fetch runs.
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("keep") => true,
        Some("pack") => !path.with_extension("idx").exists(),
        Some("idx") => !path.with_extension("pack").exists(),
        Some("rev") | Some("mtimes") => !path.with_extension("pack").exists(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_mirror_removes_what_a_killed_one_left_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "mine").unwrap();
        let left = dir.path().join(".m.git.new-AbC123");
        fs::create_dir_all(left.join("objects/pack")).unwrap();
        fs::write(left.join("objects/pack/pack_git2_1"), "half").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(".m.git.new-link01")).unwrap();
        fs::write(dir.path().join(".m.git.new-file01"), "planted").unwrap();
        // Other mirrors' half-made directories are not this run's to touch, even one whose
        // mirror's name starts as this one's does.
        let other = dir.path().join(".n.git.new-XyZ123");
        fs::create_dir(&other).unwrap();
        let longer = dir.path().join(".m.git.new-x.git.new-XyZ123");
        fs::create_dir(&longer).unwrap();
        let lock = Lock::take(&path, Duration::from_secs(1)).unwrap();
        let mirror = lock.new_mirror().unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".m.git.new-"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(longer.exists());
        assert!(mirror.dir().starts_with(dir.path()));
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "mine");
        assert!(other.exists());
        assert!(!path.exists(), "an unfinished mirror is not in place");
        mirror.finish(&RefMap::new()).unwrap();
        assert!(path.join(MARKER).is_file());
        let cache = Cache::open_locked(lock).unwrap();
        assert!(
            !cache.created,
            "the finished mirror is opened, not made again"
        );
    }

    #[test]
    fn creates_marks_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git");
        let cache = Cache::open(&path, Duration::from_secs(1)).unwrap();
        assert!(cache.created);
        assert!(cache.repo.is_bare());
        assert!(path.join(MARKER).is_file());
        drop(cache);
        let cache = Cache::open(&path, Duration::from_secs(1)).unwrap();
        assert!(!cache.created);
    }

    #[test]
    fn second_open_times_out_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git");
        let _held = Cache::open(&path, Duration::from_secs(1)).unwrap();
        let err = Cache::open(&path, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::Locked { .. })
        ));
    }

    #[test]
    fn removes_stale_locks_and_half_packs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git");
        drop(Cache::open(&path, Duration::from_secs(1)).unwrap());
        let stale = [
            "packed-refs.lock",
            "refs/heads/main.lock",
            "objects/pack/pack_git2_abc",
            "objects/pack/tmp_pack_x",
            "objects/pack/pack-1.pack",
            "objects/pack/pack-2.keep",
        ];
        for file in stale {
            fs::create_dir_all(path.join(file).parent().unwrap()).unwrap();
            fs::write(path.join(file), b"x").unwrap();
        }
        fs::write(path.join("objects/pack/pack-3.pack"), b"x").unwrap();
        fs::write(path.join("objects/pack/pack-3.idx"), b"x").unwrap();
        drop(Cache::open(&path, Duration::from_secs(1)).unwrap());
        for file in stale {
            assert!(!path.join(file).exists(), "{file} should be gone");
        }
        assert!(path.join("objects/pack/pack-3.pack").exists());
    }

    #[test]
    fn refuses_a_directory_it_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git");
        fs::create_dir_all(path.join("src")).unwrap();
        let err = Cache::open(&path, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err.downcast_ref::<Error>(), Some(Error::Usage(_))));
        assert!(path.join("src").exists());
    }
}
