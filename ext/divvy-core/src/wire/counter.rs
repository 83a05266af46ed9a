//! A worker's count of finished items, in memory shared between the worker
//! and the master. The worker bumps it after every item, which costs no
//! system call, while its answers travel in batches; so when a worker dies,
//! the master still knows exactly which item it was performing.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// One shared counter: a page mapped `MAP_SHARED` before the fork.
#[derive(Debug)]
pub struct Counter {
    counter: NonNull<AtomicU64>,
}

impl Counter {
    /// Maps a fresh counter at zero.
    ///
    /// Returns the OS error when the mapping fails.
    pub fn new() -> io::Result<Counter> {
        // SAFETY: an anonymous shared mapping of one page, checked below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let counter =
            NonNull::new(page.cast::<AtomicU64>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Counter { counter })
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped, zero-filled and aligned for as long as
        // `self` lives; an AtomicU64 is valid for any bit pattern.
        unsafe { self.counter.as_ref() }
    }

    /// Returns how many items the worker has finished.
    pub fn finished(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// Counts one more finished item. Runs in the worker.
    pub fn record(&self) {
        self.counter().fetch_add(1, Ordering::Release);
    }
}

// SAFETY: the counter is an atomic in memory owned by this value; sharing or
// moving it between threads is as safe as for any `AtomicU64`.
unsafe impl Send for Counter {}
// SAFETY: as above; every access goes through atomic operations.
unsafe impl Sync for Counter {}

impl Drop for Counter {
    fn drop(&mut self) {
        // SAFETY: unmaps the page `new` mapped; nothing refers to it after.
        unsafe { libc::munmap(self.counter.as_ptr().cast(), page_size()) };
    }
}

fn page_size() -> usize {
    crate::os::page_size().max(std::mem::size_of::<AtomicU64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_a_fork() {
        let counter = Counter::new().unwrap();
        counter.record();
        // SAFETY: the child only bumps the counter and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            counter.record();
            counter.record();
            // SAFETY: ends the child without running the test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(counter.finished(), 3);
    }
}
