//! Time in a run: the timeout on one item's `perform`, the TERM-then-KILL
//! schedule of a worker being stopped, and how long the master may wait
//! for something to happen.

use std::time::{Duration, Instant};

use super::{Action, Engine};

/// How long a worker stopped for a timeout, or what a reaped worker left
/// running, gets between TERM and KILL.
pub(super) const TIMEOUT_GRACE: Duration = Duration::from_secs(1);
/// How long workers get between TERM and KILL when the run stops at once.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often live workers are checked for an exit their pipes did not show.
const REAP_INTERVAL: Duration = Duration::from_millis(250);
/// How soon a worker whose answer pipe hung up, or the group of a reaped
/// worker, is checked again: it is exiting.
const HUNG_UP_INTERVAL: Duration = Duration::from_millis(5);
/// How long a worker may live on after closing its answer pipe before it
/// is stopped: one that closed it can no longer answer.
const HUNG_UP_GRACE: Duration = Duration::from_secs(1);

impl Engine {
    /// Stops workers whose item overran the timeout (TERM now, KILL after a
    /// grace period) and kills those whose grace is over, and what reaped
    /// workers left behind once its grace is over; the item is reported
    /// when the worker is reaped.
    pub fn on_tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.lingering.retain(|(pgid, kill_at)| {
            let alive = crate::os::group_alive(*pgid);
            if alive && *kill_at <= now {
                actions.push(Action::Signal {
                    pid: *pgid,
                    signal: libc::SIGKILL,
                });
            }
            alive && *kill_at > now
        });
        if let Some(timeout) = self.options.timeout {
            for index in self.pool.overdue(now, timeout) {
                let worker = self.pool.worker_mut(index);
                worker.time_out();
                terminate(worker, now + TIMEOUT_GRACE, actions);
            }
        }
        for worker in self.pool.workers_mut() {
            let stuck = worker
                .hung_up_for(now)
                .is_some_and(|hung_up| hung_up >= HUNG_UP_GRACE);
            if stuck && worker.kill_deadline().is_none() {
                actions.push(Action::Say(format!(
                    "{} closed its answer pipe but lives on; stopping it",
                    worker.who()
                )));
                terminate(worker, now + TIMEOUT_GRACE, actions);
            }
            if worker.take_kill_due(now) {
                worker.signal(libc::SIGKILL, actions);
            }
        }
    }

    /// Stops every live worker: TERM now, KILL once the grace is over (see
    /// `on_tick`).
    pub fn terminate_all(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for worker in self.pool.workers_mut() {
            if worker.is_alive() {
                terminate(worker, now + TERM_GRACE, actions);
            }
        }
    }

    /// How long the master may wait at `now` before something is due: no
    /// time while workers are still to start (they start one per turn), a
    /// few milliseconds while a worker that hung up is still to be reaped,
    /// else until the next check for exits, bounded by the next deadline.
    pub fn wait_bound(&self, now: Instant) -> Duration {
        let limit = self.board.worker_count();
        let starting = self.goes_on()
            && self.forks_resume_at().is_none_or(|at| at <= now)
            && self.pool.first_unstarted(limit).is_some();
        let hung_up = !self.lingering.is_empty()
            || self
                .pool
                .workers()
                .any(|worker| worker.link().is_some_and(|link| link.hung_up()));
        let wait = if starting {
            Duration::ZERO
        } else if hung_up {
            HUNG_UP_INTERVAL
        } else {
            REAP_INTERVAL
        };
        let deadline = self.pool.next_deadline(self.options.timeout);
        match deadline.into_iter().chain(self.forks_resume_at()).min() {
            Some(deadline) => wait.min(deadline.saturating_duration_since(now)),
            None => wait,
        }
    }

    /// True while workers' processes, or what reaped workers left running,
    /// may still be alive.
    pub fn any_running(&self) -> bool {
        self.any_alive() || !self.lingering.is_empty()
    }

    /// Sends `signal` (an INT or QUIT the master received) on to every live
    /// worker's group, as a terminal would have: workers in groups of
    /// their own do not get the terminal's signals.
    pub fn forward(&mut self, signal: i32, actions: &mut Vec<Action>) {
        for worker in self.pool.workers_mut() {
            worker.signal(signal, actions);
        }
    }

    /// Returns the workers to check for an exit, with their pids: those
    /// whose answer pipe hung up, or every live one when `check_all` (a
    /// signal such as SIGCHLD or a deadline woke the master) or when none
    /// was checked for a while.
    pub fn reap_candidates(&mut self, check_all: bool, now: Instant) -> Vec<(usize, i32)> {
        let all = check_all || now.saturating_duration_since(self.last_full_reap) >= REAP_INTERVAL;
        if all {
            self.last_full_reap = now;
        }
        self.pool
            .workers()
            .enumerate()
            .filter(|(_, worker)| all || worker.link().is_some_and(|link| link.hung_up()))
            .filter_map(|(index, worker)| worker.pid().map(|pid| (index, pid)))
            .collect()
    }
}

