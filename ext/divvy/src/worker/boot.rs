//! A worker's first steps after the fork, before it takes any item.

use std::cell::Cell;
use std::os::fd::AsRawFd;

use magnus::{prelude::*, value::Opaque, Ruby, Value};

use divvy_core::os;
use divvy_core::wire::frame::Frame;
use divvy_core::wire::wake;

use super::leave::{self, install_traps, leave, report_and_leave};
use super::{answer, crash, Setup};
use crate::vm::title;

thread_local! {
    /// In a worker, its own `Divvy::Worker`, kept from the GC (and from
    /// compaction) for the life of the process.
    static CURRENT: Cell<Option<Opaque<Value>>> = const { Cell::new(None) };
}

/// Divvy.worker: this process's `Divvy::Worker` inside a worker, `None` in
/// the master.
pub fn current(ruby: &Ruby) -> Option<Value> {
    CURRENT.with(Cell::get).map(|view| ruby.get_inner(view))
}

/// Boots the worker: leads a process group of its own, closes the
/// master's ends of every pipe, puts the
/// output pipes in place of stdout and stderr, arranges to die with the
/// master, sets the process title, installs the worker's traps, runs the
/// task's `after_fork` and tells the master it is ready. Runs in the
/// worker, right after the fork; leaves the process when a step fails.
///
/// Returns how reports name the worker: `worker 3 (pid 4242)`.
pub fn boot(ruby: &Ruby, setup: &Setup<'_>) -> String {
    // A group of its own, so that what `perform` starts is stopped with it.
    os::lead_process_group(0);
    for fd in &setup.inherited_fds {
        // SAFETY: these descriptors belong to the master's side; nothing in
        // this process uses them.
        unsafe { libc::close(*fd) };
    }
    wake::forget();
    for (stream, fd) in &setup.ends.output_tx {
        // SAFETY: puts the pipe in place of stdout/stderr; both are open.
        unsafe { libc::dup2(fd.as_raw_fd(), *stream) };
    }
    if !os::die_with_parent(setup.master_pid) {
        leave(1);
    }
    crash::name_crashes(setup.counter);
    ruby.gc_register_mark_object(setup.view);
    CURRENT.with(|current| current.set(Some(setup.view.into())));
    title::set(ruby, &title::worker(setup.number, &setup.script));
    answer::open(setup.ends.answer_tx.as_raw_fd());
    let label = format!("worker {} (pid {})", setup.number, std::process::id());
    if let Err(error) = install_traps(ruby) {
        report_and_leave(ruby, &format!("{label} could not trap signals"), &error);
    }
    if let Err(error) = setup
        .task
        .funcall::<_, _, Value>("after_fork", (setup.view,))
    {
        report_and_leave(ruby, &format!("{label} failed in after_fork"), &error);
    }
    if !answer::send(Frame::Ready) {
        leave(1);
    }
    leave::say_farewell_with(setup.task, setup.view, setup.number);
    label
}
