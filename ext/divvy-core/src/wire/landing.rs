//! Memory that a large item or result is read into straight from the
//! pipe, provided by whoever keeps the bytes afterwards (the Ruby String
//! the item's arguments or the result are built from). The kernel's copy
//! out of the pipe is then the only one the reader makes. Nothing here
//! touches Ruby: the memory's owner is opaque.

use std::any::Any;
use std::fmt;
use std::mem::MaybeUninit;

use crate::os;

/// Items and results at least this large are landed, when a `Lander` is
/// given.
pub const LARGE_PAYLOAD: usize = 64 * 1024;

/// Makes a `Landing` of the given size, or returns `None` when it cannot:
/// the payload then goes through the decoder's buffer as a small one does.
pub type Lander = dyn FnMut(usize) -> Option<Landing>;

/// The `Lander` a run's master uses for results, if any: without one,
/// every result goes through the decoder's buffer.
#[derive(Default)]
pub struct Landings(Option<Box<Lander>>);

impl Landings {
    /// Lands large results where `lander` says.
    pub fn new(lander: Box<Lander>) -> Landings {
        Landings(Some(lander))
    }

    /// The lander, if there is one.
    pub(crate) fn lander(&mut self) -> Option<&mut Lander> {
        self.0.as_deref_mut()
    }
}

impl fmt::Debug for Landings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Landings({})",
            if self.0.is_some() { "a lander" } else { "none" }
        )
    }
}

/// Room for one payload, filled from the pipe in pieces.
pub struct Landing {
    ptr: *mut u8,
    size: usize,
    filled: usize,
    /// How much of the room has been mapped ahead of the reads.
    mapped: usize,
    owner: Box<dyn Any>,
}

impl Landing {
    /// Wraps the `size` bytes of room at `ptr`, kept alive by `owner`.
    ///
    /// # Safety
    /// The room must stay valid for writes, and nothing else may read or
    /// write it, for as long as `owner` lives.
    pub unsafe fn new(ptr: *mut u8, size: usize, owner: Box<dyn Any>) -> Landing {
        Landing {
            ptr,
            size,
            filled: 0,
            mapped: 0,
            owner,
        }
    }

    /// True once every byte of the room is written.
    pub fn is_full(&self) -> bool {
        self.filled == self.size
    }

    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `new`'s contract keeps the room valid while `owner`, a
        // field of `self`, lives; the first `filled` bytes are written.
        unsafe { std::slice::from_raw_parts(self.ptr, self.filled) }
    }

    /// Gives the written bytes up to their owner, which `Lander` made.
    pub fn into_owner(self) -> Box<dyn Any> {
        self.owner
    }

    /// The room not written yet.
    pub(crate) fn rest(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only access.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.add(self.filled).cast::<MaybeUninit<u8>>(),
                self.size - self.filled,
            )
        }
    }

    /// Has the kernel map up to `ahead` bytes of the room past what is
    /// written (`os::prefault`), so that the next read only copies: a read
    /// that faulted pages in would do it holding the pipe's lock, keeping
    /// the writer waiting. No further ahead, so that a large announced
    /// size costs memory only as its bytes arrive.
    pub(crate) fn prefault(&mut self, ahead: usize) {
        let until = self.filled.saturating_add(ahead).min(self.size);
        if until > self.mapped {
            let from = self.mapped.max(self.filled);
            // SAFETY: `from..until` lies inside the room, which `new`'s
            // contract lets this landing write.
            let room = unsafe {
                std::slice::from_raw_parts_mut(
                    self.ptr.add(from).cast::<MaybeUninit<u8>>(),
                    until - from,
                )
            };
            os::prefault(room);
            self.mapped = until;
        }
    }

    /// Counts the first `count` bytes of `rest` as written.
    ///
    /// # Safety
    /// Those bytes must have been written.
    pub(crate) unsafe fn advance(&mut self, count: usize) {
        self.filled = (self.filled + count).min(self.size);
    }

    /// Copies `bytes` (at most what is left of the room) to the room.
    /// Returns how many were copied.
    pub(crate) fn fill(&mut self, bytes: &[u8]) -> usize {
        let rest = self.rest();
        let count = bytes.len().min(rest.len());
        // SAFETY: `count` bytes fit both; they do not overlap, since the
        // room is written by nothing else.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), rest.as_mut_ptr().cast(), count);
            self.advance(count);
        }
        count
    }
}

impl fmt::Debug for Landing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Landing({} of {} bytes)", self.filled, self.size)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A lander whose landings are Vecs.
    pub(crate) fn vec_lander() -> Box<Lander> {
        Box::new(|size| {
            let mut room: Box<Vec<u8>> = Box::new(Vec::with_capacity(size));
            let ptr = room.as_mut_ptr();
            // SAFETY: the Vec's heap buffer stays put while the box owns it.
            Some(unsafe { Landing::new(ptr, size, room) })
        })
    }

    #[test]
    fn fills_its_room_and_no_further() {
        let mut landing = vec_lander()(4).unwrap();
        assert_eq!(landing.fill(b"ab"), 2);
        assert!(!landing.is_full());
        assert_eq!(landing.fill(b"cdef"), 2);
        assert!(landing.is_full());
        assert_eq!(landing.bytes(), b"abcd");
        assert_eq!(landing.fill(b"g"), 0);
    }
}
