//! The options of a run, checked once when the master is made.

use std::time::Duration;

/// How a master runs its items.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunOptions {
    /// How many more times an item that failed is tried.
    pub retries: u32,
    /// The longest one item's `perform` may take.
    pub timeout: Option<Duration>,
    /// Items after which a worker is replaced by a fresh one
    /// (`max_tasks:`, `--max-tasks`).
    pub max_items: Option<u64>,
    /// Resident memory, in bytes, past which a worker is replaced after its
    /// current item.
    pub max_memory: Option<u64>,
    /// Perform only the items whose dispatch index modulo the second number
    /// is the first.
    pub shard: Option<Shard>,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// The master wants each item's result (the task has a `completed`
    /// hook): an item counts as performed only once its result arrived.
    pub wants_results: bool,
}

/// One of several machines sharing a run: items whose dispatch index
/// modulo `count` equals `index` are this one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// How many shards there are.
    pub count: u64,
}

impl Shard {
    /// Checks a shard given as `[index, count]`.
    ///
    /// Returns it, or a message naming the bad value.
    pub fn new(index: i64, count: i64) -> Result<Shard, String> {
        match (u64::try_from(index), u64::try_from(count)) {
            (Ok(index), Ok(count)) if index < count => Ok(Shard { index, count }),
            _ => Err(format!(
                "shard must be [index, count] with 0 <= index < count, got [{index}, {count}]"
            )),
        }
    }

    /// True when the item at dispatch position `position` is this shard's.
    pub fn owns(self, position: u64) -> bool {
        position % self.count == self.index
    }
}

/// Checks a positive count (`max_tasks`) or size in megabytes
/// (`max_memory`) named `name`.
///
/// Returns it, or a message naming the bad value.
pub fn positive(name: &str, value: i64) -> Result<u64, String> {
    u64::try_from(value)
        .ok()
        .filter(|value| *value > 0)
        .ok_or_else(|| format!("{name} must be a positive Integer, got {value}"))
}

/// Checks a retry count given as an integer.
///
/// Returns it, or a message naming the bad value.
pub fn retries(value: i64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("retries must be a non-negative Integer, got {value}"))
}

/// Checks a timeout given in seconds.
///
/// Returns it, or a message naming the bad value.
pub fn timeout(seconds: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|timeout| !timeout.is_zero())
        .ok_or_else(|| format!("timeout must be a positive number of seconds, got {seconds}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sensible_values() {
        assert_eq!(retries(0), Ok(0));
        assert_eq!(retries(5), Ok(5));
        assert_eq!(timeout(0.25), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn shards_split_items_exactly_once() {
        let shards: Vec<Shard> = (0..3).map(|index| Shard::new(index, 3).unwrap()).collect();
        for position in 0..100 {
            assert_eq!(
                shards.iter().filter(|shard| shard.owns(position)).count(),
                1
            );
        }
        assert!(Shard::new(3, 3).is_err());
        assert!(Shard::new(-1, 3).is_err());
        assert!(Shard::new(0, 0).is_err());
    }

    #[test]
    fn rejects_and_names_bad_values() {
        assert_eq!(
            positive("max_tasks", 0),
            Err(String::from("max_tasks must be a positive Integer, got 0"))
        );
        assert_eq!(positive("max_memory", 512), Ok(512));
        assert_eq!(
            retries(-1),
            Err(String::from(
                "retries must be a non-negative Integer, got -1"
            ))
        );
        assert!(retries(i64::MAX).is_err());
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert!(timeout(bad)
                .unwrap_err()
                .contains("timeout must be a positive number"));
        }
    }
}
