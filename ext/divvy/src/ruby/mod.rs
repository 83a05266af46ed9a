//! The Ruby bindings: one file per Ruby class divvy defines in Rust
//! (`Divvy::Master`, `Divvy::Worker`), and the reading of `Master.new`'s
//! arguments. The exception classes are defined in Ruby
//! (`lib/divvy/errors.rb`) and looked up by `vm::errors`.

mod arguments;
mod joblog_arguments;
pub mod master;
pub mod worker;
