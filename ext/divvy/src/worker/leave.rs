//! How a worker leaves: at the end of its items, when a signal asks it to
//! (after the item it is performing), or at once when something breaks.
//! It always leaves with `_exit`, after flushing `$stdout` and `$stderr`.

use std::sync::atomic::{AtomicBool, Ordering};

use magnus::{prelude::*, Error, RModule, Ruby, Value};

use divvy_core::wire::frame::Frame;

use super::answer;
use crate::vm::errors::failure_of;
use crate::vm::stdio::{flush_all, say};

/// True while this worker runs `perform`.
static PERFORMING: AtomicBool = AtomicBool::new(false);
/// True once INT or QUIT (or `--max-memory`) asked this worker to leave
/// after its current item.
static LEAVE_REQUESTED: AtomicBool = AtomicBool::new(false);

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
/// worker still holds were never started, then exits.
fn say_bye_and_leave() -> ! {
    answer::send(&Frame::Bye);
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
