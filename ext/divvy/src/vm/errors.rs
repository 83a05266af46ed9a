//! divvy's exception classes, defined in Ruby (`lib/divvy/errors.rb`) and
//! looked up here once, when the extension loads. User mistakes and run
//! failures raise these, never a Rust panic.

use std::sync::OnceLock;

use magnus::{
    error::ErrorType, prelude::*, value::Opaque, Error, Exception, ExceptionClass, RClass, RModule,
    Ruby,
};

use divvy_core::wire::frame::Failure;

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
    /// `Divvy::Break`: raised by `perform` to stop the run early.
    Break,
}

impl Kind {
    /// Every kind, in the order of their discriminants.
    const ALL: [Kind; 5] = [
        Kind::Divvy,
        Kind::BootFailure,
        Kind::Shutdown,
        Kind::TaskError,
        Kind::Break,
    ];

    /// Where the class is under `Divvy`: the module it is in (if not
    /// `Divvy` itself) and its name.
    fn place(self) -> (Option<&'static str>, &'static str) {
        match self {
            Kind::Divvy => (None, "Error"),
            Kind::BootFailure => (Some("Master"), "BootFailure"),
            Kind::Shutdown => (Some("Master"), "Shutdown"),
            Kind::TaskError => (None, "TaskError"),
            Kind::Break => (None, "Break"),
        }
    }
}

static CLASSES: OnceLock<[Opaque<ExceptionClass>; Kind::ALL.len()]> = OnceLock::new();

/// Returns the Ruby class for `kind`; `StandardError` before `init` (no
/// Ruby code can reach divvy before it).
pub fn class(ruby: &Ruby, kind: Kind) -> ExceptionClass {
    CLASSES
        .get()
        .map(|classes| ruby.get_inner(classes[kind as usize]))
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

/// Loads `lib/divvy/errors.rb` and looks up its classes, keeping them from
/// the garbage collector for good. Runs once, when the extension loads.
///
/// Raises what `require` raises, or `NameError` for a missing class.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    let _: bool = ruby.require("divvy/errors")?;
    let mut classes = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        let class: ExceptionClass = match kind.place() {
            (Some(outer), name) => divvy.const_get::<_, RClass>(outer)?.const_get(name)?,
            (None, name) => divvy.const_get(name)?,
        };
        ruby.gc_register_mark_object(class);
        classes.push(Opaque::from(class));
    }
    let classes: [Opaque<ExceptionClass>; Kind::ALL.len()] = classes
        .try_into()
        .map_err(|_| divvy_error(ruby, "divvy's error classes are incomplete"))?;
    let _ = CLASSES.set(classes);
    Ok(())
}
