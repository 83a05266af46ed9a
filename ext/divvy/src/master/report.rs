//! Carrying out what the engine asked for: the reports on stderr, the
//! task's `completed` and `failed` hooks with their `Divvy::TaskError`, the
//! signals to workers; and the errors and summary that end a run. Runs in
//! the master.

use std::time::Duration;

use magnus::{prelude::*, Error, Exception, IntoValue, KwArgs, RArray, Ruby, Value};

use divvy_core::engine::exit::{signal_name, Exit};
use divvy_core::engine::item::Item;
use divvy_core::engine::report::{failure_message, truncate, Cause, Who};
use divvy_core::engine::{Action, Fatal, Retry};
use divvy_core::os;
use divvy_core::wire::frame::ResultBytes;

use super::run::Run;
use super::traps;
use crate::marshal;
use crate::vm::call::apply;
use crate::vm::errors::{class, failure_of, Kind};
use crate::vm::stdio::say;

/// Does what the engine asked for, in order.
///
/// Raises what `$stderr.write` or a hook raise; the actions after it are
/// dropped (the run ends, and stops its workers).
pub fn carry_out(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    // Carrying out an action may ask for more (a result that cannot be
    // loaded fails its item): they are done in the same call.
    while !run.actions.is_empty() {
        carry_out_batch(ruby, run)?;
    }
    Ok(())
}

/// Does the actions asked for so far, in order.
fn carry_out_batch(ruby: &Ruby, run: &mut Run) -> Result<(), Error> {
    for action in std::mem::take(&mut run.actions) {
        match action {
            Action::Completed { who, item, result } => completed(ruby, run, who, item, result)?,
            Action::Broke { item, value } => broke(ruby, run, &item, &value)?,
            Action::Settled { index } => {
                run.kept_args(index, true)?;
            }
            Action::Failed {
                who,
                item,
                cause,
                retry,
            } => failed(ruby, run, who, &item, &cause, retry)?,
            Action::Signal { pid, signal } => send_signal(pid, signal),
            Action::Say(line) => say(ruby, &line)?,
            Action::Notice(line) if run.verbose => say(ruby, &line)?,
            Action::Notice(_) => {}
        }
    }
    Ok(())
}

/// Sends the signals the engine asked for, and drops its other actions:
/// for a run that is stopping its workers after an error.
pub fn send_signals(run: &mut Run) {
    for action in std::mem::take(&mut run.actions) {
        if let Action::Signal { pid, signal } = action {
            send_signal(pid, signal);
        }
    }
}

/// Sends `signal` to the group of worker process `pid`; a process already
/// gone is what the master learns when it reaps it.
fn send_signal(pid: i32, signal: i32) {
    os::signal_group(pid, signal);
}

/// Stores the value an item returned in the results Array (`results:`) at
/// its dispatch index, and hands it to the task's `completed(result,
/// *args)` hook, in the order items complete; a result that cannot be
/// loaded fails the item instead (or has it tried again).
///
/// Raises what the hook raises, and what storing raises.
fn completed(
    ruby: &Ruby,
    run: &mut Run,
    who: Who,
    item: Item,
    result: ResultBytes,
) -> Result<(), Error> {
    let received = result.len();
    let result = match marshal::load_result(ruby, result) {
        Ok(result) => result,
        Err(error) => {
            let mut failure = failure_of(&error);
            failure.message = format!(
                "the result of perform could not be loaded in the master: {}",
                failure.message
            );
            run.engine
                .reject_result(who, item, failure, &mut run.actions);
            return Ok(());
        }
    };
    run.engine.journal_performed(who, &item, received);
    run.store_result(item.index, result)?;
    if !run.calls_completed {
        return Ok(());
    }
    let args = args_of(ruby, run, &item, true)?.unwrap_or_else(|| ruby.ary_new());
    call_hook(run.task()?, "completed", result, args)
}

