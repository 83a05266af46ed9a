//! Watching `Process.fork`: when fork(2) fails with EAGAIN (a process
//! limit reached), Ruby sleeps a second and tries again, forever, and runs
//! the master's traps in between without leaving. A timer sends the master
//! SIGURG once a fork has taken too long, and the master's traps (URG, and
//! INT, QUIT, TERM while a fork is under way) raise out of it, so that a
//! fork that keeps failing is reported and signals are obeyed.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use divvy_core::os::SignalTimer;

/// How long a fork may take before it is given up: Ruby's first retry after
/// EAGAIN comes a second after the failure.
const PATIENCE: Duration = Duration::from_millis(2500);

/// Why a trap raised out of the fork under way, if one did.
static ABANDONED: AtomicU8 = AtomicU8::new(0);
/// While the master is inside `Process.fork`, when that fork outlasts the
/// patience: a SIGURG before then came from elsewhere.
static DUE: Mutex<Option<Instant>> = Mutex::new(None);

/// Why a fork was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// It took longer than the patience: fork(2) keeps failing.
    Stuck = 1,
    /// A signal asked the run to stop meanwhile.
    Interrupted = 2,
}

/// A run's fork watch: the timer that sends the master SIGURG when a fork
/// outlasts the patience. It ends with the run.
pub struct ForkWatch {
    timer: SignalTimer,
}

impl ForkWatch {
    /// Makes the timer, unarmed. Runs in the master, as a run begins.
    ///
    /// Returns the OS error when no timer can be made: a limit is reached,
    /// and no fork could be watched.
    pub fn start() -> io::Result<ForkWatch> {
        let timer = SignalTimer::new(libc::SIGURG)?;
        Ok(ForkWatch { timer })
    }

    /// Arms the timer for the fork about to be made. Runs in the master.
    pub fn watch(&self) -> Watch<'_> {
        ABANDONED.store(0, Ordering::SeqCst);
        set_due(Some(Instant::now() + PATIENCE));
        self.timer.arm(PATIENCE);
        Watch(self)
    }
}

/// Marks a fork under way (with the timer armed) while it lives.
pub struct Watch<'a>(&'a ForkWatch);

impl Watch<'_> {
    /// Ends the watch in the master, once the fork returned or raised.
    ///
    /// Returns why a trap raised out of the fork, if one did.
    pub fn end(self) -> Option<Abandoned> {
        set_due(None);
        self.0.timer.disarm();
        match ABANDONED.swap(0, Ordering::SeqCst) {
            1 => Some(Abandoned::Stuck),
            2 => Some(Abandoned::Interrupted),
            _ => None,
        }
    }

    /// Ends the watch in the worker, which has no timer (a fork does not
    /// inherit it).
    pub fn end_in_child(self) {
        set_due(None);
    }
}

/// Records that a trap gives up the fork under way for `why`: for any
/// signal that stops the run, and for the timer's once the fork is overdue
/// (a SIGURG from elsewhere comes earlier).
///
/// Returns true when it gave the fork up, so the trap should raise.
pub fn abandon(why: Abandoned) -> bool {
    let due = *DUE.lock().unwrap_or_else(PoisonError::into_inner);
    let gives_up = due.is_some_and(|due| why != Abandoned::Stuck || Instant::now() >= due);
    if gives_up {
        ABANDONED.store(why as u8, Ordering::SeqCst);
    }
    gives_up
}

/// Sets when the fork under way is overdue (`None`: no fork is).
fn set_due(due: Option<Instant>) {
    *DUE.lock().unwrap_or_else(PoisonError::into_inner) = due;
}
