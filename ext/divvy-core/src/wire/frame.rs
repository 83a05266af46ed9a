//! The frames master and workers exchange, and their bytes.
//!
//! Every message is one frame: a kind byte, the payload length as a
//! little-endian `u64`, then the payload. The master sends `Item` frames
//! down a worker's item pipe. The worker answers on its answer pipe:
//! `Ready` once booted; for each item in turn, `Done` (performed), `Result`
//! (performed, with the Marshal dump of what `perform` returned, when the
//! task wants results), `Failed` (raised) or `Broke` (raised
//! `Divvy::Break`: performed, and the run should stop); and `Bye` when it
//! leaves on its own before the master closed its pipe.

use std::borrow::Cow;
use std::fmt;

use super::landing::Landing;
use super::payload::{Payload, Piece};

/// Bytes before a frame's payload: the kind byte and the `u64` length.
pub const HEADER_LEN: usize = 9;

pub(crate) const KIND_ITEM: u8 = 1;
pub(crate) const KIND_READY: u8 = 2;
pub(crate) const KIND_DONE: u8 = 3;
pub(crate) const KIND_FAILED: u8 = 4;
pub(crate) const KIND_BYE: u8 = 5;
pub(crate) const KIND_RESULT: u8 = 6;
pub(crate) const KIND_BROKE: u8 = 7;

/// One message between master and worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Master to worker: a Marshal dump of the argument array to perform.
    Item(Vec<u8>),
    /// Worker to master: booted (`after_fork` returned), ready for items.
    Ready,
    /// Worker to master: the oldest item it holds was performed.
    Done,
    /// Worker to master: the oldest item it holds was performed and
    /// returned this value (a Marshal dump); sent instead of `Done` when the
    /// task wants results.
    Result(ResultBytes),
    /// Worker to master: the oldest item it holds raised.
    Failed(Failure),
    /// Worker to master: the oldest item it holds raised `Divvy::Break`
    /// with this value (a Marshal dump): it counts as performed, and the
    /// run stops dispatching.
    Broke(Vec<u8>),
    /// Worker to master: leaving on its own (it was asked to stop); the
    /// items it still holds were never started.
    Bye,
}

/// The Marshal dump of a result: bytes of its own; in a worker, a dump
/// whose large Strings are referenced rather than copied (see `payload`);
/// in the master, a large one landed where its reader asked (see
/// `landing`).
#[derive(Debug)]
pub enum ResultBytes {
    Owned(Vec<u8>),
    Dumped(Payload),
    Landed(Landing),
}

impl ResultBytes {
    /// The dump's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            ResultBytes::Owned(bytes) => bytes.len(),
            ResultBytes::Dumped(payload) => payload.len(),
            ResultBytes::Landed(landing) => landing.bytes().len(),
        }
    }

    /// True when the dump has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dump's pieces in order: its own bytes, or a `Dumped` one's
    /// owned and referenced runs. (All of them stay put while the value
    /// lives, so any may be lent to a pipe.)
    pub fn pieces(&self) -> Vec<Piece<'_>> {
        match self {
            ResultBytes::Owned(bytes) => vec![Piece::Copied(bytes)],
            ResultBytes::Dumped(payload) => payload.pieces().collect(),
            ResultBytes::Landed(landing) => vec![Piece::Copied(landing.bytes())],
        }
    }

    /// The whole dump as one run of bytes (assembled for a `Dumped` one
    /// that refers to others).
    pub fn to_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            ResultBytes::Owned(bytes) => Cow::Borrowed(bytes),
            ResultBytes::Dumped(payload) => payload.to_bytes(),
            ResultBytes::Landed(landing) => Cow::Borrowed(landing.bytes()),
        }
    }
}

impl From<Vec<u8>> for ResultBytes {
    fn from(bytes: Vec<u8>) -> ResultBytes {
        ResultBytes::Owned(bytes)
    }
}

impl PartialEq for ResultBytes {
    fn eq(&self, other: &ResultBytes) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for ResultBytes {}

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
            Frame::Item(payload) => push_frame(out, KIND_ITEM, payload),
            Frame::Ready => push_frame(out, KIND_READY, &[]),
            Frame::Done => push_frame(out, KIND_DONE, &[]),
            Frame::Result(value) => push_frame(out, KIND_RESULT, &value.to_bytes()),
            Frame::Broke(value) => push_frame(out, KIND_BROKE, value),
            Frame::Bye => push_frame(out, KIND_BYE, &[]),
            Frame::Failed(failure) => {
                let mut payload = Vec::new();
                failure.encode_into(&mut payload);
                push_frame(out, KIND_FAILED, &payload);
            }
        }
    }

    /// Appends this frame's bytes to `out`, except the payload of a result
    /// of `large` bytes or more: that is returned, to be put into the pipe
    /// after `out` from where it lies rather than copied.
    pub fn encode_unless_large(self, out: &mut Vec<u8>, large: usize) -> Option<ResultBytes> {
        match self {
            Frame::Result(value) if value.len() >= large => {
                out.extend_from_slice(&header(KIND_RESULT, value.len()));
                Some(value)
            }
            frame => {
                frame.encode_into(out);
                None
            }
        }
    }

    /// Returns how many bytes `encode_into` appends for this frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Item(payload) | Frame::Broke(payload) => payload.len(),
                Frame::Result(value) => value.len(),
                Frame::Ready | Frame::Done | Frame::Bye => 0,
                Frame::Failed(failure) => failure.encoded_len(),
            }
    }

    /// Returns this frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Makes the frame of `kind` from its payload, which must be whole.
    ///
    /// Returns an error for an unknown kind or a malformed failure report.
    pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Frame, ProtocolError> {
        Ok(match kind {
            KIND_ITEM => Frame::Item(payload.to_vec()),
            KIND_READY => Frame::Ready,
            KIND_DONE => Frame::Done,
            KIND_RESULT => Frame::Result(payload.to_vec().into()),
            KIND_BROKE => Frame::Broke(payload.to_vec()),
            KIND_BYE => Frame::Bye,
            KIND_FAILED => Frame::Failed(Failure::decode(payload)?),
            kind => return Err(ProtocolError::UnknownKind(kind)),
        })
    }
}

