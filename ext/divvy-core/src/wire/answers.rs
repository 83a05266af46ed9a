//! A worker's answers on their way to the master, batched: a worker that
//! finishes many small items writes their answers with one system call,
//! and a large result is lent to the pipe from where it lies (`lent`).
//! The worker writes them before it waits for more work, when a failure is
//! to be reported, when they pile up, or when the oldest has waited long
//! enough that the master should hear of it.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::frame::{Failure, Frame};
use super::lent::Lent;
use crate::os;

/// How long the oldest answer may wait in the buffer: the answers are
/// written once it has, checked as each answer is queued (and before the
/// worker waits for more items). Each write of answers wakes the master,
/// which on a machine busy with workers takes a CPU from one of them for a
/// while: fewer, larger batches leave more of the CPUs to the work.
pub const MAX_DELAY: Duration = Duration::from_millis(8);
/// Buffered bytes past which answers are written at once.
const MAX_BUFFERED: usize = 64 * 1024;
/// The pipe buffer asked for once a write is larger than the default
/// pipe's (64 KB on Linux): a large result then crosses in one write and
/// one read rather than in 64 KB round trips. Asked for only then, so that
/// runs without large results do not spend the user's pipe allowance.
const LARGE_PIPE: usize = 1024 * 1024;

/// Answers not yet written to the master.
#[derive(Debug)]
pub struct Answers {
    fd: RawFd,
    /// The pipe `fd` was when opened (device and inode): a `perform` that
    /// closed it and opened a file that took its number must not get the
    /// answers.
    identity: Option<(u64, u64)>,
    /// The answers queued, oldest first.
    frames: Vec<Frame>,
    /// Their size once encoded.
    bytes: usize,
    /// Where they are encoded to be written.
    buffer: Vec<u8>,
    oldest: Option<Instant>,
    /// Whether the pipe was asked to grow to `LARGE_PIPE`.
    enlarged: bool,
    /// The large results lent to the pipe, kept until the master read them.
    lent: Lent,
}

impl Answers {
    /// Returns an empty queue that writes nowhere until `open`.
    pub const fn new() -> Answers {
        Answers {
            fd: -1,
            identity: None,
            frames: Vec::new(),
            bytes: 0,
            buffer: Vec::new(),
            oldest: None,
            enlarged: false,
            lent: Lent::new(),
        }
    }

    /// Makes `fd` (the worker's answer pipe) where answers go.
    pub fn open(&mut self, fd: RawFd) {
        self.fd = fd;
        self.identity = identity(fd);
    }

    /// Queues `frame`.
    ///
    /// Returns true when the queue is due to be written: it is large, or
    /// its oldest answer has waited long enough.
    pub fn queue(&mut self, frame: Frame) -> bool {
        self.bytes += frame.encoded_len();
        self.frames.push(frame);
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        self.bytes >= MAX_BUFFERED || oldest.elapsed() >= MAX_DELAY
    }

    /// Turns every queued answer that says an item was performed into one
    /// that says it failed with `failure`: their output could not be
    /// written (a full disk), so they were not performed as asked.
    pub fn fail_performed(&mut self, failure: &Failure) {
        for frame in &mut self.frames {
            if matches!(frame, Frame::Done | Frame::Result(_)) {
                *frame = Frame::Failed(failure.clone());
            }
        }
    }

    /// Writes every queued answer, blocking until the pipe took them.
    ///
    /// Returns false when the master is gone, or the pipe was closed or
    /// replaced.
    pub fn write(&mut self) -> bool {
        let mut written = self.identity.is_some() && identity(self.fd) == self.identity;
        if written {
            self.enlarge_for_large_writes();
            self.lent.release_read(self.fd);
        }
        self.buffer.clear();
        for frame in self.frames.drain(..) {
            // A large result is lent to the pipe from where it lies.
            if let Some(result) = frame.encode_unless_large(&mut self.buffer, MAX_BUFFERED) {
                written = written
                    && self.lent.write(self.fd, &self.buffer)
                    && self.lent.lend(self.fd, result);
                self.buffer.clear();
            }
        }
        written = written && self.lent.write(self.fd, &self.buffer);
        self.bytes = 0;
        self.oldest = None;
        written
    }
}

