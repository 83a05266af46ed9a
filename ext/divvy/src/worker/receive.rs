//! Taking the next item from the master: waiting for its frame (through
//! Ruby, so that signal traps run), and reading a large item straight into
//! the String `perform` receives.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use magnus::{Error, RString, Ruby};
use nix::errno::Errno;

use divvy_core::wire::decoder::Decoder;

use super::answer;
use super::leave::leave;
use crate::marshal::{hidden_dump, reveal_dump, LARGE_STRING};
use crate::vm::errors::{divvy_error, os_error};

/// An item as the worker received it.
pub enum Received<'a> {
    /// A Marshal dump in the decoder's buffer.
    Buffered(&'a [u8]),
    /// A large Marshal dump read straight into a String of its own.
    Read(RString),
}

impl Received<'_> {
    /// The dump's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Received::Buffered(payload) => payload.len(),
            Received::Read(dump) => dump.len(),
        }
    }
}

/// What waiting for the master brought.
enum Incoming {
    /// A whole frame is buffered.
    Frame,
    /// A large item has begun; its payload is this long.
    Large(usize),
    /// End-of-file: the master is done with this worker.
    End,
}

/// The worker's end of its item pipe, and the frames read from it.
pub struct Receiver<'a> {
    item_rx: &'a OwnedFd,
    decoder: Decoder,
}

impl<'a> Receiver<'a> {
    /// Returns a receiver of the items arriving on `item_rx`.
    pub fn new(item_rx: &'a OwnedFd) -> Receiver<'a> {
        Receiver {
            item_rx,
            decoder: Decoder::new(),
        }
    }

    /// Waits for the next item; before waiting, sends the answers queued
    /// so far. Runs in the worker.
    ///
    /// Returns the item, or `None` when the master closed the pipe (no
    /// more items); raises `Divvy::Error` when the pipe fails or a frame is
    /// malformed, and what a signal trap raises while waiting.
    pub fn next_item(&mut self, ruby: &Ruby) -> Result<Option<Received<'_>>, Error> {
        match self.wait(ruby)? {
            Incoming::End => Ok(None),
            Incoming::Large(len) => self
                .read_large(ruby, len)
                .map(|dump| Some(Received::Read(dump))),
            Incoming::Frame => match self.decoder.next_item() {
                Ok(Some(payload)) => Ok(Some(Received::Buffered(payload))),
                Ok(None) => Err(divvy_error(
                    ruby,
                    "internal error: a whole frame was announced but not found",
                )),
                Err(error) => Err(divvy_error(
                    ruby,
                    format!("malformed frame from the master: {error}"),
                )),
            },
        }
    }

    /// Waits until a whole frame is buffered, or a large item has begun.
    fn wait(&mut self, ruby: &Ruby) -> Result<Incoming, Error> {
        loop {
            if self.decoder.has_frame() {
                return Ok(Incoming::Frame);
            }
            if let Some(len) = self.decoder.large_item_pending(LARGE_STRING) {
                return Ok(Incoming::Large(len));
            }
            wait_readable(ruby, self.item_rx)?;
            match self.decoder.read_from(self.item_rx.as_fd()) {
                Ok(0) => return Ok(Incoming::End),
                result => read_count(ruby, result)?,
            };
        }
    }

    /// Reads the large item whose start the decoder holds into a new
    /// String of `len` bytes: the pipe writes straight into the String's
    /// memory, with no buffer in between. Waits through Ruby so signal
    /// traps run.
    ///
    /// Returns the String; raises `Divvy::Error` when the pipe fails or
    /// ends before the item does.
    fn read_large(&mut self, ruby: &Ruby, len: usize) -> Result<RString, Error> {
        let (dump, room) = hidden_dump(ruby, len)?;
        // SAFETY: the String has room for `len` bytes that stays put while
        // it lives (on this stack, so the GC keeps it), and Ruby code (a
        // trap running between the reads) cannot reach it.
        let room = unsafe {
            std::slice::from_raw_parts_mut(room.cast::<std::mem::MaybeUninit<u8>>(), len)
        };
        let mut filled = self.decoder.take_item_start(room);
        while filled < len {
            wait_readable(ruby, self.item_rx)?;
            let rest = &mut room[filled..];
            // SAFETY: reads at most `rest.len()` bytes into the String's room.
            let read = unsafe {
                libc::read(
                    self.item_rx.as_raw_fd(),
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                )
            };
            match Errno::result(read).map(|count| count as usize) {
                Ok(0) => {
                    return Err(divvy_error(
                        ruby,
                        "the master closed the pipe in the middle of an item",
                    ))
                }
                result => filled += read_count(ruby, result)?,
            }
        }
        // SAFETY: all `len` bytes are now written.
        unsafe { reveal_dump(dump, len) };
        Ok(dump)
    }
}

/// Sends the answers queued so far, then waits through Ruby (so signal
/// traps run) until the item pipe is readable. Leaves when the master no
/// longer takes answers.
///
/// Raises what a trap raises while waiting.
fn wait_readable(ruby: &Ruby, item_rx: &OwnedFd) -> Result<(), Error> {
    if !answer::write() {
        leave(1);
    }
    ruby.thread_wait_fd(item_rx)
}

/// What a read of the item pipe brought: the bytes read, 0 when it was
/// interrupted or found nothing.
///
/// Raises `Divvy::Error` for any other failure.
fn read_count(ruby: &Ruby, result: nix::Result<usize>) -> Result<usize, Error> {
    match result {
        Ok(count) => Ok(count),
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(0),
        Err(errno) => Err(os_error(ruby, "reading an item", errno)),
    }
}
