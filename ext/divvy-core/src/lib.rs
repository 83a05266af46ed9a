//! The Ruby-free core of divvy, a forking parallel task runner for Ruby.
//! This crate depends on neither magnus nor rb-sys, so the compiler keeps
//! it free of Ruby, and `cargo test` covers it without a Ruby VM. The
//! extension (`ext/divvy`) builds on it.
//!
//! - `engine`: one run's decisions: which worker gets the next items, what
//!   a worker holds, what a death or a timeout means, retries, respawns,
//!   resizing, stopping, the statistics.
//! - `wire`: what travels between master and workers: frames, links,
//!   payloads, batched answers, the shared counter, the wake pipe.
//! - `plain`: Marshal dumps of plain values, written and read without Ruby.
//! - `joblog`: the job log: records, the writer thread, resuming.
//! - `os`: operating-system specifics, each with a portable fallback.
//!
//! Dependencies run one way: `engine` -> `joblog` -> `wire`, `plain` -> `os`.

pub mod engine;
pub mod joblog;
pub mod os;
pub mod plain;
pub mod wire;
