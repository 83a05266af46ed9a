//! Which worker gets the next items, and how a run stops sending them.

use std::io;
use std::time::Instant;

use super::item::Item;
use super::{Action, Engine};
use crate::wire::payload::Payload;

/// How many payload buffers are kept for reuse: enough for the items two
/// fast workers hold at once.
const SPARE_BUFFERS: usize = 1024;
/// Buffers larger than this are not kept: the reuse is for small items.
const SPARE_BUFFER_BYTES: usize = 4096;

impl Engine {
    /// Returns a buffer for a new item's payload, recycled when one is
    /// spare.
    pub fn spare_buffer(&mut self) -> Vec<u8> {
        self.spare_buffers.pop().unwrap_or_default()
    }

    /// Settles a performed item that needs nothing more: its buffer is kept
    /// for a new item, and the master hears of a kept one.
    pub(super) fn settled(&mut self, item: Item, actions: &mut Vec<Action>) {
        if item.kept {
            actions.push(Action::Settled { index: item.index });
        }
        self.recycle(item.payload);
    }

    /// Drops `item`, which a resumed run skips (its job log recorded it):
    /// counts it as skipped and keeps its buffer for a new item.
    pub fn skip(&mut self, item: Item) {
        self.board.skipped.add(1);
        self.recycle(item.payload);
    }

    /// Keeps the buffer of a performed item's payload for a new item.
    fn recycle(&mut self, payload: Payload) {
        let buffer = payload.into_buffer();
        if self.spare_buffers.len() < SPARE_BUFFERS && buffer.capacity() <= SPARE_BUFFER_BYTES {
            self.spare_buffers.push(buffer);
        }
    }

