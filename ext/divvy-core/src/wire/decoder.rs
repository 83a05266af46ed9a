//! Reassembles frames from a pipe, where they arrive in arbitrary pieces.
//! It reads straight into its buffer and lends a worker each item's payload
//! from there; a large item or result it reads straight into the memory its
//! reader provides (`landing`).

use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::frame::{
    check_header, Frame, ProtocolError, ResultBytes, HEADER_LEN, KIND_ITEM, KIND_RESULT,
};
use super::landing::{Lander, Landing, LARGE_PAYLOAD};

/// Bytes asked of the kernel per read into the buffer, at least.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked of the kernel per read, at most: a large frame is read in
/// pieces this big.
const MAX_READ: usize = 16 * 1024 * 1024;

/// The payload of an `Item` frame, as `Decoder::next_item` hands it over.
#[derive(Debug)]
pub enum ItemPayload<'a> {
    /// In the decoder's buffer, lent until the next call.
    Buffered(&'a [u8]),
    /// Read straight into memory of its own (see `Decoder::land`).
    Landed(Landing),
}

impl ItemPayload<'_> {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            ItemPayload::Buffered(bytes) => bytes.len(),
            ItemPayload::Landed(landing) => landing.bytes().len(),
        }
    }

    /// True when the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frames received and not yet taken.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
    missing: usize,
    /// The large item or result (its kind, and its memory) being read
    /// straight into memory of its own; it is the next frame, and the
    /// buffer holds nothing before it is full.
    landing: Option<(u8, Landing)>,
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
        if let Some((_, landing)) = self
            .landing
            .as_mut()
            .filter(|(_, landing)| !landing.is_full())
        {
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
    pub fn has_partial(&self) -> bool {
        self.landing.is_some() || self.start < self.buffer.len()
    }

    /// True when a whole frame is buffered (or the bytes buffered are
    /// already malformed), so the next `next_frame` or `next_item` call
    /// needs no more input.
    pub fn has_frame(&self) -> bool {
        if let Some((_, landing)) = &self.landing {
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
        match self.take_landed() {
            Some((KIND_RESULT, landing)) => Ok(Some(Frame::Result(ResultBytes::Landed(landing)))),
            Some((_, landing)) => Ok(Some(Frame::Item(landing.bytes().to_vec()))),
            None => match self.next_raw()? {
                Some((kind, payload)) => Frame::decode(kind, &self.buffer[payload]).map(Some),
                None => Ok(None),
            },
        }
    }

    /// Returns the payload of the next frame, which must be an `Item`:
    /// borrowed from the buffer, so that a worker loads it without copying
    /// it, or landed. `None` when more bytes are needed; an error for any
    /// other kind.
    pub fn next_item(&mut self) -> Result<Option<ItemPayload<'_>>, ProtocolError> {
        match self.take_landed() {
            Some((KIND_ITEM, landing)) => Ok(Some(ItemPayload::Landed(landing))),
            Some((kind, _)) => Err(ProtocolError::UnexpectedKind(kind)),
            None => match self.next_raw()? {
                None => Ok(None),
                Some((KIND_ITEM, payload)) => {
                    Ok(Some(ItemPayload::Buffered(&self.buffer[payload])))
                }
                Some((kind, _)) => Err(ProtocolError::UnexpectedKind(kind)),
            },
        }
    }

    /// Takes the landing once it is full: its frame is the next one.
    fn take_landed(&mut self) -> Option<(u8, Landing)> {
        self.landing.take_if(|(_, landing)| landing.is_full())
    }

    /// When the next frame is a large `Item` or `Result` (`LARGE_PAYLOAD`
    /// bytes or more) that has begun but is not all buffered, asks `lander`
    /// for memory of its size, moves the part buffered there, and reads the
    /// rest of it there (see `read_from`).
    ///
    /// Returns true when a landing began.
    pub fn land(&mut self, lander: &mut Lander) -> bool {
        let Some((kind @ (KIND_ITEM | KIND_RESULT), len, buffered)) = self.next_header() else {
            return false;
        };
        let Ok(len) = check_header(kind, len) else {
            return false;
        };
        if self.landing.is_some() || len < LARGE_PAYLOAD || buffered >= len {
            return false;
        }
        let Some(mut landing) = lander(len) else {
            return false;
        };
        landing.fill(&self.buffer[self.start + HEADER_LEN..]);
        self.buffer.clear();
        self.start = 0;
        self.missing = 0;
        self.landing = Some((kind, landing));
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
            Frame::Item(vec![2; 2 * LARGE_PAYLOAD]),
            Frame::Result(vec![3; LARGE_PAYLOAD].into()),
        ];
        let received = receive_landing(frames, &mut *crate::wire::landing::tests::vec_lander());
        let landed: Vec<bool> = received.iter().map(|(_, landed)| *landed).collect();
        assert_eq!(landed, [false, true, false, false, true]);
        assert_eq!(received[1].0, Frame::Result(large.into()));
        assert_eq!(received[4].0, Frame::Result(vec![3; LARGE_PAYLOAD].into()));
    }

    #[test]
    fn buffers_a_large_result_the_lander_refuses() {
        let large = vec![9; 4 * LARGE_PAYLOAD];
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
        assert!(matches!(
            decoder.next_item(),
            Ok(Some(ItemPayload::Buffered(&[1, 2, 3])))
        ));
        assert!(matches!(
            decoder.next_item(),
            Err(ProtocolError::UnexpectedKind(KIND_DONE))
        ));
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
    fn reads_a_large_item_straight_into_memory_the_lander_gives() {
        use std::os::fd::AsFd;
        let payload: Vec<u8> = (0..3 * LARGE_PAYLOAD).map(|i| (i % 251) as u8).collect();
        let mut bytes = Frame::Item(vec![1; 10]).encode();
        Frame::Item(payload.clone()).encode_into(&mut bytes);
        Frame::Item(vec![2; 10]).encode_into(&mut bytes);
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let feeder = std::thread::spawn(move || nix::unistd::write(&writer, &bytes).unwrap());
        let mut lander = crate::wire::landing::tests::vec_lander();
        let mut decoder = Decoder::new();
        let mut items = Vec::new();
        while items.len() < 3 {
            let next = decoder.next_item().unwrap().map(|payload| match payload {
                ItemPayload::Buffered(bytes) => (bytes.to_vec(), false),
                ItemPayload::Landed(landing) => (landing.bytes().to_vec(), true),
            });
            match next {
                Some(item) => items.push(item),
                None if decoder.land(&mut *lander) => {}
                None => assert!(decoder.read_from(reader.as_fd()).unwrap() > 0),
            }
        }
        feeder.join().unwrap();
        assert_eq!(
            items,
            [(vec![1; 10], false), (payload, true), (vec![2; 10], false)]
        );
    }

    #[test]
    fn lands_only_a_large_item_or_result_not_yet_buffered() {
        let mut lander = crate::wire::landing::tests::vec_lander();
        let item = Frame::Item(vec![3; LARGE_PAYLOAD]).encode();
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Ready.encode());
        decoder.push(&item[..HEADER_LEN + 10]);
        assert!(!decoder.land(&mut *lander), "a Ready frame comes first");
        assert_eq!(decoder.next_frame(), Ok(Some(Frame::Ready)));
        decoder.push(&item[HEADER_LEN + 10..]);
        assert!(!decoder.land(&mut *lander), "all of it is buffered");
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Item(vec![4; LARGE_PAYLOAD - 1]).encode()[..100]);
        assert!(!decoder.land(&mut *lander), "too small to land");
    }
}
