//! Talking to remotes through libgit2, in-process.
//!
//! Listing, fetching and small pushes are fast here and need no `git` binary. Each call opens its
//! own conversation: libgit2 speaks protocol v0/v1, so every connect advertises all refs, and a
//! listing is the cheapest way to learn whether there is anything to do at all. Over SSH the
//! conversations of a run share one connection (`transport::ssh`), so each call names the mirror's
//! credentials and remote to it.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use git2::{AutotagOption, Direction, FetchOptions, Oid, PushOptions, RemoteCallbacks};

use tracing::{debug, warn};

use crate::base::progress::{Progress, ProgressOptions};
use crate::base::refname::{self, RefMap};
use crate::base::transfer::{
    PushOutcome, RefOutcome, TransferStats, UNPACKER_ERROR, last_words, remote_messages,
};
use crate::base::url::RemoteUrl;
use crate::engine::libgit2_push;
use crate::transport::auth::Auth;
use crate::transport::remote::Remote;

/// What every transfer of a run needs besides the remote.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) auth: Auth,
    pub(crate) progress: ProgressOptions,
    /// The SSH connections made with `auth`, kept for the rest of the run (see
    /// `transport::ssh`): they live and end with the credentials that opened them.
    pub(crate) ssh: std::sync::Arc<crate::transport::ssh::Pool>,
}

/// Configure libgit2 once per process: no user or system git config (their `insteadOf`, proxies
/// and credential helpers would make a build depend on the machine, and whoever can write them
/// could redirect the mirror), and timeouts so a dead host fails instead of hanging until
/// CodeBuild kills the build.
///
/// The search paths are set to the empty list, not to an empty directory: libgit2 then looks in
/// no directory at all, so there is no path another local user could create first and fill.
///
/// What this sets is process-wide, and so is `timeout`: libgit2 keeps it in globals (its SSH
/// transport reads it from one), so the first call decides it for every later connection, and a
/// later call with another timeout is refused rather than silently ignored. Call it before
/// starting threads: libgit2's initialisation sets OpenSSL's environment variables. Every call
/// returns the first call's outcome.
pub(crate) fn init(timeout: Duration) -> Result<()> {
    static DONE: OnceLock<(Duration, Result<(), String>)> = OnceLock::new();
    let (first, outcome) =
        DONE.get_or_init(|| (timeout, configure(timeout).map_err(|e| format!("{e:#}"))));
    if let Err(why) = outcome {
        anyhow::bail!("cannot configure libgit2: {why}");
    }
    anyhow::ensure!(
        *first == timeout,
        "libgit2's network timeout is {} for this whole process; a second one ({}) cannot apply",
        crate::base::duration::show(*first),
        crate::base::duration::show(timeout)
    );
    Ok(())
}

fn configure(timeout: Duration) -> Result<()> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: called once, before any other libgit2 use in this process.
    unsafe {
        for level in [
            git2::ConfigLevel::System,
            git2::ConfigLevel::XDG,
            git2::ConfigLevel::Global,
            git2::ConfigLevel::ProgramData,
        ] {
            git2::opts::set_search_path(level, "")?;
            anyhow::ensure!(
                git2::opts::get_search_path(level)?.as_bytes().is_empty(),
                "libgit2 kept a configuration search path for {level:?}"
            );
        }
        git2::opts::set_server_connect_timeout_in_milliseconds(millis)?;
        git2::opts::set_server_timeout_in_milliseconds(millis)?;
    }
    #[cfg(target_os = "linux")]
    if own_socket_disabled() {
        debug!("libgit2 connects with its own socket (BACKLOG_MIRROR_LIBGIT2_SOCKET)");
    } else {
        crate::transport::socket::register(millis, millis)?;
    }
    if crate::transport::ssh::disabled() {
        debug!("SSH goes through libgit2's own transport (BACKLOG_MIRROR_LIBGIT2_SSH)");
    } else {
        crate::transport::ssh::register(u32::try_from(millis).unwrap_or(0))?;
    }
    crate::transport::local::register()?;
    Ok(())
}

