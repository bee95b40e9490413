//! The few libgit2 calls that git2 offers only for UTF-8 ref names, made with the names' bytes.
//!
//! git2 reads a remote's advertised names and a push's per-ref results with
//! `str::from_utf8(..).unwrap()`, so one branch named in Latin-1 panics every run, and it takes
//! ref names and refspecs as `&str`, so such a branch could never be written or pushed either.
//! libgit2 itself works on bytes. These wrappers call it directly with the names of
//! [`crate::base::refname`]'s escaped form turned back into bytes, and nothing else: everything that
//! git2 handles correctly stays with git2.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};

use git2::{Binding, Oid};
use libgit2_sys as raw;

use crate::base::refname;
use crate::base::transfer::RefOutcome;

fn check(code: c_int) -> Result<(), git2::Error> {
    if code < 0 {
        Err(git2::Error::last_error(code))
    } else {
        Ok(())
    }
}

/// The names (as bytes) and ids a connected remote advertised, in its order.
pub(crate) fn remote_heads(remote: &git2::Remote<'_>) -> Result<Vec<(Vec<u8>, Oid)>, git2::Error> {
    let mut base: *mut *const raw::git_remote_head = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: `remote` is a live remote; libgit2 fills `base` and `size` with its own array,
    // valid while the remote is, which outlives this function's reads.
    check(unsafe { raw::git_remote_ls(&mut base, &mut size, remote.raw()) })?;
    if base.is_null() || size == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: libgit2 returned `size` valid head pointers at `base`.
    let heads = unsafe { std::slice::from_raw_parts(base, size) };
    let mut out = Vec::with_capacity(size);
    for &head in heads {
        if head.is_null() {
            continue;
        }
        // SAFETY: a head libgit2 listed, with a NUL-terminated name and an id.
        let (name, id) = unsafe {
            let head = &*head;
            if head.name.is_null() {
                continue;
            }
            (
                CStr::from_ptr(head.name).to_bytes().to_vec(),
                Oid::from_raw(&head.oid),
            )
        };
        out.push((name, id));
    }
    Ok(out)
}

/// Point the ref `name` (escaped) at `id`, creating or overwriting it.
pub(crate) fn set_ref(
    repo: &git2::Repository,
    name: &str,
    id: Oid,
    message: &str,
) -> Result<(), git2::Error> {
    let c_name = refname::to_c_string(name)?;
    let c_message = std::ffi::CString::new(message).unwrap_or_default();
    let mut reference = std::ptr::null_mut();
    // SAFETY: live repository, NUL-terminated strings and an id, all valid for the call; the
    // returned reference is freed at once.
    unsafe {
        check(raw::git_reference_create(
            &mut reference,
            repo.raw(),
            c_name.as_ptr(),
            id.raw(),
            1,
            c_message.as_ptr(),
        ))?;
        raw::git_reference_free(reference);
    }
    Ok(())
}

/// Delete the ref `name` (escaped); one that is already gone is not an error.
pub(crate) fn delete_ref(repo: &git2::Repository, name: &str) -> Result<(), git2::Error> {
    let c_name = refname::to_c_string(name)?;
    let mut reference = std::ptr::null_mut();
    // SAFETY: as in `set_ref`; the looked-up reference is freed after the delete.
    unsafe {
        let code = raw::git_reference_lookup(&mut reference, repo.raw(), c_name.as_ptr());
        if code == raw::GIT_ENOTFOUND {
            return Ok(());
        }
        check(code)?;
        let deleted = raw::git_reference_delete(reference);
        raw::git_reference_free(reference);
        check(deleted)
    }
}

thread_local! {
    /// Per-ref outcomes of the push running on this thread, by escaped name.
    static PUSH_RESULTS: RefCell<Option<HashMap<String, RefOutcome>>> =
        const { RefCell::new(None) };
    /// The leases of the push running on this thread: each ref's value on the target as the
    /// plan saw it (`None`: absent), by escaped name.
    static LEASES: RefCell<Option<HashMap<String, Option<Oid>>>> = const { RefCell::new(None) };
    /// Refs whose lease the target's advertisement broke: (escaped name, its value there).
    static STALE: RefCell<Vec<(String, Option<Oid>)>> = const { RefCell::new(Vec::new()) };
}

