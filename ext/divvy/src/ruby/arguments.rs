//! Reading `Divvy::Master.new`'s arguments: the worker count and the
//! keywords, each checked and named in the error when it is out of range.

use std::time::Duration;

use magnus::{
    prelude::*,
    scan_args::{get_kwargs, scan_args},
    Error, RArray, RModule, Ruby, Value,
};

use divvy_core::engine::options::{self, RunOptions, Shard};

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
    );
    let keywords = get_kwargs::<_, (), Keywords, ()>(
        args.keywords,
        &[],
        &[
            "retries",
            "timeout",
            "max_tasks",
            "max_memory",
            "shard",
            "progress",
        ],
    )?;
    let (retries, timeout, max_tasks, max_memory, shard, progress) = keywords.optional;
    let options = RunOptions {
        retries: parse_retries(ruby, retries)?,
        timeout: parse_timeout(ruby, timeout)?,
        max_items: parse_positive(ruby, "max_tasks", max_tasks)?,
        max_memory: parse_positive(ruby, "max_memory", max_memory)?
            .map(|megabytes| megabytes.saturating_mul(1024 * 1024)),
        shard: parse_shard(ruby, shard)?,
        progress: progress.is_some_and(|value| value.to_bool()),
        wants_results: false,
    };
    Ok(Arguments {
        task,
        worker_count: parse_worker_count(ruby, count)?,
        verbose: verbose.is_some_and(|value| value.to_bool()),
        options,
    })
}

fn parse_worker_count(ruby: &Ruby, count: Value) -> Result<usize, Error> {
    integer(ruby, count)
        .filter(|count| *count >= 1)
        .and_then(|count| usize::try_from(count).ok())
        .ok_or_else(|| {
            divvy_error(
                ruby,
                format!(
                    "worker count must be a positive Integer, got {}",
                    count.inspect()
                ),
            )
        })
}

fn parse_retries(ruby: &Ruby, value: Option<Value>) -> Result<u32, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(0);
    };
    match integer(ruby, value) {
        Some(number) => options::retries(number).map_err(|message| divvy_error(ruby, message)),
        None => Err(divvy_error(
            ruby,
            format!(
                "retries must be a non-negative Integer, got {}",
                value.inspect()
            ),
        )),
    }
}

fn parse_positive(ruby: &Ruby, name: &str, value: Option<Value>) -> Result<Option<u64>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    match integer(ruby, value) {
        Some(number) => options::positive(name, number)
            .map(Some)
            .map_err(|message| divvy_error(ruby, message)),
        None => Err(divvy_error(
            ruby,
            format!("{name} must be a positive Integer, got {}", value.inspect()),
        )),
    }
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
    let pair = RArray::from_value(value)
        .filter(|pair| pair.len() == 2)
        .and_then(|pair| {
            Some((
                integer(ruby, pair.entry(0).ok()?)?,
                integer(ruby, pair.entry(1).ok()?)?,
            ))
        });
    let (index, count) = pair.ok_or_else(|| {
        divvy_error(
            ruby,
            format!(
                "shard must be [index, count] with 0 <= index < count, or :auto, got {}",
                value.inspect()
            ),
        )
    })?;
    Shard::new(index, count)
        .map(Some)
        .map_err(|message| divvy_error(ruby, message))
}

fn parse_timeout(ruby: &Ruby, value: Option<Value>) -> Result<Option<Duration>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
    let seconds = Some(value)
        .filter(|value| value.is_kind_of(ruby.class_numeric()))
        .and_then(|value| f64::try_convert(value).ok());
    match seconds {
        Some(seconds) => options::timeout(seconds)
            .map(Some)
            .map_err(|message| divvy_error(ruby, message)),
        None => Err(divvy_error(
            ruby,
            format!(
                "timeout must be a positive number of seconds, got {}",
                value.inspect()
            ),
        )),
    }
}

/// Returns `value` as an i64 when it is an Integer that fits.
fn integer(ruby: &Ruby, value: Value) -> Option<i64> {
    Some(value)
        .filter(|value| value.is_kind_of(ruby.class_integer()))
        .and_then(|value| i64::try_convert(value).ok())
}