/// `BACKLOG_MIRROR_LIBGIT2_SOCKET=1` (or `true`): let libgit2 connect with its own socket
/// instead of `transport::socket`'s, should a libgit2 upgrade ever break the layout `transport::socket` relies on.
#[cfg(target_os = "linux")]
fn own_socket_disabled() -> bool {
    crate::base::hatch::is_set("BACKLOG_MIRROR_LIBGIT2_SOCKET")
}

/// After a failed network operation, shut down the connections this thread opened (see `transport::socket`).
fn cut_connections_of_this_thread() {
    #[cfg(target_os = "linux")]
    crate::transport::socket::cut_connections_of_this_thread();
}

impl Session {
    /// A libgit2 network failure on `url`, explained, with this thread's connections cut so
    /// libgit2's teardown does not wait on a peer that stopped answering.
    fn failed(&self, remote: &Remote, what: &str, err: git2::Error) -> anyhow::Error {
        cut_connections_of_this_thread();
        self.auth.explain(remote, what, err)
    }

    fn callbacks<'a>(&'a self, remote: &'a Remote) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        self.auth.install(remote, &mut callbacks);
        callbacks
    }

    fn progress(&self, phase: &'static str) -> Progress {
        Progress::new(phase, self.progress)
    }

    /// The refs a remote advertises under `refs/`, without those this tool cannot carry (they
    /// are left alone, and said so).
    pub(crate) fn list(&self, remote: &Remote) -> Result<RefMap> {
        self.list_with_head(remote).map(|(refs, _)| refs)
    }

    /// As `list`, with the branch the remote's `HEAD` names (its default branch), if it says.
    pub(crate) fn list_with_head(&self, remote: &Remote) -> Result<(RefMap, Option<String>)> {
        crate::transport::ssh::for_remote(&self.auth, &self.ssh, remote, || {
            let url = &remote.url;
            let mut connection = git2::Remote::create_detached(fetch_location(url))
                .with_context(|| format!("cannot use {} as a remote", url.redacted()))?;
            let (_, listing) = self.connect(&mut connection, remote)?;
            leave_alone(url, &listing.unsupported);
            Ok((listing.refs, listing.head))
        })
    }

    /// Open a fetch connection to `remote` and read the refs it advertises.
    fn connect<'r, 'repo>(
        &'r self,
        connection: &'r mut git2::Remote<'repo>,
        remote: &'r Remote,
    ) -> Result<(git2::RemoteConnection<'repo, 'r, 'r>, Listing)> {
        let url = &remote.url;
        let mut connection = connection
            .connect_auth(
                Direction::Fetch,
                Some(self.callbacks(remote)),
                Some(proxy()),
            )
            .map_err(|e| self.failed(remote, "cannot connect to", e))?;
        let heads = libgit2_push::remote_heads(connection.remote())
            .with_context(|| format!("cannot list the refs of {}", url.redacted()))?;
        let mut listing = advertised(&heads);
        // The `symref=HEAD:...` the remote advertised; none for an empty or detached HEAD.
        listing.head = connection
            .default_branch()
            .ok()
            .map(|name| refname::escape(&name))
            .filter(|name| name.starts_with("refs/"));
        Ok((connection, listing))
    }

    /// Connect to `remote` once, read its refs, and when `wanted` says so, download every ref's
    /// objects into `repo` over that same connection (the caller records the refs: see
    /// `Cache::record`). Deciding on the listing first means a sync with nothing to do costs one
    /// connection, and one with work costs one too, not a listing plus a fetch (over SSH each
    /// connection is a key exchange, an authentication and a server process).
    pub(crate) fn look(
        &self,
        repo: &git2::Repository,
        remote: &Remote,
        phase: &'static str,
        wanted: impl FnOnce(&RefMap) -> bool,
    ) -> Result<Look> {
        crate::transport::ssh::for_remote(&self.auth, &self.ssh, remote, || {
            let url = &remote.url;
            let mut anonymous = repo
                .remote_anonymous(&fetch_location(url))
                .with_context(|| format!("cannot use {} as a remote", url.redacted()))?;
            let (
                mut connection,
                Listing {
                    refs,
                    unsupported,
                    head,
                },
            ) = self.connect(&mut anonymous, remote)?;
            if !wanted(&refs) {
                return Ok(Look {
                    refs,
                    unsupported,
                    head,
                    fetched: None,
                });
            }
            let progress = RefCell::new(self.progress(phase));
            // Smart HTTP is one request per step, so the download may be challenged again.
            let mut callbacks = self.callbacks(remote);
            callbacks.transfer_progress(|stats| {
                progress.borrow_mut().update(
                    stats.received_objects(),
                    stats.total_objects(),
                    stats.received_bytes(),
                );
                true
            });
            let mut options = FetchOptions::new();
            options
                .remote_callbacks(callbacks)
                .proxy_options(proxy())
                .update_fetchhead(false)
                .download_tags(AutotagOption::None);
            let connected = connection.remote();
            connected
                .download(&[MIRROR_REFSPEC], Some(&mut options))
                .map_err(|e| self.failed(remote, "cannot fetch from", e))?;
            progress.borrow_mut().finish();
            let stats = connected.stats();
            let fetched = TransferStats {
                objects: stats.received_objects(),
                bytes: stats.received_bytes(),
            };
            Ok(Look {
                refs,
                unsupported,
                head,
                fetched: Some(fetched),
            })
        })
    }

    /// Push `specs` (`+src:dst` or `:dst`) in one connection, each ref under its lease in
    /// `leases` (see `libgit2_push::push`). Returns each ref's outcome as the target reported it.
    pub(crate) fn push(
        &self,
        repo: &git2::Repository,
        remote: &Remote,
        specs: &[String],
        leases: std::collections::HashMap<String, Option<Oid>>,
    ) -> Result<PushOutcome> {
        crate::transport::ssh::for_remote(&self.auth, &self.ssh, remote, || {
            let url = &remote.url;
            let mut anonymous = repo
                .remote_anonymous(url.as_git_url())
                .with_context(|| format!("cannot use {} as a remote", url.redacted()))?;
            let stats = RefCell::new(TransferStats::default());
            // The target's own messages (a hook's words, an unpacker's error) arrive on the
            // sideband, mixed with its progress.
            let said = RefCell::new(Vec::<u8>::new());
            let progress = RefCell::new(self.progress("push"));
            let mut callbacks = self.callbacks(remote);
            callbacks.sideband_progress(|data| {
                said.borrow_mut().extend_from_slice(data);
                true
            });
            callbacks.push_transfer_progress(|current, total, bytes| {
                *stats.borrow_mut() = TransferStats {
                    objects: total,
                    bytes,
                };
                progress.borrow_mut().update(current, total, bytes);
            });
            let mut options = PushOptions::new();
            options
                .remote_callbacks(callbacks)
                .proxy_options(proxy())
                .packbuilder_parallelism(0);
            let pushed = libgit2_push::push(&mut anonymous, specs, leases, &options);
            if pushed.is_err() {
                cut_connections_of_this_thread();
            }
            // Nothing is left to say to the remote; a failure to say goodbye changes nothing.
            let _ = anonymous.disconnect();
            progress.borrow_mut().finish();
            drop(options);
            let remote_lines = remote_messages(&String::from_utf8_lossy(&said.into_inner()));
            let refs = match pushed {
                Ok(refs) => refs,
                // libgit2 ends a push whose report began `unpack <reason>` with this error,
                // and names no ref: every ref of the push is refused by it.
                Err(e)
                    if e.class() == git2::ErrorClass::Net
                        && e.message() == "unpacking the sent packfile failed on the remote" =>
                {
                    let refs = specs
                        .iter()
                        .filter_map(|spec| spec.rsplit_once(':'))
                        .map(|(_, dst)| {
                            (dst.to_string(), RefOutcome::Rejected(UNPACKER_ERROR.into()))
                        })
                        .collect();
                    let why = remote_lines
                        .last()
                        .cloned()
                        .unwrap_or_else(|| e.message().to_string());
                    return Ok(PushOutcome {
                        refs,
                        stats: stats.into_inner(),
                        remote_lines,
                        unpack_error: Some(why),
                    });
                }
                Err(e) => {
                    let err = self.auth.explain(remote, "cannot push to", e);
                    if remote_lines.is_empty() {
                        return Err(err);
                    }
                    return Err(anyhow::anyhow!(
                        "{err:#}; the target said: {}",
                        last_words(&remote_lines)
                    ));
                }
            };
            // receive-pack answers `ng <ref> unpacker error` for every ref when it could not
            // take the pack; libgit2 hands each ref's status on as it came.
            let unpack_error = (!refs.is_empty()
                && refs
                    .values()
                    .all(|o| matches!(o, RefOutcome::Rejected(why) if why == UNPACKER_ERROR)))
            .then(|| UNPACKER_ERROR.to_string());
            Ok(PushOutcome {
                refs,
                stats: stats.into_inner(),
                remote_lines,
                unpack_error,
            })
        })
    }
}

