//! divvy's Ruby exception classes. User mistakes and run failures raise
//! these, never a Rust panic.

use std::sync::OnceLock;

use magnus::{
    error::ErrorType, prelude::*, value::Opaque, Error, Exception, ExceptionClass, RClass, RModule,
    Ruby,
};

use crate::protocol::Failure;

static DIVVY_ERROR: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();
static BOOT_FAILURE: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();
static SHUTDOWN: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();
static TASK_ERROR: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();

/// The readers of `Divvy::TaskError`, each backed by the instance variable
/// of the same name.
pub const TASK_ERROR_READERS: [&str; 11] = [
    "remote_class",
    "remote_message",
    "remote_backtrace",
    "worker_number",
    "worker_pid",
    "reason",
    "signal",
    "exit_status",
    "args",
    "attempts",
    "others",
];

/// The error classes divvy raises.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `Divvy::Error`, the base of every error divvy raises.
    Divvy,
    /// `Divvy::Master::BootFailure`: workers die before they can take items.
    BootFailure,
    /// `Divvy::Master::Shutdown`: a signal stopped the run.
    Shutdown,
    /// `Divvy::TaskError`: an item finally failed.
    TaskError,
}

/// Returns the Ruby class for `kind`, falling back to `StandardError`
/// should the extension not be initialized (it always is when Ruby code
/// can reach divvy).
pub fn class(ruby: &Ruby, kind: Kind) -> ExceptionClass {
    let cell = match kind {
        Kind::Divvy => &DIVVY_ERROR,
        Kind::BootFailure => &BOOT_FAILURE,
        Kind::Shutdown => &SHUTDOWN,
        Kind::TaskError => &TASK_ERROR,
    };
    cell.get()
        .map(|class| ruby.get_inner(*class))
        .unwrap_or_else(|| ruby.exception_standard_error())
}

/// Returns a `Divvy::Error` with `message`.
pub fn divvy_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(class(ruby, Kind::Divvy), message.into())
}

/// Returns a `Divvy::Error` describing an operating-system failure while
/// `doing` something.
pub fn os_error(ruby: &Ruby, doing: &str, err: impl std::fmt::Display) -> Error {
    divvy_error(ruby, format!("{doing} failed: {err}"))
}

/// Describes an error raised by Ruby code as plain strings: its class,
/// message and backtrace. A `break` or `throw` that left the code is
/// described as a `LocalJumpError`.
pub fn failure_of(error: &Error) -> Failure {
    match error.error_type() {
        ErrorType::Exception(exception) => describe_exception(*exception),
        ErrorType::Error(class, message) => Failure {
            class_name: class.inspect(),
            message: message.to_string(),
            backtrace: Vec::new(),
        },
        ErrorType::Jump(_) => Failure {
            class_name: String::from("LocalJumpError"),
            message: format!("left by a non-local jump: {error}"),
            backtrace: Vec::new(),
        },
    }
}

fn describe_exception(exception: Exception) -> Failure {
    // SAFETY: the class name is copied out at once.
    let class_name = unsafe { exception.classname() }.into_owned();
    let message = exception
        .funcall::<_, _, String>("message", ())
        .unwrap_or_else(|_| String::from("(its #message raised)"));
    let backtrace = exception
        .funcall::<_, _, Option<Vec<String>>>("backtrace", ())
        .ok()
        .flatten()
        .unwrap_or_default();
    Failure {
        class_name,
        message,
        backtrace,
    }
}

fn remember(ruby: &Ruby, cell: &OnceLock<Opaque<ExceptionClass>>, class: ExceptionClass) {
    ruby.gc_register_mark_object(class);
    let _ = cell.set(class.into());
}

/// Defines `Divvy::Error` and `Divvy::TaskError`. Runs once, when the
/// extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    let error = divvy.define_error("Error", ruby.exception_standard_error())?;
    remember(ruby, &DIVVY_ERROR, error);
    let task_error = divvy.define_error("TaskError", error)?;
    for reader in TASK_ERROR_READERS {
        let _: magnus::Value = task_error.funcall("attr_reader", (reader,))?;
    }
    remember(ruby, &TASK_ERROR, task_error);
    Ok(())
}

/// Defines `Divvy::Master::BootFailure` and `Divvy::Master::Shutdown` under
/// `master`. Runs once, when the extension loads.
///
/// Returns the `Shutdown` class, for its readers.
pub fn init_master_errors(ruby: &Ruby, master: RClass) -> Result<ExceptionClass, Error> {
    let base = class(ruby, Kind::Divvy);
    remember(
        ruby,
        &BOOT_FAILURE,
        master.define_error("BootFailure", base)?,
    );
    let shutdown = master.define_error("Shutdown", base)?;
    remember(ruby, &SHUTDOWN, shutdown);
    Ok(shutdown)
}
