//! The words of divvy's reports about workers and items: who, what, why.

use std::time::Duration;

use super::exit::Exit;
use crate::wire::frame::Failure;

/// The longest item description printed in a report.
const ITEM_DESCRIPTION_LIMIT: usize = 200;

/// How an item failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// `perform` raised; the worker lives on.
    Raised(Failure),
    /// The worker died while performing it.
    Died(Exit),
    /// The worker died before it could start it, and so had the workers
    /// before it that were sent it: it seems to kill whoever reads it.
    DiedReceiving(Exit),
    /// It ran past the timeout and its worker was stopped.
    TimedOut(Duration),
    /// It was performed, but its worker ended this way before the result
    /// reached the master.
    Lost(Exit),
}

impl Cause {
    /// The reason as `Divvy::TaskError#reason` names it.
    pub fn reason(&self) -> &'static str {
        match self {
            Cause::Raised(_) => "raised",
            Cause::Died(_) | Cause::DiedReceiving(_) => "died",
            Cause::TimedOut(_) => "timed_out",
            Cause::Lost(_) => "lost",
        }
    }
}

/// A worker as reports name it: its number, and the pid of its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who {
    /// The worker's number, from 1.
    pub number: usize,
    /// The pid of its current or last process.
    pub pid: Option<i32>,
}

impl std::fmt::Display for Who {
    /// `worker 3 (pid 4242)`, or `worker 3` before it ever ran.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "worker {} (pid {pid})", self.number),
            None => write!(f, "worker {}", self.number),
        }
    }
}

/// The report of one failure, without the `divvy:` prefix: `who` failed
/// `item` (its description) because of `cause`.
pub fn failure_message(who: Who, item: &str, cause: &Cause) -> String {
    match cause {
        Cause::Raised(failure) => format!(
            "{who} failed performing {item}: {}: {}",
            failure.class_name, failure.message
        ),
        Cause::Died(exit) => format!("{who} {} while performing {item}", exit.describe()),
        Cause::DiedReceiving(exit) => format!(
            "{who} {} before it could start {item}, as did the {} workers sent it before",
            exit.describe(),
            super::settle::BOUNCE_LIMIT - 1
        ),
        Cause::TimedOut(timeout) => format!(
            "{who} timed out after {}s performing {item}",
            timeout.as_secs_f64()
        ),
        Cause::Lost(exit) => format!(
            "{who} {} after performing {item}; its result was lost",
            exit.describe()
        ),
    }
}

/// Cuts an item description to a readable length.
pub fn truncate(mut text: String) -> String {
    if text.chars().count() > ITEM_DESCRIPTION_LIMIT {
        text = text.chars().take(ITEM_DESCRIPTION_LIMIT).collect();
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(number: usize, pid: i32) -> Who {
        Who {
            number,
            pid: Some(pid),
        }
    }

    #[test]
    fn names_the_worker_item_and_cause() {
        let raised = Cause::Raised(Failure {
            class_name: "ArgumentError".into(),
            message: "no good".into(),
            backtrace: vec![],
        });
        assert_eq!(
            failure_message(who(2, 7), "[3]", &raised),
            "worker 2 (pid 7) failed performing [3]: ArgumentError: no good"
        );
        assert_eq!(
            failure_message(who(3, 8), "[42]", &Cause::Died(Exit::Signaled(9))),
            "worker 3 (pid 8) died by SIGKILL while performing [42]"
        );
        assert_eq!(
            failure_message(
                who(1, 9),
                "[1]",
                &Cause::TimedOut(Duration::from_millis(1500))
            ),
            "worker 1 (pid 9) timed out after 1.5s performing [1]"
        );
        assert_eq!(
            failure_message(who(1, 9), "[7]", &Cause::Lost(Exit::Exited(3))),
            "worker 1 (pid 9) exited with status 3 after performing [7]; its result was lost"
        );
        let never_ran = Who {
            number: 4,
            pid: None,
        };
        assert_eq!(never_ran.to_string(), "worker 4");
    }

    #[test]
    fn truncates_long_descriptions() {
        assert_eq!(truncate("[1]".into()), "[1]");
        let long = truncate("x".repeat(500));
        assert_eq!(long.chars().count(), ITEM_DESCRIPTION_LIMIT + 3);
        assert!(long.ends_with("..."));
    }
}
