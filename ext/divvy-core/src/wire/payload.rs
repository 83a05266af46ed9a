//! A Marshal dump as it goes into a pipe: an item down a worker's item
//! pipe, or a large result up its answer pipe. Most of it is bytes that
//! were written for it; a large String inside it is not copied but
//! referenced (`Frozen`), kept alive and unchanged until the other end has
//! read it, and spliced into the pipe from where it lies. Nothing here touches Ruby:
//! the owner of referenced bytes is opaque.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Bytes that something else owns and keeps in place, unchanged, for as
/// long as this value lives (in the master: a frozen Ruby String).
pub struct Frozen {
    ptr: *const u8,
    len: usize,
    _owner: Box<dyn Any>,
}

impl Frozen {
    /// Wraps the `len` bytes at `ptr`, kept alive by `owner`.
    ///
    /// # Safety
    /// The bytes must stay valid and unchanged for as long as `owner` lives.
    pub unsafe fn new(ptr: *const u8, len: usize, owner: Box<dyn Any>) -> Frozen {
        Frozen {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// Returns the bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `new`'s contract keeps `len` bytes at `ptr` valid and
        // unchanged while the owner, a field of `self`, lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

// SAFETY: the master (its run loop) and a worker (its answers) create,
// clone and drop `Frozen` values only on threads that hold Ruby's GVL; what
// runs without it touches file descriptors only. So the Ruby owner is never
// used concurrently; the bytes themselves are read-only.
unsafe impl Send for Frozen {}
// SAFETY: as above; `&Frozen` gives read-only access to unchanging bytes.
unsafe impl Sync for Frozen {}

impl fmt::Debug for Frozen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frozen({} bytes at {:p})", self.len, self.ptr)
    }
}

/// One piece of a payload, in order.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// Bytes the payload owns.
    Copied(&'a [u8]),
    /// Bytes the payload refers to.
    Referenced(&'a Arc<Frozen>),
}

/// A Marshal dump made of owned bytes with referenced runs spliced in.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    bytes: Vec<u8>,
    /// Referenced runs, each with the offset in `bytes` it goes before.
    references: Vec<(usize, Arc<Frozen>)>,
}

impl Payload {
    /// Returns an empty payload that writes into `buffer` (cleared first),
    /// so a recycled buffer spares an allocation.
    pub fn from_buffer(mut buffer: Vec<u8>) -> Payload {
        buffer.clear();
        Payload {
            bytes: buffer,
            references: Vec::new(),
        }
    }

    /// Appends one owned byte.
    pub fn push(&mut self, byte: u8) {
        self.bytes.push(byte);
    }

    /// Appends owned bytes (copied).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a reference to `frozen`'s bytes (not copied).
    pub fn refer(&mut self, frozen: Arc<Frozen>) {
        self.references.push((self.bytes.len(), frozen));
    }

    /// The length of the whole dump, references included.
    pub fn len(&self) -> usize {
        self.bytes.len()
            + self
                .references
                .iter()
                .map(|(_, frozen)| frozen.len)
                .sum::<usize>()
    }

    /// True when the dump has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the payload refers to bytes it does not own.
    pub fn has_references(&self) -> bool {
        !self.references.is_empty()
    }

    /// The pieces of the dump in order; empty pieces are left out.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        let mut from = 0;
        let mut pieces = Vec::with_capacity(2 * self.references.len() + 1);
        for (at, frozen) in &self.references {
            pieces.push(Piece::Copied(&self.bytes[from..*at]));
            pieces.push(Piece::Referenced(frozen));
            from = *at;
        }
        pieces.push(Piece::Copied(&self.bytes[from..]));
        pieces.into_iter().filter(|piece| match piece {
            Piece::Copied(bytes) => !bytes.is_empty(),
            Piece::Referenced(frozen) => frozen.len > 0,
        })
    }

    /// The whole dump as one run of bytes: borrowed when nothing is
    /// referenced, else assembled (used off the hot path: for a failed
    /// item's report and for the `completed` hook's arguments).
    pub fn to_bytes(&self) -> Cow<'_, [u8]> {
        if self.references.is_empty() {
            return Cow::Borrowed(&self.bytes);
        }
        let mut whole = Vec::with_capacity(self.len());
        for piece in self.pieces() {
            match piece {
                Piece::Copied(bytes) => whole.extend_from_slice(bytes),
                Piece::Referenced(frozen) => whole.extend_from_slice(frozen.bytes()),
            }
        }
        Cow::Owned(whole)
    }

    /// Keeps the referenced bytes alive for good, whatever becomes of this
    /// payload: for a pipe that may still be read after the run.
    pub fn leak_references(&self) {
        for (_, frozen) in &self.references {
            std::mem::forget(Arc::clone(frozen));
        }
    }

    /// Gives back the owned buffer for reuse, dropping the references.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload {
            bytes,
            references: Vec::new(),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for Payload {}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Returns `bytes` as referenced bytes that own themselves.
    pub fn frozen(bytes: &[u8]) -> Arc<Frozen> {
        let owner = bytes.to_vec().into_boxed_slice();
        let (ptr, len) = (owner.as_ptr(), owner.len());
        // SAFETY: the boxed slice never moves its bytes and is never written.
        Arc::new(unsafe { Frozen::new(ptr, len, Box::new(owner)) })
    }

    #[test]
    fn assembles_owned_and_referenced_bytes_in_order() {
        let mut payload = Payload::from_buffer(vec![9, 9, 9]);
        payload.extend_from_slice(b"ab");
        payload.refer(frozen(b"XYZ"));
        payload.push(b'c');
        payload.refer(frozen(b"W"));
        payload.refer(frozen(b""));
        assert_eq!(payload.len(), 7);
        assert!(!payload.is_empty() && Payload::default().is_empty());
        assert!(payload.has_references());
        assert_eq!(payload.to_bytes().as_ref(), b"abXYZcW");
        assert_eq!(payload.pieces().count(), 4);
        assert_eq!(payload, Payload::from(b"abXYZcW".to_vec()));
    }

    #[test]
    fn borrows_a_payload_without_references() {
        let payload = Payload::from(b"plain".to_vec());
        assert!(matches!(payload.to_bytes(), Cow::Borrowed(b"plain")));
        assert_eq!(payload.into_buffer(), b"plain");
    }
}
