//! What a worker's exit means for what it held, what a failure means for
//! its item (another try, or the end), and when workers that keep dying
//! before they boot stop the run.

use std::time::Instant;

use super::exit::Exit;
use super::item::Item;
use super::report::{Cause, Who};
use super::worker::Phase;
use super::{Action, Engine, Fatal, Retry};

/// Workers dying before they boot, in a row, that stop the run: this many,
/// or the worker count when it is larger.
const BOOT_DEATHS_LIMIT: usize = 3;
/// Workers that may die, in a row, holding an item as the next to start,
/// before the item fails as the cause: an item that kills whoever reads it
/// (one too large for a worker's memory) would otherwise go from worker to
/// worker for ever, at no cost, since none ever started it.
pub const BOUNCE_LIMIT: u32 = 3;

impl Engine {
    /// Settles worker `index`, whose process was reaped having ended as
    /// `exit`: the item it had started and not finished fails (or is tried
    /// again); items it finished but never answered for count as performed,
    /// unless their results were wanted, which died with it (they fail as
    /// lost, or are tried again); items it never started go back to the
    /// queue at no cost; and the report says how it ended. Read its last
    /// answers first (`read_answers`), so that an item it answered is not
    /// taken for lost.
    pub fn on_exit(&mut self, index: usize, exit: Exit, now: Instant, actions: &mut Vec<Action>) {
        self.stamp_journal(now);
        let worker = self.pool.worker_mut(index);
        let who = worker.who();
        let expected = worker.phase() == Phase::Leaving && !worker.timed_out();
        let reading = worker.reading();
        let departure = worker.reaped(reading);
        self.clear_group(who, now, actions);
        let exit = fatal_cause(exit, departure.fatal_signal);
        let mut unstarted = departure.unstarted;
        // Neither a clean exit, nor by the master's signals, nor unknown.
        let own_death = !departure.signalled && !exit.is_clean() && exit != Exit::Unknown;
        let killer = if own_death && departure.performing.is_none() {
            blame_next(&mut unstarted)
        } else {
            None
        };
        self.hand_back(unstarted);
        let lost = self.options.wants_results && !departure.finished.is_empty();
        if self.options.wants_results {
            for item in departure.finished {
                self.fail_item(who, item, Cause::Lost(exit), actions);
            }
        } else {
            self.count_performed(departure.finished.len() as u64, actions);
            for item in departure.finished {
                self.journal_performed(who, &item, 0);
                self.settled(item, actions);
            }
        }
        let unexpected = !expected && !departure.timed_out && !exit.is_clean();
        // Told to leave while it was booting (the run ended first), a
        // worker that then dies, of its own accord, died booting all the
        // same.
        let died_booting = departure.phase == Phase::Booting || (!departure.was_ready && own_death);
        match (departure.performing, killer) {
            (Some(item), _) => {
                let cause = match self.options.timeout {
                    Some(timeout) if departure.timed_out => Cause::TimedOut(timeout),
                    _ => Cause::Died(exit),
                };
                self.fail_item(who, item, cause, actions);
            }
            (None, Some(item)) => self.fail_item(who, item, Cause::DiedReceiving(exit), actions),
            // The lost items' reports say how the worker ended.
            (None, None) if lost => {}
            (None, None) if died_booting => self.died_booting(who, exit, actions),
            (None, None) if unexpected => {
                self.board.failures.add(1);
                actions.push(Action::Say(format!("{who} {}", exit.describe())));
            }
            (None, None) => actions.push(Action::Notice(format!("{who} {}", exit.describe()))),
        }
    }

    /// Settles worker `index`, reaped while the run stops at once: what it
    /// held is dropped unreported, as the run ends without it.
    pub fn forget(&mut self, index: usize, now: Instant, actions: &mut Vec<Action>) {
        let worker = self.pool.worker_mut(index);
        let who = worker.who();
        let reading = worker.reading();
        worker.reaped(reading);
        self.clear_group(who, now, actions);
    }

