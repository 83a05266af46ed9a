//! What becomes of an item that failed, and how the run reports it: the
//! one-line report, the retry, the `Divvy::TaskError` handed to the task's
//! `failed` hook, and the summary at the end. Runs in the master.

use std::time::Duration;

use magnus::{prelude::*, Error, Exception, RObject, Ruby, Value};

use crate::errors::{self, Kind};
use crate::exit::Exit;
use crate::marshal;
use crate::master::{bump, Master};
use crate::pool::Item;
use crate::protocol::Failure;
use crate::stdio::say;
use crate::worker::Worker;

/// The longest item description printed in a report.
const ITEM_DESCRIPTION_LIMIT: usize = 200;

/// How an item failed.
#[derive(Debug, Clone)]
pub enum Cause {
    /// `perform` raised; the worker lives on.
    Raised(Failure),
    /// The worker died while performing it.
    Died(Exit),
    /// It ran past the timeout and its worker was stopped.
    TimedOut(Duration),
}

impl Cause {
    fn reason(&self) -> &'static str {
        match self {
            Cause::Raised(_) => "raised",
            Cause::Died(_) => "died",
            Cause::TimedOut(_) => "timed_out",
        }
    }
}

/// Reports a failure of `item` on `worker` and counts it. Returns the item
/// to send again when retries remain; otherwise counts it as failed and
/// calls the task's `failed(error, *args)` hook, if it has one.
///
/// Raises what `$stderr.write` or the `failed` hook raise.
pub fn item_failed(
    ruby: &Ruby,
    master: &Master,
    worker: &Worker,
    mut item: Item,
    cause: Cause,
) -> Result<Option<Item>, Error> {
    let stats = master.stats();
    bump(&stats.failures, 1);
    let args = marshal::load(ruby, &item.payload.to_bytes()).ok();
    let described = args
        .map(|args| truncate(args.inspect()))
        .unwrap_or_else(|| format!("item #{}", item.index));
    let message = failure_message(&label(worker), &described, &cause);
    let mut line = message.clone();
    if let Cause::Raised(failure) = &cause {
        if master.verbose() || std::env::var_os("DIVVY_VERBOSE_TRACE").is_some_and(|v| v == "1") {
            for frame in &failure.backtrace {
                line.push_str("\n\tfrom ");
                line.push_str(frame);
            }
        }
    }
    say(ruby, &line)?;

    let retries = master.options().retries;
    if item.attempt <= retries {
        item.attempt += 1;
        bump(&stats.retried, 1);
        if master.verbose() {
            say(
                ruby,
                &format!(
                    "retrying {described} (attempt {} of {})",
                    item.attempt,
                    retries + 1
                ),
            )?;
        }
        return Ok(Some(item));
    }
    bump(&stats.failed, 1);
    let task = master.task(ruby);
    if task.respond_to("failed", true)? {
        let args = args.unwrap_or_else(|| ruby.ary_new().as_value());
        let error = task_error(ruby, &message, worker, &item, &cause, args)?;
        let mut hook_args = vec![error.as_value()];
        hook_args.extend(magnus::RArray::try_convert(args)?);
        let _: Value = task.funcall("failed", hook_args.as_slice())?;
    }
    Ok(None)
}

/// Hands the value an item returned to the task's `completed(result,
/// *args)` hook, in the master, in the order items complete.
///
/// Raises what loading the result or the hook raise.
pub fn item_completed(
    ruby: &Ruby,
    master: &Master,
    item: &Item,
    result: &[u8],
) -> Result<(), Error> {
    let args = magnus::RArray::try_convert(marshal::load(ruby, &item.payload.to_bytes())?)?;
    let mut hook_args = vec![marshal::load(ruby, result)?];
    hook_args.extend(args);
    let _: Value = master
        .task(ruby)
        .funcall("completed", hook_args.as_slice())?;
    Ok(())
}

/// The report of one failure, without the `divvy:` prefix.
fn failure_message(who: &str, item: &str, cause: &Cause) -> String {
    match cause {
        Cause::Raised(failure) => format!(
            "{who} failed performing {item}: {}: {}",
            failure.class_name, failure.message
        ),
        Cause::Died(exit) => format!("{who} {} while performing {item}", exit.describe()),
        Cause::TimedOut(timeout) => format!(
            "{who} timed out after {}s performing {item}",
            timeout.as_secs_f64()
        ),
    }
}

