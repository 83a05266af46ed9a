//! The job log (`--joblog`): one tab-separated line per item when it
//! settles, in GNU parallel's columns and then divvy's, written by a thread
//! of the master; and reading it back to resume (`--resume`). Nothing here
//! knows of Ruby or of the engine: the engine's `journal` turns settled
//! items into records.
//!
//! - `record`: the columns, the header, a record's line and reading one;
//! - `digits`: the numbers of a line, put together on the stack;
//! - `digest`: the digest of an item's Marshal dump;
//! - `file`: opening a log, checking it is divvy's, cutting a torn line;
//! - `history`: what a log recorded, and which items a resumed run skips;
//! - `writer`: the thread that writes records and syncs the file;
//! - `name`: a shard's own log name.

pub mod digest;
mod digits;
pub mod file;
pub mod history;
pub mod name;
pub mod record;
pub mod writer;

use std::path::PathBuf;

pub use self::history::Resume;

/// A run's job log, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The file, shard included (see `name::for_shard`).
    pub path: PathBuf,
    /// What the run does with the items the log recorded.
    pub resume: Resume,
}
