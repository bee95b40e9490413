//! Child processes that cannot outlive the run, and cannot hang it.
//!
//! A `git push` is a tree of processes: git, pack-objects, and for a local target
//! `sh -c git-receive-pack`, receive-pack, its hooks and index-pack. Killing only git (what
//! PR_SET_PDEATHSIG does when we die) leaves receive-pack running: it updates the target's refs
//! later, after the next run has listed the target and reported it in sync. So every child runs in
//! a process group of its own, and a small guard process (forked from us, in that group) waits
//! on a pipe whose write end only we hold: when we die by any means, even SIGKILL, the pipe
//! reaches end-of-file and the guard kills the whole group, itself included. The guard also holds
//! the cache lock, so the next run cannot take the lock before the group is dead; every other
//! descriptor it inherited it closes at once. A fork copies every descriptor of the process,
//! whichever thread opened it: kept, another mirror's lock would stay held, and the write end of
//! another child's pipe (caught between its creation and that child's spawn) would keep its
//! reader from ever seeing end-of-file while this group lives.
//!
//! The same group is what a stalled transfer is measured on: the bytes its processes read and
//! write (`/proc/<pid>/io`) stop moving when the remote stops reading, whatever the transport.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};

/// A command for `program` that inherits none of the run's secrets: every child this program
/// starts is made here. What a child inherits, a local target's hooks see, and whatever else git
/// starts (see [`crate::base::secret::child_may_inherit`]).
pub(crate) fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (name, value) in std::env::vars_os() {
        if !crate::base::secret::child_may_inherit(&name, &value) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// A running child in its own process group, with the guard that ends the group if we die.
pub(crate) struct Group {
    child: Child,
    pgid: libc::pid_t,
    guard: Option<Guard>,
    waited: bool,
}

/// The guard process: its pid and the write end of the pipe it waits on.
struct Guard {
    pid: libc::pid_t,
    release: OwnedFd,
}

/// Collect, on a thread, the first `kept` bytes a child writes to stderr (what an error quotes),
/// and drain the rest, so the child never blocks on a full pipe. The thread ends when the child
/// closes its stderr.
pub(crate) fn collect_stderr(
    mut pipe: std::process::ChildStderr,
    kept: u64,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut text = Vec::new();
        let _ = (&mut pipe).take(kept).read_to_end(&mut text);
        let _ = io::copy(&mut pipe, &mut io::sink());
        text
    })
}

impl Group {
    /// Start `cmd` in a new process group watched by a guard that holds `hold` (the cache lock)
    /// until the group is dead. Without a guard (fork refused, or not Linux) the child still
    /// gets its own group and dies with the thread that started it.
    pub(crate) fn spawn(cmd: &mut Command, hold: BorrowedFd<'_>) -> io::Result<Group> {
        Self::spawn_holding(cmd, Some(hold))
    }

    /// `spawn`, with a guard that holds `hold` only when there is one: a child that neither
    /// writes nor reads the cache (`git upload-pack` on a source, for libgit2) still dies with
    /// us, with every process it started.
    pub(crate) fn spawn_holding(
        cmd: &mut Command,
        hold: Option<BorrowedFd<'_>>,
    ) -> io::Result<Group> {
        let guard = start_guard(hold).ok();
        let leader = guard.as_ref().map_or(0, |g| g.pid);
        set_up_child(cmd, leader);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(guard) = guard {
                    guard.release_and_reap();
                }
                return Err(e);
            }
        };
        let pgid = if leader > 0 {
            leader
        } else {
            child.id() as libc::pid_t
        };
        Ok(Group {
            child,
            pgid,
            guard,
            waited: false,
        })
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kill every process of the group (the guard too).
    pub(crate) fn kill(&mut self) {
        // SAFETY: signalling a process group we created; at worst it no longer exists.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
    }

    /// Wait for the child, then let the guard go without killing anything: a child that exited
    /// has waited for its own children.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait();
        self.waited = true;
        if let Some(guard) = self.guard.take() {
            guard.release_and_reap();
        }
        status
    }

    /// Bytes read and written so far by the group's processes (`rchar + wchar` of
    /// `/proc/<pid>/io`: sockets, pipes and files alike). `None` where /proc cannot tell.
    pub(crate) fn io_bytes(&self) -> Option<u64> {
        group_io_bytes(self.pgid)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.waited {
            self.kill();
            let _ = self.child.wait();
        }
        if let Some(guard) = self.guard.take() {
            guard.release_and_reap();
        }
    }
}

