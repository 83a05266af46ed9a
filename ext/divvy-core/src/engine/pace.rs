//! How fast a worker finishes items, and so how many it should hold at once.
//! A fast worker gets a deep window (many small items per write, no idle gap
//! between them); a slow one holds a single item, so nothing waits behind a
//! long item that another worker could have taken.

use std::time::{Duration, Instant};

use crate::wire::answers::MAX_DELAY;

/// The work a window should cover: twice the longest a worker keeps its
/// answers, so that the master hears of finished items, and sends more,
/// while half the window is still queued, and the worker does not wait
/// for a round trip; short enough that an item queued behind it waits no
/// longer than this.
const TARGET: Duration = MAX_DELAY.saturating_mul(2);
/// The deepest window.
pub const MAX_WINDOW: usize = 512;
/// The most result bytes a window's items may answer with: a worker whose
/// items return large results is kept to fewer at once, so that it reuses
/// the same memory, still in cache, for the next result rather than
/// touching fresh pages for each of a deep window's.
const MAX_WINDOW_RESULT_BYTES: u64 = 4 * 1024 * 1024;

/// A worker's measured pace.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    per_item: Option<Duration>,
    seen: u64,
    since: Option<Instant>,
    /// The size of its results, averaged as `per_item` is.
    result_bytes: Option<u64>,
}

impl Pace {
    /// Records that the worker, idle until now, was given work at `now`.
    pub fn busy(&mut self, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Records that the worker has finished `finished` items in all as of
    /// `now`, and whether it still has work. Returns true when it finished
    /// more since the last call.
    pub fn observe(&mut self, finished: u64, still_busy: bool, now: Instant) -> bool {
        let progressed = finished > self.seen;
        if progressed {
            if let Some(since) = self.since {
                let count = u32::try_from(finished - self.seen).unwrap_or(u32::MAX);
                let sample = now.saturating_duration_since(since) / count;
                self.per_item = Some(match self.per_item {
                    Some(old) => (old * 7 + sample * 3) / 10,
                    None => sample,
                });
            }
            self.seen = finished;
        }
        if progressed || !still_busy {
            self.since = still_busy.then_some(now);
        }
        progressed
    }

    /// Records that the worker answered for an item with a result of
    /// `bytes` (0 for none).
    pub fn answered(&mut self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.result_bytes = Some(match self.result_bytes {
            Some(old) => {
                old.saturating_mul(7)
                    .saturating_add(bytes.saturating_mul(3))
                    / 10
            }
            None => bytes,
        });
    }

    /// Returns how many items the worker should hold at once.
    pub fn window(&self) -> usize {
        let by_time = match self.per_item {
            None => return 1,
            Some(per_item) if per_item.is_zero() => MAX_WINDOW,
            Some(per_item) => bounded(TARGET.as_nanos() / per_item.as_nanos()),
        };
        match self.result_bytes {
            Some(bytes) if bytes > 0 => {
                by_time.min(bounded(u128::from(MAX_WINDOW_RESULT_BYTES / bytes)))
            }
            _ => by_time,
        }
    }
}

/// A window of `fits` items, within bounds.
fn bounded(fits: u128) -> usize {
    usize::try_from(fits)
        .unwrap_or(MAX_WINDOW)
        .clamp(1, MAX_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: u64) -> Instant {
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|base| *base + Duration::from_micros(micros))
    }

    /// The window of a worker that takes `micros` per item.
    fn fitting(micros: u128) -> usize {
        usize::try_from(TARGET.as_micros() / micros).unwrap()
    }

    #[test]
    fn an_unmeasured_worker_holds_one_item() {
        assert_eq!(Pace::default().window(), 1);
    }

    #[test]
    fn a_fast_worker_gets_a_deep_window() {
        let mut pace = Pace::default();
        pace.busy(at(0));
        assert!(pace.observe(1000, true, at(50_000)));
        assert_eq!(pace.window(), fitting(50));
        for step in 1..=10 {
            pace.observe(step * 100_000, true, at(50_000 + step * 1000));
        }
        assert_eq!(pace.window(), MAX_WINDOW);
    }

    #[test]
    fn a_window_outlasts_two_answer_delays() {
        // A worker writes its answers once the oldest has waited
        // MAX_DELAY: the master must hear of them while the window still
        // holds as much work again, or the worker runs dry and waits for a
        // round trip.
        let mut pace = Pace::default();
        pace.busy(at(0));
        pace.observe(100, true, at(10_000));
        let per_item = Duration::from_micros(100);
        let window = u32::try_from(pace.window()).unwrap();
        assert!(per_item * window >= MAX_DELAY * 2);
    }

    #[test]
    fn large_results_keep_a_fast_worker_to_a_few_items() {
        let mut pace = Pace::default();
        pace.busy(at(0));
        pace.observe(1000, true, at(50_000));
        pace.answered(1024 * 1024);
        assert_eq!(pace.window(), 4, "4 MB of 1 MB results");
        for _ in 0..50 {
            pace.answered(100);
        }
        assert_eq!(
            pace.window(),
            fitting(50),
            "small results: the time decides"
        );
    }

    #[test]
    fn a_slow_worker_holds_one_item() {
        let mut pace = Pace::default();
        pace.busy(at(0));
        pace.observe(1, true, at(1_000_000));
        assert_eq!(pace.window(), 1);
    }

    #[test]
    fn idle_time_does_not_count_as_work() {
        let mut pace = Pace::default();
        pace.busy(at(0));
        pace.observe(10, false, at(1000));
        // Idle for a second, then busy again: only the busy time counts.
        pace.busy(at(1_001_000));
        pace.observe(20, true, at(1_002_000));
        assert_eq!(pace.window(), fitting(100));
        assert!(!pace.observe(20, true, at(1_003_000)));
    }
}
