//! `Divvy::Worker`: one worker slot of a master, numbered from 1. The same
//! object stands for every process forked into the slot over a run.

use std::cell::Cell;

use magnus::{
    function, gc, method, prelude::*, typed_data::Obj, value::Opaque, DataTypeFunctions, Error,
    RModule, Ruby, TypedData, Value,
};

/// A worker slot as Ruby sees it.
#[derive(TypedData)]
#[magnus(class = "Divvy::Worker", mark, free_immediately)]
pub struct Worker {
    number: usize,
    pid: Cell<Option<i32>>,
    status: Cell<Option<Opaque<Value>>>,
    in_worker: Cell<bool>,
}

impl DataTypeFunctions for Worker {
    fn mark(&self, marker: &gc::Marker) {
        if let Some(status) = self.status.get() {
            marker.mark(status);
        }
    }
}

impl Worker {
    /// Returns a new, not yet started worker numbered `number`.
    pub fn new(number: usize) -> Worker {
        Worker {
            number,
            pid: Cell::new(None),
            status: Cell::new(None),
            in_worker: Cell::new(false),
        }
    }

    /// Worker#number: the worker's number, 1 to the master's worker count.
    pub fn number(&self) -> usize {
        self.number
    }

    /// Worker#pid: the process id of the worker's current or last process;
    /// nil before it is first started. In the worker, its own pid.
    pub fn pid(&self) -> Option<i32> {
        self.pid.get()
    }

    /// Worker#status: the `Process::Status` of the last process once it was
    /// reaped; nil while it runs or before it starts.
    fn status(ruby: &Ruby, rb_self: &Self) -> Option<Value> {
        rb_self.status.get().map(|status| ruby.get_inner(status))
    }

    /// Worker#running?: true while a process occupies the slot (in the
    /// master), or always inside the worker itself.
    pub fn is_running(&self) -> bool {
        self.in_worker.get() || (self.pid.get().is_some() && self.status.get().is_none())
    }

    /// Worker#kill(signal): sends `signal` (a name or number) to the
    /// worker's process. Runs in the master.
    ///
    /// Returns true when a signal was sent, false when the worker is not
    /// running; raises what `Process.kill` raises for a bad signal.
    fn kill(ruby: &Ruby, rb_self: &Self, signal: Value) -> Result<bool, Error> {
        match rb_self.pid.get() {
            Some(pid) if rb_self.is_running() && !rb_self.in_worker.get() => {
                let _: Value = ruby.module_process().funcall("kill", (signal, pid))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn inspect(&self) -> String {
        let state = if self.is_running() {
            "running"
        } else {
            "stopped"
        };
        match self.pid.get() {
            Some(pid) => format!("#<Divvy::Worker {} pid={} {}>", self.number, pid, state),
            None => format!("#<Divvy::Worker {} not started>", self.number),
        }
    }

    /// Records a freshly forked process (in the master) or, with
    /// `in_worker`, that this process is the worker itself.
    pub fn started(&self, pid: i32, in_worker: bool) {
        self.pid.set(Some(pid));
        self.status.set(None);
        self.in_worker.set(in_worker);
    }

    /// Records the reaped process's `Process::Status`.
    pub fn reaped(&self, status: Value) {
        self.status.set(Some(status.into()));
    }
}

thread_local! {
    /// In a worker, its own `Divvy::Worker`; the master keeps the object
    /// alive (it is in the master's worker list, copied into the child).
    static CURRENT: Cell<Option<Opaque<Obj<Worker>>>> = const { Cell::new(None) };
}

/// Records that this process is the worker `worker`. Runs in the worker.
pub fn set_current(worker: Obj<Worker>) {
    CURRENT.with(|current| current.set(Some(worker.into())));
}

/// Divvy.worker: the `Divvy::Worker` of this process inside a worker, nil
/// in the master.
fn current(ruby: &Ruby) -> Option<Obj<Worker>> {
    CURRENT.with(Cell::get).map(|worker| ruby.get_inner(worker))
}

/// Defines `Divvy::Worker` and `Divvy.worker`. Runs once, when the
/// extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    divvy.define_module_function("worker", function!(current, 0))?;
    let class = divvy.define_class("Worker", ruby.class_object())?;
    class.undef_default_alloc_func();
    let _: Value = class.singleton_class()?.funcall("undef_method", ("new",))?;
    class.define_method("number", method!(Worker::number, 0))?;
    class.define_method("pid", method!(Worker::pid, 0))?;
    class.define_method("status", method!(Worker::status, 0))?;
    class.define_method("running?", method!(Worker::is_running, 0))?;
    class.define_method("kill", method!(Worker::kill, 1))?;
    class.define_method("inspect", method!(Worker::inspect, 0))?;
    Ok(())
}

/// Returns the Ruby object for a new worker numbered `number`.
pub fn wrap(ruby: &Ruby, number: usize) -> Obj<Worker> {
    ruby.obj_wrap(Worker::new(number))
}