/// Where libgit2 fetches `url` from: a local path through `git upload-pack` when git is
/// installed (see `transport::local`), anything else as it is.
fn fetch_location(url: &RemoteUrl) -> String {
    url.local_path()
        .and_then(crate::transport::local::url)
        .unwrap_or_else(|| url.as_git_url().to_string())
}

/// Mirror semantics: every ref, force-updated, under the same name.
const MIRROR_REFSPEC: &str = "+refs/*:refs/*";

/// What `Session::look` saw and did.
#[derive(Debug)]
pub(crate) struct Look {
    /// The remote's refs under `refs/` that this tool can carry.
    pub(crate) refs: RefMap,
    /// The remote's refs this tool cannot carry, with why; neither fetched nor pushed.
    pub(crate) unsupported: Vec<Unsupported>,
    /// The branch the remote's `HEAD` names, when it advertised one.
    pub(crate) head: Option<String>,
    /// What was fetched, when the listing called for a fetch.
    pub(crate) fetched: Option<TransferStats>,
}

/// A ref a remote advertised that this tool cannot carry (see `refname::unsupported`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported {
    /// The name, escaped (`refname::escape`).
    pub(crate) name: String,
    pub(crate) id: Oid,
    pub(crate) why: String,
}

/// An advertisement, split into the refs this tool carries and those it cannot.
pub(crate) struct Listing {
    pub(crate) refs: RefMap,
    pub(crate) unsupported: Vec<Unsupported>,
    head: Option<String>,
}

