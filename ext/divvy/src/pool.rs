//! Bookkeeping of the worker pool: which worker is in which state and which
//! items it holds. Pure data, no Ruby and no I/O, so the scheduling rules are
//! covered by `cargo test`. An item a worker holds belongs to that worker
//! until the worker answers for it or is reaped; then it is settled or handed
//! back, never dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::protocol::Failure;

/// One dispatched item: its position in dispatch order and its Marshal dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Zero-based position of the item in the order `dispatch` yielded it.
    pub index: u64,
    /// The Marshal dump of the argument array.
    pub payload: Vec<u8>,
    /// Which try this is: 1 for the first, 2 for the first retry.
    pub attempt: u32,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No process: not started yet, or reaped.
    Down,
    /// Forked, running `after_fork`; takes no items yet.
    Booting,
    /// Booted and taking items.
    Ready,
    /// Told to finish (its task pipe is closed) or leaving on its own.
    Leaving,
}

/// One worker's place in the pool.
#[derive(Debug)]
pub struct Slot {
    /// The process id while a process occupies the slot.
    pub pid: Option<i32>,
    /// The slot's state.
    pub state: SlotState,
    /// Items sent to the worker and not yet answered, oldest first.
    pub held: VecDeque<Item>,
    /// When the worker started its oldest item, while it holds one.
    pub started_at: Option<Instant>,
    /// True once the worker overran the timeout and is being stopped.
    pub timed_out: bool,
}

/// What a reaped worker leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Departure {
    /// The item it was performing when it died, if any.
    pub performing: Option<Item>,
    /// Items it held but never started, to be sent elsewhere.
    pub unstarted: Vec<Item>,
    /// True when it died before it booted.
    pub during_boot: bool,
    /// True when it was stopped for overrunning the timeout.
    pub timed_out: bool,
}

/// The answer a worker gave for its oldest item.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The item was performed.
    Performed(Item),
    /// The item raised.
    Failed(Item, Failure),
}

/// Why the pool could not account for a worker's message.
#[derive(Debug, PartialEq, Eq)]
pub enum BookkeepingError {
    /// The worker answered for an item it does not hold.
    UnexpectedAnswer,
}

/// The slots of all workers, indexed from 0 (worker number minus one).
#[derive(Debug)]
pub struct Pool {
    slots: Vec<Slot>,
    window: usize,
}

impl Pool {
    /// Returns a pool of `size` down slots, each holding at most `window`
    /// items at a time.
    pub fn new(size: usize, window: usize) -> Pool {
        let slots = (0..size)
            .map(|_| Slot {
                pid: None,
                state: SlotState::Down,
                held: VecDeque::new(),
                started_at: None,
                timed_out: false,
            })
            .collect();
        Pool {
            slots,
            window: window.max(1),
        }
    }

    /// Returns the number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Returns the slot at `index`.
    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// Records that a process was forked into the slot at `index`.
    pub fn started(&mut self, index: usize, pid: i32) {
        let slot = &mut self.slots[index];
        slot.pid = Some(pid);
        slot.state = SlotState::Booting;
    }

    /// Records that the worker at `index` finished booting.
    pub fn booted(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.state == SlotState::Booting {
            slot.state = SlotState::Ready;
        }
    }

