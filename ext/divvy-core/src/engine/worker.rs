//! The master's record of one worker: the process in its slot (pid,
//! pipes, the deadline for killing it), where that process is in its life,
//! the items it holds and how fast it goes. One record per slot, numbered
//! from 1, standing for every process forked into the slot during a run.
//! The Ruby `Divvy::Worker` is a view of it (through `Occupant`). This is
//! the master's side: the worker process's own code is in the extension's
//! `worker` module.
//!
//! An item a worker holds belongs to it until the worker answers for it or
//! is reaped; then it is settled or handed back, never dropped.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::item::Item;
use super::pace::Pace;
use super::report::Who;
use super::Action;
use crate::wire::frame::Failure;
use crate::wire::link::Link;

/// Where a worker's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No process: not started yet, or reaped.
    Down,
    /// Forked, running `after_fork`; takes no items yet.
    Booting,
    /// Booted and taking items.
    Ready,
    /// Told to finish (its item pipe is closed) or leaving on its own.
    Leaving,
}

/// The process in a worker slot as Ruby sees it (`Divvy::Worker#pid` and
/// `#running?`), shared with the Ruby object so that both always agree.
#[derive(Debug, Default)]
pub struct Occupant {
    /// The pid of the current or last process; 0 before the first.
    pid: AtomicI32,
    running: AtomicBool,
}

impl Occupant {
    /// Returns the pid of the slot's current or last process.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|pid| *pid > 0)
    }

    /// True while a process occupies the slot.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn started(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
    }

    fn reaped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// The last reading of a worker process's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Items it started.
    pub started: u64,
    /// Items it finished.
    pub finished: u64,
    /// The fatal signal it recorded before dying, if any (Ruby's crash
    /// handler turns a SIGSEGV into an abort).
    pub fatal_signal: Option<i32>,
}

/// What a reaped worker leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Departure {
    /// Items it finished whose answers were lost with it.
    pub finished: Vec<Item>,
    /// The item it had started and not finished when it died, if any.
    pub performing: Option<Item>,
    /// Items it held but never started, to be sent elsewhere.
    pub unstarted: Vec<Item>,
    /// Where it was in its life when it ended.
    pub phase: Phase,
    /// True when it was ever ready for items: told to leave while it was
    /// still booting, it ends `Leaving` without having been ready.
    pub was_ready: bool,
    /// True when the master sent it a signal (a stop, a timeout, a halt,
    /// a Ctrl-C passed on).
    pub signalled: bool,
    /// True when it was stopped for overrunning the timeout.
    pub timed_out: bool,
    /// The fatal signal it recorded, if any.
    pub fatal_signal: Option<i32>,
}

/// The answer a worker gave for its oldest item.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The item was performed.
    Performed(Item),
    /// The item raised.
    Failed(Item, Failure),
}

/// A worker answered for an item it does not hold.
#[derive(Debug, PartialEq, Eq)]
pub struct UnexpectedAnswer;

/// One worker slot and the process in it.
#[derive(Debug)]
pub struct Worker {
    number: usize,
    occupant: Arc<Occupant>,
    phase: Phase,
    /// True once a process has occupied the slot during this run: a slot
    /// down after that is replaced, one down before that is started.
    ran: bool,
    /// Items sent to the process and not yet answered, oldest first.
    held: VecDeque<Item>,
    /// When the process started the item it is performing, while it
    /// performs one (as seen from the master).
    started_at: Option<Instant>,
    /// True once the process said it was ready for items.
    was_ready: bool,
    /// True once the master sent the process a signal.
    signalled: bool,
    /// True once the process overran the timeout and is being stopped.
    timed_out: bool,
    /// When the process, sent TERM, is due for KILL.
    kill_at: Option<Instant>,
    /// Items sent to the current process.
    assigned: u64,
    /// Items the current process has answered.
    answered: u64,
    /// Items the current process has finished, as last read from its
    /// counter.
    finished: u64,
    /// Since when the process's answer pipe is closed while it lives on.
    hung_up_since: Option<Instant>,
    pace: Pace,
    /// The master's ends of the current process's pipes.
    link: Option<Link>,
}

