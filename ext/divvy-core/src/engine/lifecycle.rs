//! The life of the pool's processes: starting each worker once, replacing
//! those that exit while the run goes on, and resizing the pool (TTIN adds
//! a worker, TTOU removes the last after its current items).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::Occupant;
use super::{Action, Engine, Fatal};
use crate::wire::link::Link;

/// How long the master waits, after a fork failed, before it tries again.
const FORK_BACKOFF: Duration = Duration::from_secs(5);

impl Engine {
    /// Records that process `pid` was forked into slot `index`, with the
    /// master's ends of its pipes, and counts it (as a respawn when a
    /// process ran in the slot before, this run).
    pub fn started(&mut self, index: usize, pid: i32, link: Option<Link>) {
        let worker = self.pool.worker_mut(index);
        let respawn = worker.ran();
        worker.started(pid, link);
        self.fork_blocked_until = None;
        self.board.spawned.add(1);
        if respawn {
            self.board.respawned.add(1);
        }
    }

    /// Records that forking a worker into slot `index` failed at `now` for
    /// `reason`: the run goes on with the workers it has, and tries again
    /// later; with none, it cannot go on.
    pub fn fork_failed(
        &mut self,
        index: usize,
        reason: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let running = self.pool.alive().count();
        if running == 0 {
            self.fatal = Some(Fatal::ForkFailure(format!(
                "cannot fork a worker, and none runs: {reason}"
            )));
            return;
        }
        if self.fork_blocked_until.is_none() {
            actions.push(Action::Say(format!(
                "cannot fork worker {}: {reason}; going on with {running} worker{}",
                index + 1,
                if running == 1 { "" } else { "s" }
            )));
        }
        self.fork_blocked_until = Some(now + FORK_BACKOFF);
    }

    /// True while forks wait after one failed.
    fn forks_blocked(&self, now: Instant) -> bool {
        self.fork_blocked_until.is_some_and(|until| now < until)
    }

    /// Returns the slots to fork a process into at `now`, while the run goes
    /// on and forks are not waiting after a failure: every one whose
    /// process exited, and one that never ran (the first workers then work
    /// while the others fork).
    pub fn due_spawns(&self, now: Instant) -> Vec<usize> {
        if !self.goes_on() || self.forks_blocked(now) {
            return Vec::new();
        }
        let limit = self.board.worker_count();
        let mut due: Vec<usize> = self.pool.replaceable(limit).collect();
        due.extend(self.pool.first_unstarted(limit));
        due
    }

    /// When forks may be tried again after one failed, while some are due.
    pub(super) fn forks_resume_at(&self) -> Option<Instant> {
        self.fork_blocked_until.filter(|_| self.goes_on())
    }

    /// Returns a slot that never ran this run, unless the run is stopping:
    /// every worker runs once, even when `dispatch` yields fewer items than
    /// there are workers.
    pub fn next_unstarted(&self, now: Instant) -> Option<usize> {
        let going = self.stop == super::stop::Stop::No
            && self.halted.is_none()
            && self.fatal.is_none()
            && !self.closing
            && !self.forks_blocked(now);
        going
            .then(|| self.pool.first_unstarted(self.board.worker_count()))
            .flatten()
    }

    /// Obeys `more` TTIN (one more worker each) and `fewer` TTOU (one fewer
    /// each, after the last worker's current items; never below one).
    ///
    /// Returns the Ruby views of the slots added; the OS error of closing
    /// an item pipe.
    pub fn resize(
        &mut self,
        more: usize,
        fewer: usize,
        actions: &mut Vec<Action>,
    ) -> io::Result<Vec<Arc<Occupant>>> {
        let mut added = Vec::new();
        for _ in 0..more {
            let count = self.board.worker_count() + 1;
            self.board.set_worker_count(count);
            if count > self.pool.len() {
                added.push(self.pool.grow());
            }
            actions.push(Action::Notice(format!("TTIN: {count} workers")));
        }
        for _ in 0..fewer {
            let count = self.board.worker_count();
            if count <= 1 {
                actions.push(Action::Notice(String::from(
                    "TTOU ignored: one worker left",
                )));
                continue;
            }
            self.board.set_worker_count(count - 1);
            let worker = self.pool.worker_mut(count - 1);
            worker.leave();
            if let Some(link) = worker.link_mut() {
                link.close_items()?;
            }
            actions.push(Action::Notice(format!("TTOU: {} workers", count - 1)));
        }
        Ok(added)
    }

