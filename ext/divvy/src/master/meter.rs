//! The progress line (`--progress`): items done and failed (and skipped,
//! by a resumed run), rate, elapsed time, and a bar with an ETA when the
//! total is known: a skipped item leaves the total, so that the rate and
//! the ETA count only the items performed. On a terminal,
//! indicatif redraws it in place, fitted to the terminal's width at each
//! draw, and workers' output is passed through the master so that it is
//! printed above the line, never into it; elsewhere a plain line is logged
//! every few seconds. Runs in the master.

use std::io::{IsTerminal, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the plain line is printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// The widest the bar is drawn.
const BAR_WIDTH: usize = 30;

/// The narrowest bar worth drawing: below it, the line goes without one.
const MIN_BAR_WIDTH: usize = 10;

/// A run's progress display.
pub struct Meter {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    failed: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    started: Instant,
    plain_at: Instant,
}

impl Meter {
    /// Starts the display for `total` items (None when unknown): a bar when
    /// stderr is a terminal, plain lines otherwise.
    pub fn new(total: Option<u64>) -> Meter {
        let failed = Arc::new(AtomicU64::new(0));
        let skipped = Arc::new(AtomicU64::new(0));
        let bar = std::io::stderr().is_terminal().then(|| {
            // A spinner and a space stand before the line when the total is
            // unknown.
            let (template, spinner_width) = match total {
                Some(_) => ("{line}", 0),
                None => ("{spinner} {line}", 2),
            };
            let counted = (Arc::clone(&failed), Arc::clone(&skipped));
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "line",
                    move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                        let width = usize::from(console::Term::stderr().size().1);
                        let (failed, skipped) = &counted;
                        let progress = Progress::of(
                            state,
                            failed.load(Ordering::Relaxed),
                            skipped.load(Ordering::Relaxed),
                        );
                        let _ = out.write_str(&progress.line(width.saturating_sub(spinner_width)));
                    },
                );
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_style(style)
        });
        Meter {
            bar,
            total,
            failed,
            skipped,
            started: Instant::now(),
            plain_at: Instant::now(),
        }
    }

    /// True when a bar is drawn on the terminal, so workers' output must go
    /// through `print_through`.
    pub fn drawing(&self) -> bool {
        self.bar.is_some()
    }

    /// Shows `done` items finished, `failed` of them failed, and `skipped`
    /// more. Returns a plain progress line when one is due (no terminal).
    pub fn update(&mut self, done: u64, failed: u64, skipped: u64) -> Option<String> {
        if let Some(bar) = &self.bar {
            self.show(bar, done, failed, skipped);
            return None;
        }
        if self.plain_at.elapsed() < PLAIN_INTERVAL {
            return None;
        }
        self.plain_at = Instant::now();
        Some(plain_line(done, failed, skipped, self.started.elapsed()))
    }

    /// Moves `bar` to the counts; skipped items leave its length.
    fn show(&self, bar: &ProgressBar, done: u64, failed: u64, skipped: u64) {
        self.failed.store(failed, Ordering::Relaxed);
        if self.skipped.swap(skipped, Ordering::Relaxed) != skipped {
            if let Some(total) = self.total {
                bar.set_length(total.saturating_sub(skipped));
            }
        }
        bar.set_position(done);
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

    /// Shows the final counts: leaves the line on the terminal, without an
    /// ETA, or returns the last plain line.
    pub fn finish(&mut self, done: u64, failed: u64, skipped: u64) -> Option<String> {
        match &self.bar {
            Some(bar) => {
                self.show(bar, done, failed, skipped);
                bar.finish();
                None
            }
            None => Some(plain_line(done, failed, skipped, self.started.elapsed())),
        }
    }
}

/// What the line on a terminal tells.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    done: u64,
    total: Option<u64>,
    failed: u64,
    skipped: u64,
    per_sec: f64,
    elapsed: Duration,
    /// The time left; None when the total is unknown or the run is over.
    eta: Option<Duration>,
}

impl Progress {
    /// Reads the progress from indicatif's `state`, with `failed` and
    /// `skipped` items.
    fn of(state: &ProgressState, failed: u64, skipped: u64) -> Progress {
        let total = state.len();
        Progress {
            done: state.pos(),
            total,
            failed,
            skipped,
            per_sec: state.per_sec(),
            elapsed: state.elapsed(),
            eta: (total.is_some() && !state.is_finished()).then(|| state.eta()),
        }
    }

