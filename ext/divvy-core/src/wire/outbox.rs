//! Frames queued for one worker's item pipe and written without blocking.
//! Owned bytes are copied into the outbox; the bytes a payload refers to
//! (large Strings) are handed to the pipe without a copy where the system
//! can (`os::splice_into_pipe`), and written elsewhere. That is safe
//! because referenced bytes stay unchanged while their item is held, and
//! an item is held until its worker answers for it, after reading its whole
//! frame.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use nix::errno::Errno;

use super::payload::{Frozen, Payload, Piece};
use crate::os;

/// A referenced run waiting in the outbox.
#[derive(Debug)]
struct Reference {
    /// Offset in the owned bytes that the run goes before.
    at: usize,
    frozen: Arc<Frozen>,
    /// Bytes of the run already in the pipe.
    sent: usize,
}

/// Frames waiting to be written to a pipe.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
    references: VecDeque<Reference>,
    /// Referenced bytes not yet in the pipe.
    referenced_pending: usize,
    items: usize,
}

impl Outbox {
    /// Queues one frame, `header` then `payload`, of which the first
    /// `written` bytes are already in the pipe. Counts it as an item.
    pub fn queue(&mut self, header: &[u8], payload: &Payload, written: usize) {
        self.items += 1;
        if written == 0 && !payload.has_references() {
            // The hot path of small items: two copies, nothing else.
            self.bytes.extend_from_slice(header);
            self.bytes.extend_from_slice(&payload.to_bytes());
            return;
        }
        let mut skip = written;
        let pieces = std::iter::once(Piece::Copied(header)).chain(payload.pieces());
        for piece in pieces {
            match piece {
                Piece::Copied(bytes) => {
                    let from = skip.min(bytes.len());
                    skip -= from;
                    self.bytes.extend_from_slice(&bytes[from..]);
                }
                Piece::Referenced(frozen) => {
                    let from = skip.min(frozen.bytes().len());
                    skip -= from;
                    if from < frozen.bytes().len() {
                        self.referenced_pending += frozen.bytes().len() - from;
                        self.references.push_back(Reference {
                            at: self.bytes.len(),
                            frozen: Arc::clone(frozen),
                            sent: from,
                        });
                    }
                }
            }
        }
    }

    /// Items queued and not yet written in full.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.bytes.len() - self.sent + self.referenced_pending
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.sent == self.bytes.len() && self.references.is_empty()
    }

    /// Writes as much as `fd` takes without blocking, in order.
    ///
    /// Returns `Ok` when everything is written or the pipe is full; the OS
    /// error otherwise (`EPIPE` once the reader is gone).
    pub fn write_to(&mut self, fd: BorrowedFd<'_>) -> nix::Result<()> {
        loop {
            let boundary = self.references.front().map_or(self.bytes.len(), |r| r.at);
            let written = if self.sent < boundary {
                let written = write_some(fd, &self.bytes[self.sent..boundary], false);
                written.inspect(|count| self.sent += count)
            } else if let Some(reference) = self.references.front_mut() {
                let rest = &reference.frozen.bytes()[reference.sent..];
                let written = write_some(fd, rest, true);
                if let Ok(count) = written {
                    reference.sent += count;
                    self.referenced_pending -= count;
                    if reference.sent == reference.frozen.bytes().len() {
                        self.references.pop_front();
                    }
                }
                written
            } else {
                self.clear();
                return Ok(());
            };
            match written {
                Ok(_) => {}
                Err(Errno::EAGAIN) => return Ok(()),
                Err(errno) => return Err(errno),
            }
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
        self.references.clear();
        self.referenced_pending = 0;
        self.items = 0;
    }
}

/// Writes some of `bytes` to the non-blocking pipe `fd`, without a copy
/// when `splice` is asked for and the system can; retries on EINTR.
///
/// Returns the count written, or the OS error (`EAGAIN` when full).
fn write_some(fd: BorrowedFd<'_>, bytes: &[u8], splice: bool) -> nix::Result<usize> {
    if splice {
        if let Some(spliced) = os::splice_into_pipe(fd, bytes) {
            return spliced;
        }
    }
    write_parts(fd, [bytes])
}

