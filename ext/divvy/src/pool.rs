//! Bookkeeping of the worker pool: which worker is in which state, which
//! items it holds and how fast it goes. Pure data, no Ruby and no I/O, so the
//! scheduling rules are covered by `cargo test`. An item a worker holds
//! belongs to that worker until the worker answers for it or is reaped; then
//! it is settled or handed back, never dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::pace::Pace;
use crate::payload::Payload;
use crate::protocol::Failure;

/// One dispatched item: its position in dispatch order and its Marshal dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Zero-based position of the item in the order `dispatch` yielded it.
    pub index: u64,
    /// The Marshal dump of the argument array.
    pub payload: Payload,
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
    /// When the worker started the item it is performing, while it performs
    /// one (as seen from the master).
    pub started_at: Option<Instant>,
    /// True once the worker overran the timeout and is being stopped.
    pub timed_out: bool,
    /// True once a process has occupied the slot during this run: a slot
    /// down after that is replaced, one down before that is started.
    pub ran: bool,
    /// Items sent to the current process.
    assigned: u64,
    /// Items the current process has answered.
    answered: u64,
    /// Items the current process has finished, as last read from its
    /// progress counter.
    finished: u64,
    pace: Pace,
}

impl Slot {
    fn fresh() -> Slot {
        Slot {
            pid: None,
            state: SlotState::Down,
            held: VecDeque::new(),
            started_at: None,
            timed_out: false,
            ran: false,
            assigned: 0,
            answered: 0,
            finished: 0,
            pace: Pace::default(),
        }
    }

    /// Items held that the worker has finished but not yet answered for.
    fn finished_unanswered(&self) -> usize {
        let count = self.finished.saturating_sub(self.answered);
        usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(self.held.len())
    }

    /// True while the worker holds an item it has not finished.
    fn performing(&self) -> bool {
        self.unfinished() > 0
    }

    /// Items held that the worker has not finished.
    fn unfinished(&self) -> usize {
        self.held.len() - self.finished_unanswered()
    }
}

/// What a reaped worker leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Departure {
    /// Items it finished whose answers were lost with it.
    pub finished: Vec<Item>,
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
    max_window: usize,
}

impl Pool {
    /// Returns a pool of `size` down slots, each holding at most
    /// `max_window` items at a time, fewer while its pace is unknown or slow.
    pub fn new(size: usize, max_window: usize) -> Pool {
        Pool {
            slots: (0..size).map(|_| Slot::fresh()).collect(),
            max_window: max_window.max(1),
        }
    }

    /// Returns the number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Adds a down slot at the end.
    pub fn add_slot(&mut self) {
        self.slots.push(Slot::fresh());
    }

    /// Drops the slots past `len`. Call only when they are down.
    pub fn truncate(&mut self, len: usize) {
        self.slots.truncate(len);
    }

    /// Returns the slot at `index`.
    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// Records that a process was forked into the slot at `index`.
    pub fn started(&mut self, index: usize, pid: i32) {
        self.slots[index] = Slot {
            pid: Some(pid),
            state: SlotState::Booting,
            ran: true,
            ..Slot::fresh()
        };
    }

    /// Records that the worker at `index` finished booting.
    pub fn booted(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.state == SlotState::Booting {
            slot.state = SlotState::Ready;
        }
    }

    /// Returns how many items the worker at `index` holds and has not yet
    /// finished.
    pub fn unfinished(&self, index: usize) -> usize {
        self.slots[index].unfinished()
    }

    /// Returns how many items the worker at `index` may hold.
    pub fn window(&self, index: usize) -> usize {
        self.slots[index].pace.window().min(self.max_window)
    }

