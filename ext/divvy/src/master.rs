//! `Divvy::Master`: turns the current process into a divvy master that runs a
//! task's items on a pool of forked workers. The run itself lives in
//! `run_loop`; this file is the Ruby face: construction, readers, `run`.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use magnus::{
    function, gc, method,
    prelude::*,
    scan_args::{get_kwargs, scan_args},
    typed_data::Obj,
    value::Opaque,
    DataTypeFunctions, Error, RArray, RHash, RModule, Ruby, TypedData, Value,
};

use crate::errors::divvy_error;
use crate::options::{self, RunOptions, Shard};
use crate::run_loop::{self, RunLoop};
use crate::worker::{self, Worker};

/// Counters a run keeps, readable from Ruby at any time.
#[derive(Default)]
pub struct Stats {
    /// Items sent to workers.
    pub tasks_distributed: Cell<u64>,
    /// Items finally performed.
    pub performed: Cell<u64>,
    /// Items finally failed, after their retries.
    pub failed: Cell<u64>,
    /// Times an item was sent again after it failed.
    pub retried: Cell<u64>,
    /// Failures as they happened: each raise, death during an item or
    /// timeout (retried or not), and each unexpected worker death.
    pub failures: Cell<u64>,
    /// Worker processes forked.
    pub spawn_count: Cell<u64>,
    /// Worker processes forked to replace one that exited.
    pub respawned: Cell<u64>,
}

/// Adds `count` to a counter.
pub fn bump(counter: &Cell<u64>, count: u64) {
    counter.set(counter.get() + count);
}

impl Stats {
    /// Returns the items settled so far (performed or finally failed) and
    /// how many of them failed.
    pub fn settled(&self) -> (u64, u64) {
        let failed = self.failed.get();
        (self.performed.get() + failed, failed)
    }
}

/// A master process and its worker slots.
#[derive(TypedData)]
#[magnus(class = "Divvy::Master", mark, free_immediately)]
pub struct Master {
    task: Opaque<Value>,
    workers: RefCell<Vec<Opaque<Obj<Worker>>>>,
    worker_count: Cell<usize>,
    options: RunOptions,
    master_pid: i32,
    stats: Stats,
    shutdown_requested: Cell<bool>,
    running: Cell<bool>,
    run_loop: RefCell<Option<RunLoop>>,
}

impl DataTypeFunctions for Master {
    fn mark(&self, marker: &gc::Marker) {
        marker.mark(self.task);
        // Never borrowed mutably across an allocation, so no GC (and no
        // mark) can run while it is.
        if let Ok(workers) = self.workers.try_borrow() {
            for worker in workers.iter() {
                marker.mark(*worker);
            }
        }
    }
}

