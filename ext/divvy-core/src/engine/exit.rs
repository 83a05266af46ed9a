//! How a worker process ended, in words for reports.

use nix::sys::signal::Signal;

/// The end of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Exited(i32),
    /// A signal with this number killed it.
    Signaled(i32),
    /// Someone else reaped it (`trap(:CHLD, "IGNORE")` or a stray `wait`).
    Unknown,
}

impl Exit {
    /// True for an exit with status 0.
    pub fn is_clean(self) -> bool {
        self == Exit::Exited(0)
    }

    /// The name of the signal that killed the process ("SIGKILL"), or an
    /// empty string when no signal did.
    pub fn signal_name(self) -> String {
        match self {
            Exit::Signaled(signo) => signal_name(signo),
            _ => String::new(),
        }
    }

    /// Describes the end: "died by SIGKILL", "exited with status 1".
    pub fn describe(self) -> String {
        match self {
            Exit::Exited(code) => format!("exited with status {code}"),
            Exit::Signaled(_) => format!("died by {}", self.signal_name()),
            Exit::Unknown => String::from("exited (its status was reaped elsewhere)"),
        }
    }
}

/// The name of signal `signo` ("SIGINT"), or "signal N" for one without.
pub fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) => format!("signal {signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_end() {
        assert_eq!(Exit::Exited(1).describe(), "exited with status 1");
        assert_eq!(Exit::Signaled(9).describe(), "died by SIGKILL");
        assert_eq!(Exit::Signaled(11).describe(), "died by SIGSEGV");
        assert_eq!(Exit::Signaled(99).describe(), "died by signal 99");
        assert!(Exit::Exited(0).is_clean());
        assert!(!Exit::Signaled(15).is_clean());
        assert!(!Exit::Unknown.is_clean());
    }
}
