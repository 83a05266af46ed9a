//! divvy's native core: a forking parallel task runner for Ruby. Each module
//! is one concept; `init` binds the Ruby classes in order.

mod answers;
mod arity;
mod child;
mod errors;
mod exit;
mod heap;
mod link;
mod marshal;
mod master;
mod meter;
mod nogvl;
mod options;
mod outbox;
mod outcome;
mod pace;
mod payload;
mod plain_marshal;
mod pool;
mod progress;
mod protocol;
mod run_loop;
mod signals;
mod stdio;
mod supervisor;
mod title;
mod wake;
mod worker;

use magnus::{Error, Ruby};

/// Called by Ruby when `divvy.so` is required: defines `Divvy::Error`,
/// `Divvy::Worker` and `Divvy::Master`.
#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let divvy = ruby.define_module("Divvy")?;
    errors::init(ruby, divvy)?;
    worker::init(ruby, divvy)?;
    master::init(ruby, divvy)?;
    Ok(())
}
