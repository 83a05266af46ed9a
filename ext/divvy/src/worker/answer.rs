//! The worker's answers to the master: queued, and written in batches
//! after the item's output (see `divvy_core::wire::answers`).

use std::cell::RefCell;
use std::os::fd::RawFd;

use divvy_core::wire::answers::Answers;
use divvy_core::wire::frame::Frame;

use crate::vm::stdio::flush_all;

thread_local! {
    /// A signal trap sends `Bye` through it too.
    static ANSWERS: RefCell<Answers> = const { RefCell::new(Answers::new()) };
}

/// Makes `fd` (the worker's answer pipe) where answers go.
pub fn open(fd: RawFd) {
    ANSWERS.with(|answers| answers.borrow_mut().open(fd));
}

/// Queues `frame` for the master, and writes the queue out when it is due.
///
/// Returns false when the master is gone.
pub fn queue(frame: &Frame) -> bool {
    let due = ANSWERS.with(|answers| answers.borrow_mut().queue(frame));
    !due || write()
}

/// Sends `frame` now, after everything queued before it.
///
/// Returns false when the master is gone.
pub fn send(frame: &Frame) -> bool {
    ANSWERS.with(|answers| answers.borrow_mut().queue(frame));
    write()
}

/// Writes every queued answer now, after flushing `$stdout` and `$stderr`
/// so that an item's output is out before its answer.
///
/// Returns false when the master is gone.
pub fn write() -> bool {
    flush_all();
    ANSWERS.with(|answers| answers.borrow_mut().write())
}
