//! The life of the pool's processes: starting each worker once, replacing
//! those that exit while the run goes on, and resizing the pool (TTIN adds
//! a worker, TTOU removes the last after its current items).

use std::io;
use std::sync::Arc;

use super::worker::Occupant;
use super::{Action, Engine};
use crate::wire::link::Link;

impl Engine {
    /// Records that process `pid` was forked into slot `index`, with the
    /// master's ends of its pipes, and counts it (as a respawn when a
    /// process ran in the slot before, this run).
    pub fn started(&mut self, index: usize, pid: i32, link: Option<Link>) {
        let worker = self.pool.worker_mut(index);
        let respawn = worker.ran();
        worker.started(pid, link);
        self.board.spawned.add(1);
        if respawn {
            self.board.respawned.add(1);
        }
    }

    /// Returns the slots to fork a process into now, while the run goes on:
    /// every one whose process exited, and one that never ran (the first
    /// workers then work while the others fork).
    pub fn due_spawns(&self) -> Vec<usize> {
        if !self.goes_on() {
            return Vec::new();
        }
        let limit = self.board.worker_count();
        let mut due: Vec<usize> = self.pool.replaceable(limit).collect();
        due.extend(self.pool.first_unstarted(limit));
        due
    }

    /// Returns a slot that never ran this run, unless the run is stopping:
    /// every worker runs once, even when `dispatch` yields fewer items than
    /// there are workers.
    pub fn next_unstarted(&self) -> Option<usize> {
        let going = self.stop == super::stop::Stop::No && self.fatal.is_none() && !self.closing;
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

    #[test]
    fn starts_one_new_worker_per_turn_and_replaces_the_dead() {
        let mut engine = engine(3, RunOptions::default());
        assert_eq!(engine.due_spawns(), [0]);
        engine.started(0, 10, None);
        assert_eq!(engine.due_spawns(), [1]);
        engine.started(1, 11, None);
        engine.forget(0, crate::engine::worker::tests::at(0), &mut Vec::new());
        assert_eq!(engine.due_spawns(), [0, 2]);
        engine.started(0, 12, None);
        assert_eq!(
            (engine.board.spawned.get(), engine.board.respawned.get()),
            (3, 1)
        );
        engine.request_stop(Stop::Drain);
        assert_eq!(engine.due_spawns(), Vec::<usize>::new());
        assert_eq!(engine.next_unstarted(), None);
    }

    #[test]
    fn ttin_adds_a_slot_and_ttou_retires_the_last_never_the_only_one() {
        let mut engine = booted(1, RunOptions::default());
        let mut actions = Vec::new();
        let added = engine.resize(1, 0, &mut actions).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(engine.pool().len(), 2);
        assert_eq!(engine.due_spawns(), [1]);
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
        engine.forget(1, crate::engine::worker::tests::at(0), &mut Vec::new());
        assert_eq!(engine.trim(), 1);
    }
}
