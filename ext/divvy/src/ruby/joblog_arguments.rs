//! Reading `Divvy::Master.new`'s `joblog:` and `resume:` keywords: the job
//! log's file (a shard's own, see `joblog::name`) and what a run does with
//! the items it recorded.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use magnus::{prelude::*, Error, RHash, RString, Ruby, Value};

use divvy_core::engine::options::Shard;
use divvy_core::joblog::{name, Resume, Settings};

use crate::vm::errors::divvy_error;

/// The two keywords, taken out of `Master.new`'s keywords.
pub struct JobLogKeywords {
    joblog: Option<Value>,
    resume: Option<Value>,
}

/// Takes `joblog:` and `resume:` out of a copy of `keywords`.
///
/// Returns the other keywords and these two.
pub fn take(ruby: &Ruby, keywords: RHash) -> Result<(RHash, JobLogKeywords), Error> {
    let rest: RHash = keywords.funcall("dup", ())?;
    let joblog: Option<Value> = rest.delete(ruby.to_symbol("joblog"))?;
    let resume: Option<Value> = rest.delete(ruby.to_symbol("resume"))?;
    Ok((rest, JobLogKeywords { joblog, resume }))
}

impl JobLogKeywords {
    /// Checks the keywords, and names the log after `shard`.
    ///
    /// Returns None without a job log; raises `Divvy::Error` for a
    /// `joblog:` that is no file name, a `resume:` that is not true, false
    /// or `:failed`, and a resume without a job log.
    pub fn settings(self, ruby: &Ruby, shard: Option<Shard>) -> Result<Option<Settings>, Error> {
        let resume = resume(ruby, self.resume)?;
        let Some(joblog) = self.joblog.filter(|value| !value.is_nil()) else {
            return match resume {
                Resume::Off => Ok(None),
                _ => Err(divvy_error(
                    ruby,
                    "resume: needs joblog:, the job log to resume from",
                )),
            };
        };
        let path = file_name(ruby, joblog)?;
        Ok(Some(Settings {
            path: name::for_shard(&path, shard.map(|shard| (shard.index, shard.count))),
            resume,
        }))
    }
}

/// Reads `resume:`: nil or false, true, or `:failed`.
fn resume(ruby: &Ruby, value: Option<Value>) -> Result<Resume, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(Resume::Off);
    };
    if value.eql(ruby.to_symbol("failed"))? {
        return Ok(Resume::RerunFailed);
    }
    if value.is_kind_of(ruby.class_true_class()) {
        return Ok(Resume::SkipSettled);
    }
    if value.is_kind_of(ruby.class_false_class()) {
        return Ok(Resume::Off);
    }
    Err(divvy_error(
        ruby,
        format!(
            "resume must be true, false or :failed, got {}",
            value.inspect()
        ),
    ))
}

/// Reads `joblog:`: a String or an object with `to_path` (a Pathname).
/// The name's bytes are taken as they are, whatever its encoding, as
/// `File.open` takes them on Unix.
fn file_name(ruby: &Ruby, value: Value) -> Result<PathBuf, Error> {
    let bad = || {
        divvy_error(
            ruby,
            format!(
                "joblog must be a file name (a String or Pathname), got {}",
                value.inspect()
            ),
        )
    };
    let path: RString = ruby
        .class_file()
        .funcall("path", (value,))
        .map_err(|_| bad())?;
    // SAFETY: the bytes are copied before Ruby runs again, so nothing can
    // change or free the string while the slice is borrowed.
    let bytes = unsafe { path.as_slice() }.to_vec();
    if bytes.is_empty() {
        return Err(bad());
    }
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}
