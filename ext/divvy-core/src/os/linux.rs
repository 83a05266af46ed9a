//! The Linux versions of the operating-system calls (see `os`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::thread_timer::ThreadTimer;

/// Set when the kernel refused `vmsplice` once; bytes are then written.
static SPLICE_REFUSED: AtomicBool = AtomicBool::new(false);

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

pub fn enlarge_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    // Refused above the user's limit (/proc/sys/fs/pipe-max-size): the
    // default size works, with more round trips.
    let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes));
}

pub fn splice_into_pipe(fd: BorrowedFd<'_>, bytes: &[u8]) -> Option<nix::Result<usize>> {
    if SPLICE_REFUSED.load(Ordering::Relaxed) {
        return None;
    }
    let part = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    loop {
        // SAFETY: the iovec points into `bytes`, which the caller keeps
        // unchanged until the reader has read them; no pages are gifted.
        let spliced = unsafe { libc::vmsplice(fd.as_raw_fd(), &part, 1, libc::SPLICE_F_NONBLOCK) };
        match Errno::result(spliced) {
            Ok(count) => return Some(Ok(count as usize)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EPERM) => {
                SPLICE_REFUSED.store(true, Ordering::Relaxed);
                return None;
            }
            Err(errno) => return Some(Err(errno)),
        }
    }
}

pub fn prefault(room: &mut [std::mem::MaybeUninit<u8>]) {
    // madvise wants a page-aligned start; the pages it covers are whole
    // ones inside `room`.
    // SAFETY: sysconf only reads a system value.
    let Ok(page) = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) else {
        return;
    };
    let start = room.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(page);
    let end = (start + room.len()) & !(page - 1);
    if end > aligned {
        // SAFETY: the range lies inside `room`, which the caller may write;
        // populating only maps its pages (zero-filled where new).
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

pub fn die_with_parent(master_pid: i32) -> bool {
    // The kernel sends the signal when the parent dies, even by SIGKILL. A
    // real-time signal, which Ruby leaves alone, reaches a handler that
    // kills the worker's whole group; SIGKILL would orphan what `perform`
    // started.
    let signo = parent_death_signal();
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a zeroed sigaction is valid; the handler only calls kill,
    // which is async-signal-safe.
    let installed = unsafe {
        let action = action.as_mut_ptr();
        (*action).sa_sigaction = kill_group as *const () as usize;
        libc::sigemptyset(&mut (*action).sa_mask);
        libc::sigaction(signo, action, std::ptr::null_mut()) == 0
    };
    let signal = if installed { signo } else { libc::SIGKILL };
    // SAFETY: prctl with PR_SET_PDEATHSIG only records the signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) };
    nix::unistd::getppid().as_raw() == master_pid
}

/// The signal a worker gets when its master dies: a real-time one, clear
/// of those glibc keeps for itself.
fn parent_death_signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// Kills the worker's process group, the worker included.
extern "C" fn kill_group(_signo: libc::c_int) {
    // SAFETY: kill is async-signal-safe; this ends the process.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

pub fn keep_freed_memory() {
    /// Allocations below this come from the heap, whose freed memory is
    /// reused.
    const MMAP_THRESHOLD: i32 = 32 * 1024 * 1024;
    /// Free memory at the top of the heap kept rather than given back.
    const TRIM_THRESHOLD: i32 = 256 * 1024 * 1024;
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc's tuning parameters; both are
    // within the ranges glibc accepts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * super::page_size() as u64
}

pub fn start_writeback(file: &std::fs::File) -> io::Result<()> {
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps
    // open; offset 0 and length 0 mean the whole file.
    let started =
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    match started {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

pub enum SignalTimer {
    /// A timer the kernel keeps.
    Kernel(libc::timer_t),
    /// A thread, where the kernel would not make one.
    Thread(ThreadTimer),
}

impl SignalTimer {
    pub fn new(signal: libc::c_int) -> io::Result<SignalTimer> {
        match kernel_timer(signal) {
            Ok(timer) => Ok(SignalTimer::Kernel(timer)),
            Err(_) => ThreadTimer::new(signal).map(SignalTimer::Thread),
        }
    }

    /// Arms the timer for `after` (at least a nanosecond: zero disarms),
    /// or disarms it with `None`.
    pub fn set(&self, after: Option<Duration>) {
        let timer = match self {
            SignalTimer::Kernel(timer) => *timer,
            SignalTimer::Thread(thread) => return thread.set(after),
        };
        let after = after.map_or(Duration::ZERO, |after| after.max(Duration::from_nanos(1)));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the timer exists until drop; timer_settime only reads
        // the spec. It cannot fail with a valid timer and spec.
        unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    }
}

/// Makes a kernel timer that sends `signal` to this process, unarmed.
///
/// Returns the OS error (`EAGAIN` past the pending-signal limit).
fn kernel_timer(signal: libc::c_int) -> io::Result<libc::timer_t> {
    // SAFETY: a zeroed sigevent is valid; SIGEV_SIGNAL needs only the
    // signal number.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_SIGNAL;
    event.sigev_signo = signal;
    let mut timer = std::mem::MaybeUninit::<libc::timer_t>::uninit();
    // SAFETY: timer_create reads the event and writes the timer's id.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, timer.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: timer_create succeeded, so it wrote the id.
    Ok(unsafe { timer.assume_init() })
}

impl Drop for SignalTimer {
    fn drop(&mut self) {
        if let SignalTimer::Kernel(timer) = self {
            // SAFETY: the timer was made by timer_create and is deleted
            // once.
            unsafe { libc::timer_delete(*timer) };
        }
    }
}
