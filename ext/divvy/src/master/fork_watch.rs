//! Watching `Process.fork`: when fork(2) fails with EAGAIN (a process
//! limit reached), Ruby sleeps a second and tries again, forever, and runs
//! the master's traps in between without leaving. A watchdog thread sends
//! the master SIGURG once a fork has taken too long, and the master's traps
//! (URG, and INT, QUIT, TERM while a fork is under way) raise out of it, so
//! that a fork that keeps failing is reported and signals are obeyed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a fork may take before it is given up: Ruby's first retry after
/// EAGAIN comes a second after the failure.
const PATIENCE: Duration = Duration::from_millis(2500);

/// True while the master is inside `Process.fork`.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Why a trap raised out of the fork under way, if one did.
static ABANDONED: AtomicU8 = AtomicU8::new(0);

/// Why a fork was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// It took longer than the patience: fork(2) keeps failing.
    Stuck = 1,
    /// A signal asked the run to stop meanwhile.
    Interrupted = 2,
}

/// The watchdog's deadline, the condition it waits on, and whether it
/// should end.
struct Watchdog {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
    done: AtomicBool,
}

/// A run's fork watchdog: a thread that sends the master SIGURG when a
/// fork outlasts the patience. It ends with the run.
pub struct ForkWatch {
    watchdog: Arc<Watchdog>,
    thread: Option<JoinHandle<()>>,
}

impl ForkWatch {
    /// Starts the watchdog thread. Runs in the master, as a run begins.
    ///
    /// Returns the OS error when no thread can be started: then no fork
    /// could be watched either (both count against the same limits).
    pub fn start() -> io::Result<ForkWatch> {
        let watchdog = Arc::new(Watchdog {
            deadline: Mutex::new(None),
            changed: Condvar::new(),
            done: AtomicBool::new(false),
        });
        let shared = Arc::clone(&watchdog);
        let thread = std::thread::Builder::new()
            .name(String::from("divvy-fork-watch"))
            .spawn(move || run(&shared))?;
        Ok(ForkWatch {
            watchdog,
            thread: Some(thread),
        })
    }

    /// Arms the watchdog for the fork about to be made. Runs in the master.
    pub fn watch(&self) -> Watch<'_> {
        ABANDONED.store(0, Ordering::SeqCst);
        FORKING.store(true, Ordering::SeqCst);
        self.set_deadline(Some(Instant::now() + PATIENCE));
        Watch(self)
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        if let Ok(mut guard) = self.watchdog.deadline.lock() {
            *guard = deadline;
        }
        self.watchdog.changed.notify_one();
    }
}

impl Drop for ForkWatch {
    fn drop(&mut self) {
        self.watchdog.done.store(true, Ordering::SeqCst);
        self.set_deadline(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Marks a fork under way (with the watchdog armed) while it lives.
pub struct Watch<'a>(&'a ForkWatch);

impl Watch<'_> {
    /// Ends the watch in the master, once the fork returned or raised.
    ///
    /// Returns why a trap raised out of the fork, if one did.
    pub fn end(self) -> Option<Abandoned> {
        FORKING.store(false, Ordering::SeqCst);
        self.0.set_deadline(None);
        match ABANDONED.swap(0, Ordering::SeqCst) {
            1 => Some(Abandoned::Stuck),
            2 => Some(Abandoned::Interrupted),
            _ => None,
        }
    }

    /// Ends the watch in the worker, which the watchdog thread is not part
    /// of and whose lock it must not touch.
    pub fn end_in_child(self) {
        FORKING.store(false, Ordering::SeqCst);
    }
}

/// Records that a trap gives up the fork under way for `why`.
///
/// Returns true when a fork is under way, so the trap should raise.
pub fn abandon(why: Abandoned) -> bool {
    let forking = FORKING.load(Ordering::SeqCst);
    if forking {
        ABANDONED.store(why as u8, Ordering::SeqCst);
    }
    forking
}

/// The watchdog thread's loop, until the run ends. It needs no Ruby.
fn run(watchdog: &Watchdog) {
    let Ok(mut deadline) = watchdog.deadline.lock() else {
        return;
    };
    while !watchdog.done.load(Ordering::SeqCst) {
        let wait = match *deadline {
            Some(at) if at <= Instant::now() => {
                *deadline = None;
                // SAFETY: kill has no memory effects; the master's URG trap
                // decides what it means.
                unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
                continue;
            }
            Some(at) => at - Instant::now(),
            None => Duration::from_secs(3600),
        };
        deadline = match watchdog.changed.wait_timeout(deadline, wait) {
            Ok((guard, _)) => guard,
            Err(_) => return,
        };
    }
}