/// Sends `worker` TERM and schedules its KILL at `kill_at`.
fn terminate(worker: &mut super::worker::Worker, kill_at: Instant, actions: &mut Vec<Action>) {
    worker.kill_at(kill_at);
    worker.signal(libc::SIGTERM, actions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::tests::booted;
    use crate::engine::worker::tests::{at, item};

    fn signals(actions: &[Action]) -> Vec<(i32, i32)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Signal { pid, signal } => Some((*pid, *signal)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_overdue_worker_gets_term_then_kill_after_the_grace() {
        let options = RunOptions {
            timeout: Some(Duration::from_millis(100)),
            ..RunOptions::default()
        };
        let mut engine = booted(2, options);
        engine.pool.worker_mut(0).assign(item(0), at(0));
        let mut actions = Vec::new();
        engine.on_tick(at(99), &mut actions);
        assert!(actions.is_empty());
        engine.on_tick(at(100), &mut actions);
        assert_eq!(signals(&actions), [(5_000_000, libc::SIGTERM)]);
        assert!(engine.pool().worker(0).timed_out());
        assert_eq!(
            engine.wait_bound(at(1000)),
            Duration::from_millis(100),
            "until its KILL"
        );
        actions.clear();
        engine.on_tick(at(600), &mut actions);
        assert!(actions.is_empty(), "TERM is sent once");
        engine.on_tick(at(1100), &mut actions);
        assert_eq!(signals(&actions), [(5_000_000, libc::SIGKILL)]);
    }

    #[test]
    fn stopping_at_once_terms_every_live_worker() {
        let mut engine = booted(2, RunOptions::default());
        let mut actions = Vec::new();
        engine.forget(1, at(0), &mut actions);
        actions.clear();
        engine.terminate_all(at(0), &mut actions);
        assert_eq!(signals(&actions), [(5_000_000, libc::SIGTERM)]);
        actions.clear();
        engine.on_tick(at(0) + TERM_GRACE, &mut actions);
        assert_eq!(signals(&actions), [(5_000_000, libc::SIGKILL)]);
    }

    #[test]
    fn waits_no_time_while_workers_are_to_start() {
        let mut engine = booted(1, RunOptions::default());
        assert_eq!(engine.wait_bound(at(0)), REAP_INTERVAL);
        engine.board.set_worker_count(2);
        engine.pool.grow();
        assert_eq!(engine.wait_bound(at(0)), Duration::ZERO);
    }

    #[test]
    fn checks_every_live_worker_now_and_then() {
        let mut engine = booted(2, RunOptions::default());
        engine.last_full_reap = at(0);
        assert_eq!(engine.reap_candidates(false, at(10)), []);
        assert_eq!(
            engine.reap_candidates(true, at(20)),
            [(0, 5_000_000), (1, 5_000_001)]
        );
        assert_eq!(engine.reap_candidates(false, at(30)), []);
        assert_eq!(engine.reap_candidates(false, at(300)).len(), 2);
    }
}
