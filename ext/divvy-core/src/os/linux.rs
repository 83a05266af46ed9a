//! The Linux versions of the operating-system calls (see `os`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;

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

pub fn die_with_parent(master_pid: i32) -> bool {
    // The kernel sends the signal when the parent dies, even by SIGKILL.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    nix::unistd::getppid().as_raw() == master_pid
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
