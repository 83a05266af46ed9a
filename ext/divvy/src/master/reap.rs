//! Reaping workers that exited, each by its own pid (never `-1`, which
//! would steal statuses other code waits for), through Ruby's
//! `Process::Status.wait` so that the status reaches `Divvy::Worker#status`.

use std::time::Instant;

use magnus::{prelude::*, value::Lazy, Error, RClass, Ruby, Value};

use divvy_core::engine::exit::Exit;

use super::report;
use super::run::Run;
use super::turn::{print_through, raise_if_fatal};
use crate::marshal;
use crate::vm::errors::os_error;

static PROCESS_STATUS: Lazy<RClass> = Lazy::new(|ruby| {
    ruby.module_process()
        .const_get("Status")
        .expect("Process::Status is part of Ruby")
});

/// Reaps the workers that exited: those whose pipe hung up, or every live
/// one when `check_all` or none was checked for a while. Runs in the
/// master.
///
/// Raises `BootFailure` when workers keep dying before they boot, and what
/// reporting or a hook raises.
pub fn reap(ruby: &Ruby, run: &mut Run, check_all: bool) -> Result<(), Error> {
    for (index, pid) in run.engine.reap_candidates(check_all, Instant::now()) {
        if let Some(status) = try_wait(ruby, pid)? {
            settle(ruby, run, index, status)?;
        }
    }
    Ok(())
}

/// Settles worker `index`, whose process ended with `status`: what it
/// wrote before it exited comes first (an item it answered is not taken
/// for lost, its output is shown), then what its exit means.
fn settle(ruby: &Ruby, run: &mut Run, index: usize, status: Value) -> Result<(), Error> {
    let meter = run.meter.as_ref();
    run.engine.drain_output(index, &mut |stream, bytes| {
        print_through(meter, stream, bytes)
    });
    run.engine
        .read_answers(index, &mut run.actions)
        .map_err(|err| os_error(ruby, "reading from a worker", err))?;
    marshal::landing_failure(ruby)?;
    report::carry_out(ruby, run)?;
    let exit = exit_of(status)?;
    run.view(ruby, index)?
        .reaped((exit != Exit::Unknown).then_some(status));
    run.engine
        .on_exit(index, exit, Instant::now(), &mut run.actions);
    report::carry_out(ruby, run)?;
    raise_if_fatal(ruby, run)
}

/// Reaps `pid` if it has exited, without blocking.
///
/// Returns its `Process::Status` (with pid -1 when it was reaped
/// elsewhere), or `None` while it runs.
pub fn try_wait(ruby: &Ruby, pid: i32) -> Result<Option<Value>, Error> {
    ruby.get_inner(&PROCESS_STATUS)
        .funcall("wait", (pid, libc::WNOHANG))
}

/// Reads how a process ended from its `Process::Status`.
///
/// Raises what the status's readers raise (nothing, for a real status).
pub fn exit_of(status: Value) -> Result<Exit, Error> {
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
