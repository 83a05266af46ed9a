//! The timer `os::SignalTimer` falls back to: a thread that waits for the
//! deadline and sends the signal. The portable build's timer, and the Linux
//! one's where the kernel will not make a timer.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A thread that sends its signal when the deadline it is given passes.
pub struct ThreadTimer {
    shared: Arc<TimerState>,
    thread: Option<JoinHandle<()>>,
}

/// What the timer's thread shares with its owner.
struct TimerState {
    signal: libc::c_int,
    schedule: Mutex<Schedule>,
    changed: Condvar,
}

/// When the signal is due (if armed), and whether the timer is dropped.
struct Schedule {
    due: Option<Instant>,
    ended: bool,
}

impl ThreadTimer {
    /// Starts the thread, unarmed. Returns the OS error when no thread
    /// can be started.
    pub fn new(signal: libc::c_int) -> io::Result<ThreadTimer> {
        let shared = Arc::new(TimerState {
            signal,
            schedule: Mutex::new(Schedule {
                due: None,
                ended: false,
            }),
            changed: Condvar::new(),
        });
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(String::from("divvy-timer"))
            .spawn(move || state.wait_and_signal())?;
        Ok(ThreadTimer {
            shared,
            thread: Some(thread),
        })
    }

    /// Arms the timer for `after`, or disarms it with `None`.
    pub fn set(&self, after: Option<Duration>) {
        let due = after.map(|after| Instant::now() + after);
        self.shared.update(|schedule| schedule.due = due);
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        self.shared.update(|schedule| schedule.ended = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TimerState {
    /// Changes the schedule with `change`, and wakes the thread.
    fn update(&self, change: impl FnOnce(&mut Schedule)) {
        if let Ok(mut schedule) = self.schedule.lock() {
            change(&mut schedule);
        }
        self.changed.notify_one();
    }

    /// The thread's loop, until the timer is dropped: sleeps until the
    /// signal is due, then sends it and disarms.
    fn wait_and_signal(&self) {
        let Ok(mut schedule) = self.schedule.lock() else {
            return;
        };
        while !schedule.ended {
            let wait = match schedule.due {
                Some(due) if due <= Instant::now() => {
                    schedule.due = None;
                    // SAFETY: kill has no memory effects.
                    unsafe { libc::kill(libc::getpid(), self.signal) };
                    continue;
                }
                Some(due) => due - Instant::now(),
                None => Duration::from_secs(3600),
            };
            schedule = match self.changed.wait_timeout(schedule, wait) {
                Ok((guard, _)) => guard,
                Err(_) => return,
            };
        }
    }
}