    /// Drops the slots past the worker count once their processes are
    /// gone.
    ///
    /// Returns how many slots remain.
    pub fn trim(&mut self) -> usize {
        self.pool.shrink(self.board.worker_count());
        self.pool.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::stop::Stop;
    use crate::engine::tests::{booted, engine};
    use crate::engine::worker::tests::at;

    #[test]
    fn starts_one_new_worker_per_turn_and_replaces_the_dead() {
        let mut engine = engine(3, RunOptions::default());
        assert_eq!(engine.due_spawns(at(0)), [0]);
        engine.started(0, 10, None);
        assert_eq!(engine.due_spawns(at(0)), [1]);
        engine.started(1, 11, None);
        engine.forget(0, at(0), &mut Vec::new());
        assert_eq!(engine.due_spawns(at(0)), [0, 2]);
        engine.started(0, 12, None);
        assert_eq!(
            (engine.board.spawned.get(), engine.board.respawned.get()),
            (3, 1)
        );
        engine.request_stop(Stop::Drain);
        assert_eq!(engine.due_spawns(at(0)), Vec::<usize>::new());
        assert_eq!(engine.next_unstarted(at(0)), None);
    }

    #[test]
    fn ttin_adds_a_slot_and_ttou_retires_the_last_never_the_only_one() {
        let mut engine = booted(1, RunOptions::default());
        let mut actions = Vec::new();
        let added = engine.resize(1, 0, &mut actions).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(engine.pool().len(), 2);
        assert_eq!(engine.due_spawns(at(0)), [1]);
        engine.started(1, 20, None);
        engine.resize(0, 2, &mut actions).unwrap();
        assert_eq!(engine.board.worker_count(), 1);
        assert_eq!(
            actions,
            [
                Action::Notice(String::from("TTIN: 2 workers")),
                Action::Notice(String::from("TTOU: 1 workers")),
                Action::Notice(String::from("TTOU ignored: one worker left")),
            ]
        );
        assert_eq!(engine.trim(), 2, "worker 2 is still leaving");
        engine.forget(1, at(0), &mut Vec::new());
        assert_eq!(engine.trim(), 1);
    }

    #[test]
    fn a_failed_fork_is_reported_once_and_tried_again_later() {
        let mut engine = engine(3, RunOptions::default());
        let mut actions = Vec::new();
        engine.fork_failed(0, "no more processes", at(0), &mut actions);
        assert_eq!(
            engine.fatal(),
            Some(&Fatal::ForkFailure(String::from(
                "cannot fork a worker, and none runs: no more processes"
            )))
        );
        let mut engine = engine_with_one_worker();
        engine.fork_failed(1, "EAGAIN", at(0), &mut actions);
        engine.fork_failed(1, "EAGAIN", at(10), &mut actions);
        assert_eq!(
            actions,
            [Action::Say(String::from(
                "cannot fork worker 2: EAGAIN; going on with 1 worker"
            ))]
        );
        assert_eq!(engine.due_spawns(at(100)), Vec::<usize>::new());
        assert_eq!(engine.next_unstarted(at(100)), None);
        assert_eq!(engine.forks_resume_at(), Some(at(10) + FORK_BACKOFF));
        assert_eq!(engine.due_spawns(at(10) + FORK_BACKOFF), [1]);
        assert_eq!(engine.fatal(), None);
    }

    fn engine_with_one_worker() -> Engine {
        let mut engine = engine(3, RunOptions::default());
        engine.started(0, 10, None);
        engine
    }
}