impl Worker {
    /// Returns the record of slot `number` (from 1), empty, whose process
    /// Ruby sees through `occupant`.
    pub fn new(number: usize, occupant: Arc<Occupant>) -> Worker {
        Worker {
            number,
            occupant,
            phase: Phase::Down,
            ran: false,
            held: VecDeque::new(),
            started_at: None,
            was_ready: false,
            signalled: false,
            timed_out: false,
            kill_at: None,
            assigned: 0,
            answered: 0,
            finished: 0,
            hung_up_since: None,
            pace: Pace::default(),
            link: None,
        }
    }

    /// The slot's number, from 1.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The Ruby view of the slot's process.
    pub fn occupant(&self) -> &Arc<Occupant> {
        &self.occupant
    }

    /// The worker as reports name it.
    pub fn who(&self) -> Who {
        Who {
            number: self.number,
            pid: self.occupant.pid(),
        }
    }

    /// The pid of the process in the slot, while there is one.
    pub fn pid(&self) -> Option<i32> {
        self.occupant.pid().filter(|_| self.phase != Phase::Down)
    }

    /// Where the slot's process is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True while a process occupies the slot.
    pub fn is_alive(&self) -> bool {
        self.phase != Phase::Down
    }

    /// True once a process occupied the slot during this run.
    pub fn ran(&self) -> bool {
        self.ran
    }

    /// True once the process overran the timeout and is being stopped.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The master's ends of the process's pipes.
    pub fn link(&self) -> Option<&Link> {
        self.link.as_ref()
    }

    /// The master's ends of the process's pipes, to read or write.
    pub fn link_mut(&mut self) -> Option<&mut Link> {
        self.link.as_mut()
    }

