//! The worker's answers to the master: queued, and written in batches
//! after the item's output (see `divvy_core::wire::answers`).

use std::cell::RefCell;
use std::os::fd::RawFd;

use divvy_core::wire::answers::Answers;
use divvy_core::wire::frame::Frame;

use crate::vm::errors::failure_of;
use crate::vm::stdio::flush_streams;

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
pub fn queue(frame: Frame) -> bool {
    let due = ANSWERS.with(|answers| answers.borrow_mut().queue(frame));
    !due || write()
}

/// Sends `frame` now, after everything queued before it.
///
/// Returns false when the master is gone.
pub fn send(frame: Frame) -> bool {
    ANSWERS.with(|answers| answers.borrow_mut().queue(frame));
    write()
}

/// Writes every queued answer now, after flushing `$stdout` and `$stderr`
/// so that an item's output is out before its answer. When the output
/// cannot be written (a full disk, a closed pipe), the items answered as
/// performed since the last write fail instead: their output is lost.
///
/// Returns false when the master is gone.
pub fn write() -> bool {
    let lost = flush_streams().err().map(|error| {
        let mut failure = failure_of(&error);
        failure.message = format!("its output could not be written: {}", failure.message);
        failure
    });
    ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        if let Some(failure) = &lost {
            answers.fail_performed(failure);
        }
        answers.write()
    })
}
