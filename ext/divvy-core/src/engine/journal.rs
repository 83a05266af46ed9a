//! The engine's side of the job log: each item that settles becomes a
//! record, gathered into a batch that the master hands to the writer
//! thread once per turn of its loop. Only items that really settled are
//! recorded: those dropped when the run stops at once are not, so that a
//! resumed run performs them.
//!
//! A worker batches its answers, and an item's answer may wait in its
//! batch for as long as the next item takes. So, every `SWEEP_INTERVAL`,
//! the items a worker's counter says it finished are recorded as
//! performed before their answers arrive, in runs without results: the
//! counter is read first and the answer pipe drained after, and a worker
//! writes a failure before it counts the item, so a counted item whose
//! answer is not in the pipe was performed.
//!
//! A stop can fail the items in flight: a worker killed by a signal the
//! master did not send (TERM from Slurm's `scancel`, which signals every
//! process of the job at once, or from a Kubernetes pod's deletion) takes
//! its item down with it, and the master may reap it before it handles the
//! TERM meant for itself; the INT a Ctrl-C sends on to the workers' process
//! groups kills what a `perform` started, which then raises; a task's own
//! TERM trap may `exit`. So every final failure is held back for `HOLD`,
//! and recorded only if the run is not stopping by then, or ends normally;
//! a run stopped by a signal drops it, and a resumed run performs the item
//! again (performing an item twice is safer than skipping it).

use std::io;
use std::time::{Duration, Instant};

use super::exit::Exit;
use super::item::Item;
use super::report::{Cause, Who};
use super::stop::Stop;
use super::{Action, Engine};
use crate::joblog::record::{Fault, Record};
use crate::joblog::writer::Writer;

/// How long an item's failure waits before it is recorded, for the master
/// to learn whether a stop caused it.
pub const HOLD: Duration = Duration::from_secs(1);

/// How often the items workers finished are recorded before their answers
/// arrive.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A run's job log as the engine feeds it.
#[derive(Debug)]
pub struct Journal {
    writer: Writer,
    /// Records of this turn, for the writer.
    batch: Vec<Record>,
    /// Failures held back, each with when it may be recorded.
    held: Vec<(Instant, Record)>,
    /// When the engine last looked for settled items: the time records are
    /// stamped with, read once for all the answers read at once, since
    /// reading the clock for each would cost a tiny item dearly.
    now: Instant,
    /// When the items workers finished were last recorded.
    swept_at: Instant,
}

impl Journal {
    /// Returns a journal that hands its records to `writer`. Runs in the
    /// master.
    pub fn new(writer: Writer) -> Journal {
        Journal {
            writer,
            batch: Vec::new(),
            held: Vec::new(),
            now: Instant::now(),
            swept_at: Instant::now(),
        }
    }

    /// Offers the records gathered so far to the writer (see
    /// `Writer::offer`).
    fn ship(&mut self) {
        self.writer.offer(&mut self.batch);
    }
}

impl Engine {
    /// Keeps a job log: from now on each item that settles is recorded in
    /// `journal`. Runs in the master, before the workers start.
    pub fn keep_journal(&mut self, journal: Journal) {
        self.journal = Some(journal);
    }

    /// True when the run keeps a job log. Runs in the master.
    pub fn keeps_journal(&self) -> bool {
        self.journal.is_some()
    }

    /// Returns the job log's descriptor, if the run keeps one.
    pub(super) fn journal_fd(&self) -> Option<std::os::fd::RawFd> {
        self.journal.as_ref().map(|journal| journal.writer.fd())
    }

    /// Sets the time the next records are stamped with to `now`.
    pub(super) fn stamp_journal(&mut self, now: Instant) {
        if let Some(journal) = self.journal.as_mut() {
            journal.now = now;
        }
    }

    /// Records that `item` was performed on worker `who`, its result
    /// `received` bytes long (0 without one), unless it was recorded
    /// already. Runs in the master: the master calls it for an item whose
    /// result it loaded, the engine for the others.
    pub fn journal_performed(&mut self, who: Who, item: &Item, received: usize) {
        if item.journaled {
            return;
        }
        if let Some(journal) = self.journal.as_mut() {
            let mut record = record(who, item, journal.now);
            record.received_bytes = received as u64;
            journal.batch.push(record);
        }
    }

