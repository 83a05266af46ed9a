//! Signal handling, in one place. Handlers only record the signal and wake
//! the loop; the loop decides what a signal means (see docs/SIGNALS.md).
//!
//! Master: the first INT or QUIT drains (no new items, in-flight items
//! finish); a second INT or QUIT, or any TERM, stops at once; TTIN adds a
//! worker and TTOU removes one (after its current items).
//! Worker: INT and QUIT let the current item finish, then the worker leaves;
//! TERM kills it at once; TTIN and TTOU are ignored.

use std::sync::atomic::{AtomicUsize, Ordering};

use magnus::{prelude::*, Error, RArray, RModule, Ruby, Value};

use crate::wake::wake;

/// The signals the master traps while `Master#run` runs.
pub const MASTER_SIGNALS: [&str; 5] = ["INT", "QUIT", "TERM", "TTIN", "TTOU"];

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static TERMINATES: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static MORE_WORKERS: AtomicUsize = AtomicUsize::new(0);
static FEWER_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// How a run is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    No,
    /// Send nothing new; let in-flight items finish.
    Drain,
    /// Kill the workers now.
    Abort,
}

/// Decides how to stop after `interrupts` INT/QUIT and `terminates` TERM
/// signals.
pub fn decide(interrupts: usize, terminates: usize) -> Stop {
    if terminates > 0 || interrupts > 1 {
        Stop::Abort
    } else if interrupts == 1 {
        Stop::Drain
    } else {
        Stop::No
    }
}

/// Returns how the signals received since `install` ask the run to stop.
pub fn requested_stop() -> Stop {
    decide(
        INTERRUPTS.load(Ordering::SeqCst),
        TERMINATES.load(Ordering::SeqCst),
    )
}

/// Returns how many workers TTIN asked to add and TTOU to remove since the
/// last call.
pub fn take_resizes() -> (usize, usize) {
    (
        MORE_WORKERS.swap(0, Ordering::SeqCst),
        FEWER_WORKERS.swap(0, Ordering::SeqCst),
    )
}

/// Returns the number of the last signal received since `install`, or 0.
pub fn last_signal() -> i32 {
    LAST_SIGNAL.load(Ordering::SeqCst) as i32
}

/// A signal trap written in Rust: receives the signal number as its only
/// argument.
pub type TrapHandler = fn(&Ruby, &[Value], Option<magnus::block::Proc>) -> Result<(), Error>;

/// The master's traps while a run is active, and the handlers they replaced.
pub struct Traps {
    previous: RArray,
}

fn signal_module(ruby: &Ruby) -> Result<RModule, Error> {
    ruby.class_object().const_get("Signal")
}

fn master_handler(
    _ruby: &Ruby,
    args: &[Value],
    _block: Option<magnus::block::Proc>,
) -> Result<(), Error> {
    let signo = args
        .first()
        .and_then(|value| i64::try_convert(*value).ok())
        .unwrap_or(0);
    match signo as libc::c_int {
        libc::SIGTTIN => {
            MORE_WORKERS.fetch_add(1, Ordering::SeqCst);
        }
        libc::SIGTTOU => {
            FEWER_WORKERS.fetch_add(1, Ordering::SeqCst);
        }
        signo => {
            LAST_SIGNAL.store(signo as usize, Ordering::SeqCst);
            let counter = if signo == libc::SIGTERM {
                &TERMINATES
            } else {
                &INTERRUPTS
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
    wake();
    Ok(())
}

impl Traps {
    /// Traps INT, QUIT and TERM in the master for the duration of a run.
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

/// Installs a worker's traps: INT and QUIT call `on_interrupt`, TERM kills
/// the process at once. Runs in the worker, right after the fork, before
/// `after_fork` (which may install its own).
///
/// Raises what `Signal.trap` raises.
pub fn install_worker_traps(ruby: &Ruby, on_interrupt: TrapHandler) -> Result<(), Error> {
    let signal = signal_module(ruby)?;
    let handler = ruby.proc_new(on_interrupt);
    let _: Value = signal.funcall("trap", ("INT", handler))?;
    let _: Value = signal.funcall("trap", ("QUIT", handler))?;
    let _: Value = signal.funcall("trap", ("TERM", "SYSTEM_DEFAULT"))?;
    let _: Value = signal.funcall("trap", ("TTIN", "IGNORE"))?;
    let _: Value = signal.funcall("trap", ("TTOU", "IGNORE"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_interrupt_drains_two_abort() {
        assert_eq!(decide(0, 0), Stop::No);
        assert_eq!(decide(1, 0), Stop::Drain);
        assert_eq!(decide(2, 0), Stop::Abort);
    }

    #[test]
    fn terminate_aborts_at_once() {
        assert_eq!(decide(0, 1), Stop::Abort);
        assert_eq!(decide(1, 1), Stop::Abort);
    }
}