impl Answers {
    /// Asks for a larger pipe the first time the answers to write outgrow
    /// the default one.
    fn enlarge_for_large_writes(&mut self) {
        if !self.enlarged && self.bytes > MAX_BUFFERED {
            self.enlarged = true;
            // SAFETY: `fd` was just checked to be the open answer pipe.
            os::enlarge_pipe(unsafe { BorrowedFd::borrow_raw(self.fd) }, LARGE_PIPE);
        }
    }
}

impl Default for Answers {
    fn default() -> Answers {
        Answers::new()
    }
}

/// The device and inode of what `fd` refers to, if it is open.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills in the stat it is given, or fails.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so `stat` is filled in.
    let stat = unsafe { stat.assume_init() };
    // The fields' types differ between systems (i32 on macOS).
    #[allow(clippy::unnecessary_cast)]
    Some((stat.st_dev as u64, stat.st_ino as u64))
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
        assert!(!answers.queue(Frame::Done), "one small answer waits");
        answers.queue(Frame::Bye);
        assert!(answers.write());
        let mut buffer = [0u8; 64];
        let count = nix::unistd::read(&rx, &mut buffer).unwrap();
        let mut expected = Frame::Done.encode();
        expected.extend(Frame::Bye.encode());
        assert_eq!(&buffer[..count], expected.as_slice());
    }

    #[test]
    fn fails_the_performed_answers_whose_output_was_lost() {
        let (rx, tx) = os::pipe().unwrap();
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        answers.queue(Frame::Done);
        answers.queue(Frame::Result(vec![1].into()));
        let earlier = Failure {
            class_name: "RuntimeError".into(),
            ..Failure::default()
        };
        answers.queue(Frame::Failed(earlier.clone()));
        let full = Failure {
            class_name: "Errno::ENOSPC".into(),
            ..Failure::default()
        };
        answers.fail_performed(&full);
        assert!(answers.write());
        let mut buffer = [0u8; 256];
        let count = nix::unistd::read(&rx, &mut buffer).unwrap();
        let mut expected = Frame::Failed(full.clone()).encode();
        expected.extend(Frame::Failed(full).encode());
        expected.extend(Frame::Failed(earlier).encode());
        assert_eq!(&buffer[..count], expected.as_slice());
    }

    #[test]
    fn writes_a_large_result_in_its_place_among_the_answers() {
        let (rx, tx) = os::pipe().unwrap();
        let frames = [
            Frame::Done,
            Frame::Result(
                (0..3 * MAX_BUFFERED)
                    .map(|n| n as u8)
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            Frame::Result(vec![5; 10].into()),
        ];
        let expected: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(rx), &mut received).unwrap();
            received
        });
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        for frame in frames {
            answers.queue(frame);
        }
        assert!(answers.write());
        drop(tx);
        assert_eq!(reader.join().unwrap(), expected);
    }

    #[test]
    fn a_large_queue_is_due_at_once() {
        let mut answers = Answers::new();
        assert!(answers.queue(Frame::Result(vec![0; MAX_BUFFERED].into())));
    }

    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn pipe_size(fd: &std::os::fd::OwnedFd) -> i32 {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn grows_the_pipe_for_a_large_answer_only() {
        let (_rx, tx) = os::pipe().unwrap();
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        answers.queue(Frame::Result(vec![7; 1000].into()));
        assert!(answers.write());
        let default = pipe_size(&tx);
        assert!(
            default < LARGE_PIPE as i32,
            "a small answer leaves the pipe as it was"
        );
        answers.queue(Frame::Result(vec![7; 2 * MAX_BUFFERED].into()));
        assert!(answers.write(), "the large answer fits the grown pipe");
        assert_eq!(pipe_size(&tx), LARGE_PIPE as i32);
    }

    #[test]
    fn refuses_a_descriptor_that_is_no_longer_the_pipe() {
        let (_rx, tx) = os::pipe().unwrap();
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        // The pipe's number now stands for another file, as after a close
        // and an open.
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: replaces this test's own descriptor `tx` in one step.
        assert!(unsafe { libc::dup2(null.as_raw_fd(), tx.as_raw_fd()) } >= 0);
        answers.queue(Frame::Done);
        assert!(!answers.write());
    }

    #[test]
    fn says_when_the_master_is_gone() {
        let (rx, tx) = os::pipe().unwrap();
        drop(rx);
        let mut answers = Answers::new();
        answers.open(tx.as_raw_fd());
        answers.queue(Frame::Done);
        // SAFETY: ignoring SIGPIPE (as Ruby does) only turns the write's
        // signal into the EPIPE error this test expects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        assert!(!answers.write());
    }
}