/// Builds the `Divvy::TaskError` for an item that finally failed.
fn task_error(
    ruby: &Ruby,
    message: &str,
    worker: &Worker,
    item: &Item,
    cause: &Cause,
    args: Value,
) -> Result<Exception, Error> {
    let error: Exception = errors::class(ruby, Kind::TaskError).new_instance((message,))?;
    let object = RObject::try_convert(error.as_value())?;
    let nil = ruby.qnil().as_value();
    let (remote_class, remote_message, remote_backtrace) = match cause {
        Cause::Raised(failure) => {
            let backtrace = ruby.ary_from_vec(failure.backtrace.clone());
            let _: Value = error.funcall("set_backtrace", (backtrace,))?;
            (
                ruby.str_new(&failure.class_name).as_value(),
                ruby.str_new(&failure.message).as_value(),
                backtrace.as_value(),
            )
        }
        _ => (nil, nil, nil),
    };
    let (signal, exit_status) = match cause {
        Cause::Died(Exit::Signaled(signo)) => (
            ruby.str_new(&Exit::Signaled(*signo).signal_name())
                .as_value(),
            nil,
        ),
        Cause::Died(Exit::Exited(code)) => {
            (nil, ruby.integer_from_i64(i64::from(*code)).as_value())
        }
        _ => (nil, nil),
    };
    object.ivar_set("@remote_class", remote_class)?;
    object.ivar_set("@remote_message", remote_message)?;
    object.ivar_set("@remote_backtrace", remote_backtrace)?;
    object.ivar_set("@worker_number", worker.number())?;
    object.ivar_set("@worker_pid", worker.pid())?;
    object.ivar_set("@reason", ruby.to_symbol(cause.reason()))?;
    object.ivar_set("@signal", signal)?;
    object.ivar_set("@exit_status", exit_status)?;
    object.ivar_set("@args", args)?;
    object.ivar_set("@attempts", item.attempt)?;
    Ok(error)
}

/// Prints the run's summary line: items performed, failed and retried,
/// workers respawned, wall time.
///
/// Raises what `$stderr.write` raises.
pub fn summarize(ruby: &Ruby, master: &Master, elapsed: Duration) -> Result<(), Error> {
    let stats = master.stats();
    let respawned = stats.respawned.get();
    say(
        ruby,
        &format!(
            "{} performed, {} failed, {} retried, {respawned} workers respawned in {:.2}s",
            stats.performed.get(),
            stats.failed.get(),
            stats.retried.get(),
            elapsed.as_secs_f64()
        ),
    )
}

/// Names a worker in reports: `worker 3 (pid 4242)`.
pub fn label(worker: &Worker) -> String {
    match worker.pid() {
        Some(pid) => format!("worker {} (pid {pid})", worker.number()),
        None => format!("worker {}", worker.number()),
    }
}

/// Cuts an item description to a readable length.
pub fn truncate(mut text: String) -> String {
    if text.chars().count() > ITEM_DESCRIPTION_LIMIT {
        text = text.chars().take(ITEM_DESCRIPTION_LIMIT).collect();
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_worker_item_and_cause() {
        let raised = Cause::Raised(Failure {
            class_name: "ArgumentError".into(),
            message: "no good".into(),
            backtrace: vec![],
        });
        assert_eq!(
            failure_message("worker 2 (pid 7)", "[3]", &raised),
            "worker 2 (pid 7) failed performing [3]: ArgumentError: no good"
        );
        assert_eq!(
            failure_message("worker 3 (pid 8)", "[42]", &Cause::Died(Exit::Signaled(9))),
            "worker 3 (pid 8) died by SIGKILL while performing [42]"
        );
        assert_eq!(
            failure_message(
                "worker 1 (pid 9)",
                "[1]",
                &Cause::TimedOut(Duration::from_millis(1500))
            ),
            "worker 1 (pid 9) timed out after 1.5s performing [1]"
        );
    }

    #[test]
    fn truncates_long_descriptions() {
        assert_eq!(truncate("[1]".into()), "[1]");
        let long = truncate("x".repeat(500));
        assert_eq!(long.chars().count(), ITEM_DESCRIPTION_LIMIT + 3);
        assert!(long.ends_with("..."));
    }
}
