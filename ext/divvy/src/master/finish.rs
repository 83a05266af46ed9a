//! The end of a run: seeing the items in flight through and letting the
//! workers go; or, when the run ends on an error, stopping them all.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use magnus::{Error, Ruby};

use super::reap::{exit_of, try_wait};
use super::run::Run;
use super::{report, turn};
use crate::vm::errors::os_error;
use crate::vm::nogvl::without_gvl;

/// How long the wait for stopped workers lasts between checks.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Waits until every item sent is answered (and every retry done), then
/// lets the workers go and waits for them to exit; after a `now` halt,
/// stops them at once instead. Runs in the master.
///
/// Raises what a turn of the loop raises.
pub fn finish(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    let closing = |err| os_error(ruby, "closing an item pipe", err);
    while !run.engine.halts_now() && run.engine.wind_down().map_err(closing)? {
        turn::turn(ruby, run)?;
    }
    if run.engine.halts_now() {
        return stop_workers(ruby, run);
    }
    run.engine.close_all().map_err(closing)?;
    while run.engine.any_running() {
        turn::turn(ruby, run)?;
    }
    Ok(())
}

/// Stops every live worker and what it started: TERM to each worker's
/// process group, a grace period, then KILL; reaps them all, so the run
/// leaves neither orphans nor zombies. What they held is dropped
/// unreported: the run ends on an error or a `now` halt. Runs in the
/// master.
///
/// Raises what waiting raises (an `Interrupt` from a trap).
pub fn stop_workers(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    run.engine.terminate_all(Instant::now(), &mut run.actions);
    while run.engine.any_running() {
        run.engine.on_tick(Instant::now(), &mut run.actions);
        report::send_signals(run);
        // Waits briefly for SIGCHLD's wake-up without holding the GVL.
        let mut fds = [libc::pollfd {
            fd: run.wake.read_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        without_gvl(ruby, run.wake.write_raw_fd(), || {
            // SAFETY: one valid pollfd, for the whole call.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, STOP_POLL.as_millis() as i32) }
        })?;
        run.wake.drain();
        for (index, pid) in run.engine.reap_candidates(true, Instant::now()) {
            if let Some(status) = try_wait(ruby, pid)? {
                let known = exit_of(status)
                    .is_ok_and(|exit| exit != divvy_core::engine::exit::Exit::Unknown);
                run.view(ruby, index)?.reaped(known.then_some(status));
                run.engine.forget(index, Instant::now(), &mut run.actions);
            }
        }
    }
    Ok(())
}
