//! The options of a run, checked once when the master is made.

use std::time::Duration;

use super::halt::Halt;

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
    /// When settled items end the run early (`--halt`); `None`: never.
    pub halt: Option<Halt>,
    /// How many items the task says `dispatch` yields (its `total`), for
    /// a halt percentage.
    pub total: Option<u64>,
}

/// The most workers a master keeps: more would not fit a machine's
/// processes and descriptors, and is surely a typo.
pub const MAX_WORKERS: u64 = 10_000;

/// The most retries: what a `u32` holds.
pub const MAX_RETRIES: u64 = u32::MAX as u64;

/// The largest `max_tasks` and shard count: what Ruby hands over as an
/// `i64`.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// The largest `max_memory`, in megabytes: its size in bytes fits a `u64`.
pub const MAX_MEGABYTES: u64 = u64::MAX >> 20;

/// The shortest timeout, in seconds: the master checks deadlines to the
/// millisecond, so a shorter one cannot be honoured.
pub const MIN_TIMEOUT: f64 = 0.001;

/// The longest timeout, in seconds (about 31 years): longer is no bound at
/// all, and a deadline that far keeps clear of the clock's limits.
pub const MAX_TIMEOUT: f64 = 1e9;

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

    /// The message for a shard whose numbers are past `MAX_COUNT`;
    /// `shown` is the value as the user wrote it.
    pub fn too_large(shown: &str) -> String {
        format!("shard must be [index, count] with 0 <= index < count <= {MAX_COUNT}, got {shown}")
    }

    /// True when the item at dispatch position `position` is this shard's.
    pub fn owns(self, position: u64) -> bool {
        position % self.count == self.index
    }
}

/// The message for a number past its option's largest value `max`;
/// `shown` is the value as the user wrote it.
pub fn too_large(name: &str, max: u64, shown: &str) -> String {
    format!("{name} must be at most {max}, got {shown}")
}

/// Checks a worker count.
///
/// Returns it, or a message naming the bad value.
pub fn worker_count(value: i64) -> Result<usize, String> {
    match u64::try_from(value) {
        Ok(0) | Err(_) => Err(format!(
            "worker count must be a positive Integer, got {value}"
        )),
        Ok(count) if count > MAX_WORKERS => {
            Err(too_large("worker count", MAX_WORKERS, &value.to_string()))
        }
        Ok(count) => Ok(count as usize),
    }
}

/// Checks a positive count (`max_tasks`) or size in megabytes
/// (`max_memory`) named `name`, at most `max`.
///
/// Returns it, or a message naming the bad value.
pub fn positive(name: &str, max: u64, value: i64) -> Result<u64, String> {
    match u64::try_from(value) {
        Ok(0) | Err(_) => Err(format!("{name} must be a positive Integer, got {value}")),
        Ok(number) if number > max => Err(too_large(name, max, &value.to_string())),
        Ok(number) => Ok(number),
    }
}

/// Checks a retry count given as an integer.
///
/// Returns it, or a message naming the bad value.
pub fn retries(value: i64) -> Result<u32, String> {
    if value < 0 {
        return Err(format!(
            "retries must be a non-negative Integer, got {value}"
        ));
    }
    u32::try_from(value).map_err(|_| too_large("retries", MAX_RETRIES, &value.to_string()))
}

/// Checks a timeout given in seconds; `shown` is the value as the user
/// wrote it, for the message.
///
/// Returns it, or a message naming the bad value.
pub fn timeout(seconds: f64, shown: &str) -> Result<Duration, String> {
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!(
            "timeout must be a positive number of seconds, got {shown}"
        ));
    }
    if seconds < MIN_TIMEOUT {
        return Err(format!(
            "timeout must be at least {MIN_TIMEOUT} seconds, got {shown}"
        ));
    }
    if seconds > MAX_TIMEOUT {
        return Err(format!(
            "timeout must be at most {MAX_TIMEOUT} seconds, got {shown}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sensible_values() {
        assert_eq!(retries(0), Ok(0));
        assert_eq!(retries(5), Ok(5));
        assert_eq!(timeout(0.25, "0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(worker_count(3), Ok(3));
    }

    #[test]
    fn takes_the_bounds_themselves() {
        assert_eq!(worker_count(10_000), Ok(10_000));
        assert_eq!(retries(i64::from(u32::MAX)), Ok(u32::MAX));
        assert_eq!(positive("max_tasks", MAX_COUNT, i64::MAX), Ok(MAX_COUNT));
        assert_eq!(timeout(0.001, "0.001"), Ok(Duration::from_millis(1)));
        assert_eq!(timeout(1e9, "1e9"), Ok(Duration::from_secs(1_000_000_000)));
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
            positive("max_tasks", MAX_COUNT, 0),
            Err(String::from("max_tasks must be a positive Integer, got 0"))
        );
        assert_eq!(positive("max_memory", MAX_MEGABYTES, 512), Ok(512));
        assert_eq!(
            retries(-1),
            Err(String::from(
                "retries must be a non-negative Integer, got -1"
            ))
        );
        assert_eq!(
            worker_count(0),
            Err(String::from(
                "worker count must be a positive Integer, got 0"
            ))
        );
        for bad in [0.0, -3.0, f64::NAN] {
            assert!(timeout(bad, "x")
                .unwrap_err()
                .contains("timeout must be a positive number"));
        }
    }

    #[test]
    fn says_how_large_a_value_may_be() {
        assert_eq!(
            retries(i64::MAX),
            Err(format!(
                "retries must be at most 4294967295, got {}",
                i64::MAX
            ))
        );
        assert_eq!(
            worker_count(10_001),
            Err(String::from(
                "worker count must be at most 10000, got 10001"
            ))
        );
        assert_eq!(
            positive("max_memory", MAX_MEGABYTES, 1 << 44),
            Err(String::from(
                "max_memory must be at most 17592186044415, got 17592186044416"
            ))
        );
        assert_eq!(
            timeout(f64::INFINITY, "Infinity"),
            Err(String::from(
                "timeout must be at most 1000000000 seconds, got Infinity"
            ))
        );
        assert_eq!(
            timeout(1e-9, "1.0e-09"),
            Err(String::from(
                "timeout must be at least 0.001 seconds, got 1.0e-09"
            ))
        );
    }
}
