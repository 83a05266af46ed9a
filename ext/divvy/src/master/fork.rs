//! Forking workers through Ruby's own `Process.fork` (so Ruby flushes
//! stdio, fixes up its threads and runs other gems' fork hooks): the first
//! at the start of a run, the others one per turn of the loop while
//! `dispatch` runs, and a replacement for each that exits while the run
//! goes on.

use magnus::{prelude::*, Error, Ruby, Value};

use divvy_core::os;
use divvy_core::wire::link;

use super::fork_watch::{self, Abandoned};
use super::run::Run;
use super::{report, turn};
use crate::vm::errors::failure_of;
use crate::vm::stdio::say;
use crate::vm::title;
use crate::worker;

/// What became of a fork.
enum Forked {
    /// The worker started.
    Started,
    /// fork(2) failed, for this reason.
    Failed(String),
    /// A signal asked the run to stop while the fork was under way.
    Interrupted,
}

/// Starts a worker in slot `index`; a fork that fails is reported, and
/// when no worker is left at all the run cannot go on. Runs in the master.
///
/// Raises what `before_fork` raises, `Divvy::Error` when no pipe can be
/// opened or no worker can be forked, and what reporting raises.
pub fn start(ruby: &Ruby, run: &mut Run, index: usize) -> Result<(), Error> {
    match spawn(ruby, run, index)? {
        Forked::Started | Forked::Interrupted => Ok(()),
        Forked::Failed(reason) => {
            run.engine
                .fork_failed(index, &reason, std::time::Instant::now(), &mut run.actions);
            report::carry_out(ruby, run)?;
            turn::raise_if_fatal(ruby, run)
        }
    }
}

/// Forks a process into worker slot `index`: `before_fork` in the master,
/// then the fork; the child runs the worker and never returns from here.
///
/// Returns whether the worker started (no pipes or no process is a
/// failure to report); raises what `before_fork` raises, and what
/// `Process.fork` raises besides a system error.
fn spawn(ruby: &Ruby, run: &mut Run, index: usize) -> Result<Forked, Error> {
    let view = run.view(ruby, index)?;
    let task = run.task()?;
    let _: Value = task.funcall("before_fork", (view,))?;
    let (link, ends) = match link::open(run.captures_output()) {
        Ok(opened) => opened,
        // Out of descriptors is a limit like the process limit.
        Err(err) => return Ok(Forked::Failed(format!("opening its pipes failed: {err}"))),
    };
    let mut inherited_fds = run.engine.descriptors_for_child();
    inherited_fds.extend(run.wake.raw_fds());
    inherited_fds.extend(link.raw_fds());
    let options = run.engine.options();
    let (performer, perform_method) = performer(ruby, task)?;
    let setup = worker::Setup {
        task,
        view: view.as_value(),
        number: index + 1,
        performer,
        perform_method,
        ends,
        inherited_fds,
        master_pid: run.master_pid,
        counter: link.counter(),
        wants_results: options.wants_results,
        max_memory: options.max_memory,
        verbose: run.verbose,
        script: title::script_name(ruby),
    };
    let watch = run.fork_watch.watch();
    let forked: Result<Option<i32>, Error> = ruby.module_process().funcall("fork", ());
    let pid = match forked {
        Ok(Some(pid)) => {
            watch.end();
            pid
        }
        Ok(None) => {
            watch.end_in_child();
            super::OnlyRun::release_in_child();
            worker::run(ruby, setup)
        }
        // SAFETY: getpid has no preconditions.
        Err(error) if unsafe { libc::getpid() } != run.master_pid => {
            // Raised in the new worker (a gem's after-fork callback): it
            // must not go on as a second master.
            watch.end_in_child();
            worker::report_and_leave(
                ruby,
                &format!(
                    "worker {}: Process.fork raised in the new worker",
                    index + 1
                ),
                &error,
            )
        }
        Err(error) => return given_up(ruby, watch, error),
    };
    // The worker's ends are the worker's: the master keeps none open.
    drop(setup);
    os::lead_process_group(pid);
    run.engine.started(index, pid, Some(link));
    if run.verbose {
        let who = run.engine.pool().worker(index).who();
        say(ruby, &format!("{who} started"))?;
    }
    Ok(Forked::Started)
}

/// What a fork that raised `error` comes to: given up by a trap (stuck, or
/// a signal came), failed with a system error, or an error to raise (a fork
/// hook of another gem raised it).
fn given_up(ruby: &Ruby, watch: fork_watch::Watch<'_>, error: Error) -> Result<Forked, Error> {
    match watch.end() {
        Some(Abandoned::Stuck) => Ok(Forked::Failed(String::from(
            "fork(2) keeps failing (Resource temporarily unavailable)",
        ))),
        Some(Abandoned::Interrupted) => Ok(Forked::Interrupted),
        None if error.is_kind_of(ruby.exception_system_call_error()) => {
            Ok(Forked::Failed(failure_of(&error).message))
        }
        None => Err(error),
    }
}

/// Picks what performs items: the callable the task's `divvy_performer`
/// returns (as `Divvy.map`'s task has) and its `call`, or else the task and
/// its perform method.
///
/// Raises what `divvy_performer` raises.
fn performer(ruby: &Ruby, task: Value) -> Result<(Value, &'static str), Error> {
    if task.respond_to("divvy_performer", false)? {
        return Ok((task.funcall("divvy_performer", ())?, "call"));
    }
    Ok((task, perform_method(ruby, task)?))
}

/// Picks `perform`, or `process` for a divvy 1.1 script that defines
/// `process` but keeps `Parallelizable`'s default `perform`.
fn perform_method(ruby: &Ruby, task: Value) -> Result<&'static str, Error> {
    if !task.respond_to("process", true)? {
        return Ok("perform");
    }
    let owner = task
        .funcall::<_, _, Value>("method", ("perform",))
        .and_then(|method| method.funcall::<_, _, Value>("owner", ()))
        .ok();
    let default_owner = ruby
        .define_module("Divvy")?
        .const_get::<_, Value>("Parallelizable")
        .ok();
    let inherits_default = match (owner, default_owner) {
        (Some(owner), Some(default)) => owner.eql(default).unwrap_or(false),
        _ => true,
    };
    Ok(if inherits_default {
        "process"
    } else {
        "perform"
    })
}

/// Replaces the workers that exited while the run goes on, and starts one
/// that never ran (at the start of a run, or added by TTIN): starting them
/// one per turn lets the first ones work while the others fork.
///
/// Raises what `spawn` raises.
pub fn respawn(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    for index in run.engine.due_spawns(std::time::Instant::now()) {
        start(ruby, run, index)?;
    }
    Ok(())
}

/// Starts every worker that never ran, so each of the pool's workers runs
/// at least once even when `dispatch` yielded fewer items than there are
/// workers. Starts none once the run is stopping.
///
/// Raises what `spawn` raises.
pub fn start_remaining(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    while let Some(index) = run.engine.next_unstarted(std::time::Instant::now()) {
        start(ruby, run, index)?;
    }
    Ok(())
}
