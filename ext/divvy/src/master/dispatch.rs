//! Calling the task's `dispatch`: each item it yields is dumped, and sent
//! to a free worker, turning the loop while every worker is busy; a stop
//! request ends `dispatch` early, through a `catch`.

use std::time::Instant;

use magnus::{prelude::*, Error, Ruby, Value};

use divvy_core::engine::item::Item;
use divvy_core::engine::report::truncate;

use super::run::{Run, RunCell};
use super::{joblog, traps, turn};
use crate::marshal;
use crate::vm::errors::{divvy_error, failure_of, os_error};

/// Calls the task's `dispatch` with a block that sends each item it
/// yields, inside a `catch` so that the run can end `dispatch` early when
/// asked to stop. Runs in the master.
///
/// Raises what `dispatch` raises, and what sending an item raises (see
/// `on_item`).
pub fn dispatch(ruby: &Ruby, cell: &RunCell) -> Result<(), Error> {
    let tag = cell.lock(ruby)?.tag()?;
    let cell = cell.clone();
    let body = ruby.proc_from_fn(move |ruby, _args, _block| {
        let task = cell.lock(ruby)?.task()?;
        let for_items = cell.clone();
        let item_block =
            ruby.proc_from_fn(move |ruby, args, _block| on_item(ruby, &for_items, args));
        task.funcall_with_block::<_, _, Value>("dispatch", (), item_block)
    });
    let _: Value = ruby
        .module_kernel()
        .funcall_with_block("catch", (tag,), body)?;
    Ok(())
}

/// Sends one item `dispatch` yielded (its arguments `args`), turning the
/// loop until a worker has room for it; skips an item of another shard,
/// and one a resumed run need not perform.
///
/// Returns nil; raises `Divvy::Error` when the item cannot be marshalled
/// or is not the one the job log recorded at its index, and what turning
/// the loop raises (`Shutdown`, `BootFailure`, a hook's exception).
fn on_item(ruby: &Ruby, cell: &RunCell, args: &[Value]) -> Result<Value, Error> {
    let mut run = cell.lock(ruby)?;
    if stopping(&mut run) {
        return ruby.module_kernel().funcall("throw", (run.tag()?,));
    }
    let position = run.yielded;
    run.yielded += 1;
    if run
        .engine
        .options()
        .shard
        .is_some_and(|shard| !shard.owns(position))
    {
        return Ok(ruby.qnil().as_value());
    }
    let buffer = run.engine.spare_buffer();
    let (payload, plain) = marshal::dump_args(ruby, args, buffer)
        .map_err(|error| unmarshalable_item(ruby, args, &error))?;
    let Some(mut item) = joblog::admit(ruby, &mut run, Item::new(position, payload))? else {
        return Ok(ruby.qnil().as_value());
    };
    if !plain && run.keeps_args {
        // Its dump may not load back (a `marshal_load` that raises): the
        // hooks then get the arguments as yielded.
        run.keep_args(item.index, ruby.ary_new_from_values(args))?;
        item.kept = true;
    }
    loop {
        let run = &mut *run;
        let unsent = run
            .engine
            .dispatch(item, Instant::now(), &mut run.actions)
            .map_err(|err| os_error(ruby, "sending an item", err))?;
        let Some(back) = unsent else {
            return Ok(ruby.qnil().as_value());
        };
        item = back;
        turn::turn(ruby, run)?;
        if stopping(run) {
            return ruby.module_kernel().funcall("throw", (run.tag()?,));
        }
    }
}

/// True once the run is asked to stop dispatching: by a signal, by
/// `Master#shutdown`, by an item that raised `Divvy::Break`, or by the halt
/// policy.
fn stopping(run: &mut Run) -> bool {
    run.engine.request_stop(traps::requested_stop());
    !run.engine.sends_new_items() || run.board.shutdown_requested()
}

/// Builds the error for an item Marshal refused, naming the argument at
/// fault and its class.
fn unmarshalable_item(ruby: &Ruby, args: &[Value], error: &Error) -> Error {
    let culprit = args
        .iter()
        .enumerate()
        .find(|(_, arg)| marshal::dump(ruby, **arg).is_err());
    let reason = failure_of(error).message;
    let item = truncate(ruby.ary_new_from_values(args).inspect());
    let which = match culprit {
        Some((position, arg)) => format!(
            "argument {} (a {}) cannot be marshalled",
            position + 1,
            // SAFETY: the class name is copied out at once.
            unsafe { arg.classname() }
        ),
        None => String::from("it cannot be marshalled"),
    };
    divvy_error(
        ruby,
        format!("cannot dispatch item {item}: {which}: {reason}"),
    )
}
