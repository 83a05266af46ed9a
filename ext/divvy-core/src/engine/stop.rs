//! How a run is asked to stop, from the signals the master received and
//! `Master#shutdown`. Signal traps only count signals; this decides what
//! the counts mean (see docs/SIGNALS.md).

/// How a run is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    No,
    /// Send nothing new; let in-flight items finish.
    Drain,
    /// Kill the workers now.
    Abort,
}

impl Stop {
    /// Decides how to stop after `interrupts` INT or QUIT signals and
    /// `terminates` TERM signals: the first INT or QUIT drains; a second,
    /// or any TERM, aborts.
    pub fn from_signals(interrupts: usize, terminates: usize) -> Stop {
        if terminates > 0 || interrupts > 1 {
            Stop::Abort
        } else if interrupts == 1 {
            Stop::Drain
        } else {
            Stop::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_interrupt_drains_two_abort() {
        assert_eq!(Stop::from_signals(0, 0), Stop::No);
        assert_eq!(Stop::from_signals(1, 0), Stop::Drain);
        assert_eq!(Stop::from_signals(2, 0), Stop::Abort);
    }

    #[test]
    fn terminate_aborts_at_once() {
        assert_eq!(Stop::from_signals(0, 1), Stop::Abort);
        assert_eq!(Stop::from_signals(1, 1), Stop::Abort);
    }

    #[test]
    fn a_stronger_request_wins() {
        assert_eq!(Stop::Drain.max(Stop::Abort), Stop::Abort);
        assert_eq!(Stop::Drain.max(Stop::No), Stop::Drain);
    }
}