/// The refs an advertisement lists under `refs/` (peeled `^{}` entries dropped), by name as
/// bytes, so that no name can stop the listing.
pub(crate) fn advertised(heads: &[(Vec<u8>, Oid)]) -> Listing {
    let mut listing = Listing {
        refs: RefMap::new(),
        unsupported: Vec::new(),
        head: None,
    };
    for (name, id) in heads {
        let (name, id) = (name.as_slice(), *id);
        if !name.starts_with(b"refs/") || name.ends_with(b"^{}") {
            continue;
        }
        let why = refname::unsupported(name).or_else(|| {
            id.is_zero()
                .then(|| "it is advertised with no object (the server holds it broken)".into())
        });
        match why {
            None => {
                listing.refs.insert(refname::escape(name), id);
            }
            Some(why) => listing.unsupported.push(Unsupported {
                name: refname::escape(name),
                id,
                why,
            }),
        }
    }
    listing
}

/// Say that refs of `url` this tool cannot carry are left as they are.
pub(crate) fn leave_alone(url: &RemoteUrl, unsupported: &[Unsupported]) {
    for skipped in unsupported {
        warn!(
            "{} has a ref this tool cannot handle, left as it is: {} ({})",
            url,
            refname::shown(&skipped.name),
            skipped.why
        );
    }
}

/// libgit2's proxy from the environment (`https_proxy`, `http_proxy`, `no_proxy`, either case)
/// for HTTP(S) remotes, as git and our own HTTP client read it.
fn proxy<'a>() -> git2::ProxyOptions<'a> {
    let mut proxy = git2::ProxyOptions::new();
    proxy.auto();
    proxy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_sorts_out_a_broken_ref_and_a_name_with_no_object() {
        let id = |hex: &str| Oid::from_str(hex).unwrap();
        let one = id("1111111111111111111111111111111111111111");
        let listing = advertised(&[
            (b"refs/heads/main".to_vec(), one),
            (b"refs/heads/a..b".to_vec(), Oid::ZERO_SHA1),
            (b"refs/heads/fine".to_vec(), Oid::ZERO_SHA1),
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
}
