//! Halt policies (`--halt WHEN,COND`, `halt:`), in GNU parallel's words:
//! which settled items end a run early, and how. `soon` sends nothing new
//! (no new item, no retry) and lets the items in flight finish; `now`
//! stops the workers at once, as a second Ctrl-C does, and the items in
//! flight are abandoned: neither performed nor failed. COND counts the
//! items of this run that finally failed (`fail=`, after their retries) or
//! were performed (`success=`).
//!
//! A percentage is measured as GNU parallel measures it, against the
//! number of items of the run, which GNU parallel counts before it starts
//! a job: divvy takes the task's `total` (`Divvy.map` over a collection
//! with a size), this shard's share of it under `--shard`, and halts once
//! the items counted reach that percentage of it, rounded up (at least
//! one). A run whose total is unknown measures against the items settled
//! so far (performed or finally failed), and only once there are enough
//! of them that one item alone is no more than the percentage (`fail=10%`:
//! at least 10), so that an early failure is not taken for a rate.

use std::fmt;

use super::options::Shard;
use super::{Action, Engine};

/// How a halt stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Send nothing new; let the items in flight finish.
    Soon,
    /// Stop the workers at once; the items in flight are abandoned.
    Now,
}

/// Which settled items a halt counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Items that finally failed, after their retries (`fail=`).
    Failed,
    /// Items performed (`success=`).
    Performed,
}

/// How many counted items halt the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// This many items.
    Items(u64),
    /// This percentage (1 to 100) of the run's items.
    Percent(u64),
}

/// A halt policy: `when`, once `threshold` items were `counted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// How the halt stops the run.
    pub when: When,
    /// Which settled items it counts.
    pub counted: Counted,
    /// How many of them it takes.
    pub threshold: Threshold,
}

/// The largest count of items a policy may name: what Ruby hands over as
/// an `i64`, as for the other counts.
const MAX_ITEMS: u64 = i64::MAX as u64;

impl Halt {
    /// Reads a policy written as GNU parallel writes it: `never`, or
    /// `WHEN,COND` with WHEN `now` or `soon` and COND `fail=N`, `fail=N%`,
    /// `success=N` or `success=N%` (N a whole number, a percentage from 1
    /// to 100).
    ///
    /// Returns the policy, `None` for `never`, or a one-line message naming
    /// the bad value.
    pub fn parse(text: &str) -> Result<Option<Halt>, String> {
        if text == "never" {
            return Ok(None);
        }
        let shape = || {
            format!(
                "halt must be never or WHEN,COND (WHEN: now or soon; COND: fail=N, fail=N%, \
                 success=N or success=N%), got {text:?}"
            )
        };
        let (when, condition) = text.split_once(',').ok_or_else(shape)?;
        let when = match when {
            "soon" => When::Soon,
            "now" => When::Now,
            _ => return Err(shape()),
        };
        let (counted, number) = condition.split_once('=').ok_or_else(shape)?;
        let counted = match counted {
            "fail" => Counted::Failed,
            "success" => Counted::Performed,
            _ => return Err(shape()),
        };
        let (digits, percent) = match number.strip_suffix('%') {
            Some(digits) => (digits, true),
            None => (number, false),
        };
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(shape());
        }
        // Past u64 is past every bound below.
        let value = digits.parse::<u64>().unwrap_or(u64::MAX);
        let threshold = match percent {
            true if (1..=100).contains(&value) => Threshold::Percent(value),
            true => {
                return Err(format!(
                    "halt percentage must be from 1 to 100, got {text:?}"
                ))
            }
            false if (1..=MAX_ITEMS).contains(&value) => Threshold::Items(value),
            false => {
                return Err(format!(
                    "halt count must be from 1 to {MAX_ITEMS}, got {text:?}"
                ))
            }
        };
        Ok(Some(Halt {
            when,
            counted,
            threshold,
        }))
    }

    /// Decides whether the halt is due once this run settled `performed`
    /// and `failed` items, of `total` when the run's number of items is
    /// known (see the module's comment for the rule).
    ///
    /// Returns why, in words ("3 items failed"), when it is due.
    pub fn reached(&self, performed: u64, failed: u64, total: Option<u64>) -> Option<String> {
        let counted = match self.counted {
            Counted::Failed => failed,
            Counted::Performed => performed,
        };
        let verb = match self.counted {
            Counted::Failed => "failed",
            Counted::Performed => "performed",
        };
        match (self.threshold, total) {
            (Threshold::Items(needed), _) => {
                (counted >= needed).then(|| format!("{} {verb}", items(counted)))
            }
            (Threshold::Percent(percent), Some(total)) => {
                let needed = (u128::from(total) * u128::from(percent)).div_ceil(100);
                (u128::from(counted) >= needed.max(1))
                    .then(|| format!("{counted} of {} {verb}", items(total)))
            }
            (Threshold::Percent(percent), None) => {
                let settled = u128::from(performed) + u128::from(failed);
                let enough = settled * u128::from(percent) >= 100;
                (enough && u128::from(counted) * 100 >= settled * u128::from(percent))
                    .then(|| format!("{counted} of the {settled} items settled so far {verb}"))
            }
        }
    }
}

