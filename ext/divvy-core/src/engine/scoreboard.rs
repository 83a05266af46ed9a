//! What a run counts and what Ruby may set while it runs, shared between
//! the run and the Ruby `Divvy::Master`: readable at any moment, from a
//! hook, a trap or another thread, even in the middle of a turn of the
//! loop. A run writes the counters from one thread only, so a plain load
//! and store (no locked instruction) is enough.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// One counter.
#[derive(Debug, Default)]
pub struct Tally(AtomicU64);

impl Tally {
    /// Returns the count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `count`. Called by the run's thread only.
    pub fn add(&self, count: u64) {
        self.0.store(self.get() + count, Ordering::Relaxed);
    }

    /// Takes back `count` added by mistake. Called by the run's thread only.
    pub fn sub(&self, count: u64) {
        self.0
            .store(self.get().saturating_sub(count), Ordering::Relaxed);
    }
}

/// A master's counters, kept across its runs, and its controls.
#[derive(Debug, Default)]
pub struct Scoreboard {
    /// Items sent to workers (`Master#tasks_distributed`).
    pub sent: Tally,
    /// Items finally performed.
    pub performed: Tally,
    /// Items finally failed, after their retries.
    pub failed: Tally,
    /// Items a resumed run skipped: its job log recorded them.
    pub skipped: Tally,
    /// Times an item was sent again after it failed.
    pub retried: Tally,
    /// Failures as they happened: each raise, death during an item or
    /// timeout (retried or not), and each unexpected worker death.
    pub failures: Tally,
    /// Worker processes forked.
    pub spawned: Tally,
    /// Worker processes forked to replace one that exited.
    pub respawned: Tally,
    worker_count: AtomicUsize,
    shutdown: AtomicBool,
    /// Why the halt policy ended the last run early, if it did.
    halted: Mutex<Option<String>>,
}

impl Scoreboard {
    /// Returns a scoreboard at zero for `worker_count` workers.
    pub fn new(worker_count: usize) -> Scoreboard {
        Scoreboard {
            worker_count: AtomicUsize::new(worker_count),
            ..Scoreboard::default()
        }
    }

    /// Returns the items settled so far (performed or finally failed) and
    /// how many of them failed.
    pub fn settled(&self) -> (u64, u64) {
        let failed = self.failed.get();
        (self.performed.get() + failed, failed)
    }

    /// Returns how many workers the master keeps running.
    pub fn worker_count(&self) -> usize {
        self.worker_count.load(Ordering::Relaxed)
    }

    /// Sets how many workers the master keeps running.
    pub fn set_worker_count(&self, count: usize) {
        self.worker_count.store(count, Ordering::Relaxed);
    }

    /// Asks the current run to stop dispatching (`Master#shutdown`).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// True once `request_shutdown` was called since `clear_shutdown`.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Forgets a shutdown asked of an earlier run.
    pub fn clear_shutdown(&self) {
        self.shutdown.store(false, Ordering::SeqCst);
    }

    /// Records why the halt policy ends the run early (`Master#halt_reason`).
    pub fn set_halted(&self, reason: String) {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// Returns why the halt policy ended the current or last run early,
    /// if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the halt of an earlier run.
    pub fn clear_halted(&self) {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_settles() {
        let board = Scoreboard::new(3);
        board.performed.add(5);
        board.failed.add(2);
        assert_eq!(board.settled(), (7, 2));
        assert_eq!(board.worker_count(), 3);
        board.request_shutdown();
        assert!(board.shutdown_requested());
        board.clear_shutdown();
        assert!(!board.shutdown_requested());
    }
}