/// Hands the value of the `Divvy::Break` an item raised (nil when it cannot
/// be loaded) to the task's `broke(value, *args)` hook, if it has one; the
/// results Array gets nil at the item's index.
///
/// Raises what the hook raises.
fn broke(ruby: &Ruby, run: &Run, item: &Item, value: &[u8]) -> Result<(), Error> {
    run.reach_result(item.index)?;
    let args = args_of(ruby, run, item, true)?.unwrap_or_else(|| ruby.ary_new());
    let task = run.task()?;
    if !task.respond_to("broke", true)? {
        return Ok(());
    }
    let value = marshal::load(ruby, value).unwrap_or_else(|_| ruby.qnil().as_value());
    call_hook(task, "broke", value, args)
}

/// The arguments of `item`: loaded from its dump, or, when that fails, those
/// `dispatch` yielded, kept for it; with `release`, forgets the kept ones
/// (the item settled).
///
/// Raises nothing in practice (the kept arguments' Hash is always there).
fn args_of(ruby: &Ruby, run: &Run, item: &Item, release: bool) -> Result<Option<RArray>, Error> {
    let loaded = marshal::load(ruby, &item.payload.to_bytes())
        .ok()
        .and_then(RArray::from_value);
    if !item.kept {
        return Ok(loaded);
    }
    let kept = run.kept_args(item.index, release)?;
    Ok(loaded.or(kept))
}

/// Calls the task's hook `name` with `first` and then `args` splatted.
///
/// Raises what the hook raises.
fn call_hook(task: Value, name: &str, first: impl IntoValue, args: RArray) -> Result<(), Error> {
    let ruby = Ruby::get_with(task);
    let hook_args = ruby.ary_new_capa(args.len() + 1);
    hook_args.push(first)?;
    hook_args.concat(args)?;
    apply(&ruby, task, name, hook_args)?;
    Ok(())
}

/// Reports a failure of `item` on worker `who`; says when it will be
/// tried again (under `-v`); otherwise calls the task's `failed(error,
/// *args)` hook, if it has one.
///
/// Raises what `$stderr.write` or the hook raise.
fn failed(
    ruby: &Ruby,
    run: &Run,
    who: Who,
    item: &Item,
    cause: &Cause,
    retry: Option<Retry>,
) -> Result<(), Error> {
    let args = args_of(ruby, run, item, retry.is_none())?;
    let described = args
        .map(|args| truncate(args.inspect()))
        .unwrap_or_else(|| format!("item #{}", item.index));
    let message = failure_message(who, &described, cause);
    say(ruby, &with_backtrace(&message, cause, run.verbose))?;
    if let Some(retry) = retry {
        if run.verbose {
            let line = format!(
                "retrying {described} (attempt {} of {})",
                retry.attempt, retry.of
            );
            say(ruby, &line)?;
        }
        return Ok(());
    }
    let task = run.task()?;
    if !task.respond_to("failed", true)? {
        return Ok(());
    }
    let args = args.unwrap_or_else(|| ruby.ary_new());
    let error = task_error(ruby, &message, who, item, cause, args)?;
    call_hook(task, "failed", error, args)
}

/// The report of a failure, with the exception's backtrace under `-v` or
/// `DIVVY_VERBOSE_TRACE=1`.
fn with_backtrace(message: &str, cause: &Cause, verbose: bool) -> String {
    let mut line = message.to_string();
    if let Cause::Raised(failure) = cause {
        if verbose || std::env::var_os("DIVVY_VERBOSE_TRACE").is_some_and(|v| v == "1") {
            for frame in &failure.backtrace {
                line.push_str("\n\tfrom ");
                line.push_str(frame);
            }
        }
    }
    line
}