/// Writes `parts` in order to `fd` with one `writev`, retrying on EINTR.
///
/// Returns the count written (possibly short), or the OS error.
pub fn write_parts<const N: usize>(fd: BorrowedFd<'_>, parts: [&[u8]; N]) -> nix::Result<usize> {
    let iovecs = parts.map(iovec);
    let count = libc::c_int::try_from(N).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: every iovec points into a slice live for the whole call.
        let written = unsafe { libc::writev(fd.as_raw_fd(), iovecs.as_ptr(), count) };
        match Errno::result(written) {
            Ok(count) => return Ok(count as usize),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::link::set_nonblocking;
    use crate::wire::payload::tests::frozen;
    use nix::unistd::read;
    use std::os::fd::{AsFd, OwnedFd};

    fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
        let (rx, tx) = os::pipe().unwrap();
        set_nonblocking(&rx).unwrap();
        set_nonblocking(&tx).unwrap();
        (rx, tx)
    }

    fn drain(fd: &OwnedFd, into: &mut Vec<u8>) {
        let mut buffer = vec![0u8; 1 << 16];
        while let Ok(count) = read(fd, &mut buffer) {
            if count == 0 {
                break;
            }
            into.extend_from_slice(&buffer[..count]);
        }
    }

    #[test]
    fn writes_owned_and_referenced_bytes_in_order_through_a_full_pipe() {
        let (rx, tx) = nonblocking_pipe();
        let big: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
        let mut payload = Payload::from(b"head".to_vec());
        payload.refer(frozen(&big));
        payload.extend_from_slice(b"tail");
        let mut outbox = Outbox::default();
        outbox.queue(b"H", &payload, 0);
        outbox.queue(b"I", &Payload::from(b"next".to_vec()), 0);
        assert_eq!(outbox.items(), 2);
        assert_eq!(outbox.pending_bytes(), 1 + 4 + big.len() + 4 + 1 + 4);

        let mut received = Vec::new();
        while !outbox.is_empty() {
            outbox.write_to(tx.as_fd()).unwrap();
            drain(&rx, &mut received);
        }
        let mut expected = b"Hhead".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"tailInext");
        assert_eq!(received, expected);
        assert_eq!(outbox.items(), 0);
    }

    #[test]
    fn skips_what_was_already_written() {
        let (rx, tx) = nonblocking_pipe();
        let mut payload = Payload::from(b"ab".to_vec());
        payload.refer(frozen(b"CDE"));
        payload.push(b'f');
        for written in 0..=7 {
            let mut outbox = Outbox::default();
            outbox.queue(b"h", &payload, written);
            outbox.write_to(tx.as_fd()).unwrap();
            let mut received = Vec::new();
            drain(&rx, &mut received);
            assert_eq!(received, &b"habCDEf"[written..], "{written} written");
        }
        let mut only_reference = Payload::default();
        only_reference.refer(frozen(b"CDE"));
        let mut outbox = Outbox::default();
        outbox.queue(b"h", &only_reference, 3);
        assert_eq!(outbox.pending_bytes(), 1);
    }

    #[test]
    fn counts_what_is_pending_as_it_is_written() {
        let (rx, tx) = nonblocking_pipe();
        let big = vec![7u8; 200_000];
        let mut payload = Payload::from(b"ab".to_vec());
        payload.refer(frozen(&big));
        let mut outbox = Outbox::default();
        outbox.queue(b"h", &payload, 0);
        outbox.write_to(tx.as_fd()).unwrap();
        let mut received = Vec::new();
        drain(&rx, &mut received);
        assert_eq!(outbox.pending_bytes(), 3 + big.len() - received.len());
        while !outbox.is_empty() {
            outbox.write_to(tx.as_fd()).unwrap();
            drain(&rx, &mut received);
        }
        assert_eq!(outbox.pending_bytes(), 0);
        assert_eq!(received.len(), 3 + big.len());
    }

    #[test]
    fn reports_a_vanished_reader() {
        let (rx, tx) = nonblocking_pipe();
        drop(rx);
        let mut outbox = Outbox::default();
        outbox.queue(b"h", &Payload::from(b"x".to_vec()), 0);
        assert_eq!(outbox.write_to(tx.as_fd()), Err(Errno::EPIPE));
    }
}
