//! divvy's native extension: a forking parallel task runner for Ruby.
//! The layers, from the top:
//!
//! - `ruby`: the bindings of the Ruby classes (`Divvy::Master`,
//!   `Divvy::Worker`);
//! - `master`: one run as the master process sees it, carrying out the
//!   engine's decisions with Ruby (hooks, forks, reports, signals);
//! - `worker`: the forked process's side: boot, take an item, perform it,
//!   answer, leave;
//! - `marshal`: Ruby values to and from Marshal dumps;
//! - `vm`: what divvy asks of the Ruby VM (errors, stdio, the GVL, titles,
//!   the GC).
//!
//! Below them is the Ruby-free crate `divvy_core` (the engine's decisions,
//! the wire, plain Marshal, the operating system). Dependencies run one way,
//! down this list.

mod marshal;
mod master;
mod ruby;
mod vm;
mod worker;

use magnus::{Error, Ruby};

/// Called by Ruby when `divvy.so` is required: looks up divvy's error
/// classes (defined in Ruby), then defines `Divvy::Worker` and
/// `Divvy::Master`.
#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let divvy = ruby.define_module("Divvy")?;
    vm::errors::init(ruby, divvy)?;
    ruby::worker::init(ruby, divvy)?;
    ruby::master::init(ruby, divvy)?;
    Ok(())
}
