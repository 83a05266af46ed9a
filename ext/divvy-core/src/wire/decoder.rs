//! Reassembles frames from a pipe, where they arrive in arbitrary pieces.
//! It reads straight into its buffer and lends a worker each item's payload
//! from there; a large item's payload it hands over to be read straight
//! into the item's own memory, and a large result it reads straight into
//! the memory its reader provides (`landing`).

use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::frame::{
    check_header, Frame, ProtocolError, ResultBytes, HEADER_LEN, KIND_ITEM, KIND_RESULT,
};
use super::landing::{Lander, Landing, LARGE_RESULT};

/// Bytes asked of the kernel per read into the buffer, at least.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked of the kernel per read, at most: a large frame is read in
/// pieces this big.
const MAX_READ: usize = 16 * 1024 * 1024;

/// Frames received and not yet taken.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
    missing: usize,
    /// The large result being read straight into its own memory; it is the
    /// next frame, and the buffer holds nothing before it is full.
    landing: Option<Landing>,
    /// How many bytes the last read asked for: one that brought fewer
    /// found the pipe empty.
    asked: usize,
}

impl Decoder {
    /// Returns an empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes read from the stream.
    #[cfg(test)]
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buffer.extend_from_slice(bytes);
    }

    /// Reads what `fd` has straight into the buffer (no zero-filling, no
    /// copy): `READ_CHUNK` bytes, or the rest of a large frame whose start
    /// is already in; while a large result is landing, into its room.
    ///
    /// Returns the count read, 0 at end-of-file, or the OS error.
    pub fn read_from(&mut self, fd: BorrowedFd<'_>) -> nix::Result<usize> {
        if let Some(landing) = self.landing.as_mut().filter(|landing| !landing.is_full()) {
            landing.prefault(MAX_READ);
            let rest = landing.rest();
            self.asked = rest.len();
            // SAFETY: reads at most `rest.len()` bytes into the landing's room.
            let read = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
            let count = usize::try_from(Errno::result(read)?).unwrap_or(0);
            // SAFETY: the kernel wrote `count` bytes of the room.
            unsafe { landing.advance(count) };
            return Ok(count);
        }
        self.compact();
        // No more than that, so that a large frame's start is not read
        // far into the buffer before it can be handed over or landed.
        let want = self.missing.clamp(READ_CHUNK, MAX_READ);
        self.asked = want;
        self.buffer.reserve(want);
        let spare = &mut self.buffer.spare_capacity_mut()[..want];
        // SAFETY: reads at most `spare.len()` bytes into the buffer's
        // reserved capacity; only the bytes the kernel wrote are then
        // counted as initialized.
        let read = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        let count = usize::try_from(Errno::result(read)?).unwrap_or(0);
        // SAFETY: the kernel initialized `count` bytes past the old length.
        unsafe { self.buffer.set_len(self.buffer.len() + count) };
        Ok(count)
    }

    /// True when the last read brought fewer bytes than it asked for: the
    /// pipe had no more at the time.
    pub fn drained(&self, count: usize) -> bool {
        count < self.asked
    }

    /// True when bytes of an unfinished frame are buffered.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        self.landing.is_some() || self.start < self.buffer.len()
    }

    /// True when a whole frame is buffered (or the bytes buffered are
    /// already malformed), so the next `next_frame` or `next_item` call
    /// needs no more input.
    pub fn has_frame(&self) -> bool {
        if let Some(landing) = &self.landing {
            return landing.is_full();
        }
        self.next_header().is_some_and(|(_, len, buffered)| {
            usize::try_from(len).map_or(true, |len| buffered >= len)
        })
    }

    /// Returns the next complete frame, `None` when more bytes are needed,
    /// or an error when the stream is malformed (the decoder is then of no
    /// further use).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if let Some(landing) = self.landing.take() {
            if !landing.is_full() {
                self.landing = Some(landing);
                return Ok(None);
            }
            return Ok(Some(Frame::Result(ResultBytes::Landed(landing))));
        }
        let Some((kind, payload)) = self.next_raw()? else {
            return Ok(None);
        };
        Frame::decode(kind, &self.buffer[payload]).map(Some)
    }

    /// Returns the payload of the next frame, which must be an `Item`,
    /// borrowed from the buffer: a worker loads it without copying it.
    /// `None` when more bytes are needed; an error for any other kind.
    pub fn next_item(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        match self.next_raw()? {
            None => Ok(None),
            Some((KIND_ITEM, payload)) => Ok(Some(&self.buffer[payload])),
            Some((kind, _)) => Err(ProtocolError::UnexpectedKind(kind)),
        }
    }

    /// When the buffer holds the start of an `Item` frame whose payload is
    /// at least `min_len` bytes but not all of it, returns the payload's
    /// length: the worker then reads the rest straight into the item's
    /// memory (see `take_item_start`) instead of through this buffer.
    pub fn large_item_pending(&self, min_len: usize) -> Option<usize> {
        let (kind, len, buffered) = self.next_header()?;
        let len = usize::try_from(len).ok()?;
        (kind == KIND_ITEM && len >= min_len && buffered < len).then_some(len)
    }

    /// Moves the buffered start of the pending large `Item` payload to the
    /// front of `into` and forgets the frame: the caller reads the rest from
    /// the pipe. Returns how many bytes were moved.
    pub fn take_item_start(&mut self, into: &mut [std::mem::MaybeUninit<u8>]) -> usize {
        let body = &self.buffer[(self.start + HEADER_LEN).min(self.buffer.len())..];
        let count = body.len().min(into.len());
        // SAFETY: `count` fits both the buffered body and `into`, which
        // do not overlap; writing makes those bytes of `into` initialized.
        unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), into.as_mut_ptr().cast(), count) };
        self.buffer.clear();
        self.start = 0;
        self.missing = 0;
        count
    }

    /// When the next frame is a large `Result` that has begun but is not
    /// all buffered, asks `lander` for memory of its size, moves the part
    /// buffered there, and reads the rest of it there (see `read_from`).
    ///
    /// Returns true when a landing began.
    pub fn land(&mut self, lander: &mut Lander) -> bool {
        let Some((KIND_RESULT, len, buffered)) = self.next_header() else {
            return false;
        };
        let Ok(len) = check_header(KIND_RESULT, len) else {
            return false;
        };
        if self.landing.is_some() || len < LARGE_RESULT || buffered >= len {
            return false;
        }
        let Some(mut landing) = lander(len) else {
            return false;
        };
        landing.fill(&self.buffer[self.start + HEADER_LEN..]);
        self.buffer.clear();
        self.start = 0;
        self.missing = 0;
        self.landing = Some(landing);
        true
    }

    /// Reads the header of the next frame, once it is buffered: its kind,
    /// its announced payload length, and how much of the payload is
    /// buffered.
    fn next_header(&self) -> Option<(u8, u64, usize)> {
        let pending = &self.buffer[self.start..];
        let (header, body) = pending.split_first_chunk::<HEADER_LEN>()?;
        let (kind, len) = header.split_first()?;
        let len = u64::from_le_bytes(len.try_into().ok()?);
        Some((*kind, len, body.len()))
    }

    /// Checks the next complete frame's header and moves past the frame.
    /// Returns its kind and where its payload is in the buffer.
    fn next_raw(&mut self) -> Result<Option<(u8, Range<usize>)>, ProtocolError> {
        let Some((kind, len, buffered)) = self.next_header() else {
            return Ok(None);
        };
        let len = check_header(kind, len)?;
        if buffered < len {
            // Read in pieces of at most MAX_READ: a corrupt header cannot
            // make the reader allocate much more than it receives.
            self.missing = len - buffered;
            return Ok(None);
        }
        self.missing = 0;
        let payload = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start = payload.end;
        Ok(Some((kind, payload)))
    }

    fn compact(&mut self) {
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::tests::sample_frames;
    use crate::wire::frame::{Frame, KIND_DONE};

    fn decode_all(decoder: &mut Decoder) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn round_trips_every_kind() {
        let frames = sample_frames();
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode_into(&mut bytes);
        }
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        assert_eq!(decode_all(&mut decoder), frames);
        assert!(!decoder.has_partial());
    }

    #[test]
    fn reassembles_frames_split_at_every_byte() {
        let frames = sample_frames();
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut decoder = Decoder::new();
        let mut seen = Vec::new();
        for byte in bytes {
            decoder.push(&[byte]);
            seen.extend(decode_all(&mut decoder));
        }
        assert_eq!(seen, frames);
    }

    #[test]
    fn reads_frames_straight_from_a_pipe() {
        use std::os::fd::AsFd;
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let bytes = Frame::Item(vec![7; 100_000]).encode();
        let feeder = std::thread::spawn(move || {
            nix::unistd::write(&writer, &bytes).unwrap();
        });
        let mut decoder = Decoder::new();
        let mut frame = None;
        while frame.is_none() {
            assert!(decoder.read_from(reader.as_fd()).unwrap() > 0);
            frame = decoder.next_frame().unwrap();
        }
        feeder.join().unwrap();
        assert_eq!(frame, Some(Frame::Item(vec![7; 100_000])));
    }

    /// Reads `frames`, written to a pipe by another thread, landing what
    /// `lander` takes. Returns the frames, and whether each was landed.
    fn receive_landing(frames: Vec<Frame>, lander: &mut Lander) -> Vec<(Frame, bool)> {
        use std::os::fd::AsFd;
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let count = frames.len();
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let feeder = std::thread::spawn(move || nix::unistd::write(&writer, &bytes).unwrap());
        let mut decoder = Decoder::new();
        let mut received = Vec::new();
        while received.len() < count {
            assert!(decoder.read_from(reader.as_fd()).unwrap() > 0);
            loop {
                match decoder.next_frame().unwrap() {
                    Some(Frame::Result(ResultBytes::Landed(landing))) => {
                        received.push((Frame::Result(landing.bytes().to_vec().into()), true));
                    }
                    Some(frame) => received.push((frame, false)),
                    None if decoder.land(lander) => {}
                    None => break,
                }
            }
        }
        feeder.join().unwrap();
        received
    }

    #[test]
    fn reads_a_large_result_straight_into_memory_the_lander_gives() {
        let large: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
        let frames = vec![
            Frame::Done,
            Frame::Result(large.clone().into()),
            Frame::Result(vec![1; 100].into()),
            Frame::Item(vec![2; 2 * LARGE_RESULT]),
            Frame::Result(vec![3; LARGE_RESULT].into()),
        ];
        let received = receive_landing(frames, &mut *crate::wire::landing::tests::vec_lander());
        let landed: Vec<bool> = received.iter().map(|(_, landed)| *landed).collect();
        assert_eq!(landed, [false, true, false, false, true]);
        assert_eq!(received[1].0, Frame::Result(large.into()));
        assert_eq!(received[4].0, Frame::Result(vec![3; LARGE_RESULT].into()));
    }

    #[test]
    fn buffers_a_large_result_the_lander_refuses() {
        let large = vec![9; 4 * LARGE_RESULT];
        let frames = vec![Frame::Result(large.clone().into()), Frame::Done];
        let received = receive_landing(frames, &mut |_| None);
        assert_eq!(
            received,
            [(Frame::Result(large.into()), false), (Frame::Done, false)]
        );
    }

    #[test]
    fn carries_a_ten_megabyte_item() {
        let payload: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Item(payload.clone()).encode());
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::Item(payload)));
    }

    #[test]
    fn lends_item_payloads_and_refuses_other_kinds() {
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Item(vec![1, 2, 3]).encode());
        decoder.push(&Frame::Done.encode());
        assert_eq!(decoder.next_item().unwrap(), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            decoder.next_item(),
            Err(ProtocolError::UnexpectedKind(KIND_DONE))
        );
    }

    #[test]
    fn waits_for_a_truncated_frame() {
        let bytes = Frame::Item(vec![1, 2, 3]).encode();
        let mut decoder = Decoder::new();
        decoder.push(&bytes[..bytes.len() - 1]);
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert!(decoder.has_partial());
    }

    #[test]
    fn rejects_an_unknown_kind() {
        let mut decoder = Decoder::new();
        decoder.push(&[99, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(ProtocolError::UnknownKind(99)));
    }

    #[test]
    fn rejects_a_payload_on_an_empty_kind() {
        let mut decoder = Decoder::new();
        decoder.push(&[KIND_DONE, 1, 0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(
            decoder.next_frame(),
            Err(ProtocolError::UnexpectedPayload {
                kind: KIND_DONE,
                len: 1
            })
        );
    }

    #[test]
    fn rejects_an_impossible_length() {
        let mut decoder = Decoder::new();
        let mut bytes = vec![KIND_ITEM];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        decoder.push(&bytes);
        assert_eq!(decoder.next_frame(), Err(ProtocolError::TooLong(u64::MAX)));
    }

    #[test]
    fn never_panics_on_random_or_truncated_input() {
        // A small xorshift generator keeps the test deterministic without a
        // dependency; every malformed stream must end in Ok or Err.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid: Vec<u8> = sample_frames().iter().flat_map(Frame::encode).collect();
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                valid[..(next() as usize % valid.len())].to_vec()
            } else {
                (0..(next() % 64)).map(|_| next() as u8).collect()
            };
            if round % 3 == 0 && !bytes.is_empty() {
                let at = next() as usize % bytes.len();
                bytes[at] = next() as u8;
            }
            let mut decoder = Decoder::new();
            decoder.push(&bytes);
            while let Ok(Some(_)) = decoder.next_frame() {}
        }
    }

    #[test]
    fn hands_over_the_start_of_a_large_item() {
        let payload: Vec<u8> = (0..1000u32).map(|n| n as u8).collect();
        let frame = Frame::Item(payload.clone()).encode();
        let mut decoder = Decoder::new();
        decoder.push(&frame[..5]);
        assert_eq!(decoder.large_item_pending(100), None, "header incomplete");
        decoder.push(&frame[5..300]);
        assert_eq!(decoder.large_item_pending(1001), None, "smaller than asked");
        assert_eq!(decoder.large_item_pending(100), Some(1000));
        let mut into = vec![std::mem::MaybeUninit::new(0u8); 1000];
        let moved = decoder.take_item_start(&mut into);
        assert_eq!(moved, 300 - HEADER_LEN);
        let moved: Vec<u8> = into[..moved]
            .iter()
            // SAFETY: take_item_start initialized the first `moved` bytes.
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert_eq!(moved, payload[..300 - HEADER_LEN]);
        assert!(!decoder.has_partial());
        decoder.push(&Frame::Ready.encode());
        assert_eq!(decoder.large_item_pending(0), None, "not an item");
        decoder.push(&frame);
        assert_eq!(decoder.next_frame(), Ok(Some(Frame::Ready)));
        assert_eq!(
            decoder.large_item_pending(100),
            None,
            "whole frame buffered"
        );
    }
}
