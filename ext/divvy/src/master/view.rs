//! What Ruby sees of a worker (`Divvy::Worker`): its number, and a view
//! of the process in its slot shared with the engine's record of it
//! (`divvy_core::engine::worker::Occupant`), so the two never disagree.
//! The same object stands for every process forked into the slot. The
//! class's methods are bound in `ruby::worker`.

use std::cell::Cell;
use std::sync::Arc;

use magnus::{
    gc, prelude::*, rb_sys::AsRawValue, typed_data::Obj, value::Opaque, DataTypeFunctions, Error,
    Ruby, TypedData, Value,
};

use divvy_core::engine::worker::Occupant;

use crate::worker;

/// A worker slot as Ruby sees it.
#[derive(TypedData)]
#[magnus(class = "Divvy::Worker", mark, free_immediately)]
pub struct WorkerView {
    number: usize,
    occupant: Arc<Occupant>,
    /// The last process's `Process::Status`, once it was reaped.
    status: Cell<Option<Opaque<Value>>>,
}

impl DataTypeFunctions for WorkerView {
    fn mark(&self, marker: &gc::Marker) {
        if let Some(status) = self.status.get() {
            marker.mark(status);
        }
    }
}

impl WorkerView {
    /// Returns the Ruby object for worker `number` (from 1), whose process
    /// it sees through `occupant`. Runs in the master.
    pub fn wrap(ruby: &Ruby, number: usize, occupant: Arc<Occupant>) -> Obj<WorkerView> {
        ruby.obj_wrap(WorkerView {
            number,
            occupant,
            status: Cell::new(None),
        })
    }

    /// The view of the slot's process, shared with the engine.
    pub fn occupant(&self) -> &Arc<Occupant> {
        &self.occupant
    }

    /// Worker#number: the worker's number, 1 to the master's worker count.
    pub fn number(&self) -> usize {
        self.number
    }

    /// Worker#pid: the process id of the worker's current or last process;
    /// nil before it is first started. In the worker, its own pid.
    pub fn pid(ruby: &Ruby, rb_self: Obj<WorkerView>) -> Option<i32> {
        if is_this_process(ruby, rb_self) {
            return Some(std::process::id() as i32);
        }
        rb_self.occupant.pid()
    }

    /// Worker#status: the `Process::Status` of the last process once it was
    /// reaped; nil while it runs or before it starts.
    pub fn status(ruby: &Ruby, rb_self: &Self) -> Option<Value> {
        rb_self
            .status
            .get()
            .filter(|_| !rb_self.occupant.is_running())
            .map(|status| ruby.get_inner(status))
    }

    /// Worker#running?: true while a process occupies the slot (in the
    /// master), or always inside the worker itself.
    pub fn is_running(ruby: &Ruby, rb_self: Obj<WorkerView>) -> bool {
        is_this_process(ruby, rb_self) || rb_self.occupant.is_running()
    }

    /// Worker#kill(signal): sends `signal` (a name or number) to the
    /// worker's process. Runs in the master.
    ///
    /// Returns true when a signal was sent, false when the worker is not
    /// running (or this is the worker itself); raises what `Process.kill`
    /// raises for a bad signal.
    pub fn kill(ruby: &Ruby, rb_self: Obj<WorkerView>, signal: Value) -> Result<bool, Error> {
        if is_this_process(ruby, rb_self) || !rb_self.occupant.is_running() {
            return Ok(false);
        }
        match rb_self.occupant.pid() {
            Some(pid) => {
                let _: Value = ruby.module_process().funcall("kill", (signal, pid))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Worker#inspect: `#<Divvy::Worker 2 pid=4242 running>`.
    pub fn inspect(ruby: &Ruby, rb_self: Obj<WorkerView>) -> String {
        let state = if Self::is_running(ruby, rb_self) {
            "running"
        } else {
            "stopped"
        };
        match Self::pid(ruby, rb_self) {
            Some(pid) => format!("#<Divvy::Worker {} pid={pid} {state}>", rb_self.number),
            None => format!("#<Divvy::Worker {} not started>", rb_self.number),
        }
    }

    /// Records the reaped process's `Process::Status` (nil when someone
    /// else reaped it). Runs in the master.
    pub fn reaped(&self, status: Option<Value>) {
        self.status.set(status.map(Opaque::from));
    }
}

/// True inside the worker process that `view` stands for.
fn is_this_process(ruby: &Ruby, view: Obj<WorkerView>) -> bool {
    worker::current(ruby).is_some_and(|current| current.as_raw() == view.as_raw())
}
