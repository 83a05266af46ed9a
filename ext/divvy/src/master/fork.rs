//! Forking workers through Ruby's own `Process.fork` (so Ruby flushes
//! stdio, fixes up its threads and runs other gems' fork hooks): the first
//! at the start of a run, the others one per turn of the loop while
//! `dispatch` runs, and a replacement for each that exits while the run
//! goes on.

use magnus::{prelude::*, Error, Ruby, Value};

use divvy_core::os;
use divvy_core::wire::link;

use super::run::Run;
use crate::vm::errors::os_error;
use crate::vm::stdio::say;
use crate::vm::title;
use crate::worker;

/// Forks a process into worker slot `index`: `before_fork` in the master,
/// then the fork; the child runs the worker and never returns from here.
/// Runs in the master.
///
/// Raises what `before_fork` or `Process.fork` raise, and `Divvy::Error`
/// when no pipe can be opened.
pub fn spawn(ruby: &Ruby, run: &mut Run, index: usize) -> Result<(), Error> {
    let view = run.view(ruby, index)?;
    let task = run.task()?;
    let _: Value = task.funcall("before_fork", (view,))?;
    let (link, ends) = link::open(run.captures_output())
        .map_err(|err| os_error(ruby, "opening worker pipes", err))?;
    let mut inherited_fds = run.engine.descriptors_for_child();
    inherited_fds.extend(run.wake.raw_fds());
    inherited_fds.extend(link.raw_fds());
    let perform_method = perform_method(ruby, task)?;
    let forked: Option<i32> = ruby.module_process().funcall("fork", ())?;
    let Some(pid) = forked else {
        let options = run.engine.options();
        worker::run(
            ruby,
            worker::Setup {
                task,
                view: view.as_value(),
                number: index + 1,
                perform_method,
                ends,
                inherited_fds,
                master_pid: run.master_pid,
                counter: link.counter(),
                wants_results: options.wants_results,
                max_memory: options.max_memory,
                verbose: run.verbose,
                script: title::script_name(ruby),
            },
        )
    };
    drop(ends);
    os::lead_process_group(pid);
    run.engine.started(index, pid, Some(link));
    if run.verbose {
        say(
            ruby,
            &format!("{} started", run.engine.pool().worker(index).who()),
        )?;
    }
    Ok(())
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
    for index in run.engine.due_spawns() {
        spawn(ruby, run, index)?;
    }
    Ok(())
}

/// Starts every worker that never ran, so each of the pool's workers runs
/// at least once even when `dispatch` yielded fewer items than there are
/// workers. Starts none once the run is stopping.
///
/// Raises what `spawn` raises.
pub fn start_remaining(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    while let Some(index) = run.engine.next_unstarted() {
        spawn(ruby, run, index)?;
    }
    Ok(())
}