impl Guard {
    /// Tell the guard we are done (one byte: exit without killing), then reap it.
    fn release_and_reap(self) {
        let _ = write_byte(&self.release, b"x");
        drop(self.release);
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe {
            while libc::waitpid(self.pid, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

fn write_byte(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a valid descriptor we own and a buffer of the length given.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn start_guard(hold: Option<BorrowedFd<'_>>) -> io::Result<Guard> {
    // The highest descriptor the guard closes one by one where close_range(2) is missing
    // (Linux before 5.9); read here, as getrlimit is no call for a forked child.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: an rlimit for getrlimit to fill.
    let open_max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        libc::c_int::try_from(limit.rlim_cur).unwrap_or(libc::c_int::MAX)
    } else {
        4096
    };
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: a two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors we now own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only async-signal-safe calls (setpgid, close, read, kill, _exit)
    // and never returns into Rust code, so forking a multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; this function does not return.
        unsafe {
            guard_main(
                read_end.as_raw_fd(),
                hold.map_or(read_end.as_raw_fd(), |fd| fd.as_raw_fd()),
                open_max,
            )
        }
    }
    drop(read_end);
    // Both sides set the group, so it exists before the git child joins it, whichever runs
    // first.
    // SAFETY: our child, not yet exec'd (it never execs).
    unsafe {
        libc::setpgid(pid, pid);
    }
    Ok(Guard {
        pid,
        release: write_end,
    })
}

#[cfg(not(target_os = "linux"))]
fn start_guard(_hold: Option<BorrowedFd<'_>>) -> io::Result<Guard> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no guard here"))
}

/// The guard: close every descriptor but its pipe's read end and `hold` (the read end again when
/// there is nothing to hold), then wait until the pipe says "done" (a byte) or "parent gone" (end
/// of file); on the latter, kill the whole group.
///
/// # Safety
/// Only to be called in the child of `fork`.
#[cfg(target_os = "linux")]
unsafe fn guard_main(read_fd: libc::c_int, hold: libc::c_int, open_max: libc::c_int) -> ! {
    // SAFETY: async-signal-safe calls on descriptors this process inherited.
    unsafe {
        libc::setpgid(0, 0);
        close_all_but(read_fd, hold, open_max);
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(read_fd, (&mut byte as *mut u8).cast(), 1);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n != 1 {
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}

/// Close descriptors 3 and up except `a` and `b`: close_range(2) where the kernel has it, else
/// one by one up to `open_max`. Standard input and output stay: the parent's.
///
/// # Safety
/// Only to be called in the child of `fork` (it closes descriptors other threads use).
#[cfg(target_os = "linux")]
unsafe fn close_all_but(a: libc::c_int, b: libc::c_int, open_max: libc::c_int) {
    let (low, high) = (a.min(b), a.max(b));
    let mut from = 3;
    for keep in [low, high] {
        if keep >= from {
            if keep > from {
                // SAFETY: closing a range of our own descriptors.
                unsafe { close_range(from, keep - 1, open_max) };
            }
            from = keep + 1;
        }
    }
    // SAFETY: as above.
    unsafe { close_range(from, libc::c_int::MAX, open_max) };
}

/// # Safety
/// As `close_all_but`.
#[cfg(target_os = "linux")]
unsafe fn close_range(first: libc::c_int, last: libc::c_int, open_max: libc::c_int) {
    // SAFETY: a raw syscall on descriptor numbers; async-signal-safe.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        )
    };
    if done != 0 {
        for fd in first..=last.min(open_max) {
            // SAFETY: closing a descriptor that may or may not be open.
            unsafe { libc::close(fd) };
        }
    }
}

/// Put the child in the guard's group (or a new group of its own) and let it die with the
/// thread that started it.
fn set_up_child(cmd: &mut Command, leader: libc::pid_t) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and setpgid are async-signal-safe, and the closure touches nothing else
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setpgid(0, leader) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sum of `rchar + wchar` over the processes of group `pgid`.
fn group_io_bytes(pgid: libc::pid_t) -> Option<u64> {
    let mut total = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let pgrp = after.split_whitespace().nth(2).and_then(|f| f.parse().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
            continue;
        };
        seen = true;
        for line in io.lines() {
            if let Some(v) = line
                .strip_prefix("rchar: ")
                .or_else(|| line.strip_prefix("wchar: "))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    seen.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::Stdio;

    /// A descriptor for the guard to hold: any open file.
    fn lock_file() -> std::fs::File {
        tempfile::tempfile().unwrap()
    }

    fn alive(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn the_child_gets_its_own_group_and_io_is_counted() {
        let mut group = Group::spawn(
            Command::new("sh")
                .args(["-c", "head -c 100000 /dev/zero >/dev/null; echo $$"])
                .stdout(Stdio::piped()),
            lock_file().as_fd(),
        )
        .unwrap();
        let pid = group.child().id() as libc::pid_t;
        // SAFETY: asking for a process's group.
        let pgid = unsafe { libc::getpgid(pid) };
        assert_ne!(pgid, unsafe { libc::getpgid(0) });
        assert!(group.io_bytes().is_some());
        assert!(group.wait().unwrap().success());
    }

    #[test]
    fn kill_ends_grandchildren_too() {
        let mut group = Group::spawn(
            Command::new("sh")
                .args(["-c", "sleep 600 & echo $!; wait"])
                .stdout(Stdio::piped()),
            lock_file().as_fd(),
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(group.child().stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: libc::pid_t = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        group.kill();
        let _ = group.wait();
        // The grandchild is not our child: it is reaped by init, so poll with a pidfd.
        // SAFETY: pidfd_open on a pid, then poll on the descriptor it returns.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, grandchild, 0) } as i32;
        if fd >= 0 {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
            unsafe { libc::close(fd) };
            assert_eq!(ready, 1, "the grandchild survived the group kill");
        }
    }

    /// A pipe another thread opened before this group started: the guard must not keep its
    /// write end open, or the reader waits for the group to end instead of seeing end-of-file
    /// when the writer closes (another mirror's git child, in one process). The cache lock it is
    /// given, it keeps until the group is dead.
    #[test]
    fn the_guard_holds_the_lock_and_nothing_else() {
        let (reader, writer) = std::io::pipe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        lock.lock().unwrap();
        let mut group = Group::spawn(
            Command::new("sh")
                .args(["-c", "read line; exit 0"])
                .stdin(Stdio::piped()),
            lock.as_fd(),
        )
        .unwrap();
        drop(writer);
        drop(lock);
        let mut poll = libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd for poll to fill.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        assert_eq!(
            ready, 1,
            "the pipe's reader saw no end-of-file: the guard holds its writer"
        );
        let mut again = std::fs::File::open(&lock_path).unwrap();
        assert!(
            again.try_lock().is_err(),
            "the lock was released while the group lives"
        );
        drop(group.child().stdin.take());
        assert!(group.wait().unwrap().success());
        // The guard is gone with the group: the lock is free.
        again = std::fs::File::open(&lock_path).unwrap();
        assert!(again.try_lock().is_ok());
    }
}
