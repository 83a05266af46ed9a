//! Large results a worker lends its answer pipe: their pages handed to the
//! pipe (`os::splice_into_pipe`) rather than copied into it, so that the
//! master's read is their only copy. A lent result must stay unchanged
//! until the master has read it; the pipe is read in order, so the count
//! of bytes it still holds says which lent results were read.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;

use super::frame::ResultBytes;
use super::payload::Piece;
use crate::os;

/// Runs shorter than this are copied: each lent run takes pipe buffers of
/// its own, a page each at least.
const MIN_LENT: usize = 4096;

/// The results lent to one pipe and not yet known to be read.
#[derive(Debug)]
pub struct Lent {
    /// Bytes put into the pipe so far, copied or lent.
    sent: u64,
    /// Each result lent, with `sent` once its last byte was in.
    results: VecDeque<(u64, ResultBytes)>,
}

impl Lent {
    /// Returns an account of nothing lent.
    pub const fn new() -> Lent {
        Lent {
            sent: 0,
            results: VecDeque::new(),
        }
    }

    /// Writes `bytes` to the blocking pipe `fd`, copied.
    ///
    /// Returns false when the pipe failed (the master is gone).
    pub fn write(&mut self, fd: RawFd, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: writes from a valid buffer to a descriptor; a closed
            // or foreign one fails with an error, which is handled.
            let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            match Errno::result(written) {
                Ok(count) => self.advance(&mut bytes, count as usize),
                Err(Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Puts `result`'s bytes into the blocking pipe `fd`: its large runs
    /// lent where the system can, everything else copied. Keeps `result`
    /// while the pipe may still refer to its pages.
    ///
    /// Returns false when the pipe failed (the master is gone).
    pub fn lend(&mut self, fd: RawFd, result: ResultBytes) -> bool {
        let mut lent = false;
        for piece in result.pieces() {
            let bytes = match piece {
                Piece::Copied(bytes) => bytes,
                Piece::Referenced(frozen) => frozen.bytes(),
            };
            let sent = if bytes.len() < MIN_LENT {
                self.write(fd, bytes).then_some(false)
            } else {
                self.splice(fd, bytes)
            };
            match sent {
                Some(spliced) => lent |= spliced,
                None => return false,
            }
        }
        if lent {
            self.results.push_back((self.sent, result));
        }
        true
    }

    /// Lets go of the lent results the master has read all of, as the
    /// count of bytes the pipe `fd` still holds shows.
    pub fn release_read(&mut self, fd: RawFd) {
        if self.results.is_empty() {
            return;
        }
        let Some(unread) = os::unread_bytes(fd) else {
            return;
        };
        let read = self.sent.saturating_sub(unread);
        while self.results.front().is_some_and(|(end, _)| *end <= read) {
            self.results.pop_front();
        }
    }

    /// How many lent results are kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.results.len()
    }

    /// Puts `bytes` into the blocking pipe `fd`, lent where the system
    /// can, else copied.
    ///
    /// Returns whether any were lent, or `None` when the pipe failed.
    fn splice(&mut self, fd: RawFd, mut bytes: &[u8]) -> Option<bool> {
        let mut lent = false;
        while !bytes.is_empty() {
            // SAFETY: the caller's `fd` is open for the whole call.
            let pipe = unsafe { BorrowedFd::borrow_raw(fd) };
            match os::splice_into_pipe(pipe, bytes) {
                None => return self.write(fd, bytes).then_some(lent),
                Some(Ok(count)) => {
                    lent = true;
                    self.advance(&mut bytes, count);
                }
                Some(Err(Errno::EAGAIN)) => {
                    if !wait_writable(fd) {
                        return None;
                    }
                }
                // Another failure (ENOMEM) may be the splice's alone: the
                // rest is written, which fails too when the pipe does.
                Some(Err(_)) => return self.write(fd, bytes).then_some(lent),
            }
        }
        Some(lent)
    }

    /// Counts `count` bytes of `bytes` as put into the pipe.
    fn advance(&mut self, bytes: &mut &[u8], count: usize) {
        *bytes = &bytes[count.min(bytes.len())..];
        self.sent += count as u64;
    }
}

impl Default for Lent {
    fn default() -> Lent {
        Lent::new()
    }
}

/// Waits until the pipe `fd` has room.
///
/// Returns false when it never will (the reader is gone, or the wait
/// failed).
fn wait_writable(fd: RawFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: polls one valid pollfd.
        let ready = unsafe { libc::poll(&mut pollfd, 1, -1) };
        match Errno::result(ready) {
            Ok(_) => return pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn keeps_a_lent_result_until_the_reader_has_read_it_all() {
        let (rx, tx) = os::pipe().unwrap();
        // Few enough pages for a default pipe's 16 buffers, so that no
        // reader need run meanwhile.
        let payload: Vec<u8> = (0..30_000).map(|n| (n % 249) as u8).collect();
        let mut lent = Lent::new();
        assert!(lent.write(tx.as_raw_fd(), b"head"));
        assert!(lent.lend(tx.as_raw_fd(), payload.clone().into()));
        let spliced = lent.kept();
        assert_eq!(
            spliced,
            usize::from(cfg!(all(target_os = "linux", not(feature = "portable"))))
        );
        let mut reader = std::fs::File::from(rx);
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).unwrap();
        let mut most = vec![0u8; payload.len() - 1];
        reader.read_exact(&mut most).unwrap();
        lent.release_read(tx.as_raw_fd());
        assert_eq!(lent.kept(), spliced, "one byte is still unread");
        let mut last = [0u8; 1];
        reader.read_exact(&mut last).unwrap();
        lent.release_read(tx.as_raw_fd());
        assert_eq!(lent.kept(), 0);
        most.push(last[0]);
        assert_eq!(&head, b"head");
        assert_eq!(most, payload);
    }

    #[test]
    fn lends_the_referenced_runs_of_a_dump_and_copies_the_rest() {
        use crate::wire::payload::{tests::frozen, Payload};
        let (rx, tx) = os::pipe().unwrap();
        let large: Vec<u8> = (0..20_000).map(|n| (n % 239) as u8).collect();
        let mut dump = Payload::from(b"\x04\x08I\"".to_vec());
        dump.refer(frozen(&large));
        dump.extend_from_slice(b"\x06:\x06ET");
        let expected = dump.to_bytes().into_owned();
        let mut lent = Lent::new();
        assert!(lent.lend(tx.as_raw_fd(), ResultBytes::Dumped(dump)));
        let spliced = usize::from(cfg!(all(target_os = "linux", not(feature = "portable"))));
        assert_eq!(lent.kept(), spliced);
        drop(tx);
        let mut received = Vec::new();
        std::fs::File::from(rx).read_to_end(&mut received).unwrap();
        assert_eq!(received, expected);
    }

    #[test]
    fn lends_more_than_the_pipe_holds_while_it_is_read() {
        let (rx, tx) = os::pipe().unwrap();
        let payload: Vec<u8> = (0..3_000_000).map(|n| (n % 241) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            std::fs::File::from(rx).read_to_end(&mut received).unwrap();
            received
        });
        let mut lent = Lent::new();
        assert!(lent.lend(tx.as_raw_fd(), payload.clone().into()));
        drop(tx);
        assert_eq!(reader.join().unwrap(), payload);
    }

    #[test]
    fn says_when_the_reader_is_gone() {
        let (rx, tx) = os::pipe().unwrap();
        drop(rx);
        // SAFETY: ignoring SIGPIPE so that the write fails with EPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let mut lent = Lent::new();
        assert!(!lent.lend(tx.as_raw_fd(), vec![1; 100_000].into()));
        assert!(!lent.write(tx.as_raw_fd(), b"x"));
    }
}