impl Master {
    /// Master.new(task, worker_count, verbose = false, retries: 0,
    /// timeout: nil, max_tasks: nil, max_memory: nil, shard: nil,
    /// progress: false): a master for `task` (an object whose class
    /// includes `Divvy::Parallelizable`) with `worker_count` worker slots,
    /// numbered from 1. `retries` is how many more times a failed item is
    /// tried; `timeout` bounds one item's `perform`, in seconds;
    /// `max_tasks` and `max_memory` (MB) retire workers; `shard: [i, n]`
    /// performs only items whose dispatch index % n == i; `progress` shows a
    /// progress line on stderr. Runs in the master; starts no process.
    ///
    /// Raises `Divvy::Error` when `task` lacks `dispatch` or a perform
    /// method, `worker_count` is not a positive Integer, or an option is out
    /// of range; `ArgumentError` for an unknown keyword.
    fn new(ruby: &Ruby, args: &[Value]) -> Result<Obj<Master>, Error> {
        let args = scan_args::<(Value, Value), (Option<Value>,), (), (), RHash, ()>(args)?;
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
            verbose: verbose.is_some_and(|value| value.to_bool()),
            retries: parse_retries(ruby, retries)?,
            timeout: parse_timeout(ruby, timeout)?,
            max_tasks: parse_positive(ruby, "max_tasks", max_tasks)?,
            max_memory: parse_positive(ruby, "max_memory", max_memory)?
                .map(|megabytes| megabytes.saturating_mul(1024 * 1024)),
            shard: parse_shard(ruby, shard)?,
            progress: progress.is_some_and(|value| value.to_bool()),
        };
        let responds = |name: &str| task.respond_to(name, true);
        if !responds("dispatch")? || !(responds("perform")? || responds("process")?) {
            return Err(divvy_error(
                ruby,
                format!(
                    "task {} must respond to #dispatch and #perform (include Divvy::Parallelizable)",
                    task.inspect()
                ),
            ));
        }
        let worker_count = Some(count)
            .filter(|count| count.is_kind_of(ruby.class_integer()))
            .and_then(|count| i64::try_convert(count).ok())
            .filter(|count| *count >= 1)
            .ok_or_else(|| {
                divvy_error(
                    ruby,
                    format!(
                        "worker count must be a positive Integer, got {}",
                        count.inspect()
                    ),
                )
            })? as usize;
        // The workers are held in a Rust Vec, which the GC does not see,
        // until the Master object is made and marks them; meanwhile each
        // allocation may run the GC, so an Array on this stack keeps them.
        let keep = ruby.ary_new_capa(worker_count);
        let keep_raw = magnus::rb_sys::AsRawValue::as_raw(keep);
        let mut workers = Vec::with_capacity(worker_count);
        for number in 1..=worker_count {
            let worker = worker::wrap(ruby, number);
            keep.push(worker)?;
            workers.push(worker.into());
        }
        let master = ruby.obj_wrap(Master {
            task: task.into(),
            workers: RefCell::new(workers),
            worker_count: Cell::new(worker_count),
            options,
            master_pid: std::process::id() as i32,
            stats: Stats::default(),
            shutdown_requested: Cell::new(false),
            running: Cell::new(false),
            run_loop: RefCell::new(None),
        });
        let _ = rb_sys::rb_gc_guard!(keep_raw);
        Ok(master)
    }

    /// Master#run: forks the workers, calls the task's `dispatch` and sends
    /// each item it yields to a free worker, and waits until every item sent
    /// has been performed. Runs in the master; blocks, with the GVL released
    /// while it waits.
    ///
    /// Returns nil. Raises `Divvy::Master::BootFailure` when workers die
    /// before they can take items, `Divvy::Master::Shutdown` when a signal
    /// stopped the run, `Divvy::Error` when called in a worker or while
    /// running, and re-raises what `dispatch` or the hooks raise (after the
    /// items in flight finished).
    fn run(ruby: &Ruby, rb_self: Obj<Master>) -> Result<(), Error> {
        if !rb_self.is_master_process() {
            return Err(divvy_error(
                ruby,
                "Divvy::Master#run called in a worker process",
            ));
        }
        if rb_self.running.replace(true) {
            return Err(divvy_error(ruby, "Divvy::Master#run is already running"));
        }
        rb_self.shutdown_requested.set(false);
        let result = run_loop::run(ruby, rb_self);
        rb_self.running.set(false);
        result
    }

    /// Master#shutdown: asks a running loop to stop dispatching; items in
    /// flight finish and `run` returns. Runs in the master (from a hook, a
    /// trap or another thread).
    ///
    /// Returns nil.
    fn shutdown(&self) {
        self.shutdown_requested.set(true);
        crate::wake::wake();
    }

    /// Master#workers: the `Divvy::Worker` objects, numbered 1..n.
    fn workers_array(ruby: &Ruby, rb_self: &Self) -> RArray {
        let array = ruby.ary_new();
        for index in 0..rb_self.slot_count() {
            let _ = array.push(rb_self.worker(ruby, index));
        }
        array
    }

    /// Master#workers_running?: true when any worker process is alive.
    fn workers_running(ruby: &Ruby, rb_self: &Self) -> bool {
        rb_self.is_master_process()
            && (0..rb_self.slot_count()).any(|index| rb_self.worker(ruby, index).is_running())
    }

    /// Master#master_process?: true in the process that created the master.
    pub fn is_master_process(&self) -> bool {
        std::process::id() as i32 == self.master_pid
    }

    /// Master#worker_process?: true inside a worker.
    fn is_worker_process(&self) -> bool {
        !self.is_master_process()
    }

    /// The task object.
    pub fn task(&self, ruby: &Ruby) -> Value {
        ruby.get_inner(self.task)
    }

    /// The worker object in slot `index` (number minus one).
    pub fn worker(&self, ruby: &Ruby, index: usize) -> Obj<Worker> {
        ruby.get_inner(self.workers.borrow()[index])
    }

    /// Master#worker_count: how many workers the master keeps running (TTIN
    /// and TTOU change it during a run).
    pub fn worker_count(&self) -> usize {
        self.worker_count.get()
    }

    /// The number of worker slots, including one still leaving after TTOU.
    pub fn slot_count(&self) -> usize {
        self.workers.borrow().len()
    }

    /// Adds a worker slot, numbered after the last; returns its index.
    /// Runs in the master.
    pub fn add_worker(&self, ruby: &Ruby) -> usize {
        let number = self.slot_count() + 1;
        let worker = worker::wrap(ruby, number);
        self.workers.borrow_mut().push(worker.into());
        number - 1
    }

    /// Sets how many workers the master keeps running.
    pub fn set_worker_count(&self, count: usize) {
        self.worker_count.set(count);
    }

    /// Drops the worker slots past `len`, once their processes are gone.
    pub fn truncate_workers(&self, len: usize) {
        self.workers.borrow_mut().truncate(len);
    }

    /// Master#verbose: true when worker lifecycle logs were asked for.
    pub fn verbose(&self) -> bool {
        self.options.verbose
    }

    /// The run's options.
    pub fn options(&self) -> RunOptions {
        self.options
    }

    /// Master#retries: how many more times a failed item is tried.
    fn retries(&self) -> u32 {
        self.options.retries
    }

    /// Master#timeout: the bound on one item's `perform` in seconds, or nil.
    fn timeout(&self) -> Option<f64> {
        self.options.timeout.map(|timeout| timeout.as_secs_f64())
    }

    /// The pid of the master process.
    pub fn master_pid(&self) -> i32 {
        self.master_pid
    }

    /// The run's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True once `shutdown` was called during the current run.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.get()
    }

    /// The state of the current run; borrowed only for bookkeeping, never
    /// across a call into Ruby.
    pub fn run_loop(&self) -> &RefCell<Option<RunLoop>> {
        &self.run_loop
    }
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

