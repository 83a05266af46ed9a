//! divvy's Ruby exception classes. User mistakes and run failures raise
//! these, never a Rust panic.

use std::sync::OnceLock;

use magnus::{prelude::*, value::Opaque, Error, ExceptionClass, RClass, RModule, Ruby};

static DIVVY_ERROR: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();
static BOOT_FAILURE: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();
static SHUTDOWN: OnceLock<Opaque<ExceptionClass>> = OnceLock::new();

/// The error classes divvy raises.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `Divvy::Error`, the base of every error divvy raises.
    Divvy,
    /// `Divvy::Master::BootFailure`: workers die before they can take items.
    BootFailure,
    /// `Divvy::Master::Shutdown`: a signal stopped the run.
    Shutdown,
}

/// Returns the Ruby class for `kind`, falling back to `StandardError`
/// should the extension not be initialized (it always is when Ruby code
/// can reach divvy).
pub fn class(ruby: &Ruby, kind: Kind) -> ExceptionClass {
    let cell = match kind {
        Kind::Divvy => &DIVVY_ERROR,
        Kind::BootFailure => &BOOT_FAILURE,
        Kind::Shutdown => &SHUTDOWN,
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

fn remember(ruby: &Ruby, cell: &OnceLock<Opaque<ExceptionClass>>, class: ExceptionClass) {
    ruby.gc_register_mark_object(class);
    let _ = cell.set(class.into());
}

/// Defines `Divvy::Error`. Runs once, when the extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    let error = divvy.define_error("Error", ruby.exception_standard_error())?;
    remember(ruby, &DIVVY_ERROR, error);
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
