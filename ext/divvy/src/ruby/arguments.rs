//! Reading `Divvy::Master.new`'s arguments: the worker count and the
//! keywords, each checked and named in the error when it is out of range.

use std::time::Duration;

use magnus::{
    prelude::*,
    scan_args::{get_kwargs, scan_args},
    Error, RArray, RModule, Ruby, Value,
};

use divvy_core::engine::halt::Halt;
use divvy_core::engine::options::{self, RunOptions, Shard};
use divvy_core::engine::report::truncate;
use divvy_core::joblog::{self, Resume};

use super::joblog_arguments;
use crate::vm::errors::divvy_error;

/// `Master.new`'s arguments, read.
pub struct Arguments {
    /// The task object.
    pub task: Value,
    /// How many workers to keep running.
    pub worker_count: usize,
    /// True under `-v`.
    pub verbose: bool,
    /// The run's options.
    pub options: RunOptions,
    /// The Array results are stored in, at their items' dispatch indexes.
    pub results: Option<RArray>,
    /// The job log, when one is asked for.
    pub joblog: Option<joblog::Settings>,
}

/// Reads `Master.new(task, worker_count, verbose = false, **keywords)`.
///
/// Raises `Divvy::Error` for a worker count or option out of range,
/// `ArgumentError` for a missing argument or an unknown keyword.
pub fn read(ruby: &Ruby, args: &[Value]) -> Result<Arguments, Error> {
    let args = scan_args::<(Value, Value), (Option<Value>,), (), (), magnus::RHash, ()>(args)?;
    let (task, count) = args.required;
    let (verbose,) = args.optional;
    type Keywords = (
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
    );
    let (keywords, joblog_keywords) = joblog_arguments::take(ruby, args.keywords)?;
    let keywords = get_kwargs::<_, (), Keywords, ()>(
        keywords,
        &[],
        &[
            "retries",
            "timeout",
            "max_tasks",
            "max_memory",
            "shard",
            "progress",
            "halt",
            "results",
        ],
    )?;
    let (retries, timeout, max_tasks, max_memory, shard, progress, halt, results) =
        keywords.optional;
    let options = RunOptions {
        retries: parse_retries(ruby, retries)?,
        timeout: parse_timeout(ruby, timeout)?,
        max_items: parse_positive(ruby, ("max_tasks", options::MAX_COUNT), max_tasks)?,
        max_memory: parse_positive(ruby, ("max_memory", options::MAX_MEGABYTES), max_memory)?
            .map(|megabytes| megabytes.saturating_mul(1024 * 1024)),
        shard: parse_shard(ruby, shard)?,
        progress: progress.is_some_and(|value| value.to_bool()),
        wants_results: false,
        halt: parse_halt(ruby, halt)?,
        total: None,
    };
    let joblog = joblog_keywords.settings(ruby, options.shard)?;
    let results = parse_results(ruby, results)?;
    if results.is_some() && joblog.as_ref().is_some_and(|log| log.resume != Resume::Off) {
        return Err(divvy_error(
            ruby,
            "results: cannot go with resume: a job log keeps no results, so the items a resumed \
             run skips would have none",
        ));
    }
    Ok(Arguments {
        task,
        worker_count: parse_worker_count(ruby, count)?,
        verbose: verbose.is_some_and(|value| value.to_bool()),
        joblog,
        options,
        results,
    })
}

/// Reads `results:`: nil, or an Array that is not frozen.
fn parse_results(ruby: &Ruby, value: Option<Value>) -> Result<Option<RArray>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    match RArray::from_value(value) {
        Some(array) if !array.is_frozen() => Ok(Some(array)),
        _ => Err(divvy_error(
            ruby,
            format!(
                "results: must be an Array that is not frozen, got {}",
                truncate(value.inspect())
            ),
        )),
    }
}

/// A Ruby value read as an Integer option.
enum Number {
    /// An Integer that fits an `i64`.
    Fits(i64),
    /// An Integer past what an `i64` holds, either way.
    TooLarge,
    /// Not an Integer.
    NotInteger,
}

/// Reads `value` as an Integer.
fn number(ruby: &Ruby, value: Value) -> Number {
    if !value.is_kind_of(ruby.class_integer()) {
        return Number::NotInteger;
    }
    match i64::try_convert(value) {
        Ok(number) => Number::Fits(number),
        Err(_) => Number::TooLarge,
    }
}

