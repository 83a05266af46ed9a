//! The options of a run, checked once when the master is made.

use std::time::Duration;

/// How a master runs its items.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunOptions {
    /// Log worker starts, exits, respawns and retries; print backtraces.
    pub verbose: bool,
    /// How many more times an item that failed is tried.
    pub retries: u32,
    /// The longest one item's `perform` may take.
    pub timeout: Option<Duration>,
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
    fn rejects_and_names_bad_values() {
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