fn parse_shard(ruby: &Ruby, value: Option<Value>) -> Result<Option<Shard>, Error> {
    let Some(value) = value.filter(|value| !value.is_nil()) else {
        return Ok(None);
    };
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
                "shard must be [index, count] with 0 <= index < count, got {}",
                value.inspect()
            ),
        )
    })?;
    Shard::new(index, count)
        .map(Some)
        .map_err(|message| divvy_error(ruby, message))
}

/// Returns `value` as an i64 when it is an Integer that fits.
fn integer(ruby: &Ruby, value: Value) -> Option<i64> {
    Some(value)
        .filter(|value| value.is_kind_of(ruby.class_integer()))
        .and_then(|value| i64::try_convert(value).ok())
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

/// Defines `Divvy::Master` and its errors. Runs once, when the extension
/// loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    let class = divvy.define_class("Master", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(Master::new, -1))?;
    class.define_method("run", method!(Master::run, 0))?;
    class.define_method("shutdown", method!(Master::shutdown, 0))?;
    class.define_method("workers", method!(Master::workers_array, 0))?;
    class.define_method("worker_count", method!(Master::worker_count, 0))?;
    class.define_method("workers_running?", method!(Master::workers_running, 0))?;
    class.define_method("master_process?", method!(Master::is_master_process, 0))?;
    class.define_method("worker_process?", method!(Master::is_worker_process, 0))?;
    class.define_method("verbose", method!(Master::verbose, 0))?;
    class.define_method(
        "tasks_distributed",
        method!(|m: &Master| m.stats.tasks_distributed.get(), 0),
    )?;
    class.define_method("failures", method!(|m: &Master| m.stats.failures.get(), 0))?;
    class.define_method(
        "spawn_count",
        method!(|m: &Master| m.stats.spawn_count.get(), 0),
    )?;
    class.define_method(
        "items_performed",
        method!(|m: &Master| m.stats.performed.get(), 0),
    )?;
    class.define_method(
        "items_failed",
        method!(|m: &Master| m.stats.failed.get(), 0),
    )?;
    class.define_method(
        "items_retried",
        method!(|m: &Master| m.stats.retried.get(), 0),
    )?;
    class.define_method("retries", method!(Master::retries, 0))?;
    class.define_method("timeout", method!(Master::timeout, 0))?;
    let shutdown = crate::errors::init_master_errors(ruby, class)?;
    shutdown.define_method("signo", method!(shutdown_signo, 0))?;
    Ok(())
}

/// Shutdown#signo: the number of the signal that stopped the run.
fn shutdown_signo(rb_self: Value) -> Result<Value, Error> {
    magnus::RObject::try_convert(rb_self)?.ivar_get("@signo")
}