    /// Sends an item `dispatch` yielded to the least loaded ready worker and
    /// counts it as sent.
    ///
    /// Returns the item back when every worker is full, booting or down;
    /// the OS error of a failed write.
    pub fn dispatch(
        &mut self,
        item: Item,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> io::Result<Option<Item>> {
        let unsent = self.place(item, now, actions)?;
        if unsent.is_none() {
            self.board.sent.add(1);
        }
        Ok(unsent)
    }

    /// Sends the queued items (handed back, or due for a retry) while
    /// workers have room, unless the run is stopping.
    ///
    /// Returns the OS error of a failed write.
    pub fn send_queued(&mut self, now: Instant, actions: &mut Vec<Action>) -> io::Result<()> {
        if !self.sends_new_items() {
            return Ok(());
        }
        while let Some(item) = self.queue.pop_front() {
            if let Some(item) = self.place(item, now, actions)? {
                self.queue.push_front(item);
                break;
            }
        }
        Ok(())
    }

    /// Sends `item` to the ready worker with the fewest unfinished items
    /// and room in its window; retires that worker once it was sent
    /// `max_items`.
    ///
    /// Returns the item back when no worker has room.
    fn place(
        &mut self,
        mut item: Item,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> io::Result<Option<Item>> {
        let index = match self.pool.least_loaded() {
            Some(index) => index,
            None => {
                // Workers may have finished items since their answers came.
                self.pool.observe_counters(now);
                match self.pool.least_loaded() {
                    Some(index) => index,
                    None => return Ok(Some(item)),
                }
            }
        };
        let worker = self.pool.worker_mut(index);
        item.sent_at = Some(now);
        worker.send(item, now)?;
        if self
            .options
            .max_items
            .is_some_and(|max| worker.assigned() >= max)
        {
            // Retired: it performs what it holds, reads end-of-file and
            // exits; a fresh worker takes its place.
            worker.leave();
            if let Some(link) = worker.link_mut() {
                link.close_items()?;
            }
            actions.push(Action::Notice(format!(
                "worker {} retires after {} items",
                worker.number(),
                worker.assigned()
            )));
        }
        Ok(None)
    }

    /// Lets every ready worker that holds nothing go; with retries, only
    /// once nothing can come back for a retry, since an idle worker that
    /// left would have to be forked again.
    ///
    /// Returns true while the run still has items to see through: some in
    /// flight, or queued while it goes on.
    pub fn wind_down(&mut self) -> io::Result<bool> {
        if self.queue.is_empty() && self.options.retries == 0 {
            self.release_idle()?;
        }
        Ok(self.pool.in_flight() > 0 || (!self.queue.is_empty() && self.sends_new_items()))
    }

    /// Closes the item pipe of every ready worker that holds nothing, so
    /// it exits after reading end-of-file.
    fn release_idle(&mut self) -> io::Result<()> {
        for worker in self.pool.workers_mut() {
            if worker.phase() == super::worker::Phase::Ready && worker.held_count() == 0 {
                worker.leave();
                if let Some(link) = worker.link_mut() {
                    link.close_items()?;
                }
            }
        }
        Ok(())
    }

    /// Ends the run's sending: no process starts any more, and every
    /// worker's item pipe is closed once what is queued for it is written.
    pub fn close_all(&mut self) -> io::Result<()> {
        self.closing = true;
        for worker in self.pool.workers_mut() {
            worker.leave();
            if let Some(link) = worker.link_mut() {
                link.close_items()?;
            }
        }
        Ok(())
    }

    /// True while a worker process is alive.
    pub fn any_alive(&self) -> bool {
        self.pool.alive().next().is_some()
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
    fn a_new_item_waits_until_a_worker_is_ready() {
        let mut engine = engine(2, RunOptions::default());
        let mut actions = Vec::new();
        let item = Item::new(0, Payload::from(vec![1]));
        let back = engine.dispatch(item, at(0), &mut actions).unwrap();
        assert!(back.is_some(), "no worker booted");
        assert_eq!(engine.board.sent.get(), 0);
        engine.started(0, 10, None);
        engine.pool.worker_mut(0).booted();
        assert_eq!(
            engine.dispatch(back.unwrap(), at(0), &mut actions).unwrap(),
            None
        );
        assert_eq!(engine.board.sent.get(), 1);
        assert_eq!(engine.pool().worker(0).held_count(), 1);
    }

    #[test]
    fn retires_a_worker_after_max_items() {
        let options = RunOptions {
            max_items: Some(1),
            ..RunOptions::default()
        };
        let mut engine = booted(2, options);
        let mut actions = Vec::new();
        let item = Item::new(0, Payload::default());
        engine.dispatch(item, at(0), &mut actions).unwrap();
        assert_eq!(
            actions,
            [Action::Notice(String::from(
                "worker 1 retires after 1 items"
            ))]
        );
        assert_eq!(
            engine.pool().least_loaded(),
            Some(1),
            "worker 1 takes no more"
        );
    }

    #[test]
    fn queued_items_wait_while_the_run_stops() {
        let mut engine = booted(1, RunOptions::default());
        let mut actions = Vec::new();
        let item = Item::new(0, Payload::default());
        engine.queue.push_back(item);
        engine.request_stop(Stop::Drain);
        engine.send_queued(at(0), &mut actions).unwrap();
        assert_eq!(engine.pool().in_flight(), 0);
        assert!(!engine.wind_down().unwrap(), "nothing in flight, draining");
    }

    #[test]
    fn idle_workers_leave_early_only_without_retries() {
        let mut engine = booted(2, RunOptions::default());
        assert!(!engine.wind_down().unwrap());
        assert_eq!(
            engine.pool().worker(0).phase(),
            super::super::worker::Phase::Leaving
        );
        let options = RunOptions {
            retries: 1,
            ..RunOptions::default()
        };
        let mut engine = booted(2, options);
        engine.wind_down().unwrap();
        assert_eq!(
            engine.pool().worker(0).phase(),
            super::super::worker::Phase::Ready
        );
        engine.close_all().unwrap();
        assert_eq!(
            engine.pool().worker(1).phase(),
            super::super::worker::Phase::Leaving
        );
        assert!(!engine.goes_on());
    }
}
