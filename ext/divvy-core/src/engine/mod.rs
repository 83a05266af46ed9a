//! The engine: one run's decisions, with no Ruby. It knows which worker
//! holds which items and how fast each goes, and answers what happens (an
//! item to send, a worker's answers, a process that exited, time passing, a
//! signal, a resize) with the `Action`s the master carries out: hooks and
//! reports need Ruby, and signals are sent by the master. It moves items
//! over the workers' pipes itself, since that needs no Ruby.
//!
//! Its parts, each an `impl Engine` of its own:
//! - `schedule`: which worker gets the next items, and finishing a run;
//! - `answers`: what a worker's answers mean;
//! - `settle`: what a worker's exit means for what it held, retries, and
//!   when workers failing to boot stop the run;
//! - `deadlines`: the timeout, the TERM-then-KILL schedule, how long to wait;
//! - `lifecycle`: starting, replacing and resizing workers;
//! - `halt`: the halt policy, and when it ends the run early;
//! - `watch`: which pipes to wait on, and reading what they bring;
//! - `journal`: recording settled items in the job log.

mod answers;
mod deadlines;
pub mod exit;
pub mod halt;
pub mod item;
pub mod journal;
mod lifecycle;
pub mod options;
pub mod pace;
pub mod pool;
pub mod report;
mod schedule;
pub mod scoreboard;
mod settle;
pub mod stop;
mod watch;
pub mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use self::halt::{Baseline, Halted};
use self::item::Item;
use self::journal::Journal;
use self::options::RunOptions;
use self::pace::MAX_WINDOW;
use self::pool::Pool;
use self::report::{Cause, Who};
use self::scoreboard::Scoreboard;
use self::stop::Stop;
use self::worker::Occupant;
use crate::wire::frame::ResultBytes;
use crate::wire::landing::{Lander, Landings};

pub use self::watch::Watched;

/// Why a run cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// Workers keep dying before they boot; the message says how.
    BootFailure(String),
    /// No worker runs and none can be forked; the message says why.
    ForkFailure(String),
    /// A signal asked to stop at once.
    Abort,
}

/// The try an item is due for after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Which try comes next: 2 for the first retry.
    pub attempt: u32,
    /// How many tries there are in all.
    pub of: u32,
}

/// What the master is to do about something that happened.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// An item was performed on worker `who` and returned `result` (a
    /// Marshal dump): hand it to the task's `completed` hook.
    Completed {
        who: Who,
        item: Item,
        result: ResultBytes,
    },
    /// A kept item (see `Item::kept`) settled: the master may drop what it
    /// kept for it.
    Settled { index: u64 },
    /// An item failed on worker `who`: report it; with `retry`, it is
    /// already queued to be tried again; without, it finally failed and the
    /// task's `failed` hook gets it.
    Failed {
        who: Who,
        item: Item,
        cause: Cause,
        retry: Option<Retry>,
    },
    /// An item's `perform` raised `Divvy::Break` with `value` (a Marshal
    /// dump): it counts as performed; hand both to the task's `broke` hook.
    /// The run sends no more items.
    Broke { item: Item, value: Vec<u8> },
    /// Send signal `signal` to the process group worker process `pid`
    /// leads: the worker and what its `perform` started.
    Signal { pid: i32, signal: i32 },
    /// Print this line on stderr.
    Say(String),
    /// Print this line on stderr under `-v`.
    Notice(String),
}

/// One run's state, as the engine sees it.
#[derive(Debug)]
pub struct Engine {
    pool: Pool,
    /// Items to send before new ones: handed back by workers that never
    /// started them, or due for a retry.
    queue: VecDeque<Item>,
    options: RunOptions,
    board: Arc<Scoreboard>,
    stop: Stop,
    fatal: Option<Fatal>,
    /// Workers that died before booting since one last booted.
    boot_deaths_in_a_row: usize,
    /// True once no new process should start: the run is ending.
    closing: bool,
    /// True once `dispatch` has returned (or raised).
    dispatch_done: bool,
    /// Payload buffers of performed small items, reused for new items so
    /// that an item costs no allocation.
    spare_buffers: Vec<Vec<u8>>,
    /// When every live worker was last checked for an exit.
    last_full_reap: Instant,
    /// Process groups of reaped workers that still have processes (what a
    /// `perform` started and left behind): sent TERM, and due for KILL at
    /// the instant beside each.
    lingering: Vec<(i32, Instant)>,
    /// After a fork failed, when the next may be tried.
    fork_blocked_until: Option<Instant>,
    /// True once an item raised `Divvy::Break`: nothing new is sent.
    broke: bool,
    /// The halt that came this run: nothing new is sent.
    halted: Option<Halted>,
    /// The scoreboard's counts when the run began.
    baseline: Baseline,
    /// The job log, when the run keeps one.
    journal: Option<Journal>,
    /// Where large results are read to.
    landings: Landings,
}