impl fmt::Display for Halt {
    /// The policy as `--halt` takes it: `soon,fail=3`, `now,success=10%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.when {
            When::Soon => "soon",
            When::Now => "now",
        };
        let counted = match self.counted {
            Counted::Failed => "fail",
            Counted::Performed => "success",
        };
        match self.threshold {
            Threshold::Items(count) => write!(f, "{when},{counted}={count}"),
            Threshold::Percent(percent) => write!(f, "{when},{counted}={percent}%"),
        }
    }
}

/// "1 item", "3 items".
fn items(count: u64) -> String {
    match count {
        1 => String::from("1 item"),
        count => format!("{count} items"),
    }
}

/// A halt that came: how it stops the run, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halted {
    /// How it stops the run.
    pub when: When,
    /// What was counted, and the policy: `3 items failed (--halt
    /// soon,fail=3)`.
    pub reason: String,
}

/// The master's counts when the run began: the scoreboard counts across a
/// master's runs, a halt only this run's items.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Baseline {
    sent: u64,
    performed: u64,
    failed: u64,
    skipped: u64,
}

impl Engine {
    /// Records the scoreboard's counts as the run begins, and forgets the
    /// halt of an earlier run. Runs in the master.
    pub(super) fn begin_counts(&mut self) {
        self.baseline = Baseline {
            sent: self.board.sent.get(),
            performed: self.board.performed.get(),
            failed: self.board.failed.get(),
            skipped: self.board.skipped.get(),
        };
        self.board.clear_halted();
    }

    /// Checks the halt policy after an item settled; once it is due, the
    /// run sends nothing new, and the master stops the workers at once for
    /// a `now` halt. Runs in the master.
    pub(super) fn check_halt(&mut self, actions: &mut Vec<Action>) {
        let Some(halt) = self.options.halt else {
            return;
        };
        if self.halted.is_some() {
            return;
        }
        let performed = self.board.performed.get() - self.baseline.performed;
        let failed = self.board.failed.get() - self.baseline.failed;
        // A resumed run counts what it performs: the items it skipped, its
        // job log's, are not this run's.
        let skipped = self.board.skipped.get() - self.baseline.skipped;
        let total = self.options.total.map(|total| {
            match self.options.shard {
                Some(shard) => share(shard, total),
                None => total,
            }
            .saturating_sub(skipped)
        });
        let Some(what) = halt.reached(performed, failed, total) else {
            return;
        };
        let reason = format!("{what} (--halt {halt})");
        let in_flight = self.pool.in_flight() as u64;
        actions.push(Action::Notice(match halt.when {
            When::Soon => format!(
                "halting soon: {reason}; {} in flight finish",
                items(in_flight)
            ),
            When::Now => format!("halting now: {reason}; stopping the workers"),
        }));
        self.board.set_halted(reason.clone());
        self.halted = Some(Halted {
            when: halt.when,
            reason,
        });
    }

    /// The halt that came this run, if one did.
    pub fn halted(&self) -> Option<&Halted> {
        self.halted.as_ref()
    }

    /// True once a `now` halt came: the master stops the workers at once
    /// and drops what they hold.
    pub fn halts_now(&self) -> bool {
        self.halted
            .as_ref()
            .is_some_and(|halted| halted.when == When::Now)
    }

    /// What the summary line says of a halt: `halted: 3 items failed
    /// (--halt soon,fail=3)`, and how many items of the run were abandoned
    /// (sent, but neither performed nor finally failed: in flight when a
    /// `now` halt stopped the workers, or waiting for a retry).
    pub fn halt_summary(&self) -> Option<String> {
        let halted = self.halted.as_ref()?;
        let settled = (self.board.performed.get() - self.baseline.performed)
            + (self.board.failed.get() - self.baseline.failed);
        let abandoned = (self.board.sent.get() - self.baseline.sent).saturating_sub(settled);
        Some(match abandoned {
            0 => format!("halted: {}", halted.reason),
            _ => format!("halted: {}, {} abandoned", halted.reason, items(abandoned)),
        })
    }
}

