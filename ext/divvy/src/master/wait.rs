//! The master's wait: for a worker's answer, room in an item pipe, a
//! worker's output, a signal or a deadline, with the GVL released so that
//! other Ruby threads and signal traps run meanwhile.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use magnus::{Error, Ruby};

use divvy_core::engine::stop::Stop;
use divvy_core::engine::{Fatal, Watched};

use super::run::Run;
use super::turn::print_through;
use super::{report, traps};
use crate::marshal;
use crate::vm::errors::os_error;
use crate::vm::nogvl::without_gvl;
use crate::vm::stdio::flush_all;

/// Writes what is queued, waits until something is ready or the next
/// deadline, then reads what the workers sent. Runs in the master.
///
/// Returns true when every worker should be checked for an exit (a signal,
/// such as SIGCHLD, or the deadline ended the wait); raises `Divvy::Error`
/// when a pipe fails, and what Ruby raises on an interrupt (a trap's
/// exception).
pub fn wait(ruby: &Ruby, run: &mut Run) -> Result<bool, Error> {
    let mut fds = vec![pollfd(run.wake.read_fd().as_raw_fd(), libc::POLLIN)];
    // Standard output is watched for errors only (no events asked): its
    // reader going away shows as POLLERR.
    let stdout = usize::from(run.watch_stdout);
    if run.watch_stdout {
        fds.push(pollfd(1, 0));
    }
    let mut watched = Vec::new();
    run.engine
        .watch(&mut fds, &mut watched)
        .map_err(|err| os_error(ruby, "sending items", err))?;
    let wait_ms =
        i32::try_from(run.engine.wait_bound(Instant::now()).as_millis()).unwrap_or(i32::MAX);
    // What the master printed shows up before it sleeps, not at exit.
    flush_all();
    let polled = without_gvl(ruby, run.wake.write_raw_fd(), || {
        // SAFETY: `fds` is a valid array of pollfd for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        (ready, std::io::Error::last_os_error())
    })?;
    let check_all = match polled {
        Some((ready, err)) if ready < 0 => {
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(os_error(ruby, "waiting for workers", err));
            }
            true
        }
        Some((0, _)) | None => true,
        Some(_) => fds[0].revents != 0,
    };
    if check_all || fds[0].revents != 0 {
        run.wake.drain();
    }
    if stdout > 0 && fds[1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
        return Err(stdout_closed(ruby, run));
    }
    let ready: Vec<Watched> = fds[1 + stdout..]
        .iter()
        .zip(watched)
        .filter(|(pollfd, _)| pollfd.revents != 0)
        .map(|(_, watched)| watched)
        .collect();
    let meter = run.meter.as_ref();
    run.engine
        .collect(
            &ready,
            Instant::now(),
            &mut run.actions,
            &mut |stream, bytes| print_through(meter, stream, bytes),
        )
        .map_err(|err| os_error(ruby, "talking to workers", err))?;
    marshal::landing_failure(ruby)?;
    Ok(check_all)
}

/// Stops the run at once because the reader of standard output went away
/// (`| head`): what the workers print is lost from now on. Counts as a
/// SIGPIPE, quietly.
///
/// Returns the `Shutdown` error to raise.
fn stdout_closed(ruby: &Ruby, run: &mut Run) -> Error {
    run.stdout_closed = true;
    traps::record(libc::SIGPIPE);
    run.engine.request_stop(Stop::Abort);
    report::fatal_error(ruby, run, &Fatal::Abort)
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