    /// Returns the index of the ready worker with room for another item,
    /// preferring the emptiest, or `None` when every worker is full, booting
    /// or down. Items a worker finished count as room even before their
    /// answers arrive.
    pub fn least_loaded(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(index, slot)| {
                slot.state == SlotState::Ready && slot.unfinished() < self.window(*index)
            })
            .min_by_key(|(_, slot)| slot.unfinished())
            .map(|(index, _)| index)
    }

    /// Records that `item` was sent to the worker at `index` at `now`. An
    /// idle worker starts it at once.
    pub fn assign(&mut self, index: usize, item: Item, now: Instant) {
        let slot = &mut self.slots[index];
        if !slot.performing() {
            slot.started_at = Some(now);
            slot.pace.busy(now);
        }
        slot.held.push_back(item);
        slot.assigned += 1;
    }

    /// Returns how many items the current process at `index` was sent.
    pub fn assigned(&self, index: usize) -> u64 {
        self.slots[index].assigned
    }

    /// Records the worker's progress counter as read at `now`: it measures
    /// the worker's pace and, when it moved, the start of its next item.
    pub fn observe(&mut self, index: usize, finished: u64, now: Instant) {
        let slot = &mut self.slots[index];
        let finished = finished.max(slot.finished);
        slot.finished = finished;
        let busy = slot.performing();
        if slot.pace.observe(finished, busy, now) || !busy {
            slot.started_at = busy.then_some(now);
        }
    }

    /// Settles the oldest item of the worker at `index` with its answer.
    ///
    /// Returns an error when the worker holds no item.
    pub fn answer(
        &mut self,
        index: usize,
        failure: Option<Failure>,
    ) -> Result<Answer, BookkeepingError> {
        let slot = &mut self.slots[index];
        let item = slot
            .held
            .pop_front()
            .ok_or(BookkeepingError::UnexpectedAnswer)?;
        slot.answered += 1;
        slot.finished = slot.finished.max(slot.answered);
        if slot.held.is_empty() {
            slot.started_at = None;
        }
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

    /// Records that the worker at `index` said goodbye after answering for
    /// everything it performed: every item it still holds was never
    /// started. Returns them, to be sent elsewhere.
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
            .filter(|(_, slot)| !slot.timed_out && slot.performing())
            .filter(|(_, slot)| slot.started_at.is_some_and(|at| now >= at + timeout))
            .map(|(index, _)| index)
            .collect()
    }

    /// Returns when the next item will overrun `timeout`, if any runs.
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|slot| !slot.timed_out && slot.performing())
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

    /// Records that the worker at `index` was reaped after finishing
    /// `finished` items in all, and returns what it leaves behind: the
    /// items it finished without answering, the one it was performing, and
    /// those it never started.
    pub fn reaped(&mut self, index: usize, finished: u64) -> Departure {
        self.slots[index].finished = finished.max(self.slots[index].finished);
        let slot = std::mem::replace(
            &mut self.slots[index],
            Slot {
                ran: true,
                ..Slot::fresh()
            },
        );
        let finished_count = slot.finished_unanswered();
        let mut held = slot.held;
        let finished: Vec<Item> = held.drain(..finished_count).collect();
        let performing = held.pop_front();
        Departure {
            finished,
            performing,
            unstarted: held.into_iter().collect(),
            during_boot: slot.state == SlotState::Booting,
            timed_out: slot.timed_out,
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

    /// Returns the first slot below `limit` that no process occupied during
    /// this run.
    pub fn first_unstarted(&self, limit: usize) -> Option<usize> {
        self.slots.iter().take(limit).position(|slot| !slot.ran)
    }

    /// Returns the slots below `limit` whose process ran and is gone: due
    /// for a replacement.
    pub fn replaceable(&self, limit: usize) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .take(limit)
            .enumerate()
            .filter(|(_, slot)| slot.ran && slot.state == SlotState::Down)
            .map(|(index, _)| index)
    }

    /// Returns every item the workers hold.
    pub fn held_items(&self) -> impl Iterator<Item = &Item> + '_ {
        self.slots.iter().flat_map(|slot| slot.held.iter())
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
            payload: Payload::from(vec![index as u8]),
            attempt: 1,
        }
    }

    fn at(millis: u64) -> Instant {
        // Instants are opaque; offsets from one base keep tests exact.
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|base| *base + Duration::from_millis(millis))
    }

    fn ready_pool(size: usize) -> Pool {
        let mut pool = Pool::new(size, 64);
        for index in 0..size {
            pool.started(index, 100 + index as i32);
            pool.booted(index);
        }
        pool
    }

    /// Makes the worker at `index` look fast, so its window is deep.
    fn make_fast(pool: &mut Pool, index: usize) {
        pool.assign(index, item(900), at(0));
        pool.observe(index, 1000, at(1));
        pool.answer(index, None).unwrap();
        pool.slots[index].answered = 1000;
    }

    #[test]
    fn booting_and_down_workers_take_no_items() {
        let mut pool = Pool::new(2, 64);
        assert_eq!(pool.least_loaded(), None);
        pool.started(1, 42);
        assert_eq!(pool.least_loaded(), None);
        pool.booted(1);
        assert_eq!(pool.least_loaded(), Some(1));
    }

    #[test]
    fn an_unmeasured_worker_holds_one_item() {
        let mut pool = ready_pool(2);
        let first = pool.least_loaded().unwrap();
        pool.assign(first, item(0), at(0));
        let second = pool.least_loaded().unwrap();
        assert_ne!(first, second);
        pool.assign(second, item(1), at(0));
        assert_eq!(pool.least_loaded(), None);
        assert_eq!(pool.in_flight(), 2);
    }

    #[test]
    fn a_fast_worker_takes_many_items_up_to_the_cap() {
        let mut pool = ready_pool(1);
        make_fast(&mut pool, 0);
        assert_eq!(pool.window(0), 64);
        for index in 0..64 {
            assert_eq!(pool.least_loaded(), Some(0));
            pool.assign(0, item(index), at(2));
        }
        assert_eq!(pool.least_loaded(), None);
    }

    #[test]
    fn answers_settle_items_oldest_first() {
        let mut pool = ready_pool(1);
        make_fast(&mut pool, 0);
        pool.assign(0, item(0), at(0));
        pool.assign(0, item(1), at(0));
        assert_eq!(pool.answer(0, None), Ok(Answer::Performed(item(0))));
        let failure = Failure {
            class_name: "RuntimeError".into(),
            ..Failure::default()
        };
        assert_eq!(
            pool.answer(0, Some(failure.clone())),
            Ok(Answer::Failed(item(1), failure))
        );
        assert_eq!(
            pool.answer(0, None),
            Err(BookkeepingError::UnexpectedAnswer)
        );
    }

    #[test]
    fn a_dead_worker_gives_back_its_items_and_names_the_one_it_was_performing() {
        let mut pool = ready_pool(1);
        make_fast(&mut pool, 0);
        for index in 0..5 {
            pool.assign(0, item(index), at(2));
        }
        pool.answer(0, None).unwrap();
        // It finished items 1 and 2 too, but those answers died with it.
        let departure = pool.reaped(0, 1003);
        assert_eq!(departure.finished, vec![item(1), item(2)]);
        assert_eq!(departure.performing, Some(item(3)));
        assert_eq!(departure.unstarted, vec![item(4)]);
        assert!(!departure.during_boot);
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.slot(0).state, SlotState::Down);
        assert_eq!(pool.alive().count(), 0);
    }

    #[test]
    fn a_worker_dying_in_boot_is_told_apart() {
        let mut pool = Pool::new(1, 1);
        pool.started(0, 7);
        assert!(pool.reaped(0, 0).during_boot);
    }

    #[test]
    fn the_timeout_runs_from_when_the_worker_starts_the_item() {
        let mut pool = ready_pool(2);
        let timeout = Duration::from_millis(100);
        pool.assign(0, item(0), at(0));
        pool.assign(1, item(2), at(50));
        assert_eq!(pool.next_deadline(timeout), Some(at(100)));
        assert_eq!(pool.overdue(at(99), timeout), Vec::<usize>::new());
        assert_eq!(pool.overdue(at(100), timeout), vec![0]);
        // Worker 0 finished its item; its answer is not in yet.
        pool.observe(0, 1, at(120));
        assert_eq!(pool.overdue(at(140), timeout), Vec::<usize>::new());
        assert_eq!(pool.overdue(at(150), timeout), vec![1]);
        assert_eq!(pool.next_deadline(timeout), Some(at(150)));
        pool.timed_out(1);
        assert_eq!(pool.overdue(at(500), timeout), Vec::<usize>::new());
        // Worker 0 has room again (its item is finished); worker 1 is
        // being stopped.
        assert_eq!(pool.least_loaded(), Some(0));
        let departure = pool.reaped(1, 0);
        assert!(departure.timed_out);
        assert_eq!(departure.performing, Some(item(2)));
        assert!(!pool.slot(1).timed_out);
    }

    #[test]
    fn bye_returns_unstarted_items_and_stops_assignment() {
        let mut pool = ready_pool(1);
        pool.assign(0, item(5), at(0));
        assert_eq!(pool.said_bye(0), vec![item(5)]);
        assert_eq!(pool.least_loaded(), None);
        assert_eq!(pool.reaped(0, 0).performing, None);
    }

    #[test]
    fn remembers_which_slots_ran_this_run() {
        let mut pool = Pool::new(2, 64);
        assert_eq!(pool.first_unstarted(2), Some(0));
        pool.started(0, 42);
        assert_eq!(pool.first_unstarted(2), Some(1));
        assert_eq!(pool.replaceable(2).count(), 0);
        pool.reaped(0, 0);
        assert_eq!(
            pool.replaceable(2).collect::<Vec<_>>(),
            [0],
            "reaped: replaced"
        );
        assert_eq!(pool.first_unstarted(2), Some(1), "not started again");
        assert_eq!(pool.first_unstarted(1), None);
        pool.started(1, 43);
        pool.add_slot();
        assert_eq!(pool.first_unstarted(3), Some(2));
    }
}