impl Engine {
    /// Returns the state of a run with `options`, counting on `board`, with
    /// one worker slot per `occupants` (the Ruby views of the master's
    /// workers, numbered from 1 in order). No process is started yet.
    pub fn new(
        options: RunOptions,
        board: Arc<Scoreboard>,
        occupants: Vec<Arc<Occupant>>,
    ) -> Engine {
        let mut engine = Engine {
            pool: Pool::new(occupants, MAX_WINDOW),
            queue: VecDeque::new(),
            options,
            board,
            stop: Stop::No,
            fatal: None,
            boot_deaths_in_a_row: 0,
            closing: false,
            dispatch_done: false,
            spare_buffers: Vec::new(),
            last_full_reap: Instant::now(),
            lingering: Vec::new(),
            fork_blocked_until: None,
            broke: false,
            halted: None,
            baseline: Baseline::default(),
            journal: None,
            landings: Landings::default(),
        };
        engine.begin_counts();
        engine
    }

    /// Reads each large result (`LARGE_PAYLOAD` bytes and more) straight
    /// into memory `lander` provides, rather than through a buffer.
    pub fn land_results(&mut self, lander: Box<Lander>) {
        self.landings = Landings::new(lander);
    }

    /// The workers.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The workers, to read from or write to their pipes.
    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// The run's options.
    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    /// How the run is asked to stop.
    pub fn stop(&self) -> Stop {
        self.stop
    }

    /// Why the run cannot go on, once it cannot.
    pub fn fatal(&self) -> Option<&Fatal> {
        self.fatal.as_ref()
    }

    /// Records a request to stop (from signals or `Master#shutdown`); the
    /// strongest request so far holds. `Stop::Abort` makes the run fatal.
    pub fn request_stop(&mut self, stop: Stop) {
        self.stop = self.stop.max(stop);
        if self.stop == Stop::Abort && self.fatal.is_none() {
            self.fatal = Some(Fatal::Abort);
        }
    }

    /// True while the run sends new items, from `dispatch` or the queue:
    /// until it is asked to stop, an item raises `Divvy::Break` or the halt
    /// policy ends it (the run then ends normally once the items in flight
    /// are done, or at once for a `now` halt).
    pub fn sends_new_items(&self) -> bool {
        self.stop == Stop::No && !self.broke && self.halted.is_none()
    }

    /// Records that `dispatch` returned or raised: no new items will come.
    pub fn dispatch_done(&mut self) {
        self.dispatch_done = true;
    }

    /// True when the run goes on and has items to send, so a dead worker
    /// should be replaced.
    fn goes_on(&self) -> bool {
        self.sends_new_items()
            && self.fatal.is_none()
            && !self.closing
            && (!self.dispatch_done || !self.queue.is_empty())
    }

    /// Leaks the bytes spliced into item pipes when a worker may still be
    /// alive to read them (the run ended on an error before every worker
    /// was reaped): freed and reused, they would reach it changed.
    pub fn keep_spliced_bytes(&self) {
        if self.pool.alive().next().is_none() {
            return;
        }
        for item in self.pool.held_items().chain(&self.queue) {
            item.payload.leak_references();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An engine of `size` workers with `options`.
    pub fn engine(size: usize, options: RunOptions) -> Engine {
        let occupants = (0..size).map(|_| Arc::default()).collect();
        Engine::new(options, Arc::new(Scoreboard::new(size)), occupants)
    }

    /// An engine whose `size` workers are all started and booted.
    pub fn booted(size: usize, options: RunOptions) -> Engine {
        let mut engine = engine(size, options);
        for index in 0..size {
            engine.started(index, 5_000_000 + index as i32, None);
            engine.pool.worker_mut(index).booted();
        }
        engine
    }

    /// An engine whose `size` workers are started with real pipes and
    /// booted; returns the workers' ends, to keep the pipes open.
    pub fn booted_with_links(
        size: usize,
        options: RunOptions,
    ) -> (Engine, Vec<crate::wire::link::WorkerEnds>) {
        let mut engine = engine(size, options);
        let mut ends = Vec::new();
        for index in 0..size {
            let (link, worker_ends) = crate::wire::link::open(false).unwrap();
            engine.started(index, 5_000_000 + index as i32, Some(link));
            engine.pool.worker_mut(index).booted();
            ends.push(worker_ends);
        }
        (engine, ends)
    }

    /// Counts `started` items started and `finished` finished on worker
    /// `index`'s shared counters, as the worker process would.
    pub fn count(engine: &Engine, index: usize, started: u64, finished: u64) {
        let counter = engine.pool.worker(index).link().unwrap().counter();
        (0..started).for_each(|_| counter.start());
        (0..finished).for_each(|_| counter.finish());
    }

    #[test]
    fn a_stop_request_only_grows_and_abort_is_fatal() {
        let mut engine = engine(1, RunOptions::default());
        engine.request_stop(Stop::Drain);
        engine.request_stop(Stop::No);
        assert_eq!(engine.stop(), Stop::Drain);
        assert_eq!(engine.fatal(), None);
        engine.request_stop(Stop::Abort);
        assert_eq!(engine.fatal(), Some(&Fatal::Abort));
    }

    #[test]
    fn goes_on_while_items_may_come() {
        let mut engine = booted(1, RunOptions::default());
        assert!(engine.goes_on());
        engine.dispatch_done();
        assert!(!engine.goes_on(), "nothing left to send");
        engine
            .queue
            .push_back(crate::engine::worker::tests::item(1));
        assert!(engine.goes_on(), "a retry is waiting");
        engine.request_stop(Stop::Drain);
        assert!(!engine.goes_on());
    }
}
