//! The self-pipe that wakes the master's wait: written by signal traps and
//! by Ruby's unblock function, polled by the master's loop.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::unistd::read;

use super::link::set_nonblocking;
use crate::os;

/// The write end of the current run's wake pipe, or -1: read by signal traps,
/// which carry no data of their own.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// A non-blocking pipe whose read end becomes readable when someone calls
/// `wake`.
#[derive(Debug)]
pub struct WakePipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
}

impl WakePipe {
    /// Opens the pipe and makes it the one `wake` writes to.
    ///
    /// Returns the OS error when no descriptor is left.
    pub fn open() -> io::Result<WakePipe> {
        let (read_end, write_end) = os::pipe()?;
        set_nonblocking(&read_end)?;
        set_nonblocking(&write_end)?;
        WAKE_FD.store(write_end.as_raw_fd(), Ordering::SeqCst);
        Ok(WakePipe {
            read_end,
            write_end,
        })
    }

    /// The end to poll for reading.
    pub fn read_fd(&self) -> BorrowedFd<'_> {
        self.read_end.as_fd()
    }

    /// The end `wake_fd` writes to, for an unblock function.
    pub fn write_raw_fd(&self) -> RawFd {
        self.write_end.as_raw_fd()
    }

    /// Both ends, which a forked worker closes.
    pub fn raw_fds(&self) -> [RawFd; 2] {
        [self.read_end.as_raw_fd(), self.write_end.as_raw_fd()]
    }

    /// Empties the pipe after a wake-up.
    pub fn drain(&self) {
        let mut sink = [0u8; 64];
        while matches!(read(&self.read_end, &mut sink), Ok(n) if n > 0) {}
    }
}

impl Drop for WakePipe {
    fn drop(&mut self) {
        let _ = WAKE_FD.compare_exchange(
            self.write_end.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// Forgets the master's wake pipe: called in a freshly forked worker, which
/// closed it.
pub fn forget() {
    WAKE_FD.store(-1, Ordering::SeqCst);
}

/// Wakes the current run's wait, if a run is waiting. Async-signal-safe.
pub fn wake() {
    wake_fd(WAKE_FD.load(Ordering::SeqCst));
}

/// Writes one byte to `fd` when it is a descriptor. Async-signal-safe: a full
/// pipe already means a pending wake-up, so the result is ignored.
pub fn wake_fd(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: writing one byte from a valid buffer; errors are harmless.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}