/// Checks the header of a frame of `kind` announcing `len` payload bytes.
///
/// Returns the length as a `usize`, or why the header is malformed.
pub(crate) fn check_header(kind: u8, len: u64) -> Result<usize, ProtocolError> {
    match kind {
        KIND_ITEM | KIND_FAILED | KIND_RESULT | KIND_BROKE => {}
        KIND_READY | KIND_DONE | KIND_BYE if len == 0 => {}
        KIND_READY | KIND_DONE | KIND_BYE => {
            return Err(ProtocolError::UnexpectedPayload { kind, len })
        }
        _ => return Err(ProtocolError::UnknownKind(kind)),
    }
    usize::try_from(len)
        .ok()
        .filter(|len| len.checked_add(HEADER_LEN).is_some())
        .ok_or(ProtocolError::TooLong(len))
}

/// Returns the header of an `Item` frame whose payload is `len` bytes, for
/// writing a large payload without copying it behind its header.
pub fn item_header(len: usize) -> [u8; HEADER_LEN] {
    header(KIND_ITEM, len)
}

/// Returns the header of a frame of `kind` whose payload is `len` bytes.
fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = kind;
    header[1..].copy_from_slice(&(len as u64).to_le_bytes());
    header
}

pub(crate) fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
}

impl Failure {
    fn encoded_len(&self) -> usize {
        let lines: usize = self.backtrace.iter().map(|line| 4 + line.len()).sum();
        4 + self.class_name.len() + 4 + self.message.len() + 4 + lines
    }

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One frame of every kind.
    pub fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Ready,
            Frame::Item(b"\x04\x08[\x06i\x06".to_vec()),
            Frame::Done,
            Frame::Result(vec![4, 8, 105, 6].into()),
            Frame::Failed(Failure {
                class_name: "RuntimeError".into(),
                message: "boom ✓".into(),
                backtrace: vec!["a.rb:1:in `perform'".into(), "b.rb:2".into()],
            }),
            Frame::Item(Vec::new()),
            Frame::Broke(vec![4, 8, b'0']),
            Frame::Bye,
        ]
    }

    #[test]
    fn lays_out_kind_length_and_payload() {
        assert_eq!(
            Frame::Item(vec![7, 8]).encode(),
            [KIND_ITEM, 2, 0, 0, 0, 0, 0, 0, 0, 7, 8]
        );
        assert_eq!(
            item_header(2),
            Frame::Item(vec![7, 8]).encode()[..HEADER_LEN]
        );
        assert_eq!(Frame::Bye.encode(), [KIND_BYE, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn leaves_a_large_result_s_payload_out_of_the_buffer() {
        let mut out = Vec::new();
        assert_eq!(Frame::Done.encode_unless_large(&mut out, 4), None);
        assert_eq!(
            Frame::Result(vec![1; 3].into()).encode_unless_large(&mut out, 4),
            None
        );
        let large = Frame::Result(vec![2; 4].into());
        assert_eq!(
            large.encode_unless_large(&mut out, 4),
            Some(vec![2; 4].into())
        );
        out.extend_from_slice(&[2; 4]);
        let mut whole = Frame::Done.encode();
        Frame::Result(vec![1; 3].into()).encode_into(&mut whole);
        Frame::Result(vec![2; 4].into()).encode_into(&mut whole);
        assert_eq!(out, whole);
    }

    #[test]
    fn knows_each_frame_s_length() {
        for frame in sample_frames() {
            assert_eq!(frame.encoded_len(), frame.encode().len(), "{frame:?}");
        }
    }

    #[test]
    fn checks_headers() {
        assert_eq!(check_header(KIND_DONE, 0), Ok(0));
        assert_eq!(
            check_header(KIND_DONE, 1),
            Err(ProtocolError::UnexpectedPayload {
                kind: KIND_DONE,
                len: 1
            })
        );
        assert_eq!(check_header(99, 0), Err(ProtocolError::UnknownKind(99)));
        assert_eq!(
            check_header(KIND_ITEM, u64::MAX),
            Err(ProtocolError::TooLong(u64::MAX))
        );
    }

    #[test]
    fn rejects_a_malformed_failure() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&1000u32.to_le_bytes());
        payload.extend_from_slice(b"short");
        assert_eq!(
            Frame::decode(KIND_FAILED, &payload),
            Err(ProtocolError::MalformedFailure)
        );
    }
}