    /// Items the worker holds, oldest first.
    pub fn held(&self) -> impl Iterator<Item = &Item> + '_ {
        self.held.iter()
    }

    /// How many items the worker holds.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// How many items were sent to the current process.
    pub fn assigned(&self) -> u64 {
        self.assigned
    }

    /// Records that process `pid` was forked into the slot, with the
    /// master's ends of its pipes.
    pub fn started(&mut self, pid: i32, link: Option<Link>) {
        let number = self.number;
        let occupant = Arc::clone(&self.occupant);
        *self = Worker {
            phase: Phase::Booting,
            ran: true,
            link,
            ..Worker::new(number, occupant)
        };
        self.occupant.started(pid);
    }

    /// Records that the process finished booting.
    pub fn booted(&mut self) {
        self.was_ready = true;
        if self.phase == Phase::Booting {
            self.phase = Phase::Ready;
        }
    }

    /// Records that the process is finishing: it takes no new items.
    pub fn leave(&mut self) {
        if self.phase != Phase::Down {
            self.phase = Phase::Leaving;
        }
    }

    /// Items held that the worker has finished but not yet answered for.
    fn finished_unanswered(&self) -> usize {
        finished_unanswered(self.finished, self.answered, self.held.len())
    }

    /// The items held that the worker has finished but not yet answered
    /// for, oldest first: its counter says so, their answers wait in the
    /// worker's batch.
    pub fn finished_items_mut(&mut self) -> impl Iterator<Item = &mut Item> + '_ {
        let count = self.finished_unanswered();
        self.held.iter_mut().take(count)
    }

    /// Items held that the worker has not finished.
    pub fn unfinished(&self) -> usize {
        self.held.len() - self.finished_unanswered()
    }

    /// True while the worker holds an item it has not finished.
    fn performing(&self) -> bool {
        self.unfinished() > 0
    }

    /// How many items the worker should hold at once, at most `max`.
    pub fn window(&self, max: usize) -> usize {
        self.pace.window().min(max)
    }

    /// True when the worker takes items and has room for one more under a
    /// window of at most `max`. Items it finished count as room even
    /// before their answers arrive.
    pub fn has_room(&self, max: usize) -> bool {
        self.phase == Phase::Ready && self.unfinished() < self.window(max)
    }

    /// Records that `item` was sent to the worker at `now`. An idle worker
    /// starts it at once.
    pub fn assign(&mut self, item: Item, now: Instant) {
        if !self.performing() {
            self.started_at = Some(now);
            self.pace.busy(now);
        }
        self.held.push_back(item);
        self.assigned += 1;
    }

    /// Sends `item` to the process at `now`: queues its frame, written at
    /// once when the worker is about to run out of work or enough is
    /// queued, else with the next batch; the worker then holds it.
    ///
    /// Returns the OS error of a failed write.
    pub fn send(&mut self, item: Item, now: Instant) -> io::Result<()> {
        self.observe_counter(now);
        let unfinished = self.unfinished();
        if let Some(link) = self.link.as_mut() {
            let starving = unfinished <= link.queued_items() + 1;
            link.queue_item(&item.payload)?;
            if starving || link.outbox_full() {
                link.flush()?;
            }
        }
        self.assign(item, now);
        Ok(())
    }

    /// Reads the worker's counter of finished items, when it has pipes.
    pub fn observe_counter(&mut self, now: Instant) {
        if let Some(finished) = self.link.as_ref().map(|link| link.counter().finished()) {
            self.observe(finished, now);
        }
    }

    /// Records the worker's counter as read at `now`: it measures the
    /// worker's pace and, when it moved, the start of its next item.
    pub fn observe(&mut self, finished: u64, now: Instant) {
        self.finished = finished.max(self.finished);
        let busy = self.performing();
        if self.pace.observe(self.finished, busy, now) || !busy {
            self.started_at = busy.then_some(now);
        }
    }

    /// Records the size of a result the worker answered with (0 for
    /// none): large results keep its window small (see `Pace`).
    pub fn answered_with(&mut self, result_bytes: usize) {
        self.pace.answered(result_bytes);
    }

    /// Settles the oldest item the worker holds with its answer, the
    /// `failure` it reported or none.
    ///
    /// Returns an error when the worker holds no item.
    pub fn answer(&mut self, failure: Option<Failure>) -> Result<Answer, UnexpectedAnswer> {
        let item = self.held.pop_front().ok_or(UnexpectedAnswer)?;
        self.answered += 1;
        self.finished = self.finished.max(self.answered);
        if self.held.is_empty() {
            self.started_at = None;
        }
        Ok(match failure {
            None => Answer::Performed(item),
            Some(failure) => Answer::Failed(item, failure),
        })
    }

    /// Records that the worker said goodbye after answering for everything
    /// it performed: every item it still holds was never started.
    ///
    /// Returns them, to be sent elsewhere.
    pub fn said_bye(&mut self) -> Vec<Item> {
        self.leave();
        self.started_at = None;
        self.held.drain(..).collect()
    }

    /// True when the item the worker is performing started `timeout` or
    /// longer before `now`, and it is not already being stopped for it.
    pub fn overdue(&self, now: Instant, timeout: Duration) -> bool {
        self.deadline(timeout)
            .is_some_and(|deadline| now >= deadline)
    }

    /// When the item the worker is performing overruns `timeout`, if it
    /// performs one and is not already being stopped.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.timed_out || !self.performing() {
            return None;
        }
        self.started_at.map(|at| at + timeout)
    }

    /// Records that the worker is being stopped for overrunning the
    /// timeout: it takes no new items.
    pub fn time_out(&mut self) {
        self.timed_out = true;
        if self.phase == Phase::Ready {
            self.phase = Phase::Leaving;
        }
    }

    /// Asks for `signal` to be sent to the process, if it has one, and
    /// remembers that the master signalled it.
    pub fn signal(&mut self, signal: i32, actions: &mut Vec<Action>) {
        if let Some(pid) = self.pid() {
            self.signalled = true;
            actions.push(Action::Signal { pid, signal });
        }
    }

    /// Records that the process was sent TERM and is due for KILL at `at`
    /// unless it exits before.
    pub fn kill_at(&mut self, at: Instant) {
        self.kill_at = Some(at);
    }

    /// When the process is due for KILL, if it was sent TERM.
    pub fn kill_deadline(&self) -> Option<Instant> {
        self.kill_at.filter(|_| self.is_alive())
    }

    /// True when the process is due for KILL at `now`; forgets the
    /// deadline, so it is killed once.
    pub fn take_kill_due(&mut self, now: Instant) -> bool {
        let due = self.kill_deadline().is_some_and(|at| at <= now);
        if due {
            self.kill_at = None;
        }
        due
    }

    /// Records that the process was reaped, with `reading` the last
    /// reading of its counters, and drops its pipes.
    ///
    /// Returns what it leaves behind: the items it finished without
    /// answering, the one it had started and not finished, and those it
    /// never started.
    pub fn reaped(&mut self, reading: Reading) -> Departure {
        self.finished = reading.finished.max(self.finished);
        let in_progress = reading.started > self.finished;
        let number = self.number;
        let occupant = Arc::clone(&self.occupant);
        let gone = std::mem::replace(
            self,
            Worker {
                ran: true,
                ..Worker::new(number, occupant)
            },
        );
        self.occupant.reaped();
        let finished_count = gone.finished_unanswered();
        let mut held = gone.held;
        let finished: Vec<Item> = held.drain(..finished_count).collect();
        let performing = if in_progress { held.pop_front() } else { None };
        Departure {
            finished,
            performing,
            unstarted: held.into_iter().collect(),
            phase: gone.phase,
            was_ready: gone.was_ready,
            signalled: gone.signalled,
            timed_out: gone.timed_out,
            fatal_signal: reading.fatal_signal,
        }
    }

    /// Reads the process's counters, before its pipes go.
    pub fn reading(&self) -> Reading {
        match self.link.as_ref().map(Link::counter) {
            Some(counter) => Reading {
                started: counter.started(),
                finished: counter.finished(),
                fatal_signal: counter.fatal_signal(),
            },
            None => Reading {
                started: self.finished,
                finished: self.finished,
                fatal_signal: None,
            },
        }
    }

    /// How long the process's answer pipe has been closed while it lives
    /// on, as of `now` (a worker never closes it before it exits: one that
    /// did can no longer answer).
    pub fn hung_up_for(&mut self, now: Instant) -> Option<Duration> {
        if !self.is_alive() || !self.link.as_ref().is_some_and(Link::hung_up) {
            return None;
        }
        let since = *self.hung_up_since.get_or_insert(now);
        Some(now.saturating_duration_since(since))
    }
}