/// How many of the `total` items, numbered from 0, are `shard`'s.
fn share(shard: Shard, total: u64) -> u64 {
    total / shard.count + u64::from(shard.index < total % shard.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::exit::Exit;
    use crate::engine::options::RunOptions;
    use crate::engine::report::Cause;
    use crate::engine::tests::booted;
    use crate::engine::worker::tests::item;

    fn policy(text: &str) -> Halt {
        Halt::parse(text).unwrap().unwrap()
    }

    #[test]
    fn reads_gnu_parallels_words_and_writes_them_back() {
        assert_eq!(Halt::parse("never"), Ok(None));
        assert_eq!(
            policy("soon,fail=3"),
            Halt {
                when: When::Soon,
                counted: Counted::Failed,
                threshold: Threshold::Items(3)
            }
        );
        assert_eq!(
            policy("now,success=10%"),
            Halt {
                when: When::Now,
                counted: Counted::Performed,
                threshold: Threshold::Percent(10)
            }
        );
        for text in [
            "soon,fail=1",
            "now,fail=100%",
            "now,success=1",
            "soon,success=2%",
        ] {
            assert_eq!(policy(text).to_string(), text);
        }
    }

    #[test]
    fn names_a_bad_value_in_one_line() {
        for bad in [
            "",
            "sometimes",
            "soon",
            "soon,",
            "later,fail=1",
            "soon,done=1",
            "soon,fail",
            "soon,fail=",
            "soon,fail=x",
            "soon,fail=-1",
            "soon,fail=1.5",
            "soon,fail=%",
            "Soon,fail=1",
            "soon, fail=1",
            "1",
        ] {
            let message = Halt::parse(bad).unwrap_err();
            assert!(
                message.starts_with("halt must be never or WHEN,COND"),
                "{bad}: {message}"
            );
            assert!(message.ends_with(&format!("got {bad:?}")), "{message}");
            assert!(!message.contains('\n'));
        }
        assert_eq!(
            Halt::parse("soon,fail=0"),
            Err(String::from(
                "halt count must be from 1 to 9223372036854775807, got \"soon,fail=0\""
            ))
        );
        assert!(Halt::parse("soon,fail=99999999999999999999999")
            .unwrap_err()
            .starts_with("halt count must be from 1"));
        for bad in ["now,fail=0%", "now,fail=101%"] {
            assert_eq!(
                Halt::parse(bad),
                Err(format!(
                    "halt percentage must be from 1 to 100, got {bad:?}"
                ))
            );
        }
    }

    #[test]
    fn a_count_is_reached_by_the_items_it_counts() {
        let halt = policy("soon,fail=3");
        assert_eq!(halt.reached(100, 2, None), None);
        assert_eq!(
            halt.reached(0, 3, None),
            Some(String::from("3 items failed"))
        );
        let halt = policy("now,success=1");
        assert_eq!(halt.reached(0, 5, Some(10)), None);
        assert_eq!(
            halt.reached(1, 5, Some(10)),
            Some(String::from("1 item performed"))
        );
    }

    #[test]
    fn a_percentage_of_a_known_total_is_rounded_up() {
        let halt = policy("soon,fail=3%");
        assert_eq!(halt.reached(0, 1, Some(50)), None, "3% of 50 is 1.5");
        assert_eq!(
            halt.reached(0, 2, Some(50)),
            Some(String::from("2 of 50 items failed"))
        );
        let halt = policy("soon,fail=10%");
        assert_eq!(
            halt.reached(0, 1, Some(3)),
            Some(String::from("1 of 3 items failed"))
        );
        assert_eq!(halt.reached(0, 0, Some(0)), None, "at least one item");
        assert_eq!(
            halt.reached(0, 1, Some(0)),
            Some(String::from("1 of 0 items failed"))
        );
        let halt = policy("now,success=50%");
        assert_eq!(halt.reached(4, 9, Some(10)), None);
        assert_eq!(
            halt.reached(5, 0, Some(10)),
            Some(String::from("5 of 10 items performed"))
        );
    }

    #[test]
    fn a_percentage_of_an_unknown_total_waits_for_enough_items() {
        let halt = policy("soon,fail=10%");
        assert_eq!(halt.reached(0, 1, None), None, "one item is no rate");
        assert_eq!(halt.reached(8, 1, None), None, "9 settled");
        assert_eq!(
            halt.reached(9, 1, None),
            Some(String::from("1 of the 10 items settled so far failed"))
        );
        assert_eq!(halt.reached(10, 1, None), None, "1 of 11 is under 10%");
        assert_eq!(
            halt.reached(17, 2, None),
            Some(String::from("2 of the 19 items settled so far failed"))
        );
        let halt = policy("soon,fail=100%");
        assert_eq!(
            halt.reached(0, 1, None),
            Some(String::from("1 of the 1 items settled so far failed"))
        );
    }

    #[test]
    fn a_shards_share_of_the_items() {
        let shards = |count| (0..count).map(move |index| Shard::new(index, count).unwrap());
        for total in [0, 1, 7, 8, 9, 100] {
            assert_eq!(
                shards(4).map(|shard| share(shard, total)).sum::<u64>(),
                total
            );
        }
        assert_eq!(share(Shard::new(0, 4).unwrap(), 9), 3);
        assert_eq!(share(Shard::new(1, 4).unwrap(), 9), 2);
    }

    #[test]
    fn the_engine_halts_once_and_counts_only_this_runs_items() {
        let options = RunOptions {
            halt: Some(policy("soon,fail=2")),
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        engine.board.failed.add(5);
        engine.begin_counts();
        let who = engine.pool().worker(0).who();
        let mut actions = Vec::new();
        engine.fail_item(who, item(1), Cause::Lost(Exit::Exited(1)), &mut actions);
        assert_eq!(
            engine.halted(),
            None,
            "an earlier run's failures do not count"
        );
        assert!(engine.sends_new_items());
        engine.fail_item(who, item(2), Cause::Lost(Exit::Exited(1)), &mut actions);
        let reason = "2 items failed (--halt soon,fail=2)";
        assert_eq!(
            engine.halted().map(|halted| halted.reason.as_str()),
            Some(reason)
        );
        assert_eq!(engine.board.halted().as_deref(), Some(reason));
        assert!(!engine.sends_new_items() && !engine.halts_now());
        assert_eq!(
            actions.last(),
            Some(&Action::Notice(format!(
                "halting soon: {reason}; 0 items in flight finish"
            )))
        );
        engine.begin_counts();
        assert_eq!(engine.board.halted(), None, "forgotten when a run begins");
    }

    #[test]
    fn a_percentage_leaves_out_the_items_a_resumed_run_skipped() {
        let options = RunOptions {
            halt: Some(policy("soon,fail=50%")),
            total: Some(10),
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        engine.begin_counts();
        for index in 0..6 {
            engine.skip(item(index));
        }
        let who = engine.pool().worker(0).who();
        let mut actions = Vec::new();
        engine.fail_item(who, item(6), Cause::Lost(Exit::Exited(1)), &mut actions);
        assert_eq!(engine.halted(), None, "1 of 4 items");
        engine.fail_item(who, item(7), Cause::Lost(Exit::Exited(1)), &mut actions);
        assert_eq!(
            engine.halted().map(|halted| halted.reason.as_str()),
            Some("2 of 4 items failed (--halt soon,fail=50%)")
        );
    }

    #[test]
    fn a_now_halt_counts_what_it_abandons() {
        let options = RunOptions {
            halt: Some(policy("now,success=1")),
            ..RunOptions::default()
        };
        let mut engine = booted(1, options);
        engine.board.sent.add(4);
        let mut actions = Vec::new();
        engine.count_performed(1, &mut actions);
        assert!(engine.halts_now());
        assert_eq!(
            actions,
            [Action::Notice(String::from(
                "halting now: 1 item performed (--halt now,success=1); stopping the workers"
            ))]
        );
        assert_eq!(
            engine.halt_summary().as_deref(),
            Some("halted: 1 item performed (--halt now,success=1), 3 items abandoned")
        );
    }

    #[test]
    fn without_a_policy_nothing_halts() {
        let mut engine = booted(1, RunOptions::default());
        let mut actions = Vec::new();
        engine.board.sent.add(1);
        engine.fail_item(
            engine.pool().worker(0).who(),
            item(0),
            Cause::Lost(Exit::Exited(1)),
            &mut actions,
        );
        assert_eq!((engine.halted(), engine.halt_summary()), (None, None));
        assert!(engine.sends_new_items());
    }
}
