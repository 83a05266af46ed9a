//! The workers of a run and which of them gets the next item: the ready
//! worker with the fewest unfinished items and room in its window. A slow
//! worker's window is one item, so nothing waits behind a long one; a fast
//! worker's is deep, so small items go many to a write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::item::Item;
use super::pace::MAX_WINDOW;
use super::worker::{Occupant, Phase, Worker};

/// The workers, indexed from 0 (worker number minus one).
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Worker>,
    max_window: usize,
}

impl Pool {
    /// Returns a pool of empty slots, one per `occupants` (numbered from 1
    /// in order), each holding at most `max_window` items at a time, fewer
    /// while its pace is unknown or slow.
    pub fn new(occupants: Vec<Arc<Occupant>>, max_window: usize) -> Pool {
        Pool {
            workers: occupants
                .into_iter()
                .enumerate()
                .map(|(index, occupant)| Worker::new(index + 1, occupant))
                .collect(),
            max_window: max_window.clamp(1, MAX_WINDOW),
        }
    }

    /// Returns the number of slots.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// True when there are no slots.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Returns the worker at `index`.
    pub fn worker(&self, index: usize) -> &Worker {
        &self.workers[index]
    }

    /// Returns the worker at `index`, to change.
    pub fn worker_mut(&mut self, index: usize) -> &mut Worker {
        &mut self.workers[index]
    }

