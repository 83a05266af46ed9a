//! The portable versions of the operating-system calls (see `os`): what
//! macOS and the BSDs run, and a Linux build with the `portable` feature.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

pub use super::thread_timer::ThreadTimer as SignalTimer;

/// How often a worker looks for its parent.
const PARENT_WATCH_INTERVAL: Duration = Duration::from_millis(200);

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    for end in [&read_end, &write_end] {
        fcntl(end, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((read_end, write_end))
}

pub fn enlarge_pipe(_fd: BorrowedFd<'_>, _bytes: usize) {}

pub fn splice_into_pipe(_fd: BorrowedFd<'_>, _bytes: &[u8]) -> Option<nix::Result<usize>> {
    None
}

pub fn prefault(_room: &mut [std::mem::MaybeUninit<u8>]) {}

pub fn die_with_parent(master_pid: i32) -> bool {
    // A thread of its own looks for the parent, so that a worker busy in a
    // long `perform` still notices; it needs no Ruby. Reparented (the
    // master is gone), the worker is killed with its process group.
    let watch = move || loop {
        std::thread::sleep(PARENT_WATCH_INTERVAL);
        if nix::unistd::getppid().as_raw() != master_pid {
            // SAFETY: kill has no preconditions; this ends the worker's
            // group, the worker included.
            unsafe { libc::kill(0, libc::SIGKILL) };
        }
    };
    let _ = std::thread::Builder::new()
        .name(String::from("divvy-parent-watch"))
        .spawn(watch);
    nix::unistd::getppid().as_raw() == master_pid
}

pub fn keep_freed_memory() {}

pub fn start_writeback(file: &std::fs::File) -> io::Result<()> {
    file.sync_data()
}

#[cfg(target_os = "macos")]
pub fn resident_bytes() -> u64 {
    let mut info = std::mem::MaybeUninit::<libc::proc_taskinfo>::zeroed();
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `size` bytes into `info`, which
    // is that large, and returns how many it wrote.
    let written = unsafe {
        libc::proc_pidinfo(
            libc::getpid(),
            libc::PROC_PIDTASKINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if written != size {
        return 0;
    }
    // SAFETY: proc_pidinfo filled in the whole struct.
    unsafe { info.assume_init() }.pti_resident_size
}

/// Elsewhere, the peak resident memory: it never falls, so a worker over
/// the limit is still retired, only perhaps later than where /proc tells.
#[cfg(not(target_os = "macos"))]
pub fn resident_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills in the rusage it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded. ru_maxrss is in kilobytes off macOS.
    let kilobytes = unsafe { usage.assume_init() }.ru_maxrss;
    u64::try_from(kilobytes).unwrap_or(0) * 1024
}