/// libgit2's `push_negotiation` callback, called once the target advertised its refs and before
/// any object is packed: refuse the whole push when a ref's current value on the target (`src`
/// of each update) is not the one the plan saw. libgit2 then sends each command with that
/// advertised value as the old one, which the target's receive-pack checks again under its ref
/// lock, so a ref moved after the advertisement is refused there.
extern "C" fn check_leases(
    updates: *mut *const raw::git_push_update,
    len: libc::size_t,
    _payload: *mut c_void,
) -> c_int {
    std::panic::catch_unwind(|| {
        if updates.is_null() {
            return 0;
        }
        // SAFETY: libgit2 passes `len` valid update pointers, live for the call.
        let updates = unsafe { std::slice::from_raw_parts(updates, len) };
        let mut stale = Vec::new();
        LEASES.with(|leases| {
            let leases = leases.borrow();
            let Some(leases) = leases.as_ref() else {
                return;
            };
            for &update in updates {
                if update.is_null() {
                    continue;
                }
                // SAFETY: a live update with a NUL-terminated destination name and ids.
                let (name, current) = unsafe {
                    let update = &*update;
                    if update.dst_refname.is_null() {
                        continue;
                    }
                    (
                        refname::escape(CStr::from_ptr(update.dst_refname).to_bytes()),
                        Oid::from_raw(&update.src),
                    )
                };
                let current = (!current.is_zero()).then_some(current);
                if let Some(&expected) = leases.get(&name)
                    && expected != current
                {
                    stale.push((name, current));
                }
            }
        });
        if stale.is_empty() {
            return 0;
        }
        STALE.with(|s| *s.borrow_mut() = stale);
        let message = c"a ref moved on the target since the plan was made (lease broken)";
        // SAFETY: a static NUL-terminated message; libgit2 copies it.
        unsafe { raw::git_error_set_str(raw::GIT_ERROR_CALLBACK as c_int, message.as_ptr()) };
        -1
    })
    .unwrap_or(-1)
}

/// libgit2's `push_update_reference` callback: record one ref's result by its bytes. It replaces
/// git2's, which panics on a name that is not UTF-8; the payload is git2's and is not used.
extern "C" fn record_result(
    name: *const c_char,
    status: *const c_char,
    _payload: *mut c_void,
) -> c_int {
    std::panic::catch_unwind(|| {
        if name.is_null() {
            return 0;
        }
        // SAFETY: libgit2 passes NUL-terminated strings valid for the call.
        let name = refname::escape(unsafe { CStr::from_ptr(name) }.to_bytes());
        let outcome = if status.is_null() {
            RefOutcome::Accepted
        } else {
            // SAFETY: as above.
            let reason = unsafe { CStr::from_ptr(status) }.to_bytes();
            RefOutcome::Rejected(String::from_utf8_lossy(reason).into_owned())
        };
        PUSH_RESULTS.with(|results| {
            if let Some(map) = results.borrow_mut().as_mut() {
                map.insert(name, outcome);
            }
        });
        0
    })
    .unwrap_or(-1)
}

unsafe extern "C" {
    /// libgit2's push without the disconnect `git_remote_push` does on failure (and without its
    /// update of remote-tracking refs, which an anonymous remote has none of); not bound by
    /// libgit2-sys. On failure the caller cuts the connection first, so libgit2's polite
    /// teardown (over SSH, three more waits of the full network timeout on a peer that stopped
    /// answering) fails at once.
    fn git_remote_upload(
        remote: *mut raw::git_remote,
        refspecs: *const raw::git_strarray,
        opts: *const raw::git_push_options,
    ) -> std::ffi::c_int;
}

/// Push `specs` (escaped refspecs) with `options` (whose callbacks, other than per-ref results
/// and lease checks, stay git2's) and return each ref's result as the target reported it.
/// `leases` holds each pushed ref's value on the target as the plan saw it: when the target's
/// advertisement differs for any, nothing is sent and every ref of the push is returned
/// rejected as "stale info", the broken ones saying what the target has.
pub(crate) fn push(
    remote: &mut git2::Remote<'_>,
    specs: &[String],
    leases: HashMap<String, Option<Oid>>,
    options: &git2::PushOptions<'_>,
) -> Result<HashMap<String, RefOutcome>, git2::Error> {
    let c_specs = specs
        .iter()
        .map(|s| refname::to_c_string(s))
        .collect::<Result<Vec<_>, _>>()?;
    let pointers: Vec<*const c_char> = c_specs.iter().map(|s| s.as_ptr()).collect();
    let array = raw::git_strarray {
        strings: pointers.as_ptr() as *mut *mut c_char,
        count: pointers.len(),
    };
    // `raw()` points the callbacks' payload into `options`, which outlives the call.
    let mut raw_options = options.raw();
    raw_options.callbacks.push_update_reference = Some(record_result);
    raw_options.callbacks.push_negotiation = Some(check_leases);
    let names: Vec<String> = leases.keys().cloned().collect();
    LEASES.with(|l| *l.borrow_mut() = Some(leases));
    STALE.with(|s| s.borrow_mut().clear());
    PUSH_RESULTS.with(|results| *results.borrow_mut() = Some(HashMap::new()));
    // SAFETY: live remote; the refspec array points into `c_specs` and `pointers`, and the
    // options into `options`, all of which live until after the call.
    let code = unsafe { git_remote_upload(remote.raw(), &array, &raw_options) };
    let results = PUSH_RESULTS.with(|results| results.borrow_mut().take().unwrap_or_default());
    LEASES.with(|l| l.borrow_mut().take());
    let stale = STALE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if code < 0 && !stale.is_empty() {
        let mut refused: HashMap<String, RefOutcome> = names
            .into_iter()
            .map(|name| {
                let why = "stale info: not sent, another ref of this push had moved on the target";
                (name, RefOutcome::Rejected(why.to_string()))
            })
            .collect();
        for (name, current) in stale {
            let has = current.map_or_else(|| "nothing".to_string(), |id| id.to_string());
            let why = format!("stale info: the target has {has}, not what the plan saw");
            refused.insert(name, RefOutcome::Rejected(why));
        }
        return Ok(refused);
    }
    check(code)?;
    Ok(results)
}
