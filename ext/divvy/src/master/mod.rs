//! One `Master#run` as the master process sees it. The run's state is in
//! `run`; `dispatch` feeds it the items the task yields; each `turn` of
//! the loop waits (`wait`), settles what happened (`reap`, `report`),
//! times out, obeys signals (`traps`), resizes and replaces workers
//! (`fork`); `finish` ends it. The decisions are the engine's
//! (`divvy_core::engine`); this layer carries them out with Ruby: hooks,
//! reports, forks, `Process::Status`. `view` is the Ruby `Divvy::Worker`'s
//! data and `meter` the progress display.

mod dispatch;
mod finish;
mod fork;
mod fork_watch;
mod joblog;
mod meter;
mod reap;
mod report;
mod run;
mod traps;
mod turn;
pub mod view;
mod wait;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use magnus::{Error, Ruby};

use divvy_core::engine::stop::Stop;

pub use self::run::Setup;
use self::run::{Run, RunCell};
use self::traps::Traps;
use crate::vm::errors::divvy_error;
use crate::vm::gc::compact_heap;
use crate::vm::stdio::say;
use crate::vm::title;

/// Runs a whole `Master#run`: forks the workers, calls the task's
/// `dispatch` and sends each item it yields to a free worker, waits until
/// every item sent was performed or failed, and lets the workers go. Runs
/// in the master; blocks, with the GVL released while it waits.
///
/// Returns when every item settled, or the halt policy ended the run (a
/// `now` halt stops the workers at once); raises `Divvy::Master::BootFailure`
/// when workers keep dying before they boot, `Divvy::Master::Shutdown` when
/// a signal stopped the run, and what `dispatch` or a hook raised (after the
/// items in flight finished).
pub fn run(ruby: &Ruby, setup: Setup) -> Result<(), Error> {
    let _only = OnlyRun::claim(ruby)?;
    let started = Instant::now();
    let cell = RunCell::new(Run::new(ruby, setup)?);
    {
        let run = cell.lock(ruby)?;
        title::set(ruby, &title::master(&run.script, 0, run.total));
    }
    let outcome = Traps::install(ruby).and_then(|traps| {
        let outcome = drive(ruby, &cell).or_else(|error| match cell.lock(ruby) {
            Ok(mut run) => finish::stop_workers(ruby, &mut run).and(Err(error)),
            Err(_) => Err(error),
        });
        traps.restore(ruby).and(outcome)
    });
    conclude(ruby, &cell, started, outcome)
}

/// True while a run is under way in this process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The one run a process may have at a time: signal traps, the wake pipe
/// and the fork watch are the process's, so a second run at the same time
/// (from another thread, or a hook) would take them from the first, and
/// leave the process deaf to INT and TERM once both are done.
struct OnlyRun(());

impl OnlyRun {
    /// Claims the process for a run.
    ///
    /// Raises `Divvy::Error` when another run is under way.
    fn claim(ruby: &Ruby) -> Result<OnlyRun, Error> {
        if RUNNING.swap(true, Ordering::SeqCst) {
            return Err(divvy_error(
                ruby,
                "another Divvy::Master#run is under way in this process; divvy runs one at a time",
            ));
        }
        Ok(OnlyRun(()))
    }

    /// Frees the claim in a freshly forked worker, which may run masters
    /// of its own.
    pub fn release_in_child() {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

impl Drop for OnlyRun {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// The run proper: the first worker, `dispatch` (the others start while it
/// runs), the workers that never ran, and the end.
fn drive(ruby: &Ruby, cell: &RunCell) -> Result<(), Error> {
    {
        let mut run = cell.lock(ruby)?;
        compact_heap(ruby)?;
        fork::start(ruby, &mut run, 0)?;
    }
    let dispatched = dispatch::dispatch(ruby, cell);
    let mut run = cell.lock(ruby)?;
    run.engine.dispatch_done();
    if let Some(fatal) = run.engine.fatal() {
        // A stop at once may have ended dispatch quietly (seen by the
        // block before a turn of the loop raised it).
        return dispatched.and_then(|()| Err(report::fatal_error(ruby, &run, fatal)));
    }
    if dispatched.is_ok() {
        // Every worker runs once, even when dispatch yielded fewer items
        // than there are workers; not when it raised.
        fork::start_remaining(ruby, &mut run)?;
    }
    finish::finish(ruby, &mut run)?;
    dispatched?;
    match run.engine.stop() {
        Stop::Drain | Stop::Abort => Err(report::shutdown_error(
            ruby,
            &run,
            "after the items in flight finished",
        )),
        Stop::No => Ok(()),
    }
}

/// Closes the job log, ends the run's display (the last progress line,
/// the title) and prints the summary under `-v`, after a failure or a
/// halt.
///
/// Returns `outcome`, or what closing the job log or printing raised.
fn conclude(
    ruby: &Ruby,
    cell: &RunCell,
    started: Instant,
    outcome: Result<(), Error>,
) -> Result<(), Error> {
    let Some(mut run) = cell.take() else {
        return outcome;
    };
    run.engine.keep_spliced_bytes();
    let stopped = run.engine.stop() != Stop::No || traps::requested_stop() != Stop::No;
    let outcome = outcome.and(joblog::close(ruby, &mut run, stopped));
    title::restore(ruby);
    if run.stdout_closed {
        // Stopped as `head` expects: quietly.
        return outcome;
    }
    let (done, failed) = run.board.settled();
    let skipped = run.board.skipped.get();
    if let Some(line) = run
        .meter
        .as_mut()
        .and_then(|meter| meter.finish(done, failed, skipped))
    {
        // The last progress line is no reason to fail a run.
        let _ = say(ruby, &line);
    }
    if run.verbose || run.board.failures.get() > 0 || run.engine.halted().is_some() {
        report::summarize(ruby, &run, started.elapsed())?;
    }
    outcome
}
