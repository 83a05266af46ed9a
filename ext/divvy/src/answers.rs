//! A worker's answers on their way to the master, batched: a worker that
//! finishes many small items writes their answers with one system call.
//! Answers go out before the worker waits for more work, when a failure is
//! to be reported, when they pile up, or when the oldest has waited long
//! enough that the master should hear of it. Runs in the worker only.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::protocol::Frame;
use crate::stdio::flush_all;

/// The longest an answer waits in the buffer.
const MAX_DELAY: Duration = Duration::from_millis(2);
/// Buffered bytes past which answers are written at once.
const MAX_BUFFERED: usize = 64 * 1024;

struct Answers {
    fd: RawFd,
    buffer: Vec<u8>,
    oldest: Option<Instant>,
}

thread_local! {
    static ANSWERS: RefCell<Answers> = const {
        RefCell::new(Answers {
            fd: -1,
            buffer: Vec::new(),
            oldest: None,
        })
    };
}

/// Makes `fd` (the worker's result pipe) where answers go.
pub fn open(fd: RawFd) {
    ANSWERS.with(|answers| answers.borrow_mut().fd = fd);
}

/// Queues `frame` for the master, and writes the queue out when it is due.
///
/// Returns false when the master is gone.
pub fn queue(frame: &Frame) -> bool {
    let due = ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        frame.encode_into(&mut answers.buffer);
        let oldest = *answers.oldest.get_or_insert_with(Instant::now);
        answers.buffer.len() >= MAX_BUFFERED || oldest.elapsed() >= MAX_DELAY
    });
    !due || flush()
}

/// Writes every queued answer now, after flushing `$stdout` and `$stderr` so
/// an item's output is out before its answer.
///
/// Returns false when the master is gone.
pub fn flush() -> bool {
    flush_all();
    ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        let result = write_all(answers.fd, &answers.buffer);
        answers.buffer.clear();
        answers.oldest = None;
        result
    })
}

/// Sends `frame` now, after everything queued before it.
///
/// Returns false when the master is gone.
pub fn send(frame: &Frame) -> bool {
    ANSWERS.with(|answers| frame.encode_into(&mut answers.borrow_mut().buffer));
    flush()
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer to this worker's result pipe.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(written) {
            Ok(count) => bytes = &bytes[count..],
            Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
            }
            Err(_) => return false,
        }
    }
    true
}