/// Builds the `Divvy::TaskError` for an item that finally failed.
fn task_error(
    ruby: &Ruby,
    message: &str,
    who: Who,
    item: &Item,
    cause: &Cause,
    args: RArray,
) -> Result<Exception, Error> {
    let details = ruby.hash_new();
    if let Cause::Raised(failure) = cause {
        details.aset(ruby.to_symbol("remote_class"), failure.class_name.as_str())?;
        details.aset(ruby.to_symbol("remote_message"), failure.message.as_str())?;
        details.aset(
            ruby.to_symbol("remote_backtrace"),
            ruby.ary_from_vec(failure.backtrace.clone()),
        )?;
    }
    match cause {
        Cause::Died(exit @ Exit::Signaled(_)) | Cause::DiedReceiving(exit @ Exit::Signaled(_)) => {
            details.aset(ruby.to_symbol("signal"), exit.signal_name())?
        }
        Cause::Died(Exit::Exited(code)) | Cause::DiedReceiving(Exit::Exited(code)) => {
            details.aset(ruby.to_symbol("exit_status"), *code)?
        }
        _ => {}
    }
    details.aset(ruby.to_symbol("worker_number"), who.number)?;
    details.aset(ruby.to_symbol("worker_pid"), who.pid)?;
    details.aset(ruby.to_symbol("reason"), ruby.to_symbol(cause.reason()))?;
    details.aset(ruby.to_symbol("args"), args)?;
    details.aset(ruby.to_symbol("attempts"), item.attempt)?;
    let error: Exception = class(ruby, Kind::TaskError).new_instance((message, KwArgs(details)))?;
    if let Cause::Raised(failure) = cause {
        let _: Value = error.funcall(
            "set_backtrace",
            (ruby.ary_from_vec(failure.backtrace.clone()),),
        )?;
    }
    Ok(error)
}

/// Returns the error for a run that cannot go on.
pub fn fatal_error(ruby: &Ruby, run: &Run, fatal: &Fatal) -> Error {
    match fatal {
        Fatal::BootFailure(message) => Error::new(class(ruby, Kind::BootFailure), message.clone()),
        Fatal::ForkFailure(message) => Error::new(class(ruby, Kind::Divvy), message.clone()),
        Fatal::Abort => shutdown_error(ruby, run, "at once"),
    }
}

/// Builds `Divvy::Master::Shutdown` for the signal that stopped the run,
/// which stopped `how` ("at once", "after the items in flight finished").
pub fn shutdown_error(ruby: &Ruby, run: &Run, how: &str) -> Error {
    let signo = traps::last_signal();
    let name = if signo > 0 {
        signal_name(signo)
    } else {
        String::from("shutdown")
    };
    let message = format!(
        "stopped by {name} {how}: {} items sent, {} performed",
        run.board.sent.get(),
        run.board.performed.get()
    );
    let class = class(ruby, Kind::Shutdown);
    let details = ruby.hash_new();
    let made = details
        .aset(ruby.to_symbol("signo"), signo)
        .and_then(|()| class.new_instance((message.as_str(), KwArgs(details))));
    match made {
        Ok(exception) => Error::from(exception),
        Err(_) => Error::new(class, message),
    }
}

/// Prints the run's summary line: items performed, skipped (by a resumed
/// run; said only when there are some), failed and retried, workers
/// respawned, wall time; and why the halt policy ended the run, when it
/// did.
///
/// Raises what `$stderr.write` raises.
pub fn summarize(ruby: &Ruby, run: &Run, elapsed: Duration) -> Result<(), Error> {
    let board = &run.board;
    let skipped = match board.skipped.get() {
        0 => String::new(),
        count => format!(", {count} skipped"),
    };
    let mut line = format!(
        "{} performed{skipped}, {} failed, {} retried, {} workers respawned in {:.2}s",
        board.performed.get(),
        board.failed.get(),
        board.retried.get(),
        board.respawned.get(),
        elapsed.as_secs_f64()
    );
    if let Some(halted) = run.engine.halt_summary() {
        line.push_str("; ");
        line.push_str(&halted);
    }
    say(ruby, &line)
}
