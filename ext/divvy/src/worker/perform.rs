//! Performing one item in the worker: its arguments loaded from the
//! dump, checked against what `perform` takes, the call itself, and the
//! answer the master gets; or, when `perform` calls `exit`, the worker's
//! exit with that status.

use magnus::{prelude::*, value::Id, Error, RArray, Ruby, Value};

use divvy_core::wire::counter::Counter;
use divvy_core::wire::decoder::ItemPayload;
use divvy_core::wire::frame::Frame;

use super::answer;
use super::arity::Arity;
use super::leave::leave;
use super::Setup;
use crate::marshal;
use crate::vm::call::apply;
use crate::vm::errors::{class, failure_of, Kind};

/// How this worker performs items: the object and method that perform
/// them (the task and its perform method, or `Divvy.map`'s block and
/// `call`) and what that takes.
pub struct Performer {
    receiver: Value,
    method: &'static str,
    method_id: Id,
    arity: Option<Arity>,
    /// Frames below this depth are the master's, inherited through fork:
    /// they are cut from the backtraces reported for failed items.
    inherited_frames: usize,
    wants_results: bool,
}

impl Performer {
    /// Looks up what `setup`'s task performs items with. Runs in the
    /// worker, once booted.
    pub fn new(ruby: &Ruby, setup: &Setup<'_>) -> Performer {
        let inherited_frames = ruby
            .module_kernel()
            .funcall::<_, _, RArray>("caller", (0,))
            .map(|frames| frames.len())
            .unwrap_or(0);
        Performer {
            receiver: setup.performer,
            method: setup.perform_method,
            method_id: ruby.intern(setup.perform_method),
            arity: perform_arity(setup.performer, setup.perform_method),
            inherited_frames,
            wants_results: setup.wants_results,
        }
    }

    /// Performs `received`, counts it as finished on `counter`, and queues
    /// (or, for a failure, sends) its answer. A `perform` that calls `exit`
    /// ends the worker here, with the answers queued so far sent and the
    /// item not counted, so the master reports it with the exit status.
    ///
    /// Returns false when the master is gone.
    pub fn perform_and_answer(
        &self,
        ruby: &Ruby,
        received: ItemPayload<'_>,
        counter: &Counter,
    ) -> bool {
        match self.perform(ruby, received) {
            Ok(answer) => {
                // Counted before its answer is queued: should the worker
                // die with the answer unsent, the master still knows.
                counter.finish();
                answer::queue(answer)
            }
            Err(error) => {
                if let Some(status) = exit_status(ruby, &error) {
                    // `exit` in perform ends the worker as it asked: the
                    // item is not counted as finished, so the master
                    // reports it with this status.
                    answer::write();
                    leave(status);
                }
                if let Some(value) = break_value(ruby, &error) {
                    // Sent at once: the master stops dispatching. Counted
                    // after, like a failure: never mistaken for a Done.
                    let sent = answer::send(Frame::Broke(value));
                    counter.finish();
                    return sent;
                }
                let mut failure = failure_of(&error);
                let own = failure
                    .backtrace
                    .len()
                    .saturating_sub(self.inherited_frames);
                failure.backtrace.truncate(own);
                // Sent before it is counted: a failure is never mistaken
                // for a performed item.
                let sent = answer::send(Frame::Failed(failure));
                counter.finish();
                sent
            }
        }
    }

    /// Performs one item. Returns the answer for the master: `Done`, or
    /// `Result` with the Marshal dump of what `perform` returned when the
    /// task wants results.
    ///
    /// Raises what `perform` raises, an `ArgumentError` for an item of the
    /// wrong arity, and a `TypeError` for a result Marshal cannot dump.
    fn perform(&self, ruby: &Ruby, received: ItemPayload<'_>) -> Result<Frame, Error> {
        let args = match received {
            ItemPayload::Buffered(payload) => {
                RArray::try_convert(marshal::load_borrowed(ruby, payload)?)?
            }
            ItemPayload::Landed(landing) => {
                marshal::load_args_from(ruby, marshal::landed_dump(ruby, landing)?)?
            }
        };
        self.check_arity(ruby, args.len())?;
        let value = apply(ruby, self.receiver, self.method_id, args)?;
        if !self.wants_results {
            return Ok(Frame::Done);
        }
        match marshal::dump_result(ruby, value) {
            Ok(result) => Ok(Frame::Result(result)),
            Err(error) => {
                let reason = failure_of(&error).message;
                let message = format!("the result of perform cannot be marshalled: {reason}");
                Err(ruby.exception_type_error().new_instance((message,))?.into())
            }
        }
    }

    /// Raises an `ArgumentError` naming the task's class and method when
    /// an item of `count` arguments does not fit `perform`.
    fn check_arity(&self, ruby: &Ruby, count: usize) -> Result<(), Error> {
        let Some(arity) = self.arity.filter(|arity| !arity.accepts(count)) else {
            return Ok(());
        };
        // SAFETY: the class name is copied out at once.
        let class_name = unsafe { self.receiver.classname() }.into_owned();
        let message = format!(
            "{class_name}#{} takes {} but the item has {count}",
            self.method,
            arity.describe(),
        );
        Err(ruby.exception_arg_error().new_instance((message,))?.into())
    }
}

/// Returns the Marshal dump of the value of a `Divvy::Break` that
/// `perform` raised (of nil when Marshal cannot dump it); None for any
/// other error.
fn break_value(ruby: &Ruby, error: &Error) -> Option<Vec<u8>> {
    if !error.is_kind_of(class(ruby, Kind::Break)) {
        return None;
    }
    let value: Value = error
        .value()
        .and_then(|exception| exception.funcall("value", ()).ok())
        .unwrap_or_else(|| ruby.qnil().as_value());
    marshal::dump(ruby, value)
        .or_else(|_| marshal::dump(ruby, ruby.qnil().as_value()))
        .ok()
}

/// Returns the status of a `SystemExit` (`exit 3`, `abort`) that `perform`
/// raised; None for any other error.
fn exit_status(ruby: &Ruby, error: &Error) -> Option<i32> {
    if !error.is_kind_of(ruby.exception_system_exit()) {
        return None;
    }
    error.value()?.funcall::<_, _, i32>("status", ()).ok()
}

/// Reads the parameters of the task's perform method; `None` when Ruby
/// cannot tell (a `method_missing` task), and the call decides.
fn perform_arity(task: Value, method: &str) -> Option<Arity> {
    let parameters: RArray = task
        .funcall::<_, _, Value>("method", (method,))
        .and_then(|method| method.funcall("parameters", ()))
        .ok()?;
    let kinds: Vec<String> = parameters
        .into_iter()
        .filter_map(|pair| RArray::try_convert(pair).ok())
        .filter_map(|pair| pair.entry::<magnus::Symbol>(0).ok())
        .filter_map(|kind| kind.name().ok().map(|name| name.into_owned()))
        .collect();
    Some(Arity::from_kinds(kinds.iter().map(String::as_str)))
}
