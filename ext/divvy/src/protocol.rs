//! The wire protocol between the master and its workers.
//!
//! Every message is one frame: a kind byte, the payload length as a
//! little-endian `u64`, then the payload. The master sends `Task` frames down
//! a worker's task pipe; the worker answers on its result pipe with `Ready`
//! once booted, one `Done` or `Failed` per task, and `Bye` when it leaves on
//! its own before the master closed its pipe. Nothing here touches Ruby, so
//! `cargo test` covers it without a VM.

use std::fmt;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Bytes before a frame's payload: the kind byte and the `u64` length.
pub const HEADER_LEN: usize = 9;
/// Bytes asked of the kernel per read, at least.
pub const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked of the kernel per read, at most: a large frame is read in
/// pieces this big.
const MAX_READ: usize = 16 * 1024 * 1024;

const KIND_TASK: u8 = 1;
const KIND_READY: u8 = 2;
const KIND_DONE: u8 = 3;
const KIND_FAILED: u8 = 4;
const KIND_BYE: u8 = 5;
const KIND_RESULT: u8 = 6;

/// One message between master and worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Master to worker: a Marshal dump of the argument array to perform.
    Task(Vec<u8>),
    /// Worker to master: booted (after_fork returned), ready for tasks.
    Ready,
    /// Worker to master: the oldest task it holds was performed.
    Done,
    /// Worker to master: the oldest task it holds was performed and
    /// returned this value (a Marshal dump); sent instead of `Done` when the
    /// task wants results.
    Result(Vec<u8>),
    /// Worker to master: the oldest task it holds raised.
    Failed(Failure),
    /// Worker to master: leaving on its own (it was asked to stop); the tasks
    /// it still holds were never started.
    Bye,
}

/// What a worker reports about an exception raised by `perform`. Plain
/// strings, so the report survives exceptions that Marshal cannot dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The exception's class name, e.g. `RuntimeError`.
    pub class_name: String,
    /// The exception's message.
    pub message: String,
    /// The exception's backtrace, innermost frame first.
    pub backtrace: Vec<String>,
}

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The kind byte names no frame kind.
    UnknownKind(u8),
    /// A frame without payload announced one.
    UnexpectedPayload { kind: u8, len: u64 },
    /// The payload length does not fit this machine's address space.
    TooLong(u64),
    /// A frame of this kind came where another was expected.
    UnexpectedKind(u8),
    /// A `Failed` payload ends before its fields do, or has bytes left over.
    MalformedFailure,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            ProtocolError::UnexpectedPayload { kind, len } => {
                write!(
                    f,
                    "frame kind {kind} carries no payload but announced {len} bytes"
                )
            }
            ProtocolError::TooLong(len) => write!(f, "frame payload of {len} bytes is too long"),
            ProtocolError::UnexpectedKind(kind) => write!(f, "unexpected frame kind {kind}"),
            ProtocolError::MalformedFailure => write!(f, "malformed failure report"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl Frame {
    /// Appends this frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Task(payload) => push_frame(out, KIND_TASK, payload),
            Frame::Ready => push_frame(out, KIND_READY, &[]),
            Frame::Done => push_frame(out, KIND_DONE, &[]),
            Frame::Result(value) => push_frame(out, KIND_RESULT, value),
            Frame::Bye => push_frame(out, KIND_BYE, &[]),
            Frame::Failed(failure) => {
                let mut payload = Vec::new();
                failure.encode_into(&mut payload);
                push_frame(out, KIND_FAILED, &payload);
            }
        }
    }

    /// Returns this frame's bytes.
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Returns the header of a `Task` frame whose payload is `len` bytes, for
/// writing a large payload without copying it behind its header.
pub fn task_header(len: usize) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = KIND_TASK;
    header[1..].copy_from_slice(&(len as u64).to_le_bytes());
    header
}

fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
}

impl Failure {
    fn encode_into(&self, out: &mut Vec<u8>) {
        push_string(out, &self.class_name);
        push_string(out, &self.message);
        out.extend_from_slice(&(self.backtrace.len() as u32).to_le_bytes());
        for line in &self.backtrace {
            push_string(out, line);
        }
    }