    /// The line, at most `width` columns wide: "[bar] 12/30 done, 0
    /// failed, 45.2/s, 3s elapsed, ETA 1s" (", 5 skipped" after the failed
    /// when a resumed run skipped items). What does not fit goes: the
    /// bar shrinks, then goes, then the elapsed time, the rate and the ETA
    /// go, in that order; the counts stay (cut only on the narrowest
    /// terminals).
    fn line(&self, width: usize) -> String {
        let mut parts = vec![
            match self.total {
                Some(total) => format!("{}/{total} done", self.done),
                None => format!("{} done", self.done),
            },
            failed_and_skipped(self.failed, self.skipped),
            format!("{:.1}/s", self.per_sec),
            format!("{:#} elapsed", HumanDuration(self.elapsed)),
        ];
        parts.extend(self.eta.map(|eta| format!("ETA {:#}", HumanDuration(eta))));
        let mut text = parts.join(", ");
        for dropped in [3, 2, 2] {
            if text.chars().count() <= width || parts.len() <= dropped {
                break;
            }
            parts.remove(dropped);
            text = parts.join(", ");
        }
        let room = width.saturating_sub(text.chars().count() + 1);
        match self.total {
            Some(total) if room >= MIN_BAR_WIDTH => {
                format!("{} {text}", bar(self.done, total, room.min(BAR_WIDTH)))
            }
            _ => text.chars().take(width).collect(),
        }
    }
}

/// A bar `width` cells wide, filled for `done` of `total`.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = match total {
        0 => width,
        _ => ((done.min(total) as u128 * width as u128) / total as u128) as usize,
    };
    "█".repeat(filled) + &"░".repeat(width - filled)
}

/// The plain progress line: "1234 done, 2 failed, 456.7/s, 12s elapsed"
/// (", 5 skipped" after the failed when a resumed run skipped items).
pub fn plain_line(done: u64, failed: u64, skipped: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    format!(
        "{done} done, {}, {rate:.1}/s, {}s elapsed",
        failed_and_skipped(failed, skipped),
        elapsed.as_secs()
    )
}

/// "2 failed", or "2 failed, 5 skipped" when items were skipped.
fn failed_and_skipped(failed: u64, skipped: u64) -> String {
    match skipped {
        0 => format!("{failed} failed"),
        _ => format!("{failed} failed, {skipped} skipped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(eta: Option<u64>) -> Progress {
        Progress {
            done: 12,
            total: Some(30),
            failed: 1,
            skipped: 0,
            per_sec: 45.25,
            elapsed: Duration::from_secs(3),
            eta: eta.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_plain_line_says_done_failed_rate_and_time() {
        assert_eq!(
            plain_line(1000, 2, 0, Duration::from_secs(4)),
            "1000 done, 2 failed, 250.0/s, 4s elapsed"
        );
        assert_eq!(
            plain_line(1000, 2, 30, Duration::from_secs(4)),
            "1000 done, 2 failed, 30 skipped, 250.0/s, 4s elapsed"
        );
    }

    #[test]
    fn a_wide_terminal_gets_the_whole_line_and_a_full_bar() {
        let line = progress(Some(5)).line(120);
        assert_eq!(
            line,
            format!(
                "{}{} 12/30 done, 1 failed, 45.2/s, 3s elapsed, ETA 5s",
                "█".repeat(12),
                "░".repeat(18)
            )
        );
    }

    #[test]
    fn a_narrow_terminal_gets_a_line_that_fits() {
        for width in 1..=120 {
            for eta in [Some(5), None] {
                let line = progress(eta).line(width);
                assert!(line.chars().count() <= width, "{width}: {line}");
            }
        }
        assert_eq!(
            progress(Some(5)).line(40),
            "12/30 done, 1 failed, 45.2/s, ETA 5s"
        );
        assert_eq!(
            progress(Some(5)).line(60),
            "████░░░░░░░ 12/30 done, 1 failed, 45.2/s, 3s elapsed, ETA 5s"
        );
        assert_eq!(progress(Some(5)).line(24), "12/30 done, 1 failed");
        assert_eq!(progress(Some(5)).line(8), "12/30 do");
    }

    #[test]
    fn the_finished_line_has_no_eta() {
        assert_eq!(
            progress(None).line(80),
            format!(
                "{}{} 12/30 done, 1 failed, 45.2/s, 3s elapsed",
                "█".repeat(12),
                "░".repeat(18)
            )
        );
    }
}
