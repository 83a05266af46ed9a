//! What an earlier run's job log recorded, and what a resumed run does
//! with each item: skip it, or perform it; or stop, when `dispatch` no
//! longer yields at an index the item the log recorded there.

use std::collections::HashMap;
use std::path::Path;

use super::record::{Entry, Outcome};

/// What a run does with the items its job log recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resume {
    /// Nothing: every item is performed (`--joblog` alone).
    #[default]
    Off,
    /// Skip the items recorded as performed or failed (`--resume`, as GNU
    /// parallel's).
    SkipSettled,
    /// Skip the items recorded as performed; perform again those recorded
    /// as failed (`--resume-failed`).
    RerunFailed,
}

/// The last outcome the log recorded for each item.
#[derive(Debug, Default)]
pub struct History {
    /// Dispatch index => (digest, outcome), from the item's last record.
    last: HashMap<u64, (u64, Outcome)>,
}

/// The item at an index is not the one the log recorded there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The dispatch index.
    pub index: u64,
    /// The digest of the item `dispatch` yields there now.
    pub digest: u64,
    /// The digest the log recorded.
    pub logged: u64,
}

impl Mismatch {
    /// The one-line error, naming the log at `path`.
    pub fn message(&self, path: &Path) -> String {
        format!(
            "dispatch changed since the job log {} was written: the item at dispatch index {} \
             (Seq {}) has digest {:016x}, the log recorded {:016x}; \
             give --joblog a new file to start over",
            path.display(),
            self.index,
            self.index.saturating_add(1),
            self.digest,
            self.logged
        )
    }
}

impl History {
    /// Records `entry`, read from the log: a later record of an item
    /// replaces an earlier one (a failed item performed by a rerun).
    pub fn record(&mut self, entry: Entry) {
        self.last.insert(entry.index, (entry.digest, entry.outcome));
    }

    /// How many items the log recorded (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when the log recorded no item (for tests).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Decides whether the item at dispatch index `index`, whose dump has
    /// `digest`, is skipped under `resume`.
    ///
    /// Returns true to skip it; a `Mismatch` when the log recorded another
    /// item at that index.
    pub fn skips(&self, index: u64, digest: u64, resume: Resume) -> Result<bool, Mismatch> {
        let Some(&(logged, outcome)) = self.last.get(&index) else {
            return Ok(false);
        };
        if logged != digest {
            return Err(Mismatch {
                index,
                digest,
                logged,
            });
        }
        Ok(match resume {
            Resume::Off => false,
            Resume::SkipSettled => true,
            Resume::RerunFailed => outcome == Outcome::Performed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let mut history = History::default();
        for (index, digest, outcome) in [
            (0, 10, Outcome::Performed),
            (1, 11, Outcome::Failed),
            (2, 12, Outcome::Failed),
            (2, 12, Outcome::Performed),
        ] {
            history.record(Entry {
                index,
                digest,
                outcome,
            });
        }
        history
    }

    #[test]
    fn resume_skips_what_settled_and_resume_failed_what_was_performed() {
        let history = history();
        assert_eq!(history.len(), 3);
        let skips = |resume| {
            (0..4)
                .map(|index| history.skips(index, 10 + index, resume).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(skips(Resume::SkipSettled), [true, true, true, false]);
        assert_eq!(
            skips(Resume::RerunFailed),
            [true, false, true, false],
            "the last record of item 2 says performed"
        );
        assert_eq!(skips(Resume::Off), [false; 4]);
    }

    #[test]
    fn another_item_at_a_recorded_index_is_a_mismatch() {
        let mismatch = history().skips(1, 99, Resume::SkipSettled).unwrap_err();
        assert_eq!(
            mismatch,
            Mismatch {
                index: 1,
                digest: 99,
                logged: 11
            }
        );
        assert_eq!(
            mismatch.message(Path::new("run.log")),
            "dispatch changed since the job log run.log was written: the item at dispatch \
             index 1 (Seq 2) has digest 0000000000000063, the log recorded 000000000000000b; \
             give --joblog a new file to start over"
        );
    }
}