    /// Records that `item` finally failed on worker `who` because of
    /// `cause`, once `HOLD` has passed with the run going on (see the
    /// module's comment).
    pub(super) fn journal_failed(&mut self, who: Who, item: &Item, cause: &Cause) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let mut record = record(who, item, journal.now);
        let (exit_value, signal, error) = match cause {
            Cause::Raised(failure) => {
                (1, 0, format!("{}: {}", failure.class_name, failure.message))
            }
            Cause::Died(exit) => (exit_value(*exit), signal(*exit), exit.describe()),
            Cause::DiedReceiving(exit) => (
                exit_value(*exit),
                signal(*exit),
                format!("{} before it could start the item", exit.describe()),
            ),
            Cause::TimedOut(timeout) => {
                (-1, 0, format!("timed out after {}s", timeout.as_secs_f64()))
            }
            Cause::Lost(exit) => (
                exit_value(*exit),
                signal(*exit),
                format!("{} before its result reached the master", exit.describe()),
            ),
        };
        record.fault = Some(Box::new(Fault {
            // A failure never reads as a success to GNU parallel's tools.
            exit_value: if exit_value == 0 && signal == 0 {
                -1
            } else {
                exit_value
            },
            signal,
            reason: cause.reason(),
            error,
        }));
        journal.held.push((record.settled + HOLD, record));
    }

    /// Every `SWEEP_INTERVAL`, in a run without results, records as
    /// performed the items each worker's counter (read at the start of
    /// this turn, before any pipe) says it finished and that have not been
    /// answered for: drains its answer pipe first, so that what remains is
    /// only performed items whose answers wait in the worker's batch.
    ///
    /// Returns the OS error of a failed read.
    pub(super) fn sweep_journal(
        &mut self,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> io::Result<()> {
        let due = match &self.journal {
            Some(journal) => now.saturating_duration_since(journal.swept_at) >= SWEEP_INTERVAL,
            None => false,
        };
        if !due || self.options.wants_results {
            return Ok(());
        }
        for index in 0..self.pool.len() {
            if self
                .pool
                .worker_mut(index)
                .finished_items_mut()
                .all(|item| item.journaled)
            {
                continue;
            }
            self.read_answers(index, actions)?;
            let worker = self.pool.worker_mut(index);
            let who = worker.who();
            let Some(journal) = self.journal.as_mut() else {
                break;
            };
            for item in worker.finished_items_mut().filter(|item| !item.journaled) {
                item.journaled = true;
                journal.batch.push(record(who, item, now));
            }
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.swept_at = now;
        }
        Ok(())
    }

    /// Hands this turn's records to the writer, with the failures held
    /// back whose time came while the run goes on; starts the writer's
    /// thread once every worker of the pool was forked, unless the run is
    /// ending (see `joblog::writer`). Runs in the master, at the end of
    /// each turn of its loop.
    ///
    /// Returns, once, the error writing the log met (the run goes on, its
    /// items no longer recorded), for the master to say.
    pub fn ship_journal(&mut self, now: Instant) -> Option<String> {
        let going_on = self.stop == Stop::No && self.fatal.is_none();
        let all_forked = self
            .pool
            .first_unstarted(self.board.worker_count())
            .is_none();
        let thread_wanted = going_on && all_forked && !self.closing;
        let journal = self.journal.as_mut()?;
        if thread_wanted {
            journal.writer.start();
        }
        if going_on && !journal.held.is_empty() {
            let (due, waiting) = std::mem::take(&mut journal.held)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            journal.held = waiting;
            journal
                .batch
                .extend(due.into_iter().map(|(_, record)| record));
        }
        journal.ship();
        journal
            .writer
            .take_failure()
            .map(|error| format!("{error}; items are no longer recorded in it"))
    }

    /// Ends the job log: records the failures still held back unless a
    /// signal stopped the run (`stopped`), and waits for the writer to
    /// write everything and start its write-back. Runs in the master, as
    /// the run ends.
    ///
    /// Returns the first error writing met, naming the file.
    pub fn close_journal(&mut self, stopped: bool) -> Result<(), String> {
        let Some(mut journal) = self.journal.take() else {
            return Ok(());
        };
        if !stopped {
            let held = std::mem::take(&mut journal.held);
            journal
                .batch
                .extend(held.into_iter().map(|(_, record)| record));
        }
        journal.writer.hand_over(&mut journal.batch);
        journal.writer.finish()
    }
}

/// The record of `item` performed on worker `who`, settling at
/// `settled`, with no result.
fn record(who: Who, item: &Item, settled: Instant) -> Record {
    Record {
        index: item.index,
        digest: item.digest,
        sent: item.sent_at.unwrap_or(settled),
        settled,
        sent_bytes: item.payload.len() as u64,
        received_bytes: 0,
        attempts: item.attempt,
        worker: u32::try_from(who.number).unwrap_or(u32::MAX),
        fault: None,
    }
}

/// `Exitval` for a worker that ended as `exit`: its status, 0 when a
/// signal killed it (as GNU parallel writes), -1 when unknown.
fn exit_value(exit: Exit) -> i32 {
    match exit {
        Exit::Exited(code) => code,
        Exit::Signaled(_) => 0,
        Exit::Unknown => -1,
    }
}

