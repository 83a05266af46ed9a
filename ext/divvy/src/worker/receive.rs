//! Taking the next item from the master: waiting for its frame (through
//! Ruby, so that signal traps run). A large item is landed: read straight
//! into a String of its own (`marshal::land_in_string`), which the String
//! that ends its arguments then shares.

use std::os::fd::{AsFd, OwnedFd};

use magnus::{Error, Ruby};
use nix::errno::Errno;

use divvy_core::wire::decoder::{Decoder, ItemPayload};

use super::answer;
use super::leave::leave;
use crate::marshal::{land_in_string, landing_failure};
use crate::vm::errors::{divvy_error, os_error};

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
    /// Returns the item's payload, or `None` when the master closed the
    /// pipe (no more items); raises `Divvy::Error` when the pipe fails, ends
    /// in the middle of an item or a frame is malformed, and what a signal
    /// trap raises while waiting.
    pub fn next_item(&mut self, ruby: &Ruby) -> Result<Option<ItemPayload<'_>>, Error> {
        if !self.wait(ruby)? {
            return Ok(None);
        }
        match self.decoder.next_item() {
            Ok(Some(payload)) => Ok(Some(payload)),
            Ok(None) => Err(divvy_error(
                ruby,
                "internal error: a whole frame was announced but not found",
            )),
            Err(error) => Err(divvy_error(
                ruby,
                format!("malformed frame from the master: {error}"),
            )),
        }
    }

    /// Waits until a whole frame is buffered or landed, landing a large
    /// item once its start is in.
    ///
    /// Returns false at end-of-file; raises `NoMemoryError` when there is
    /// no room for a large item.
    fn wait(&mut self, ruby: &Ruby) -> Result<bool, Error> {
        let mut lander = land_in_string;
        loop {
            if self.decoder.has_frame() {
                return Ok(true);
            }
            self.decoder.land(&mut lander);
            landing_failure(ruby)?;
            wait_readable(ruby, self.item_rx)?;
            match self.decoder.read_from(self.item_rx.as_fd()) {
                Ok(0) if self.decoder.has_partial() => {
                    return Err(divvy_error(
                        ruby,
                        "the master closed the pipe in the middle of an item",
                    ))
                }
                Ok(0) => return Ok(false),
                result => read_count(ruby, result)?,
            };
        }
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
