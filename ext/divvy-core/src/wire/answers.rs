//! A worker's answers on their way to the master, batched: a worker that
//! finishes many small items writes their answers with one system call.
//! The worker writes them before it waits for more work, when a failure is
//! to be reported, when they pile up, or when the oldest has waited long
//! enough that the master should hear of it.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::frame::Frame;

/// The longest an answer waits in the buffer.
const MAX_DELAY: Duration = Duration::from_millis(2);
/// Buffered bytes past which answers are written at once.
const MAX_BUFFERED: usize = 64 * 1024;

/// Answers not yet written to the master.
#[derive(Debug)]
pub struct Answers {
    fd: RawFd,
    buffer: Vec<u8>,
    oldest: Option<Instant>,
}

impl Answers {
    /// Returns an empty queue that writes nowhere until `open`.
    pub const fn new() -> Answers {
        Answers {
            fd: -1,
            buffer: Vec::new(),
            oldest: None,
        }
    }

    /// Makes `fd` (the worker's answer pipe) where answers go.
    pub fn open(&mut self, fd: RawFd) {
        self.fd = fd;
    }

    /// Queues `frame`.
    ///
    /// Returns true when the queue is due to be written: it is large, or
    /// its oldest answer has waited long enough.
    pub fn queue(&mut self, frame: &Frame) -> bool {
        frame.encode_into(&mut self.buffer);
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        self.buffer.len() >= MAX_BUFFERED || oldest.elapsed() >= MAX_DELAY
    }

    /// Writes every queued answer, blocking until the pipe took them.
    ///
    /// Returns false when the master is gone (or the pipe was closed).
    pub fn write(&mut self) -> bool {
        let written = write_all(self.fd, &self.buffer);
        self.buffer.clear();
        self.oldest = None;
        written
    }
}

impl Default for Answers {
    fn default() -> Answers {
        Answers::new()
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer to a descriptor; a closed or
        // foreign one fails with an error, which is handled.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_answers_until_written() {
        let (rx, tx) = os::pipe().unwrap();
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        assert!(!answers.queue(&Frame::Done), "one small answer waits");
        answers.queue(&Frame::Bye);
        assert!(answers.write());
        let mut buffer = [0u8; 64];
        let count = nix::unistd::read(&rx, &mut buffer).unwrap();
        let mut expected = Frame::Done.encode();
        expected.extend(Frame::Bye.encode());
        assert_eq!(&buffer[..count], expected.as_slice());
    }

    #[test]
    fn a_large_queue_is_due_at_once() {
        let mut answers = Answers::new();
        assert!(answers.queue(&Frame::Result(vec![0; MAX_BUFFERED])));
    }

    #[test]
    fn says_when_the_master_is_gone() {
        let (rx, tx) = os::pipe().unwrap();
        drop(rx);
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        answers.queue(&Frame::Done);
        // SAFETY: ignoring SIGPIPE (as Ruby does) only turns the write's
        // signal into the EPIPE error this test expects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        assert!(!answers.write());
    }
}
