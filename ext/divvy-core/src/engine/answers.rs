//! What a worker's answers mean: booted, performed (with a result or
//! without), raised, or leaving with items it never started.

use std::io;

use super::item::Item;
use super::report::{Cause, Who};
use super::worker::Answer;
use super::{Action, Engine};
use crate::wire::frame::{Failure, Frame, ResultBytes};

impl Engine {
    /// Reads what worker `index` has sent so far and settles each answer.
    ///
    /// Returns the OS error of a failed read.
    pub fn read_answers(&mut self, index: usize, actions: &mut Vec<Action>) -> io::Result<()> {
        self.receive(index)?;
        let mut handed_back = Vec::new();
        let mut received = Ok(());
        while received.is_ok() {
            let next = self
                .pool
                .worker_mut(index)
                .link_mut()
                .map(|link| link.next_frame());
            match next {
                Some(Ok(Some(Frame::Bye))) => {
                    handed_back.extend(self.pool.worker_mut(index).said_bye());
                }
                Some(Ok(Some(frame))) => self.on_frame(index, frame, actions),
                Some(Err(error)) => {
                    self.broken(index, &format!("sent a malformed frame ({error})"), actions);
                    break;
                }
                Some(Ok(None)) if self.land(index) => received = self.receive(index),
                Some(Ok(None)) | None => break,
            }
        }
        self.hand_back(handed_back);
        received
    }

    /// Reads what worker `index` has sent so far, landing large results.
    ///
    /// Returns the OS error of a failed read.
    fn receive(&mut self, index: usize) -> io::Result<()> {
        match self.pool.worker_mut(index).link_mut() {
            Some(link) => link.receive(self.landings.lander()),
            None => Ok(()),
        }
    }

    /// Begins reading a large result of worker `index` straight into
    /// memory of its own, when the next frame is one and the run has a
    /// lander.
    ///
    /// Returns true when it began.
    fn land(&mut self, index: usize) -> bool {
        let Some(lander) = self.landings.lander() else {
            return false;
        };
        self.pool
            .worker_mut(index)
            .link_mut()
            .is_some_and(|link| link.land(lander))
    }

    /// Settles one answer of worker `index`.
    pub(super) fn on_frame(&mut self, index: usize, frame: Frame, actions: &mut Vec<Action>) {
        let (failure, result) = match frame {
            Frame::Ready => {
                self.pool.worker_mut(index).booted();
                self.boot_deaths_in_a_row = 0;
                return;
            }
            Frame::Broke(value) => return self.on_break(index, value, actions),
            Frame::Done => (None, None),
            Frame::Result(result) => (None, Some(result)),
            Frame::Failed(failure) => (Some(failure), None),
            Frame::Item(_) | Frame::Bye => {
                return self.broken(index, "sent an item frame to the master", actions)
            }
        };
        let worker = self.pool.worker_mut(index);
        worker.answered_with(result.as_ref().map_or(0, ResultBytes::len));
        match worker.answer(failure) {
            Ok(Answer::Performed(item)) => {
                self.count_performed(1, actions);
                match result {
                    Some(result) => {
                        let who = self.pool.worker(index).who();
                        actions.push(Action::Completed { who, item, result });
                    }
                    None => {
                        self.journal_performed(self.pool.worker(index).who(), &item, 0);
                        self.settled(item, actions)
                    }
                }
            }
            Ok(Answer::Failed(item, failure)) => {
                let who = self.pool.worker(index).who();
                self.fail_item(who, item, Cause::Raised(failure), actions);
            }
            Err(_) => self.broken(index, "answered for an item it does not hold", actions),
        }
    }

    /// Settles worker `index`'s oldest item, whose `perform` raised
    /// `Divvy::Break` with `value`: performed, and nothing new is sent.
    fn on_break(&mut self, index: usize, value: Vec<u8>, actions: &mut Vec<Action>) {
        match self.pool.worker_mut(index).answer(None) {
            Ok(Answer::Performed(item)) => {
                self.count_performed(1, actions);
                let who = self.pool.worker(index).who();
                self.journal_performed(who, &item, value.len());
                self.broke = true;
                actions.push(Action::Broke { item, value });
            }
            _ => self.broken(index, "answered for an item it does not hold", actions),
        }
    }

    /// Reports worker `index` for breaking the protocol, and kills it.
    fn broken(&mut self, index: usize, problem: &str, actions: &mut Vec<Action>) {
        let worker = self.pool.worker_mut(index);
        actions.push(Action::Say(format!(
            "{}: {problem}; killing it",
            worker.who()
        )));
        worker.signal(libc::SIGKILL, actions);
    }

