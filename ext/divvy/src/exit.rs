//! How a worker process ended, in words for reports.

use magnus::{prelude::*, value::Lazy, Error, RClass, Ruby, Value};
use nix::sys::signal::Signal;

static PROCESS_STATUS: Lazy<RClass> = Lazy::new(|ruby| {
    ruby.module_process()
        .const_get("Status")
        .expect("Process::Status is part of Ruby")
});

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
    /// Reads a `Process::Status`.
    ///
    /// Raises what the status's readers raise (nothing, for a real status).
    pub fn from_status(status: Value) -> Result<Exit, Error> {
        if status.funcall::<_, _, i64>("pid", ())? < 0 {
            return Ok(Exit::Unknown);
        }
        if let Some(signo) = status.funcall::<_, _, Option<i32>>("termsig", ())? {
            return Ok(Exit::Signaled(signo));
        }
        match status.funcall::<_, _, Option<i32>>("exitstatus", ())? {
            Some(code) => Ok(Exit::Exited(code)),
            None => Ok(Exit::Unknown),
        }
    }

    /// True for an exit with status 0.
    pub fn is_clean(self) -> bool {
        self == Exit::Exited(0)
    }

    /// The name of the signal that killed the process ("SIGKILL"), or an
    /// empty string when no signal did.
    pub fn signal_name(self) -> String {
        match self {
            Exit::Signaled(signo) => match Signal::try_from(signo) {
                Ok(signal) => signal.as_str().to_string(),
                Err(_) => format!("signal {signo}"),
            },
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

/// Reaps `pid` if it has exited, without blocking. Runs in the master.
///
/// Returns its `Process::Status` (with pid -1 when it was reaped
/// elsewhere), or `None` while it runs.
pub fn try_wait(ruby: &Ruby, pid: i32) -> Result<Option<Value>, Error> {
    ruby.get_inner(&PROCESS_STATUS)
        .funcall("wait", (pid, libc::WNOHANG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_end() {
        assert_eq!(Exit::Exited(1).describe(), "exited with status 1");
        assert_eq!(Exit::Signaled(9).describe(), "died by SIGKILL");
        assert_eq!(Exit::Signaled(11).describe(), "died by SIGSEGV");
        assert!(Exit::Exited(0).is_clean());
        assert!(!Exit::Signaled(15).is_clean());
        assert!(!Exit::Unknown.is_clean());
    }
}
