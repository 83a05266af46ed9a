//! `Divvy::Worker` and `Divvy.worker`: the bindings of a worker slot's Ruby
//! face. Its data, shared with the engine's record of the worker, is
//! `master::view::WorkerView`.

use magnus::{function, method, prelude::*, Error, RModule, Ruby, Value};

use crate::master::view::WorkerView;
use crate::worker;

/// Divvy.worker: the `Divvy::Worker` of this process inside a worker, nil
/// in the master.
fn current(ruby: &Ruby) -> Option<Value> {
    worker::current(ruby)
}

/// Defines `Divvy::Worker` and `Divvy.worker`. Runs once, when the
/// extension loads.
pub fn init(ruby: &Ruby, divvy: RModule) -> Result<(), Error> {
    divvy.define_module_function("worker", function!(current, 0))?;
    let class = divvy.define_class("Worker", ruby.class_object())?;
    class.undef_default_alloc_func();
    let _: Value = class.singleton_class()?.funcall("undef_method", ("new",))?;
    class.define_method("number", method!(WorkerView::number, 0))?;
    class.define_method("pid", method!(WorkerView::pid, 0))?;
    class.define_method("status", method!(WorkerView::status, 0))?;
    class.define_method("running?", method!(WorkerView::is_running, 0))?;
    class.define_method("kill", method!(WorkerView::kill, 1))?;
    class.define_method("inspect", method!(WorkerView::inspect, 0))?;
    Ok(())
}