    /// Returns the index of the ready worker with the most room for another
    /// item, or `None` when every worker is full, booting or down.
    pub fn least_loaded(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state == SlotState::Ready && slot.held.len() < self.window)
            .min_by_key(|(_, slot)| slot.held.len())
            .map(|(index, _)| index)
    }

    /// Records that `item` was sent to the worker at `index` at `now`. An
    /// idle worker starts it at once.
    pub fn assign(&mut self, index: usize, item: Item, now: Instant) {
        let slot = &mut self.slots[index];
        if slot.held.is_empty() {
            slot.started_at = Some(now);
        }
        slot.held.push_back(item);
    }

    /// Settles the oldest item of the worker at `index` with its answer,
    /// received at `now`, when the worker starts its next item.
    ///
    /// Returns an error when the worker holds no item.
    pub fn answer(
        &mut self,
        index: usize,
        failure: Option<Failure>,
        now: Instant,
    ) -> Result<Answer, BookkeepingError> {
        let slot = &mut self.slots[index];
        let item = slot
            .held
            .pop_front()
            .ok_or(BookkeepingError::UnexpectedAnswer)?;
        slot.started_at = (!slot.held.is_empty()).then_some(now);
        Ok(match failure {
            None => Answer::Performed(item),
            Some(failure) => Answer::Failed(item, failure),
        })
    }

    /// Records that the worker at `index` is finishing: it takes no new items.
    pub fn leaving(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.state != SlotState::Down {
            slot.state = SlotState::Leaving;
        }
    }

    /// Records that the worker at `index` said goodbye: every item it holds
    /// was never started. Returns them, to be sent elsewhere.
    pub fn said_bye(&mut self, index: usize) -> Vec<Item> {
        self.leaving(index);
        let slot = &mut self.slots[index];
        slot.started_at = None;
        slot.held.drain(..).collect()
    }

    /// Returns the workers whose current item started `timeout` or longer
    /// before `now` and that are not already being stopped for it.
    pub fn overdue(&self, now: Instant, timeout: Duration) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.timed_out)
            .filter(|(_, slot)| slot.started_at.is_some_and(|at| now >= at + timeout))
            .map(|(index, _)| index)
            .collect()
    }

    /// Returns when the next item will overrun `timeout`, if any runs.
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|slot| !slot.timed_out)
            .filter_map(|slot| slot.started_at)
            .min()
            .map(|at| at + timeout)
    }

    /// Records that the worker at `index` is being stopped for overrunning
    /// the timeout: it takes no new items.
    pub fn timed_out(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.timed_out = true;
        if slot.state == SlotState::Ready {
            slot.state = SlotState::Leaving;
        }
    }

    /// Records that the worker at `index` was reaped and returns what it
    /// leaves behind. Its oldest item is the one it was performing.
    pub fn reaped(&mut self, index: usize) -> Departure {
        let slot = &mut self.slots[index];
        let during_boot = slot.state == SlotState::Booting;
        let timed_out = std::mem::take(&mut slot.timed_out);
        slot.pid = None;
        slot.state = SlotState::Down;
        slot.started_at = None;
        let performing = slot.held.pop_front();
        Departure {
            performing,
            unstarted: slot.held.drain(..).collect(),
            during_boot,
            timed_out,
        }
    }

    /// Returns the indexes of slots occupied by a process.
    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.pid.is_some())
            .map(|(index, _)| index)
    }

    /// Returns the number of items held by all workers.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|slot| slot.held.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: u64) -> Item {
        Item {
            index,
            payload: vec![index as u8],
            attempt: 1,
        }
    }

    fn at(millis: u64) -> Instant {
        // Instants are opaque; offsets from one base keep tests exact.
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|base| *base + Duration::from_millis(millis))
    }

    fn ready_pool(size: usize, window: usize) -> Pool {
        let mut pool = Pool::new(size, window);
        for index in 0..size {
            pool.started(index, 100 + index as i32);
            pool.booted(index);
        }
        pool
    }

    #[test]
    fn booting_and_down_workers_take_no_items() {
        let mut pool = Pool::new(2, 1);
        assert_eq!(pool.least_loaded(), None);
        pool.started(1, 42);
        assert_eq!(pool.least_loaded(), None);
        pool.booted(1);
        assert_eq!(pool.least_loaded(), Some(1));
    }

    #[test]
    fn a_full_worker_takes_nothing_more() {
        let mut pool = ready_pool(2, 1);
        let first = pool.least_loaded().unwrap();
        pool.assign(first, item(0), at(0));
        let second = pool.least_loaded().unwrap();
        assert_ne!(first, second);
        pool.assign(second, item(1), at(0));
        assert_eq!(pool.least_loaded(), None);
        assert_eq!(pool.in_flight(), 2);
    }

    #[test]
    fn answers_settle_items_oldest_first() {
        let mut pool = ready_pool(1, 3);
        pool.assign(0, item(0), at(0));
        pool.assign(0, item(1), at(0));
        assert_eq!(pool.answer(0, None, at(0)), Ok(Answer::Performed(item(0))));
        let failure = Failure {
            class_name: "RuntimeError".into(),
            ..Failure::default()
        };
        assert_eq!(
            pool.answer(0, Some(failure.clone()), at(0)),
            Ok(Answer::Failed(item(1), failure))
        );
        assert_eq!(
            pool.answer(0, None, at(0)),
            Err(BookkeepingError::UnexpectedAnswer)
        );
    }

    #[test]
    fn a_dead_worker_gives_back_its_items() {
        let mut pool = ready_pool(1, 3);
        for index in 0..3 {
            pool.assign(0, item(index), at(0));
        }
        let departure = pool.reaped(0);
        assert_eq!(departure.performing, Some(item(0)));
        assert_eq!(departure.unstarted, vec![item(1), item(2)]);
        assert!(!departure.during_boot);
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.slot(0).state, SlotState::Down);
        assert_eq!(pool.alive().count(), 0);
    }

    #[test]
    fn a_worker_dying_in_boot_is_told_apart() {
        let mut pool = Pool::new(1, 1);
        pool.started(0, 7);
        assert!(pool.reaped(0).during_boot);
    }

    #[test]
    fn the_timeout_runs_from_when_the_worker_starts_the_item() {
        let mut pool = ready_pool(2, 2);
        let timeout = Duration::from_millis(100);
        pool.assign(0, item(0), at(0));
        pool.assign(0, item(1), at(10));
        pool.assign(1, item(2), at(50));
        assert_eq!(pool.next_deadline(timeout), Some(at(100)));
        assert_eq!(pool.overdue(at(99), timeout), Vec::<usize>::new());
        assert_eq!(pool.overdue(at(100), timeout), vec![0]);
        // The second item starts when the first is answered.
        pool.answer(0, None, at(120)).unwrap();
        assert_eq!(pool.next_deadline(timeout), Some(at(150)));
        assert_eq!(pool.overdue(at(160), timeout), vec![1]);
        pool.timed_out(1);
        assert_eq!(pool.overdue(at(200), timeout), Vec::<usize>::new());
        assert_eq!(pool.least_loaded(), Some(0));
        let departure = pool.reaped(1);
        assert!(departure.timed_out);
        assert_eq!(departure.performing, Some(item(2)));
        assert!(!pool.slot(1).timed_out);
    }

    #[test]
    fn bye_returns_unstarted_items_and_stops_assignment() {
        let mut pool = ready_pool(1, 2);
        pool.assign(0, item(5), at(0));
        assert_eq!(pool.said_bye(0), vec![item(5)]);
        assert_eq!(pool.least_loaded(), None);
        assert_eq!(pool.reaped(0).performing, None);
    }
}