/// Reads an Integer option with `check`; a value that is no Integer gets
/// `not_integer`, one past an `i64` the message for a value over `max`.
fn read_integer<T>(
    ruby: &Ruby,
    (name, max): (&str, u64),
    value: Value,
    not_integer: &str,
    check: impl FnOnce(i64) -> Result<T, String>,
) -> Result<T, Error> {
    let shown = value.inspect();
    let result = match number(ruby, value) {
        Number::Fits(number) => check(number),
        Number::TooLarge if shown.starts_with('-') => Err(format!("{not_integer}, got {shown}")),
        Number::TooLarge => Err(options::too_large(name, max, &shown)),
        Number::NotInteger => Err(format!("{not_integer}, got {shown}")),
    };
    result.map_err(|message| divvy_error(ruby, message))
}

fn parse_worker_count(ruby: &Ruby, count: Value) -> Result<usize, Error> {
    read_integer(
        ruby,
        ("worker count", options::MAX_WORKERS),
        count,
        "worker count must be a positive Integer",
        options::worker_count,
    )
}

fn parse_retries(ruby: &Ruby, value: Option<Value>) -> Result<u32, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(0);
    };
    read_integer(
        ruby,
        ("retries", options::MAX_RETRIES),
        value,
        "retries must be a non-negative Integer",
        options::retries,
    )
}

fn parse_positive(
    ruby: &Ruby,
    (name, max): (&str, u64),
    value: Option<Value>,
) -> Result<Option<u64>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    let not_integer = format!("{name} must be a positive Integer");
    read_integer(ruby, (name, max), value, &not_integer, |number| {
        options::positive(name, max, number)
    })
    .map(Some)
}

/// Reads `shard:`: nil, `[index, count]`, or `:auto`, which asks
/// `Divvy::Shard.from_scheduler` (lib/divvy/shard.rb) and lets its
/// `Divvy::Error` through.
fn parse_shard(ruby: &Ruby, value: Option<Value>) -> Result<Option<Shard>, Error> {
    let Some(mut value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    if value.eql(ruby.to_symbol("auto"))? {
        let shard: RModule = ruby
            .class_object()
            .const_get::<_, RModule>("Divvy")?
            .const_get("Shard")?;
        value = shard.funcall("from_scheduler", ())?;
    }
    let shown = value.inspect();
    let bad =
        || format!("shard must be [index, count] with 0 <= index < count, or :auto, got {shown}");
    let pair = RArray::from_value(value)
        .filter(|pair| pair.len() == 2)
        .and_then(|pair| Some((pair.entry(0).ok()?, pair.entry(1).ok()?)))
        .map(|(index, count)| (number(ruby, index), number(ruby, count)));
    let checked = match pair {
        Some((Number::Fits(index), Number::Fits(count))) => Shard::new(index, count),
        Some((Number::NotInteger, _) | (_, Number::NotInteger)) | None => Err(bad()),
        Some((Number::TooLarge, _) | (_, Number::TooLarge)) if shown.contains('-') => Err(bad()),
        Some(_) => Err(Shard::too_large(&shown)),
    };
    checked
        .map(Some)
        .map_err(|message| divvy_error(ruby, message))
}

fn parse_timeout(ruby: &Ruby, value: Option<Value>) -> Result<Option<Duration>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    let shown = value.inspect();
    let seconds = Some(value)
        .filter(|value| value.is_kind_of(ruby.class_numeric()))
        .and_then(|value| f64::try_convert(value).ok());
    let checked = match seconds {
        Some(seconds) => options::timeout(seconds, &shown),
        None => Err(format!(
            "timeout must be a positive number of seconds, got {shown}"
        )),
    };
    checked
        .map(Some)
        .map_err(|message| divvy_error(ruby, message))
}

/// Reads `halt:`: nil (never), or a String as `--halt` takes it
/// (`"soon,fail=3"`, `"now,success=10%"`, `"never"`).
fn parse_halt(ruby: &Ruby, value: Option<Value>) -> Result<Option<Halt>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    let Some(text) = magnus::RString::from_value(value) else {
        return Err(divvy_error(
            ruby,
            format!(
                "halt must be a String such as \"soon,fail=3\" or \"never\", got {}",
                value.inspect()
            ),
        ));
    };
    Halt::parse(&text.to_string()?).map_err(|message| divvy_error(ruby, message))
}
