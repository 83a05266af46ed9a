//! Operating-system specifics, in one place: each call here has a Linux
//! version and a portable fallback beside it (`linux.rs`, `portable.rs`).
//! The portable one is what macOS and the BSDs run; the `portable` cargo
//! feature makes a Linux build use it too, so that it is tested.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod linux;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
use linux as imp;

#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod portable;
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

/// Arranges for this process (a worker) to be killed when the process
/// `master_pid`, its parent, dies. Runs in the worker, right after the
/// fork.
///
/// Returns false when the parent is already gone (it died during the
/// fork), and the worker should leave at once.
pub fn die_with_parent(master_pid: i32) -> bool {
    imp::die_with_parent(master_pid)
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

/// Returns the system's page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
