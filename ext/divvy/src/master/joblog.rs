//! The run's job log, as the master keeps it: opening it (and reading
//! what an earlier run recorded, to resume) before the workers start,
//! giving each item its digest and skipping what a resumed run need not
//! perform, and closing it at the end. The records themselves come from
//! the engine (`divvy_core::engine::journal`), written by a thread
//! (`divvy_core::joblog::writer`) that starts once the workers have. Runs
//! in the master.

use std::path::PathBuf;

use magnus::{Error, Ruby};

use divvy_core::engine::item::Item;
use divvy_core::engine::journal::Journal;
use divvy_core::engine::Engine;
use divvy_core::joblog::history::History;
use divvy_core::joblog::record::RunFields;
use divvy_core::joblog::writer::Writer;
use divvy_core::joblog::{digest, file, Resume, Settings};

use super::run::Run;
use crate::vm::errors::divvy_error;

/// What a resumed run skips: the items its job log recorded.
pub struct Resumed {
    history: History,
    resume: Resume,
    path: PathBuf,
}

/// Opens the job log `settings` names and hands the engine its journal,
/// with the writer that will write it; `command` is what the log's
/// `Command` column says.
///
/// Returns what a resumed run skips (None when it does not resume); raises
/// `Divvy::Error` when the log cannot be opened or written, or is not a
/// divvy job log.
pub fn open(
    ruby: &Ruby,
    settings: &Settings,
    engine: &mut Engine,
    command: &str,
) -> Result<Option<Resumed>, Error> {
    let resuming = settings.resume != Resume::Off;
    let opened =
        file::open(&settings.path, resuming).map_err(|message| divvy_error(ruby, message))?;
    let fields = RunFields::new(&divvy_core::os::host_name(), command);
    let writer = Writer::new(opened.file, &settings.path, fields);
    engine.keep_journal(Journal::new(writer));
    Ok(resuming.then(|| Resumed {
        history: opened.history,
        resume: settings.resume,
        path: settings.path.clone(),
    }))
}

/// Gives `item` its digest when the run keeps a job log and, when it
/// resumes, decides whether the item is skipped: then the engine counts it
/// as skipped and drops it.
///
/// Returns the item back when it is to be performed; raises
/// `Divvy::Error` when the log recorded another item at its index
/// (`dispatch` changed since the log was written).
pub fn admit(ruby: &Ruby, run: &mut Run, mut item: Item) -> Result<Option<Item>, Error> {
    if !run.engine.keeps_journal() {
        return Ok(Some(item));
    }
    item.digest = digest::digest(&item.payload);
    let Some(resumed) = &run.resumed else {
        return Ok(Some(item));
    };
    let skips = resumed
        .history
        .skips(item.index, item.digest, resumed.resume)
        .map_err(|mismatch| divvy_error(ruby, mismatch.message(&resumed.path)))?;
    if skips {
        run.engine.skip(item);
        return Ok(None);
    }
    Ok(Some(item))
}

/// Ends the job log: records what is still held back unless a signal
/// stopped the run (`stopped`), and waits until everything is written and
/// its write-back to disk started.
///
/// Raises `Divvy::Error` naming the file when writing it failed.
pub fn close(ruby: &Ruby, run: &mut Run, stopped: bool) -> Result<(), Error> {
    run.engine
        .close_journal(stopped)
        .map_err(|message| divvy_error(ruby, message))
}