    /// Takes back the performed item whose result the master could not
    /// load, and fails it (or tries it again) with `failure`.
    pub fn reject_result(
        &mut self,
        who: Who,
        item: Item,
        failure: Failure,
        actions: &mut Vec<Action>,
    ) {
        self.board.performed.sub(1);
        self.fail_item(who, item, Cause::Raised(failure), actions);
    }

    /// Puts items that were never started back at the head of the queue, in
    /// their order.
    pub(super) fn hand_back(&mut self, items: Vec<Item>) {
        for item in items.into_iter().rev() {
            self.queue.push_front(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::tests::booted;
    use crate::engine::worker::tests::{at, item};

    fn hold(engine: &mut Engine, index: usize, items: &[u64]) {
        for number in items {
            engine.pool.worker_mut(index).assign(item(*number), at(0));
        }
    }

    #[test]
    fn counts_performed_items_and_hands_results_over() {
        let mut engine = booted(1, RunOptions::default());
        hold(&mut engine, 0, &[0, 1]);
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Done, &mut actions);
        engine.on_frame(0, Frame::Result(vec![4, 8, b'0'].into()), &mut actions);
        assert_eq!(engine.board.performed.get(), 2);
        assert_eq!(
            actions,
            [Action::Completed {
                who: engine.pool.worker(0).who(),
                item: item(1),
                result: vec![4, 8, b'0'].into()
            }]
        );
    }

    #[test]
    fn a_raised_item_fails_or_is_retried() {
        let options = RunOptions {
            retries: 1,
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        hold(&mut engine, 0, &[7]);
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Failed(Failure::default()), &mut actions);
        assert!(matches!(
            &actions[..],
            [Action::Failed { retry: Some(retry), .. }] if retry.attempt == 2 && retry.of == 2
        ));
        assert_eq!(engine.queue.front().map(|item| item.attempt), Some(2));
        assert_eq!(
            (engine.board.failures.get(), engine.board.retried.get()),
            (1, 1)
        );
    }

    #[test]
    fn an_answer_for_nothing_held_kills_the_worker() {
        let mut engine = booted(1, RunOptions::default());
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Done, &mut actions);
        assert_eq!(
            actions,
            [
                Action::Say(String::from(
                    "worker 1 (pid 5000000): answered for an item it does not hold; killing it"
                )),
                Action::Signal {
                    pid: 5_000_000,
                    signal: libc::SIGKILL
                }
            ]
        );
    }

    #[test]
    fn a_break_counts_as_performed_and_stops_sending() {
        let options = RunOptions {
            retries: 1,
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        hold(&mut engine, 0, &[4, 5]);
        engine.queue.push_back(item(9));
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Broke(vec![4, 8, b'T']), &mut actions);
        assert_eq!(
            actions,
            [Action::Broke {
                item: item(4),
                value: vec![4, 8, b'T']
            }]
        );
        assert!(!engine.sends_new_items() && !engine.goes_on());
        assert_eq!(engine.board.performed.get(), 1);
        engine.send_queued(at(0), &mut actions).unwrap();
        assert_eq!(engine.queue.len(), 1, "the queue is not sent");
        assert!(engine.wind_down().unwrap(), "item 5 is still in flight");
        engine.on_frame(0, Frame::Done, &mut actions);
        assert!(
            !engine.wind_down().unwrap(),
            "done: the queue waits for nothing"
        );
    }

    #[test]
    fn a_kept_item_settled_is_told_and_a_rejected_result_fails_its_item() {
        let mut engine = booted(1, RunOptions::default());
        let mut kept = item(3);
        kept.kept = true;
        engine.pool.worker_mut(0).assign(kept, at(0));
        engine.pool.worker_mut(0).assign(item(4), at(0));
        let mut actions = Vec::new();
        engine.on_frame(0, Frame::Done, &mut actions);
        engine.on_frame(0, Frame::Done, &mut actions);
        assert_eq!(actions, [Action::Settled { index: 3 }], "only the kept one");
        let who = engine.pool.worker(0).who();
        actions.clear();
        engine.reject_result(who, item(4), Failure::default(), &mut actions);
        assert_eq!(engine.board.performed.get(), 1);
        assert_eq!(engine.board.failed.get(), 1);
        assert!(matches!(&actions[..], [Action::Failed { retry: None, .. }]));
    }

    #[test]
    fn booting_resets_the_count_of_boot_deaths() {
        let mut engine = booted(1, RunOptions::default());
        engine.boot_deaths_in_a_row = 2;
        engine.on_frame(0, Frame::Ready, &mut Vec::new());
        assert_eq!(engine.boot_deaths_in_a_row, 0);
    }
}