/// Of `held` items, how many are finished (the counter says `finished` in
/// all) but not `answered`.
fn finished_unanswered(finished: u64, answered: u64, held: usize) -> usize {
    let count = finished.saturating_sub(answered);
    usize::try_from(count).unwrap_or(usize::MAX).min(held)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::payload::Payload;

    pub fn item(index: u64) -> Item {
        Item::new(index, Payload::from(vec![index as u8]))
    }

    pub fn at(millis: u64) -> Instant {
        // Instants are opaque; offsets from one base keep tests exact.
        thread_local!(static BASE: Instant = Instant::now());
        BASE.with(|base| *base + Duration::from_millis(millis))
    }

    pub fn ready(number: usize) -> Worker {
        let mut worker = Worker::new(number, Arc::default());
        worker.started(4_999_999 + number as i32, None);
        worker.booted();
        worker
    }

    /// Makes `worker` look fast, so its window is deep.
    pub fn make_fast(worker: &mut Worker) {
        worker.assign(item(900), at(0));
        worker.observe(1000, at(1));
        worker.answer(None).unwrap();
        worker.answered = 1000;
    }

    #[test]
    fn the_view_follows_the_process() {
        let mut worker = Worker::new(2, Arc::default());
        let view = Arc::clone(worker.occupant());
        assert_eq!((view.pid(), view.is_running()), (None, false));
        assert_eq!(worker.who().to_string(), "worker 2");
        worker.started(42, None);
        assert_eq!((view.pid(), view.is_running()), (Some(42), true));
        assert_eq!(worker.pid(), Some(42));
        worker.reaped(Reading::default());
        assert_eq!((view.pid(), view.is_running()), (Some(42), false));
        assert_eq!(worker.pid(), None);
        assert_eq!(worker.who().to_string(), "worker 2 (pid 42)");
    }

    #[test]
    fn answers_settle_items_oldest_first() {
        let mut worker = ready(1);
        make_fast(&mut worker);
        worker.assign(item(0), at(0));
        worker.assign(item(1), at(0));
        assert_eq!(worker.answer(None), Ok(Answer::Performed(item(0))));
        let failure = Failure {
            class_name: "RuntimeError".into(),
            ..Failure::default()
        };
        assert_eq!(
            worker.answer(Some(failure.clone())),
            Ok(Answer::Failed(item(1), failure))
        );
        assert_eq!(worker.answer(None), Err(UnexpectedAnswer));
    }

    #[test]
    fn a_dead_worker_gives_back_its_items_and_names_the_one_it_was_performing() {
        let mut worker = ready(1);
        make_fast(&mut worker);
        for index in 0..5 {
            worker.assign(item(index), at(2));
        }
        worker.answer(None).unwrap();
        // It finished items 1 and 2 too, but those answers died with it,
        // and it had started item 3.
        let departure = worker.reaped(Reading {
            started: 1004,
            finished: 1003,
            fatal_signal: None,
        });
        assert_eq!(departure.finished, vec![item(1), item(2)]);
        assert_eq!(departure.performing, Some(item(3)));
        assert_eq!(departure.unstarted, vec![item(4)]);
        assert_eq!(departure.phase, Phase::Ready);
        assert_eq!(worker.held_count(), 0);
        assert_eq!(worker.phase(), Phase::Down);
        assert!(!worker.is_alive() && worker.ran());
    }

    #[test]
    fn an_item_never_started_is_not_blamed_for_a_death() {
        let mut worker = ready(1);
        worker.assign(item(0), at(0));
        worker.answer(None).unwrap();
        worker.assign(item(1), at(5));
        // Killed while idle: it finished one item and started no other.
        let departure = worker.reaped(Reading {
            started: 1,
            finished: 1,
            fatal_signal: None,
        });
        assert_eq!(departure.performing, None);
        assert_eq!(departure.unstarted, vec![item(1)]);
    }

    #[test]
    fn a_worker_dying_in_boot_is_told_apart() {
        let mut worker = Worker::new(1, Arc::default());
        worker.started(7, None);
        assert_eq!(worker.reaped(Reading::default()).phase, Phase::Booting);
    }

    #[test]
    fn bye_returns_unstarted_items_and_stops_assignment() {
        let mut worker = ready(1);
        worker.assign(item(5), at(0));
        assert_eq!(worker.said_bye(), vec![item(5)]);
        assert!(!worker.has_room(64));
        assert_eq!(worker.reaped(Reading::default()).performing, None);
    }

    #[test]
    fn term_then_kill_once_when_due() {
        let mut worker = ready(1);
        worker.kill_at(at(1000));
        assert_eq!(worker.kill_deadline(), Some(at(1000)));
        assert!(!worker.take_kill_due(at(999)));
        assert!(worker.take_kill_due(at(1000)));
        assert!(!worker.take_kill_due(at(2000)), "killed once");
        worker.kill_at(at(3000));
        worker.reaped(Reading::default());
        assert_eq!(
            worker.kill_deadline(),
            None,
            "a reaped process is not killed"
        );
    }
}
