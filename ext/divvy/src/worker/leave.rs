//! How a worker leaves: at the end of its items, when a signal asks it to
//! (after the item it is performing), or at once when something breaks.
//! It always leaves with `_exit`, after flushing `$stdout` and `$stderr`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use magnus::{prelude::*, value::Opaque, Error, RModule, Ruby, Value};

use divvy_core::wire::frame::Frame;

use super::answer;
use crate::vm::errors::failure_of;
use crate::vm::stdio::{flush_all, say};

/// True while this worker runs `perform`.
static PERFORMING: AtomicBool = AtomicBool::new(false);
/// True once INT or QUIT (or `--max-memory`) asked this worker to leave
/// after its current item.
static LEAVE_REQUESTED: AtomicBool = AtomicBool::new(false);

/// What the task's `before_exit` hook needs: the task, this worker's
/// `Divvy::Worker` and its number.
#[derive(Clone, Copy)]
struct Farewell {
    task: Opaque<Value>,
    view: Opaque<Value>,
    number: usize,
}

thread_local! {
    /// The worker's farewell, once it booted.
    static FAREWELL: Cell<Option<Farewell>> = const { Cell::new(None) };
}

/// Makes worker `number` run `task.before_exit(view)` when it leaves cleanly
/// (after its last item, when retired, when asked to leave). Runs in the
/// worker, once booted; `view` is kept from the GC for good by then, and
/// `task` by the master's run, which the worker never returns into.
pub fn say_farewell_with(task: Value, view: Value, number: usize) {
    let farewell = Farewell {
        task: task.into(),
        view: view.into(),
        number,
    };
    FAREWELL.with(|cell| cell.set(Some(farewell)));
}

/// Runs the task's `before_exit(worker)` hook, once; when it raises,
/// reports it and leaves with status 1.
fn farewell() {
    let Some(Farewell { task, view, number }) = FAREWELL.with(Cell::take) else {
        return;
    };
    let Ok(ruby) = Ruby::get() else {
        return;
    };
    let (task, view) = (ruby.get_inner(task), ruby.get_inner(view));
    let responds = task.respond_to("before_exit", true).unwrap_or(false);
    if let Err(error) = responds
        .then(|| task.funcall::<_, _, Value>("before_exit", (view,)))
        .transpose()
    {
        let label = format!("worker {number} (pid {})", std::process::id());
        report_and_leave(&ruby, &format!("{label} failed in before_exit"), &error);
    }
}

/// Leaves after the master closed the item pipe: sends the answers still
/// queued, runs the task's `before_exit` hook, and exits with status 0.
pub fn leave_at_the_end() -> ! {
    answer::write();
    farewell();
    leave(0)
}

/// Records whether the worker is performing an item (from just before
/// `perform` until its answer is queued).
pub fn performing(now: bool) {
    PERFORMING.store(now, Ordering::SeqCst);
}

/// Asks the worker to leave once it has answered for its current item.
pub fn ask_to_leave() {
    LEAVE_REQUESTED.store(true, Ordering::SeqCst);
}

/// Leaves, saying goodbye, when the worker was asked to.
pub fn leave_if_asked() {
    if LEAVE_REQUESTED.load(Ordering::SeqCst) {
        say_bye_and_leave();
    }
}

/// Installs the worker's traps: INT and QUIT let the current item finish
/// and then leave (an idle worker leaves at once), TERM kills the process
/// at once, TTIN and TTOU are ignored. Runs in the worker, right after the
/// fork, before `after_fork` (which may install its own).
///
/// Raises what `Signal.trap` raises.
pub fn install_traps(ruby: &Ruby) -> Result<(), Error> {
    let signal: RModule = ruby.class_object().const_get("Signal")?;
    let handler = ruby.proc_new(on_interrupt);
    let _: Value = signal.funcall("trap", ("INT", handler))?;
    let _: Value = signal.funcall("trap", ("QUIT", handler))?;
    let _: Value = signal.funcall("trap", ("TERM", "SYSTEM_DEFAULT"))?;
    let _: Value = signal.funcall("trap", ("TTIN", "IGNORE"))?;
    let _: Value = signal.funcall("trap", ("TTOU", "IGNORE"))?;
    Ok(())
}

/// Obeys `signo` as the worker's own traps would, when it reaches a worker
/// before they are installed (the master's trap, inherited through fork,
/// runs): TERM kills it, INT and QUIT make it leave (it has started no
/// item), and the others are ignored. Runs in the worker.
pub fn obey_early(signo: libc::c_int) {
    match signo {
        libc::SIGTERM => {
            // SAFETY: puts back the default action of TERM and raises it:
            // the process ends by the signal, as the worker's trap has it.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::raise(libc::SIGTERM);
            }
        }
        libc::SIGINT | libc::SIGQUIT => leave(0),
        _ => {}
    }
}

/// The worker's INT and QUIT trap.
fn on_interrupt(
    _ruby: &Ruby,
    _args: &[Value],
    _block: Option<magnus::block::Proc>,
) -> Result<(), Error> {
    if PERFORMING.load(Ordering::SeqCst) {
        ask_to_leave();
    } else {
        say_bye_and_leave();
    }
    Ok(())
}

/// Sends the answers queued so far, tells the master that the items this
/// worker still holds were never started, runs the task's `before_exit`
/// hook, then exits.
fn say_bye_and_leave() -> ! {
    answer::send(Frame::Bye);
    farewell();
    leave(0)
}

/// Reports in one line on `$stderr` why the worker stops (`context`, then
/// the error's class and message), then exits with status 1.
pub fn report_and_leave(ruby: &Ruby, context: &str, error: &Error) -> ! {
    let failure = failure_of(error);
    let _ = say(
        ruby,
        &format!("{context}: {}: {}", failure.class_name, failure.message),
    );
    leave(1)
}

/// Flushes `$stdout` and `$stderr`, then ends the process with `status`
/// without running `at_exit` handlers or unwinding.
pub fn leave(status: i32) -> ! {
    flush_all();
    // SAFETY: _exit ends the process; nothing after it runs.
    unsafe { libc::_exit(status) }
}
