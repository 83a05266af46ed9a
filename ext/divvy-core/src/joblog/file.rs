//! Opening a job log: reading what an earlier run recorded, checking that
//! the file is divvy's, cutting a last line torn by a master killed
//! mid-write, and writing the header of a new log. Runs in the master,
//! before the workers start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::history::History;
use super::record::{header, parse};
use crate::os;

/// A job log, open for appending, and what it recorded so far.
#[derive(Debug)]
pub struct Opened {
    /// The file, open for appending, its header written.
    pub file: File,
    /// What its records say; empty unless asked for.
    pub history: History,
}

/// What reading an existing log found.
struct Contents {
    history: History,
    /// The bytes of whole lines: a torn last line starts there.
    whole: u64,
    /// The size of the file.
    size: u64,
}

/// Opens the job log at `path` for appending, creating it with its header
/// when it does not exist or is empty, and locks it for this run; with
/// `read_history`, keeps what its records say. A last line with no newline
/// (torn when a master was killed while writing it) is cut off. Runs in
/// the master.
///
/// Returns a one-line message naming the file when it is not a regular
/// file, cannot be read or written, is locked by another divvy run, is not
/// a divvy job log (its first line is not divvy's header), or when a line
/// past the header is not a record.
pub fn open(path: &Path, read_history: bool) -> Result<Opened, String> {
    let shown = path.display();
    if std::fs::metadata(path).is_ok_and(|metadata| !metadata.is_file()) {
        return Err(format!(
            "the job log {shown} is not a regular file; give --joblog a file name"
        ));
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|error| format!("cannot open the job log {shown}: {error}"))?;
    lock(&file, path)?;
    let contents = File::open(path)
        .map_err(|error| format!("cannot open the job log {shown}: {error}"))
        .and_then(|reading| read(reading, path, read_history))?;
    let prepared = if contents.size > contents.whole {
        file.set_len(contents.whole)
    } else {
        Ok(())
    };
    prepared
        .and_then(|()| match contents.whole {
            0 => file.write_all(header().as_bytes()),
            _ => Ok(()),
        })
        .map_err(|error| format!("cannot write the job log {shown}: {error}"))?;
    Ok(Opened {
        file,
        history: contents.history,
    })
}

/// Locks the log `file` (at `path`) for this run, so that a second run
/// given the same log (a cron job that overran, a command started twice)
/// stops instead of performing the same items and tearing the first one's
/// lines. A file system without locks is used without.
fn lock(file: &File, path: &Path) -> Result<(), String> {
    match os::try_lock(file.as_fd()) {
        Ok(false) => Err(format!(
            "the job log {} is in use by another divvy run",
            path.display()
        )),
        Ok(true) | Err(_) => Ok(()),
    }
}

/// Reads the existing log `file` (at `path`) line by line.
fn read(file: File, path: &Path, read_history: bool) -> Result<Contents, String> {
    let shown = path.display();
    let header = header();
    let mut reader = BufReader::new(file);
    let mut contents = Contents {
        history: History::default(),
        whole: 0,
        size: 0,
    };
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("cannot read the job log {shown}: {error}"))?;
        contents.size += read as u64;
        if read == 0 {
            break;
        }
        let whole = line.last() == Some(&b'\n');
        let foreign = match (number, whole) {
            (1, true) => line != header.as_bytes(),
            (1, false) => !header.as_bytes().starts_with(&line),
            _ => false,
        };
        if foreign {
            return Err(format!(
                "{shown} is not a divvy job log: its first line is not divvy's header ({}); \
                 give --joblog a new file",
                header.trim_end().replace('\t', ", ")
            ));
        }
        if !whole {
            // Torn: the master stopped while writing it.
            continue;
        }
        contents.whole = contents.size;
        if number == 1 || line == header.as_bytes() {
            continue;
        }
        let entry = std::str::from_utf8(&line[..line.len() - 1])
            .ok()
            .and_then(parse)
            .ok_or_else(|| format!("{shown} line {number} is not a divvy job log record"))?;
        if read_history {
            contents.history.record(entry);
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::joblog::history::Resume;

    const RECORD: &str =
        "3\th\t0.000\t0.000\t0\t0\t0\t0\tc\t0000000000000007\tperformed\t1\t1\t-\t-\n";

    fn temp(name: &str, text: Option<&str>) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("divvy-joblog-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.log");
        let _ = std::fs::remove_file(&path);
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        path
    }

    #[test]
    fn a_new_log_gets_the_header() {
        for (name, text) in [
            ("new", None),
            ("empty", Some("")),
            ("torn-header", Some("Seq\tHo")),
        ] {
            let path = temp(name, text);
            let opened = open(&path, true).unwrap();
            assert!(opened.history.is_empty());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), header(), "{name}");
        }
    }

    #[test]
    fn reads_the_records_and_cuts_a_torn_last_line() {
        let text = format!("{}{RECORD}3\th\t0.0", header());
        let path = temp("torn", Some(&text));
        let mut opened = open(&path, true).unwrap();
        assert_eq!(opened.history.skips(2, 7, Resume::SkipSettled), Ok(true));
        opened.file.write_all(b"next\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}{RECORD}next\n", header())
        );
    }

    #[test]
    fn keeps_no_history_unless_asked() {
        let path = temp("quiet", Some(&format!("{}{RECORD}", header())));
        assert!(open(&path, false).unwrap().history.is_empty());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}{RECORD}", header()),
            "appends: the earlier records stay"
        );
    }

    #[test]
    fn refuses_a_log_another_run_has_open() {
        let path = temp("locked", None);
        let first = open(&path, true).unwrap();
        let error = open(&path, true).unwrap_err();
        assert!(
            error.ends_with("run.log is in use by another divvy run"),
            "{error}"
        );
        drop(first);
        assert!(
            open(&path, true).is_ok(),
            "free once the first run closed it"
        );
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = temp("directory", None)
            .parent()
            .unwrap()
            .join("a-directory");
        std::fs::create_dir_all(&dir).unwrap();
        let error = open(&dir, false).unwrap_err();
        assert!(
            error.ends_with("is not a regular file; give --joblog a file name"),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_file_that_is_not_a_divvy_log() {
        let path = temp("foreign", Some("Seq\tHost\tStarttime\n1\t:\t0\n"));
        let error = open(&path, true).unwrap_err();
        assert!(
            error.contains(
                "is not a divvy job log: its first line is not divvy's header (Seq, Host,"
            ),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Seq\tHost\tStarttime\n1\t:\t0\n",
            "left alone"
        );
        let path = temp(
            "bad-line",
            Some(&format!("{}{RECORD}oops\n{RECORD}", header())),
        );
        let error = open(&path, false).unwrap_err();
        assert!(
            error.ends_with("run.log line 3 is not a divvy job log record"),
            "{error}"
        );
    }
}
