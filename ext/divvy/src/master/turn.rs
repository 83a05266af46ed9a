//! One turn of the master's loop, as named steps: wait for something to
//! happen, settle what the workers said, reap the ones that exited, stop
//! those that overran the timeout, obey signals, resize, replace the dead,
//! send what waits, show how far the run is, and hand the job log's
//! records to its writer.

use std::time::{Duration, Instant};

use magnus::{Error, Ruby};

use divvy_core::engine::Fatal;

use super::meter::Meter;
use super::run::Run;
use super::view::WorkerView;
use super::{fork, reap, report, traps, wait};
use crate::vm::errors::os_error;
use crate::vm::stdio::say;
use crate::vm::title;

/// How often the master's process title is brought up to date.
const TITLE_INTERVAL: Duration = Duration::from_millis(500);

/// Runs one turn of the loop. Runs in the master, while `dispatch` waits
/// for a free worker and while the run finishes.
///
/// Raises `Shutdown` when a signal asks to stop at once, `BootFailure` when
/// workers keep dying before they boot, and what a hook raises.
pub fn turn(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    raise_if_fatal(ruby, run)?;
    let check_all = wait::wait(ruby, run)?;
    report::carry_out(ruby, run)?;
    reap::reap(ruby, run, check_all)?;
    time_out(ruby, run)?;
    obey_signals(ruby, run)?;
    resize(ruby, run)?;
    fork::respawn(ruby, run)?;
    send_queued(ruby, run)?;
    show(ruby, run)?;
    if let Some(warning) = run.engine.ship_journal(Instant::now()) {
        say(ruby, &warning)?;
    }
    Ok(())
}

/// Raises the error of a run that cannot go on.
pub fn raise_if_fatal(ruby: &Ruby, run: &Run) -> Result<(), Error> {
    match run.engine.fatal() {
        Some(fatal) => Err(report::fatal_error(ruby, run, fatal)),
        None => Ok(()),
    }
}

/// Stops workers whose item overran the timeout, and kills those whose
/// grace is over.
fn time_out(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    run.engine.on_tick(Instant::now(), &mut run.actions);
    report::carry_out(ruby, run)
}

/// Records what the signals received ask of the run, and sends a new INT
/// or QUIT on to the workers (each in a process group of its own, they do
/// not get the terminal's); raises `Shutdown` at once when the signals ask
/// to stop at once.
fn obey_signals(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    let interrupts = traps::interrupts();
    if interrupts > run.forwarded_interrupts {
        run.forwarded_interrupts = interrupts;
        run.engine.forward(traps::last_signal(), &mut run.actions);
        report::carry_out(ruby, run)?;
    }
    run.engine.request_stop(traps::requested_stop());
    if run.engine.fatal() == Some(&Fatal::Abort) {
        return raise_if_fatal(ruby, run);
    }
    Ok(())
}

/// Obeys TTIN and TTOU: the engine resizes the pool, and the master's
/// `Divvy::Worker` views follow it.
///
/// Raises `Divvy::Error` when an item pipe cannot be closed.
fn resize(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    let (more, fewer) = traps::take_resizes();
    let views = run.views()?;
    if more + fewer > 0 {
        let added = run
            .engine
            .resize(more, fewer, &mut run.actions)
            .map_err(|err| os_error(ruby, "closing an item pipe", err))?;
        for occupant in added {
            views.push(WorkerView::wrap(ruby, views.len() + 1, occupant))?;
        }
    }
    let slots = run.engine.trim();
    while views.len() > slots {
        let _: magnus::Value = views.pop()?;
    }
    Ok(())
}

/// Sends the items handed back or due for a retry.
///
/// Raises `Divvy::Error` when a write fails.
fn send_queued(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    run.engine
        .send_queued(Instant::now(), &mut run.actions)
        .map_err(|err| os_error(ruby, "sending an item", err))
}

/// Prints what the turn has to say, updates the progress display and, at
/// most twice a second, the master's process title.
///
/// Raises what `$stderr.write` raises.
fn show(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    report::carry_out(ruby, run)?;
    let (done, failed) = run.board.settled();
    let skipped = run.board.skipped.get();
    if let Some(line) = run
        .meter
        .as_mut()
        .and_then(|meter| meter.update(done, failed, skipped))
    {
        // A progress line that cannot be written is no reason to stop.
        let _ = say(ruby, &line);
    }
    if run.titled_at.elapsed() >= TITLE_INTERVAL {
        run.titled_at = Instant::now();
        title::set(ruby, &title::master(&run.script, done + skipped, run.total));
    }
    Ok(())
}

/// Writes a worker's output (`bytes` for stream 1 or 2) above the progress
/// bar, when one is drawn.
pub fn print_through(meter: Option<&Meter>, stream: std::os::fd::RawFd, bytes: &[u8]) {
    if let Some(meter) = meter {
        meter.print_through(stream, bytes);
    }
}