    /// Returns every worker, to change.
    pub fn workers_mut(&mut self) -> impl Iterator<Item = &mut Worker> + '_ {
        self.workers.iter_mut()
    }

    /// Returns every worker.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> + '_ {
        self.workers.iter()
    }

    /// Adds an empty slot at the end.
    ///
    /// Returns the Ruby view of its process.
    pub fn grow(&mut self) -> Arc<Occupant> {
        let occupant = Arc::new(Occupant::default());
        let number = self.workers.len() + 1;
        self.workers
            .push(Worker::new(number, Arc::clone(&occupant)));
        occupant
    }

    /// Drops the slots past `len` once no process occupies them.
    ///
    /// Returns true when the pool is now `len` slots or fewer.
    pub fn shrink(&mut self, len: usize) -> bool {
        let gone = self
            .workers
            .iter()
            .skip(len)
            .all(|worker| !worker.is_alive());
        if gone {
            self.workers.truncate(len);
        }
        gone
    }

    /// Returns the index of the ready worker with room for another item,
    /// preferring the emptiest, or `None` when every worker is full, booting
    /// or down.
    pub fn least_loaded(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, worker)| worker.has_room(self.max_window))
            .min_by_key(|(_, worker)| worker.unfinished())
            .map(|(index, _)| index)
    }

    /// Reads every live worker's counter of finished items.
    pub fn observe_counters(&mut self, now: Instant) {
        for worker in &mut self.workers {
            worker.observe_counter(now);
        }
    }

    /// Returns the indexes of slots a process occupies.
    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, worker)| worker.is_alive())
            .map(|(index, _)| index)
    }

    /// Returns the first slot below `limit` that no process occupied during
    /// this run.
    pub fn first_unstarted(&self, limit: usize) -> Option<usize> {
        self.workers
            .iter()
            .take(limit)
            .position(|worker| !worker.ran())
    }

    /// Returns the slots below `limit` whose process ran and is gone: due
    /// for a replacement.
    pub fn replaceable(&self, limit: usize) -> impl Iterator<Item = usize> + '_ {
        self.workers
            .iter()
            .take(limit)
            .enumerate()
            .filter(|(_, worker)| worker.ran() && worker.phase() == Phase::Down)
            .map(|(index, _)| index)
    }

    /// Returns the workers whose current item started `timeout` or longer
    /// before `now` and that are not already being stopped for it.
    pub fn overdue(&self, now: Instant, timeout: Duration) -> Vec<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, worker)| worker.overdue(now, timeout))
            .map(|(index, _)| index)
            .collect()
    }

    /// Returns the next moment something is due: an item overrunning
    /// `timeout` (when there is one) or a process due for KILL.
    pub fn next_deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        self.workers
            .iter()
            .flat_map(|worker| {
                let overrun = timeout.and_then(|timeout| worker.deadline(timeout));
                overrun.into_iter().chain(worker.kill_deadline())
            })
            .min()
    }

    /// Returns every item the workers hold.
    pub fn held_items(&self) -> impl Iterator<Item = &Item> + '_ {
        self.workers.iter().flat_map(Worker::held)
    }

    /// Returns the number of items held by all workers.
    pub fn in_flight(&self) -> usize {
        self.workers.iter().map(Worker::held_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::worker::tests::{at, item, make_fast};
    use crate::engine::worker::Reading;

    fn pool(size: usize) -> Pool {
        Pool::new((0..size).map(|_| Arc::default()).collect(), 64)
    }

    fn ready_pool(size: usize) -> Pool {
        let mut pool = pool(size);
        for index in 0..size {
            pool.worker_mut(index)
                .started(5_000_000 + index as i32, None);
            pool.worker_mut(index).booted();
        }
        pool
    }

    #[test]
    fn booting_and_down_workers_take_no_items() {
        let mut pool = pool(2);
        assert_eq!(pool.least_loaded(), None);
        pool.worker_mut(1).started(42, None);
        assert_eq!(pool.least_loaded(), None);
        pool.worker_mut(1).booted();
        assert_eq!(pool.least_loaded(), Some(1));
    }

    #[test]
    fn an_unmeasured_worker_holds_one_item() {
        let mut pool = ready_pool(2);
        let first = pool.least_loaded().unwrap();
        pool.worker_mut(first).assign(item(0), at(0));
        let second = pool.least_loaded().unwrap();
        assert_ne!(first, second);
        pool.worker_mut(second).assign(item(1), at(0));
        assert_eq!(pool.least_loaded(), None);
        assert_eq!(pool.in_flight(), 2);
    }

    #[test]
    fn a_fast_worker_takes_many_items_up_to_the_cap() {
        let mut pool = ready_pool(1);
        make_fast(pool.worker_mut(0));
        assert_eq!(pool.worker(0).window(64), 64);
        for index in 0..64 {
            assert_eq!(pool.least_loaded(), Some(0));
            pool.worker_mut(0).assign(item(index), at(2));
        }
        assert_eq!(pool.least_loaded(), None);
    }

    #[test]
    fn the_emptiest_ready_worker_gets_the_next_item() {
        let mut pool = ready_pool(3);
        for index in 0..3 {
            make_fast(pool.worker_mut(index));
        }
        pool.worker_mut(0).assign(item(0), at(2));
        pool.worker_mut(0).assign(item(1), at(2));
        pool.worker_mut(1).assign(item(2), at(2));
        assert_eq!(pool.least_loaded(), Some(2));
    }

    #[test]
    fn the_timeout_runs_from_when_the_worker_starts_the_item() {
        let mut pool = ready_pool(2);
        let timeout = Duration::from_millis(100);
        pool.worker_mut(0).assign(item(0), at(0));
        pool.worker_mut(1).assign(item(2), at(50));
        assert_eq!(pool.next_deadline(Some(timeout)), Some(at(100)));
        assert_eq!(pool.overdue(at(99), timeout), Vec::<usize>::new());
        assert_eq!(pool.overdue(at(100), timeout), vec![0]);
        // Worker 0 finished its item; its answer is not in yet.
        pool.worker_mut(0).observe(1, at(120));
        assert_eq!(pool.overdue(at(140), timeout), Vec::<usize>::new());
        assert_eq!(pool.overdue(at(150), timeout), vec![1]);
        assert_eq!(pool.next_deadline(Some(timeout)), Some(at(150)));
        pool.worker_mut(1).time_out();
        pool.worker_mut(1).kill_at(at(1150));
        assert_eq!(pool.overdue(at(500), timeout), Vec::<usize>::new());
        assert_eq!(
            pool.next_deadline(Some(timeout)),
            Some(at(1150)),
            "its KILL"
        );
        // Worker 0 has room again (its item is finished); worker 1 is
        // being stopped.
        assert_eq!(pool.least_loaded(), Some(0));
        let departure = pool.worker_mut(1).reaped(Reading {
            started: 1,
            ..Reading::default()
        });
        assert!(departure.timed_out);
        assert_eq!(departure.performing, Some(item(2)));
        assert!(!pool.worker(1).timed_out());
        assert_eq!(pool.next_deadline(None), None);
    }

    #[test]
    fn remembers_which_slots_ran_this_run() {
        let mut pool = pool(2);
        assert_eq!(pool.first_unstarted(2), Some(0));
        pool.worker_mut(0).started(42, None);
        assert_eq!(pool.first_unstarted(2), Some(1));
        assert_eq!(pool.replaceable(2).count(), 0);
        pool.worker_mut(0).reaped(Reading::default());
        assert_eq!(
            pool.replaceable(2).collect::<Vec<_>>(),
            [0],
            "reaped: replaced"
        );
        assert_eq!(pool.first_unstarted(2), Some(1), "not started again");
        assert_eq!(pool.first_unstarted(1), None);
        pool.worker_mut(1).started(43, None);
        pool.grow();
        assert_eq!(pool.first_unstarted(3), Some(2));
        assert_eq!(pool.worker(2).number(), 3);
    }

    #[test]
    fn shrinks_only_once_the_slots_past_the_end_are_empty() {
        let mut pool = ready_pool(3);
        assert!(!pool.shrink(2));
        assert_eq!(pool.len(), 3);
        pool.worker_mut(2).reaped(Reading::default());
        assert!(pool.shrink(2));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.alive().collect::<Vec<_>>(), [0, 1]);
    }
}