    fn decode(mut bytes: &[u8]) -> Result<Failure, ProtocolError> {
        let class_name = take_string(&mut bytes)?;
        let message = take_string(&mut bytes)?;
        let lines = take_u32(&mut bytes)?;
        // Each line costs at least its 4-byte length, which bounds the
        // allocation by the bytes actually present.
        if lines as usize > bytes.len() / 4 {
            return Err(ProtocolError::MalformedFailure);
        }
        let mut backtrace = Vec::with_capacity(lines as usize);
        for _ in 0..lines {
            backtrace.push(take_string(&mut bytes)?);
        }
        if !bytes.is_empty() {
            return Err(ProtocolError::MalformedFailure);
        }
        Ok(Failure {
            class_name,
            message,
            backtrace,
        })
    }
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, ProtocolError> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(ProtocolError::MalformedFailure)?;
    *bytes = rest;
    Ok(u32::from_le_bytes(*head))
}

fn take_string(bytes: &mut &[u8]) -> Result<String, ProtocolError> {
    let len = take_u32(bytes)? as usize;
    if len > bytes.len() {
        return Err(ProtocolError::MalformedFailure);
    }
    let (text, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
    missing: usize,
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
    /// is already in.
    ///
    /// Returns the count read, 0 at end-of-file, or the OS error.
    pub fn read_from(&mut self, fd: BorrowedFd<'_>) -> nix::Result<usize> {
        self.compact();
        self.buffer
            .reserve(self.missing.clamp(READ_CHUNK, MAX_READ));
        let spare = self.buffer.spare_capacity_mut();
        // SAFETY: reads at most `spare.len()` bytes into the buffer's
        // reserved capacity; only the bytes the kernel wrote are then
        // counted as initialized.
        let read = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        let count = usize::try_from(Errno::result(read)?).unwrap_or(0);
        // SAFETY: the kernel initialized `count` bytes past the old length.
        unsafe { self.buffer.set_len(self.buffer.len() + count) };
        Ok(count)
    }

    /// True when bytes of an unfinished frame are buffered.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        self.start < self.buffer.len()
    }

    /// True when a whole frame is buffered (or the bytes buffered are
    /// already malformed), so the next `next_frame` or `next_task` call
    /// needs no more input.
    pub fn has_frame(&self) -> bool {
        self.next_header().is_some_and(|(_, len, buffered)| {
            usize::try_from(len).map_or(true, |len| buffered >= len)
        })
    }

    /// Returns the next complete frame, `None` when more bytes are needed,
    /// or an error when the stream is malformed (the decoder is then of no
    /// further use).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let Some((kind, payload)) = self.next_raw()? else {
            return Ok(None);
        };
        let payload = &self.buffer[payload];
        Ok(Some(match kind {
            KIND_TASK => Frame::Task(payload.to_vec()),
            KIND_READY => Frame::Ready,
            KIND_DONE => Frame::Done,
            KIND_RESULT => Frame::Result(payload.to_vec()),
            KIND_BYE => Frame::Bye,
            _ => Frame::Failed(Failure::decode(payload)?),
        }))
    }

    /// Returns the payload of the next frame, which must be a `Task`,
    /// borrowed from the buffer: a worker loads it without copying it.
    /// `None` when more bytes are needed; an error for any other kind.
    pub fn next_task(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        match self.next_raw()? {
            None => Ok(None),
            Some((KIND_TASK, payload)) => Ok(Some(&self.buffer[payload])),
            Some((kind, _)) => Err(ProtocolError::UnexpectedKind(kind)),
        }
    }

    /// When the buffer holds the start of a `Task` frame whose payload is
    /// at least `min_len` bytes but not all of it, returns the payload's
    /// length: the worker then reads the rest straight into the item's
    /// memory (see `take_task_start`) instead of through this buffer.
    pub fn large_task_pending(&self, min_len: usize) -> Option<usize> {
        let (kind, len, buffered) = self.next_header()?;
        let len = usize::try_from(len).ok()?;
        (kind == KIND_TASK && len >= min_len && buffered < len).then_some(len)
    }

    /// Moves the buffered start of the pending large `Task` payload to the
    /// front of `into` and forgets the frame: the caller reads the rest from
    /// the pipe. Returns how many bytes were moved.
    pub fn take_task_start(&mut self, into: &mut [std::mem::MaybeUninit<u8>]) -> usize {
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

    /// Reads the header of the next frame, once it is buffered: its kind,
    /// its announced payload length, and how much of the payload is
    /// buffered.
    fn next_header(&self) -> Option<(u8, u64, usize)> {
        let pending = &self.buffer[self.start..];
        let (header, body) = pending.split_first_chunk::<HEADER_LEN>()?;
        let len = u64::from_le_bytes(header[1..].try_into().expect("8 header bytes"));
        Some((header[0], len, body.len()))
    }

    /// Parses the next complete frame's header, checks it, and moves past
    /// the frame. Returns its kind and where its payload is in the buffer.
    fn next_raw(&mut self) -> Result<Option<(u8, Range<usize>)>, ProtocolError> {
        let Some((kind, len64, buffered)) = self.next_header() else {
            return Ok(None);
        };
        match kind {
            KIND_TASK | KIND_FAILED | KIND_RESULT => {}
            KIND_READY | KIND_DONE | KIND_BYE if len64 == 0 => {}
            KIND_READY | KIND_DONE | KIND_BYE => {
                return Err(ProtocolError::UnexpectedPayload { kind, len: len64 })
            }
            _ => return Err(ProtocolError::UnknownKind(kind)),
        }
        let len = usize::try_from(len64)
            .ok()
            .filter(|len| len.checked_add(HEADER_LEN).is_some())
            .ok_or(ProtocolError::TooLong(len64))?;
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

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Ready,
            Frame::Task(b"\x04\x08[\x06i\x06".to_vec()),
            Frame::Done,
            Frame::Result(vec![4, 8, 105, 6]),
            Frame::Failed(Failure {
                class_name: "RuntimeError".into(),
                message: "boom ✓".into(),
                backtrace: vec!["a.rb:1:in `perform'".into(), "b.rb:2".into()],
            }),
            Frame::Task(Vec::new()),
            Frame::Bye,
        ]
    }

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
        let bytes = Frame::Task(vec![7; 100_000]).encode();
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
        assert_eq!(frame, Some(Frame::Task(vec![7; 100_000])));
    }

    #[test]
    fn carries_a_ten_megabyte_task() {
        let payload: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Task(payload.clone()).encode());
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::Task(payload)));
    }

    #[test]
    fn lends_task_payloads_and_refuses_other_kinds() {
        let mut decoder = Decoder::new();
        decoder.push(&Frame::Task(vec![1, 2, 3]).encode());
        decoder.push(&Frame::Done.encode());
        assert_eq!(decoder.next_task().unwrap(), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            decoder.next_task(),
            Err(ProtocolError::UnexpectedKind(KIND_DONE))
        );
    }

    #[test]
    fn waits_for_a_truncated_frame() {
        let bytes = Frame::Task(vec![1, 2, 3]).encode();
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
        let mut bytes = vec![KIND_TASK];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        decoder.push(&bytes);
        assert_eq!(decoder.next_frame(), Err(ProtocolError::TooLong(u64::MAX)));
    }

    #[test]
    fn rejects_a_malformed_failure() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&1000u32.to_le_bytes());
        payload.extend_from_slice(b"short");
        let mut bytes = Vec::new();
        push_frame(&mut bytes, KIND_FAILED, &payload);
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        assert_eq!(decoder.next_frame(), Err(ProtocolError::MalformedFailure));
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
    fn hands_over_the_start_of_a_large_task() {
        let payload: Vec<u8> = (0..1000u32).map(|n| n as u8).collect();
        let frame = Frame::Task(payload.clone()).encode();
        let mut decoder = Decoder::new();
        decoder.push(&frame[..5]);
        assert_eq!(decoder.large_task_pending(100), None, "header incomplete");
        decoder.push(&frame[5..300]);
        assert_eq!(decoder.large_task_pending(1001), None, "smaller than asked");
        assert_eq!(decoder.large_task_pending(100), Some(1000));
        let mut into = vec![std::mem::MaybeUninit::new(0u8); 1000];
        let moved = decoder.take_task_start(&mut into);
        assert_eq!(moved, 300 - HEADER_LEN);
        let moved: Vec<u8> = into[..moved]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert_eq!(moved, payload[..300 - HEADER_LEN]);
        assert!(!decoder.has_partial());
        decoder.push(&Frame::Ready.encode());
        assert_eq!(decoder.large_task_pending(0), None, "not a task");
        decoder.push(&frame);
        assert_eq!(decoder.next_frame(), Ok(Some(Frame::Ready)));
        assert_eq!(
            decoder.large_task_pending(100),
            None,
            "whole frame buffered"
        );
    }
}
