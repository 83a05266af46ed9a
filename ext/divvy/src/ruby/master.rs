//! `Divvy::Master`: turns the current process into a divvy master that runs
//! a task's items on a pool of forked workers. This is the Ruby face:
//! construction, readers, `run` (carried out by the `master` module) and
//! `shutdown`.

use std::cell::Cell;
use std::sync::Arc;

use magnus::{
    function, gc, method, prelude::*, typed_data::Obj, value::Opaque, DataTypeFunctions, Error,
    RArray, RModule, Ruby, TypedData, Value,
};

use divvy_core::engine::options::RunOptions;
use divvy_core::engine::scoreboard::Scoreboard;
use divvy_core::joblog;
use divvy_core::wire::wake;

use super::arguments;
use crate::master::{self, view::WorkerView};
use crate::vm::errors::divvy_error;
use crate::vm::gc::guard;

/// A master process and its worker slots.
#[derive(TypedData)]
#[magnus(class = "Divvy::Master", mark, free_immediately)]
pub struct Master {
    task: Opaque<Value>,
    /// The `Divvy::Worker` views, numbered from 1.
    views: Opaque<RArray>,
    /// The Array results are stored in (`results:`), if any.
    results: Option<Opaque<RArray>>,
    options: RunOptions,
    joblog: Option<joblog::Settings>,
    verbose: bool,
    master_pid: i32,
    board: Arc<Scoreboard>,
    running: Cell<bool>,
}

impl DataTypeFunctions for Master {
    fn mark(&self, marker: &gc::Marker) {
        marker.mark(self.task);
        marker.mark(self.views);
        if let Some(results) = self.results {
            marker.mark(results);
        }
    }
}

impl Master {
    /// Master.new(task, worker_count, verbose = false, retries: 0,
    /// timeout: nil, max_tasks: nil, max_memory: nil, shard: nil,
    /// progress: false, halt: nil, results: nil, joblog: nil, resume:
    /// false): a master for `task` (an object whose class includes
    /// `Divvy::Parallelizable`) with `worker_count` worker slots, numbered
    /// from 1. `retries` is how many more times a failed item is tried;
    /// `timeout` bounds one item's `perform`, in seconds; `max_tasks` and
    /// `max_memory` (MB) retire workers; `shard: [i, n]` performs only items
    /// whose dispatch index % n == i; `progress` shows a progress line on
    /// stderr; `halt` ("soon,fail=3", as `--halt` takes it; nil or "never"
    /// by default) ends the run early once enough items failed or were
    /// performed; `results` is an Array each item's result is stored in, at
    /// its dispatch index; `joblog` is the file each settled item is
    /// recorded in, and `resume` (true, or `:failed` to perform failed
    /// items again) skips the items it recorded. Runs in the master; starts
    /// no process.
    ///
    /// Raises `Divvy::Error` when `task` lacks `dispatch` or a perform
    /// method, `worker_count` is not a positive Integer, an option is out
    /// of range (`resume` without `joblog` or with `results` too), or `results` is not an
    /// Array that can be changed; `ArgumentError` for an unknown keyword.
    fn new(ruby: &Ruby, args: &[Value]) -> Result<Obj<Master>, Error> {
        let arguments = arguments::read(ruby, args)?;
        let task = arguments.task;
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
        let results = arguments.results;
        // An Array the GC sees keeps the views while the others are made.
        let views = ruby.ary_new_capa(arguments.worker_count);
        for number in 1..=arguments.worker_count {
            views.push(WorkerView::wrap(ruby, number, Arc::default()))?;
        }
        let master = ruby.obj_wrap(Master {
            task: task.into(),
            views: views.into(),
            results: results.map(Opaque::from),
            options: arguments.options,
            joblog: arguments.joblog,
            verbose: arguments.verbose,
            master_pid: std::process::id() as i32,
            board: Arc::new(Scoreboard::new(arguments.worker_count)),
            running: Cell::new(false),
        });
        // Until the Master object exists and marks them, the views and the
        // results were only in the struct it wraps, where the GC does not
        // look.
        guard(views);
        if let Some(results) = results {
            guard(results);
        }
        Ok(master)
    }

