//! A worker's counters, in memory shared between the worker and the
//! master: how many items it has started and finished, and the fatal
//! signal it received, if any. The worker writes them with plain stores,
//! which cost no system call, while its answers travel in batches; so when
//! a worker dies, the master still knows exactly which item it was
//! performing, whether it had started the next one at all, and what killed
//! it even when Ruby's crash handler turned the signal into an abort.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared page's layout.
#[repr(C)]
struct Page {
    started: AtomicU64,
    finished: AtomicU64,
    fatal_signal: AtomicU64,
}

/// One worker's counters: a page mapped `MAP_SHARED` before the fork.
#[derive(Debug)]
pub struct Counter {
    page: NonNull<Page>,
}

impl Counter {
    /// Maps fresh counters at zero.
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
        let page = NonNull::new(page.cast::<Page>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Counter { page })
    }

    fn page(&self) -> &Page {
        // SAFETY: the page is mapped, zero-filled and aligned for as long as
        // `self` lives; atomics are valid for any bit pattern.
        unsafe { self.page.as_ref() }
    }

    /// Returns how many items the worker has started.
    pub fn started(&self) -> u64 {
        self.page().started.load(Ordering::Acquire)
    }

    /// Returns how many items the worker has finished.
    pub fn finished(&self) -> u64 {
        self.page().finished.load(Ordering::Acquire)
    }

    /// Returns the fatal signal the worker recorded (SIGSEGV, SIGBUS...),
    /// if it recorded one.
    pub fn fatal_signal(&self) -> Option<i32> {
        let signo = self.page().fatal_signal.load(Ordering::Acquire);
        i32::try_from(signo).ok().filter(|signo| *signo > 0)
    }

    /// Counts one more item started: it was taken from the pipe and is
    /// about to be loaded and performed. Runs in the worker.
    pub fn start(&self) {
        self.page().started.fetch_add(1, Ordering::Release);
    }

    /// Counts one more item finished. Runs in the worker.
    pub fn finish(&self) {
        self.page().finished.fetch_add(1, Ordering::Release);
    }

    /// Records the fatal signal `signo` the worker is dying of.
    /// Async-signal-safe: a signal handler calls it. Runs in the worker.
    pub fn set_fatal_signal(&self, signo: i32) {
        let signo = u64::try_from(signo).unwrap_or(0);
        self.page().fatal_signal.store(signo, Ordering::Release);
    }
}

// SAFETY: the counters are atomics in memory owned by this value; sharing
// or moving them between threads is as safe as for any atomic.
unsafe impl Send for Counter {}
// SAFETY: as above; every access goes through atomic operations.
unsafe impl Sync for Counter {}

impl Drop for Counter {
    fn drop(&mut self) {
        // SAFETY: unmaps the page `new` mapped; nothing refers to it after.
        unsafe { libc::munmap(self.page.as_ptr().cast(), page_size()) };
    }
}

fn page_size() -> usize {
    crate::os::page_size().max(std::mem::size_of::<Page>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_a_fork() {
        let counter = Counter::new().unwrap();
        counter.start();
        counter.finish();
        // SAFETY: the child only bumps the counters and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            counter.start();
            counter.finish();
            counter.start();
            counter.set_fatal_signal(libc::SIGSEGV);
            // SAFETY: ends the child without running the test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!((counter.started(), counter.finished()), (3, 2));
        assert_eq!(counter.fatal_signal(), Some(libc::SIGSEGV));
    }

    #[test]
    fn records_no_fatal_signal_by_default() {
        assert_eq!(Counter::new().unwrap().fatal_signal(), None);
    }
}