    /// Stops what the reaped worker `who` left running in its process group
    /// (what its `perform` started and did not wait for): TERM now, KILL
    /// after the grace unless the group is gone by then.
    fn clear_group(&mut self, who: Who, now: Instant, actions: &mut Vec<Action>) {
        let Some(pid) = who.pid.filter(|pid| crate::os::group_alive(*pid)) else {
            return;
        };
        actions.push(Action::Signal {
            pid,
            signal: libc::SIGTERM,
        });
        self.lingering
            .push((pid, now + super::deadlines::TIMEOUT_GRACE));
    }

    /// Counts a worker that died before it was ready, and makes the run
    /// fatal once too many did in a row.
    fn died_booting(&mut self, who: Who, exit: Exit, actions: &mut Vec<Action>) {
        self.boot_deaths_in_a_row += 1;
        self.board.failures.add(1);
        actions.push(Action::Say(format!(
            "{who} {} before it was ready",
            exit.describe()
        )));
        let deaths = self.boot_deaths_in_a_row;
        if deaths >= self.board.worker_count().max(BOOT_DEATHS_LIMIT) {
            self.fatal = Some(Fatal::BootFailure(format!(
                "workers failed to boot: {deaths} in a row died before they were ready, the last {who} {}",
                exit.describe()
            )));
        }
    }

    /// Counts a failure of `item` on worker `who` and decides: the item is
    /// queued for another try while retries remain; otherwise it finally
    /// failed. Either way the master reports it.
    pub(super) fn fail_item(
        &mut self,
        who: Who,
        item: Item,
        cause: Cause,
        actions: &mut Vec<Action>,
    ) {
        self.board.failures.add(1);
        let retries = self.options.retries;
        let retry = (item.attempt <= retries).then(|| Retry {
            attempt: item.attempt + 1,
            of: retries.saturating_add(1),
        });
        match retry {
            Some(retry) => {
                self.board.retried.add(1);
                let mut again = item.clone();
                again.attempt = retry.attempt;
                // A new try: the job log records how it ends, even if the
                // failed one was recorded as performed (see `journal`).
                again.journaled = false;
                self.queue.push_back(again);
            }
            None => {
                self.board.failed.add(1);
                self.journal_failed(who, &item, &cause);
            }
        }
        actions.push(Action::Failed {
            who,
            item,
            cause,
            retry,
        });
        if retry.is_none() {
            self.check_halt(actions);
        }
    }

    /// Counts `count` items performed, and checks the halt policy.
    pub(super) fn count_performed(&mut self, count: u64, actions: &mut Vec<Action>) {
        self.board.performed.add(count);
        self.check_halt(actions);
    }
}

/// How a process that died by a signal really ended: Ruby's handler for
/// a crash (SIGSEGV, SIGBUS...) prints its report and aborts, so the
/// process dies by SIGABRT; the worker recorded the signal it got first.
fn fatal_cause(exit: Exit, fatal_signal: Option<i32>) -> Exit {
    match (exit, fatal_signal) {
        (Exit::Signaled(_), Some(signo)) => Exit::Signaled(signo),
        _ => exit,
    }
}

