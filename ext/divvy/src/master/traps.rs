//! The master's signal traps, while a run runs. A trap only records the
//! signal and wakes the loop; the loop decides what it means (see
//! `divvy_core::engine::stop` and docs/SIGNALS.md): the first INT or QUIT
//! drains, a second one or any TERM stops at once, TTIN adds a worker and
//! TTOU removes one. URG, and INT, QUIT and TERM while a fork is under
//! way, give that fork up (see `fork_watch`). The workers' traps are in
//! `worker::leave`; a worker runs these until it installs its own, and then
//! only obeys the signal as a worker (see `worker::leave::obey_early`).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use magnus::{prelude::*, Error, RArray, RModule, Ruby, Value};

use divvy_core::engine::stop::Stop;
use divvy_core::wire::wake::wake;

use super::fork_watch::{abandon, Abandoned};
use crate::vm::errors::divvy_error;
use crate::worker::obey_early;

/// The signals the master traps while `Master#run` runs.
const MASTER_SIGNALS: [&str; 6] = ["INT", "QUIT", "TERM", "TTIN", "TTOU", "URG"];

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static TERMINATES: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static MORE_WORKERS: AtomicUsize = AtomicUsize::new(0);
static FEWER_WORKERS: AtomicUsize = AtomicUsize::new(0);
/// The pid of the process that installed the traps: the master.
static MASTER_PID: AtomicI32 = AtomicI32::new(0);

/// Returns how the signals received since `install` ask the run to stop.
pub fn requested_stop() -> Stop {
    Stop::from_signals(
        INTERRUPTS.load(Ordering::SeqCst),
        TERMINATES.load(Ordering::SeqCst),
    )
}

/// Returns how many INT and QUIT signals the master received since
/// `install`.
pub fn interrupts() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// Returns how many workers TTIN asked to add and TTOU to remove since the
/// last call.
pub fn take_resizes() -> (usize, usize) {
    (
        MORE_WORKERS.swap(0, Ordering::SeqCst),
        FEWER_WORKERS.swap(0, Ordering::SeqCst),
    )
}

/// Records `signo` as the signal that stopped the run, though none was
/// received (a closed standard output counts as SIGPIPE).
pub fn record(signo: i32) {
    LAST_SIGNAL.store(usize::try_from(signo).unwrap_or(0), Ordering::SeqCst);
}

/// Returns the number of the last signal received since `install`, or 0.
pub fn last_signal() -> i32 {
    LAST_SIGNAL.load(Ordering::SeqCst) as i32
}

/// The master's traps while a run is active, and the handlers they replaced.
pub struct Traps {
    previous: RArray,
}

fn signal_module(ruby: &Ruby) -> Result<RModule, Error> {
    ruby.class_object().const_get("Signal")
}

/// The master's trap: records the signal and wakes the loop; raises out of
/// a fork under way when it gives the fork up.
fn master_handler(
    ruby: &Ruby,
    args: &[Value],
    _block: Option<magnus::block::Proc>,
) -> Result<(), Error> {
    let signo = args
        .first()
        .and_then(|value| i64::try_convert(*value).ok())
        .unwrap_or(0);
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != MASTER_PID.load(Ordering::SeqCst) {
        // A worker forked a moment ago, its own traps not yet installed:
        // it must not act for the master (nor raise out of its fork).
        obey_early(signo as libc::c_int);
        return Ok(());
    }
    match signo as libc::c_int {
        libc::SIGTTIN => {
            MORE_WORKERS.fetch_add(1, Ordering::SeqCst);
        }
        libc::SIGTTOU => {
            FEWER_WORKERS.fetch_add(1, Ordering::SeqCst);
        }
        libc::SIGURG => {
            if abandon(Abandoned::Stuck) {
                return Err(divvy_error(ruby, "fork given up: it keeps failing"));
            }
        }
        signo => {
            LAST_SIGNAL.store(signo as usize, Ordering::SeqCst);
            let counter = if signo == libc::SIGTERM {
                &TERMINATES
            } else {
                &INTERRUPTS
            };
            counter.fetch_add(1, Ordering::SeqCst);
            wake();
            if abandon(Abandoned::Interrupted) {
                return Err(divvy_error(ruby, "fork given up: a signal came"));
            }
        }
    }
    wake();
    Ok(())
}

impl Traps {
    /// Traps INT, QUIT, TERM, TTIN, TTOU and URG in the master for the
    /// duration of a run, and forgets the signals of earlier runs. Runs in the
    /// master.
    ///
    /// Returns the guard that `restore` uses; raises what `Signal.trap`
    /// raises (it refuses in a non-main Ractor).
    pub fn install(ruby: &Ruby) -> Result<Traps, Error> {
        for counter in [
            &INTERRUPTS,
            &TERMINATES,
            &LAST_SIGNAL,
            &MORE_WORKERS,
            &FEWER_WORKERS,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
        // SAFETY: getpid has no preconditions.
        MASTER_PID.store(unsafe { libc::getpid() }, Ordering::SeqCst);
        let signal = signal_module(ruby)?;
        let handler = ruby.proc_new(master_handler);
        let previous = ruby.ary_new();
        for name in MASTER_SIGNALS {
            let old: Value = signal.funcall("trap", (name, handler))?;
            previous.push((name, old))?;
        }
        Ok(Traps { previous })
    }

    /// Puts back the handlers `install` replaced.
    ///
    /// Raises what `Signal.trap` raises.
    pub fn restore(self, ruby: &Ruby) -> Result<(), Error> {
        let signal = signal_module(ruby)?;
        for pair in self.previous.into_iter() {
            let (name, old): (Value, Value) = magnus::TryConvert::try_convert(pair)?;
            let _: Value = signal.funcall("trap", (name, old))?;
        }
        Ok(())
    }
}