/// `Signal` for a worker that ended as `exit`.
fn signal(exit: Exit) -> i32 {
    match exit {
        Exit::Signaled(signo) => signo,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::tests::booted_with_links;
    use crate::engine::worker::tests::{at, item};
    use crate::joblog::record::RunFields;
    use crate::wire::frame::{Failure, Frame};

    /// An engine of one booted worker whose journal writes to a fresh file
    /// named after `name`; returns the file's path too.
    fn journaled(
        name: &str,
    ) -> (
        Engine,
        Vec<crate::wire::link::WorkerEnds>,
        std::path::PathBuf,
    ) {
        let path =
            std::env::temp_dir().join(format!("divvy-journal-{}-{name}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let writer = Writer::new(file, &path, RunFields::new("h", "c"));
        let (mut engine, ends) = booted_with_links(1, RunOptions::default());
        engine.keep_journal(Journal::new(writer));
        (engine, ends, path)
    }

    /// The (Seq, Outcome, Signal, Reason) of each line of the log.
    fn lines(path: &std::path::Path) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                let at = |n: usize| fields[n].to_string();
                (at(0), at(10), at(7), at(13))
            })
            .collect()
    }

    #[test]
    fn records_performed_and_failed_items_once_they_settle() {
        let (mut engine, _ends, path) = journaled("settle");
        for index in [4, 5] {
            engine.pool.worker_mut(0).assign(item(index), at(0));
        }
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Done, &mut actions);
        engine.on_frame(0, Frame::Failed(Failure::default()), &mut actions);
        engine.ship_journal(Instant::now());
        engine.close_journal(false).unwrap();
        assert_eq!(
            lines(&path),
            [
                ("5".into(), "performed".into(), "0".into(), "-".into()),
                ("6".into(), "failed".into(), "0".into(), "raised".into())
            ]
        );
    }

    #[test]
    fn records_what_a_worker_counted_before_its_answer_arrives_and_only_once() {
        let (mut engine, _ends, path) = journaled("sweep");
        for index in [4, 5] {
            engine.pool.worker_mut(0).assign(item(index), at(0));
        }
        crate::engine::tests::count(&engine, 0, 2, 1);
        let mut actions = Vec::new();
        let start = Instant::now();
        engine.pool.observe_counters(start);
        engine.sweep_journal(start, &mut actions).unwrap();
        engine.ship_journal(start);
        engine
            .sweep_journal(start + SWEEP_INTERVAL, &mut actions)
            .unwrap();
        engine.ship_journal(start + SWEEP_INTERVAL);
        engine.on_frame(0, Frame::Done, &mut actions);
        engine.on_frame(0, Frame::Done, &mut actions);
        engine.close_journal(false).unwrap();
        assert_eq!(
            lines(&path),
            [
                ("5".into(), "performed".into(), "0".into(), "-".into()),
                ("6".into(), "performed".into(), "0".into(), "-".into())
            ],
            "item 4 once, when swept; item 5 with its answer"
        );
    }

    #[test]
    fn a_death_by_signal_is_recorded_only_once_the_run_goes_on() {
        let (mut engine, _ends, path) = journaled("held");
        engine.pool.worker_mut(0).assign(item(7), at(0));
        crate::engine::tests::count(&engine, 0, 1, 0);
        engine.on_exit(0, Exit::Signaled(libc::SIGTERM), at(0), &mut Vec::new());
        let now = Instant::now();
        engine.ship_journal(now);
        engine.ship_journal(now + HOLD / 2);
        engine.ship_journal(now + HOLD * 2);
        engine.close_journal(false).unwrap();
        assert_eq!(
            lines(&path),
            [("8".into(), "failed".into(), "15".into(), "died".into())]
        );
    }

    #[test]
    fn a_failure_as_the_run_drains_is_not_recorded() {
        let (mut engine, _ends, path) = journaled("drained");
        engine.pool.worker_mut(0).assign(item(3), at(0));
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Failed(Failure::default()), &mut actions);
        engine.ship_journal(Instant::now());
        engine.request_stop(Stop::Drain);
        engine.ship_journal(Instant::now() + HOLD * 2);
        engine.close_journal(true).unwrap();
        assert_eq!(lines(&path), [], "a resumed run performs item 3 again");
    }

    #[test]
    fn a_death_by_signal_is_not_recorded_when_the_run_stops() {
        for stop_later in [false, true] {
            let (mut engine, _ends, path) = journaled(&format!("dropped-{stop_later}"));
            engine.pool.worker_mut(0).assign(item(7), at(0));
            crate::engine::tests::count(&engine, 0, 1, 0);
            engine.on_exit(0, Exit::Signaled(libc::SIGTERM), at(0), &mut Vec::new());
            if stop_later {
                engine.request_stop(Stop::Abort);
                engine.ship_journal(Instant::now() + HOLD * 2);
            }
            engine.close_journal(true).unwrap();
            assert_eq!(lines(&path), []);
        }
    }
}
