//! Operating-system specifics, in one place: each call here has a Linux
//! version and a portable fallback beside it (`linux.rs`, `portable.rs`).
//! The portable one is what macOS and the BSDs run; the `portable` cargo
//! feature makes a Linux build use it too, so that it is tested.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod linux;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
use linux as imp;

#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod portable;
mod thread_timer;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
use portable as imp;

/// Opens a pipe whose two ends close on `exec`.
///
/// Returns (read end, write end), or the OS error when the process is out
/// of descriptors.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    imp::pipe()
}

/// Asks the kernel for a pipe buffer of `bytes` behind `fd`, so that a
/// large item goes in one write. Where that is refused or unknown, the
/// pipe keeps its size and only takes more round trips.
pub fn enlarge_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    imp::enlarge_pipe(fd, bytes);
}

/// Hands `bytes` to the non-blocking pipe `fd` without copying them, where
/// the system can (Linux's `vmsplice`): the pipe then refers to the pages,
/// so they must stay unchanged until the reader has read them.
///
/// Returns `None` where the system cannot, and the caller writes instead;
/// otherwise the count handed over (possibly short) or the OS error
/// (`EAGAIN` when the pipe is full).
pub fn splice_into_pipe(fd: BorrowedFd<'_>, bytes: &[u8]) -> Option<nix::Result<usize>> {
    imp::splice_into_pipe(fd, bytes)
}

/// Has the kernel map the whole pages inside `room` now (Linux's
/// `MADV_POPULATE_WRITE`), so that a read into it does not fault them in
/// while it holds the pipe's lock and the writer waits. Elsewhere, and on
/// kernels before 5.14, the read faults them in as usual.
pub fn prefault(room: &mut [std::mem::MaybeUninit<u8>]) {
    imp::prefault(room);
}

/// How many bytes the pipe `fd` (either end) holds that its reader has
/// not read yet, or `None` when the system will not say.
pub fn unread_bytes(fd: RawFd) -> Option<u64> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer it is given.
    let asked = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread as *mut libc::c_int) };
    if asked == 0 {
        u64::try_from(unread).ok()
    } else {
        None
    }
}

/// Arranges for this process (a worker) to be killed when the process
/// `master_pid`, its parent, dies, and with it every process of its process
/// group (what its `perform` started). Runs in the worker, right after the
/// fork, once it leads its own group.
///
/// Returns false when the parent is already gone (it died during the
/// fork), and the worker should leave at once.
pub fn die_with_parent(master_pid: i32) -> bool {
    imp::die_with_parent(master_pid)
}

/// A one-shot timer that sends this process a signal when it runs out. It
/// is not inherited by a fork.
///
/// On Linux the kernel keeps it (`timer_create`), with no thread: a
/// process that has ever run a second thread forks children whose malloc
/// takes locks (glibc stays in its multi-threaded mode), which made a
/// worker's CPU-bound items about 5% slower. The portable fallback waits in
/// a thread of its own, and so does Linux where the kernel will not make a
/// timer (the user's pending-signal limit reached, `ulimit -i`).
pub struct SignalTimer(imp::SignalTimer);

impl SignalTimer {
    /// Makes an unarmed timer that will send `signal`.
    ///
    /// Returns the OS error when none can be made (a limit reached).
    pub fn new(signal: libc::c_int) -> io::Result<SignalTimer> {
        imp::SignalTimer::new(signal).map(SignalTimer)
    }

    /// Arms the timer to send its signal once, `after` from now, in place
    /// of any earlier arming.
    pub fn arm(&self, after: std::time::Duration) {
        self.0.set(Some(after));
    }

    /// Disarms the timer: no signal comes until it is armed again.
    pub fn disarm(&self) {
        self.0.set(None);
    }
}

/// Makes process `pid` (0: this one) the leader of a process group of its
/// own, so that what it starts can be signalled with it. Both the master
/// (with the worker's pid) and the worker (with 0) call it, so the group
/// exists whichever runs first; the loser's call fails harmlessly.
pub fn lead_process_group(pid: i32) {
    // SAFETY: setpgid has no memory effects; an error (the worker already
    // exited, or did it itself) leaves things as they are.
    unsafe { libc::setpgid(pid, pid) };
}