/// Counts a worker's death, between items, against the item it held as
/// the next to start (it may have died reading it).
///
/// Returns that item, taken out of `unstarted`, once `BOUNCE_LIMIT`
/// workers in a row died so.
fn blame_next(unstarted: &mut Vec<Item>) -> Option<Item> {
    let next = unstarted.first_mut()?;
    next.bounced += 1;
    (next.bounced >= BOUNCE_LIMIT).then(|| unstarted.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::tests::{booted, booted_with_links, count, engine};
    use crate::engine::worker::tests::{at, item};
    use std::time::Duration;

    #[test]
    fn a_death_fails_the_item_being_performed_and_hands_back_the_rest() {
        let (mut engine, _ends) = booted_with_links(1, RunOptions::default());
        let worker = engine.pool.worker_mut(0);
        worker.assign(item(0), at(0));
        worker.assign(item(1), at(0));
        count(&engine, 0, 1, 0);
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Signaled(9), at(0), &mut actions);
        assert!(matches!(
            &actions[..],
            [Action::Failed { item: failed, cause: Cause::Died(Exit::Signaled(9)), retry: None, .. }]
                if failed.index == 0
        ));
        assert_eq!(
            engine
                .queue
                .iter()
                .map(|item| item.index)
                .collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(
            (engine.board.failed.get(), engine.board.failures.get()),
            (1, 1)
        );
    }

    #[test]
    fn an_idle_worker_killed_is_not_blamed_for_the_item_it_never_read() {
        let (mut engine, _ends) = booted_with_links(1, RunOptions::default());
        engine.pool.worker_mut(0).assign(item(3), at(0));
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Signaled(9), at(0), &mut actions);
        assert_eq!(
            engine
                .queue
                .iter()
                .map(|item| item.index)
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(
            engine.queue.front().map(|item| item.attempt),
            Some(1),
            "no try spent"
        );
        assert_eq!(
            (engine.board.failed.get(), engine.board.retried.get()),
            (0, 0)
        );
        assert_eq!(
            actions,
            [Action::Say(String::from(
                "worker 1 (pid 5000000) died by SIGKILL"
            ))]
        );
    }

    #[test]
    fn a_crash_aborted_by_ruby_is_named_by_its_signal() {
        let (mut engine, _ends) = booted_with_links(1, RunOptions::default());
        engine.pool.worker_mut(0).assign(item(2), at(0));
        count(&engine, 0, 1, 0);
        let counter = engine.pool.worker(0).link().unwrap().counter();
        counter.set_fatal_signal(libc::SIGSEGV);
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Signaled(libc::SIGABRT), at(0), &mut actions);
        assert!(matches!(
            &actions[..],
            [Action::Failed {
                cause: Cause::Died(Exit::Signaled(libc::SIGSEGV)),
                ..
            }]
        ));
    }

    #[test]
    fn a_timed_out_item_says_so() {
        let options = RunOptions {
            timeout: Some(Duration::from_millis(500)),
            ..RunOptions::default()
        };
        let (mut engine, _ends) = booted_with_links(1, options);
        engine.pool.worker_mut(0).assign(item(3), at(0));
        count(&engine, 0, 1, 0);
        engine.pool.worker_mut(0).time_out();
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Signaled(15), at(0), &mut actions);
        assert!(matches!(
            &actions[..],
            [Action::Failed { cause: Cause::TimedOut(timeout), .. }] if *timeout == Duration::from_millis(500)
        ));
    }

    #[test]
    fn items_are_tried_again_up_to_the_retries() {
        let options = RunOptions {
            retries: 2,
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        let who = engine.pool.worker(0).who();
        let mut actions = Vec::new();
        let mut first = item(5);
        first.journaled = true;
        engine.fail_item(who, first, Cause::Died(Exit::Exited(1)), &mut actions);
        let again = engine.queue.pop_front().unwrap();
        assert_eq!(again.attempt, 2);
        assert!(!again.journaled, "the retry's outcome is recorded");
        engine.fail_item(who, again, Cause::Died(Exit::Exited(1)), &mut actions);
        let third = engine.queue.pop_front().unwrap();
        assert_eq!(third.attempt, 3);
        engine.fail_item(who, third, Cause::Died(Exit::Exited(1)), &mut actions);
        assert!(engine.queue.is_empty());
        let retries: Vec<_> = actions
            .iter()
            .map(|action| match action {
                Action::Failed { item, retry, .. } => {
                    (item.attempt, retry.map(|r| (r.attempt, r.of)))
                }
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(retries, [(1, Some((2, 3))), (2, Some((3, 3))), (3, None)]);
        assert_eq!(
            (
                engine.board.failures.get(),
                engine.board.retried.get(),
                engine.board.failed.get()
            ),
            (3, 2, 1)
        );
    }

    #[test]
    fn workers_dying_in_boot_stop_the_run_after_enough_in_a_row() {
        let mut engine = engine(2, RunOptions::default());
        let mut actions = Vec::new();
        for round in 1..=3 {
            engine.started(0, 50 + round, None);
            engine.on_exit(0, Exit::Exited(3), at(0), &mut actions);
            assert_eq!(engine.fatal().is_some(), round == 3, "round {round}");
        }
        assert_eq!(
            engine.fatal(),
            Some(&Fatal::BootFailure(String::from(
                "workers failed to boot: 3 in a row died before they were ready, \
                 the last worker 1 (pid 53) exited with status 3"
            )))
        );
        assert_eq!(
            actions[0],
            Action::Say(String::from(
                "worker 1 (pid 51) exited with status 3 before it was ready"
            ))
        );
    }

    /// An engine whose one worker (pid 51) is still booting when the run
    /// tells every worker to leave, as it does once the others have
    /// performed every item.
    fn booting_told_to_leave() -> Engine {
        let mut engine = engine(1, RunOptions::default());
        engine.started(0, 51, None);
        engine.close_all().unwrap();
        engine
    }

    #[test]
    fn a_worker_that_dies_booting_after_the_run_ended_died_booting() {
        // Its death is reaped after the others finished every item and the
        // run told all workers to leave.
        let mut engine = booting_told_to_leave();
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Signaled(libc::SIGTERM), at(0), &mut actions);
        assert_eq!(
            actions,
            [Action::Say(String::from(
                "worker 1 (pid 51) died by SIGTERM before it was ready"
            ))]
        );
        assert_eq!(engine.board.failures.get(), 1);
    }

    #[test]
    fn a_booting_worker_the_master_stopped_is_no_failure() {
        let mut engine = booting_told_to_leave();
        let mut actions = Vec::new();
        engine.terminate_all(at(0), &mut actions);
        actions.clear();
        engine.on_exit(0, Exit::Signaled(libc::SIGTERM), at(0), &mut actions);
        assert_eq!(
            actions,
            [Action::Notice(String::from(
                "worker 1 (pid 51) died by SIGTERM"
            ))]
        );
        assert_eq!(engine.board.failures.get(), 0);
    }

    #[test]
    fn a_booting_worker_killed_after_term_is_no_failure() {
        let mut engine = booting_told_to_leave();
        let mut actions = Vec::new();
        engine.terminate_all(at(0), &mut actions);
        // The TERM's grace is over: KILL follows.
        engine.on_tick(at(10_000_000), &mut actions);
        actions.clear();
        engine.on_exit(0, Exit::Signaled(libc::SIGKILL), at(0), &mut actions);
        assert_eq!(
            actions,
            [Action::Notice(String::from(
                "worker 1 (pid 51) died by SIGKILL"
            ))]
        );
        assert_eq!(engine.board.failures.get(), 0);
    }

    #[test]
    fn a_booting_worker_passed_a_ctrl_c_is_no_failure() {
        // Its after_fork trapped INT its own way and exited 1 on it.
        let mut engine = booting_told_to_leave();
        let mut actions = Vec::new();
        engine.forward(libc::SIGINT, &mut actions);
        actions.clear();
        engine.on_exit(0, Exit::Exited(1), at(0), &mut actions);
        assert_eq!(engine.board.failures.get(), 0, "{actions:?}");
    }

    #[test]
    fn a_never_ready_worker_reaped_by_someone_else_is_no_failure() {
        let mut engine = booting_told_to_leave();
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Unknown, at(0), &mut actions);
        assert_eq!(engine.board.failures.get(), 0);
    }

    #[test]
    fn an_item_that_kills_the_workers_that_receive_it_fails() {
        let options = RunOptions {
            retries: 1,
            ..RunOptions::default()
        };
        let mut engine = engine(1, options);
        let mut actions = Vec::new();
        engine.queue.push_back(item(7));
        for round in 1..=4 {
            engine.started(0, 70 + round, None);
            engine.pool.worker_mut(0).booted();
            engine.send_queued(at(0), &mut actions).unwrap();
            assert_eq!(engine.pool.worker(0).held_count(), 1, "round {round}");
            engine.on_exit(0, Exit::Signaled(libc::SIGKILL), at(0), &mut actions);
        }
        let failed: Vec<_> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Failed {
                    item, cause, retry, ..
                } => Some((item.index, cause.clone(), retry.is_some())),
                _ => None,
            })
            .collect();
        assert_eq!(
            failed,
            [
                (7, Cause::DiedReceiving(Exit::Signaled(libc::SIGKILL)), true),
                (
                    7,
                    Cause::DiedReceiving(Exit::Signaled(libc::SIGKILL)),
                    false
                ),
            ],
            "the third death fails it, the retry goes at the next"
        );
        assert_eq!(engine.board.failed.get(), 1);
        assert!(engine.queue.is_empty());
    }

    #[test]
    fn an_item_behind_a_killed_idle_worker_goes_back_twice_at_no_cost() {
        let mut engine = engine(1, RunOptions::default());
        let mut actions = Vec::new();
        engine.queue.push_back(item(8));
        for round in 1..=2 {
            engine.started(0, 80 + round, None);
            engine.pool.worker_mut(0).booted();
            engine.send_queued(at(0), &mut actions).unwrap();
            engine.on_exit(0, Exit::Signaled(libc::SIGKILL), at(0), &mut actions);
        }
        assert_eq!(
            engine.queue.front().map(|item| (item.index, item.attempt)),
            Some((8, 1))
        );
        assert!(!actions
            .iter()
            .any(|action| matches!(action, Action::Failed { .. })));
    }

    #[test]
    fn an_expected_exit_is_only_a_notice_and_an_unexpected_one_a_failure() {
        let mut engine = booted(2, RunOptions::default());
        let mut actions = Vec::new();
        engine.pool.worker_mut(0).leave();
        engine.on_exit(0, Exit::Exited(0), at(0), &mut actions);
        engine.on_exit(1, Exit::Exited(2), at(0), &mut actions);
        assert_eq!(
            actions,
            [
                Action::Notice(String::from("worker 1 (pid 5000000) exited with status 0")),
                Action::Say(String::from("worker 2 (pid 5000001) exited with status 2")),
            ]
        );
        assert_eq!(engine.board.failures.get(), 1);
    }

    #[test]
    fn finished_items_whose_answers_died_count_as_performed() {
        let (mut engine, _ends) = booted_with_links(1, RunOptions::default());
        let worker = engine.pool.worker_mut(0);
        worker.assign(item(0), at(0));
        worker.assign(item(1), at(0));
        count(&engine, 0, 2, 1);
        engine.on_exit(0, Exit::Signaled(9), at(0), &mut Vec::new());
        assert_eq!(engine.board.performed.get(), 1);
        assert_eq!(engine.board.failed.get(), 1);
    }

    #[test]
    fn finished_items_whose_results_died_are_lost_or_tried_again() {
        let options = RunOptions {
            wants_results: true,
            retries: 1,
            ..RunOptions::default()
        };
        let (mut engine, _ends) = booted_with_links(1, options);
        let worker = engine.pool.worker_mut(0);
        worker.assign(item(0), at(0));
        worker.assign(item(1), at(0));
        count(&engine, 0, 2, 2);
        let mut actions = Vec::new();
        engine.on_exit(0, Exit::Exited(3), at(0), &mut actions);
        assert_eq!(
            engine.board.performed.get(),
            0,
            "never counted as performed"
        );
        assert_eq!(
            engine
                .queue
                .iter()
                .map(|item| item.attempt)
                .collect::<Vec<_>>(),
            [2, 2]
        );
        assert!(actions.iter().all(|action| matches!(
            action,
            Action::Failed {
                cause: Cause::Lost(Exit::Exited(3)),
                retry: Some(_),
                ..
            }
        )));
    }
}