    /// Master#run: forks the workers, calls the task's `dispatch` and sends
    /// each item it yields to a free worker, and waits until every item sent
    /// has been performed, or until the halt policy ends the run (`soon`:
    /// the items in flight finish; `now`: the workers are stopped and what
    /// they held is abandoned). Runs in the master; blocks, with the GVL
    /// released while it waits.
    ///
    /// Returns nil, after a halt too (`halted?` tells). Raises `Divvy::Master::BootFailure` when workers die
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
        rb_self.board.clear_shutdown();
        let setup = master::Setup {
            task: ruby.get_inner(rb_self.task),
            views: ruby.get_inner(rb_self.views),
            results: rb_self.results.map(|results| ruby.get_inner(results)),
            options: rb_self.options,
            joblog: rb_self.joblog.clone(),
            verbose: rb_self.verbose,
            board: Arc::clone(&rb_self.board),
            master_pid: rb_self.master_pid,
        };
        let result = master::run(ruby, setup);
        rb_self.running.set(false);
        result
    }

    /// Master#shutdown: asks a running `run` to stop dispatching; items in
    /// flight finish and `run` returns. Runs in the master (from a hook, a
    /// trap or another thread).
    ///
    /// Returns nil.
    fn shutdown(&self) {
        self.board.request_shutdown();
        wake::wake();
    }

    /// Master#workers: the `Divvy::Worker` objects, numbered 1..n.
    fn workers(ruby: &Ruby, rb_self: &Self) -> RArray {
        ruby.get_inner(rb_self.views).dup()
    }

    /// Master#workers_running?: true when any worker process is alive.
    fn workers_running(ruby: &Ruby, rb_self: &Self) -> bool {
        rb_self.is_master_process()
            && ruby
                .get_inner(rb_self.views)
                .into_iter()
                .filter_map(|view| Obj::<WorkerView>::try_convert(view).ok())
                .any(|view| view.occupant().is_running())
    }

    /// Master#master_process?: true in the process that created the master.
    fn is_master_process(&self) -> bool {
        std::process::id() as i32 == self.master_pid
    }

    /// Master#worker_process?: true inside a worker.
    fn is_worker_process(&self) -> bool {
        !self.is_master_process()
    }

    /// Master#worker_count: how many workers the master keeps running (TTIN
    /// and TTOU change it during a run).
    fn worker_count(&self) -> usize {
        self.board.worker_count()
    }

    /// Master#verbose: true when worker lifecycle logs were asked for.
    fn verbose(&self) -> bool {
        self.verbose
    }

    /// Master#retries: how many more times a failed item is tried.
    fn retries(&self) -> u32 {
        self.options.retries
    }

    /// Master#timeout: the bound on one item's `perform` in seconds, or nil.
    fn timeout(&self) -> Option<f64> {
        self.options.timeout.map(|timeout| timeout.as_secs_f64())
    }

    /// Master#halt: the halt policy, as `--halt` writes it
    /// ("soon,fail=3"), or "never".
    fn halt(&self) -> String {
        self.options
            .halt
            .map_or_else(|| String::from("never"), |halt| halt.to_string())
    }

    /// Master#halted?: true once the halt policy ended the current or last
    /// run early. Runs in the master (from a hook, too).
    fn is_halted(&self) -> bool {
        self.board.halted().is_some()
    }

    /// Master#halt_reason: why the halt policy ended the current or last
    /// run early ("3 items failed (--halt soon,fail=3)"), or nil.
    fn halt_reason(&self) -> Option<String> {
        self.board.halted()
    }

    /// Master#tasks_distributed: items sent to workers.
    fn tasks_distributed(&self) -> u64 {
        self.board.sent.get()
    }

    /// Master#failures: failures as they happened (raises, deaths and
    /// timeouts during items, retried or not, and workers that died
    /// unexpectedly between items).
    fn failures(&self) -> u64 {
        self.board.failures.get()
    }

    /// Master#spawn_count: worker processes forked, replacements included.
    fn spawn_count(&self) -> u64 {
        self.board.spawned.get()
    }

    /// Master#items_performed: items finally performed.
    fn items_performed(&self) -> u64 {
        self.board.performed.get()
    }

    /// Master#items_failed: items finally failed.
    fn items_failed(&self) -> u64 {
        self.board.failed.get()
    }

    /// Master#items_skipped: items a resumed run skipped because its job
    /// log recorded them.
    fn items_skipped(&self) -> u64 {
        self.board.skipped.get()
    }

    /// Master#items_retried: retries sent.
    fn items_retried(&self) -> u64 {
        self.board.retried.get()
    }
}

/// Defines `Divvy::Master`. Runs once, when the extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    let class = divvy.define_class("Master", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(Master::new, -1))?;
    class.define_method("run", method!(Master::run, 0))?;
    class.define_method("shutdown", method!(Master::shutdown, 0))?;
    class.define_method("workers", method!(Master::workers, 0))?;
    class.define_method("worker_count", method!(Master::worker_count, 0))?;
    class.define_method("workers_running?", method!(Master::workers_running, 0))?;
    class.define_method("master_process?", method!(Master::is_master_process, 0))?;
    class.define_method("worker_process?", method!(Master::is_worker_process, 0))?;
    class.define_method("verbose", method!(Master::verbose, 0))?;
    class.define_method("retries", method!(Master::retries, 0))?;
    class.define_method("timeout", method!(Master::timeout, 0))?;
    class.define_method("halt", method!(Master::halt, 0))?;
    class.define_method("halted?", method!(Master::is_halted, 0))?;
    class.define_method("halt_reason", method!(Master::halt_reason, 0))?;
    class.define_method("tasks_distributed", method!(Master::tasks_distributed, 0))?;
    class.define_method("failures", method!(Master::failures, 0))?;
    class.define_method("spawn_count", method!(Master::spawn_count, 0))?;
    class.define_method("items_performed", method!(Master::items_performed, 0))?;
    class.define_method("items_failed", method!(Master::items_failed, 0))?;
    class.define_method("items_retried", method!(Master::items_retried, 0))?;
    class.define_method("items_skipped", method!(Master::items_skipped, 0))?;
    Ok(())
}