/// Sends `signal` to the process group led by `pid`: the worker and what
/// its `perform` started; to `pid` alone when it leads no group (it left
/// it). A process already gone is no error.
pub fn signal_group(pid: i32, signal: i32) {
    // SAFETY: kill has no memory effects.
    let sent = unsafe { libc::kill(-pid, signal) } == 0;
    if !sent {
        // SAFETY: as above.
        unsafe { libc::kill(pid, signal) };
    }
}

/// True while a process of the group `pgid` is alive (or a zombie not yet
/// reaped).
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    let exists = unsafe { libc::kill(-pgid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Makes this process keep the memory it frees for its next allocations
/// instead of returning it to the system (where malloc is glibc's; a no-op
/// elsewhere). Runs in a worker that received a large item.
pub fn keep_freed_memory() {
    imp::keep_freed_memory();
}

/// Returns this process's resident memory in bytes, or 0 when it cannot be
/// read.
pub fn resident_bytes() -> u64 {
    imp::resident_bytes()
}

/// Starts writing to disk what was written to `file`, without waiting for
/// the disk (Linux: `sync_file_range`); the portable fallback syncs the
/// file's data (`fdatasync`), waiting.
///
/// Returns the OS error.
pub fn start_writeback(file: &std::fs::File) -> std::io::Result<()> {
    imp::start_writeback(file)
}

/// Takes an exclusive lock on the open file `fd` (`flock`, the same call on
/// every system divvy runs on), without waiting. The lock lasts until every
/// descriptor of this open file is closed: a forked worker must close its
/// copy.
///
/// Returns true when taken, false when another open file holds it, and
/// the OS error otherwise (a file system without locks).
pub fn try_lock(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only changes the lock on an open descriptor.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

/// Returns the machine's host name (`Host` in the job log), "localhost"
/// when it cannot be read.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| String::from("localhost"))
}

/// True when standard output is a pipe or a socket: a reader that goes
/// away (`| head`) shows as an error condition on it.
pub fn stdout_is_pipe() -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills in the stat it is given, or fails.
    if unsafe { libc::fstat(1, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so `stat` is filled in.
    let mode = unsafe { stat.assume_init() }.st_mode & libc::S_IFMT;
    mode == libc::S_IFIFO || mode == libc::S_IFSOCK
}

/// Opens `/dev/null` on standard input, output or error where one is
/// closed (`2>&-`), so that no pipe the master opens takes its number and
/// receives what is written there.
pub fn fill_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: the path is a valid C string; open returns the lowest
        // free descriptor, which is `fd` or lower (already filled).
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if null >= 0 && null != fd {
            // SAFETY: puts /dev/null in place of the closed `fd`.
            unsafe {
                libc::dup2(null, fd);
                libc::close(null);
            }
        }
    }
}

/// Returns the system's page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::SignalTimer;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// How many SIGURGs this test process received.
    static RECEIVED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count(_signo: libc::c_int) {
        RECEIVED.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits up to `limit` for the count to pass `seen`; returns the count.
    fn received_after(seen: usize, limit: Duration) -> usize {
        let started = Instant::now();
        while RECEIVED.load(Ordering::SeqCst) == seen && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        RECEIVED.load(Ordering::SeqCst)
    }

    #[test]
    fn signal_timer_sends_its_signal_once_when_armed_and_none_when_disarmed() {
        // SAFETY: the handler only adds to an atomic counter.
        unsafe { libc::signal(libc::SIGURG, count as *const () as libc::sighandler_t) };
        let timer = SignalTimer::new(libc::SIGURG).expect("a timer");
        assert_eq!(received_after(0, Duration::from_millis(100)), 0);

        timer.arm(Duration::from_millis(10));
        assert_eq!(received_after(0, Duration::from_secs(10)), 1);
        assert_eq!(received_after(1, Duration::from_millis(100)), 1, "once");

        timer.arm(Duration::from_millis(300));
        timer.disarm();
        assert_eq!(received_after(1, Duration::from_millis(600)), 1);

        timer.arm(Duration::from_secs(5));
        timer.arm(Duration::from_millis(10));
        assert_eq!(received_after(1, Duration::from_secs(10)), 2, "rearmed");
        drop(timer);
    }
}
