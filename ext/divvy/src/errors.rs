//! divvy's Ruby exception classes. User mistakes and run failures raise
//! these, never a Rust panic.

use magnus::{prelude::*, value::Lazy, Error, ExceptionClass, RClass, RModule, Ruby};

/// `Divvy::Error`, the base of every error divvy raises.
pub static DIVVY_ERROR: Lazy<ExceptionClass> = Lazy::new(|ruby| lookup(ruby, &["Error"]));

/// `Divvy::Master::BootFailure`: workers die before they can take items.
pub static BOOT_FAILURE: Lazy<ExceptionClass> =
    Lazy::new(|ruby| lookup(ruby, &["Master", "BootFailure"]));

/// `Divvy::Master::Shutdown`: a signal stopped the run.
pub static SHUTDOWN: Lazy<ExceptionClass> =
    Lazy::new(|ruby| lookup(ruby, &["Master", "Shutdown"]));

fn lookup(ruby: &Ruby, path: &[&str]) -> ExceptionClass {
    let mut scope: RModule = ruby.define_module("Divvy").expect("Divvy is defined by init");
    let (last, parents) = path.split_last().expect("a constant path");
    for name in parents {
        let class: RClass = scope.const_get(*name).expect("divvy classes are defined by init");
        scope = RModule::from_value(class.as_value()).expect("a class is a module");
    }
    scope.const_get(*last).expect("divvy errors are defined by init")
}

/// Returns a `Divvy::Error` with `message`.
pub fn divvy_error(ruby: &Ruby, message: impl Into<String>) -> Error {
    Error::new(ruby.get_inner(&DIVVY_ERROR), message.into())
}

/// Returns a `Divvy::Error` describing an operating-system failure while
/// `doing` something.
pub fn os_error(ruby: &Ruby, doing: &str, err: impl std::fmt::Display) -> Error {
    divvy_error(ruby, format!("divvy: {doing} failed: {err}"))
}

/// Defines `Divvy::Error`. Runs once, when the extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    divvy.define_error("Error", ruby.exception_standard_error())?;
    Ok(())
}
