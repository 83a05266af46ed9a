//! The progress line (`--progress`): items done and failed, rate, elapsed
//! time, and a bar with an ETA when the total is known. On a terminal,
//! indicatif redraws it in place, and workers' output is passed through the
//! master so that it is printed above the line, never into it; elsewhere a
//! plain line is logged every few seconds. Runs in the master.

use std::io::{IsTerminal, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the plain line is printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// A run's progress display.
pub struct Meter {
    bar: Option<ProgressBar>,
    started: Instant,
    plain_at: Instant,
}

impl Meter {
    /// Starts the display for `total` items (None when unknown): a bar when
    /// stderr is a terminal, plain lines otherwise.
    pub fn new(total: Option<u64>) -> Meter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let template = match total {
                Some(_) => "{bar:30} {pos}/{len} done, {msg}, {rate}, {elapsed} elapsed, ETA {eta}",
                None => "{spinner} {pos} done, {msg}, {rate}, {elapsed} elapsed",
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{:.1}/s", state.per_sec());
                    },
                );
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_style(style)
        });
        Meter {
            bar,
            started: Instant::now(),
            plain_at: Instant::now(),
        }
    }

    /// True when a bar is drawn on the terminal, so workers' output must go
    /// through `print_through`.
    pub fn drawing(&self) -> bool {
        self.bar.is_some()
    }

    /// Shows `done` items finished, `failed` of them failed. Returns a plain
    /// progress line when one is due (no terminal).
    pub fn update(&mut self, done: u64, failed: u64) -> Option<String> {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{failed} failed"));
            bar.set_position(done);
            return None;
        }
        if self.plain_at.elapsed() < PLAIN_INTERVAL {
            return None;
        }
        self.plain_at = Instant::now();
        Some(plain_line(done, failed, self.started.elapsed()))
    }

    /// Writes a worker's output to `fd` (1 or 2) above the bar.
    pub fn print_through(&self, fd: RawFd, bytes: &[u8]) {
        let write = || {
            // SAFETY: fd 1 and 2 stay open in the master for its whole life.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
            file.write_all(bytes).ok()
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
    }

    /// Shows the final counts: leaves the bar on the terminal, or returns
    /// the last plain line.
    pub fn finish(&mut self, done: u64, failed: u64) -> Option<String> {
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{failed} failed"));
                bar.set_position(done);
                bar.finish();
                None
            }
            None => Some(plain_line(done, failed, self.started.elapsed())),
        }
    }
}

/// The plain progress line: "1234 done, 2 failed, 456.7/s, 12s elapsed".
pub fn plain_line(done: u64, failed: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    format!(
        "{done} done, {failed} failed, {rate:.1}/s, {}s elapsed",
        elapsed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_says_done_failed_rate_and_time() {
        assert_eq!(
            plain_line(1000, 2, Duration::from_secs(4)),
            "1000 done, 2 failed, 250.0/s, 4s elapsed"
        );
    }
}
