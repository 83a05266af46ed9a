//! The digest of an item: XXH3-64 of its Marshal dump, the bytes the master
//! sends. XXH3 is a published algorithm with fixed output, so the digest a
//! run wrote of some bytes is the one the next computes of them, in any
//! process, Ruby version or Rust version (unlike std's `DefaultHasher`);
//! what bytes an item dumps to is Ruby's to decide (a String's encoding is
//! in them, and follows the locale). XXH3 hashes a small item in a few
//! nanoseconds and a large one at memory speed. Sixty-four bits tell items
//! apart well enough to notice a `dispatch` that changed; they are no
//! defence against forgery.

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::wire::payload::{Payload, Piece};

/// Returns the digest of `payload`'s dump, referenced bytes included, as
/// if the dump were one run of bytes.
pub fn digest(payload: &Payload) -> u64 {
    if !payload.has_references() {
        return xxh3_64(&payload.to_bytes());
    }
    let mut hasher = Xxh3Default::new();
    for piece in payload.pieces() {
        match piece {
            Piece::Copied(bytes) => hasher.update(bytes),
            Piece::Referenced(frozen) => hasher.update(frozen.bytes()),
        }
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload::tests::frozen;

    #[test]
    fn is_xxh3_of_the_whole_dump() {
        // Marshal.dump([1]): the value is fixed by XXH3's specification.
        let dump = Payload::from(vec![4, 8, b'[', 6, b'i', 6]);
        assert_eq!(digest(&dump), xxh3_64(&[4, 8, b'[', 6, b'i', 6]));
        assert_eq!(digest(&Payload::from(Vec::new())), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn referenced_bytes_count_as_if_copied() {
        let mut spliced = Payload::from_buffer(Vec::new());
        spliced.extend_from_slice(b"head");
        spliced.refer(frozen(b"large string"));
        spliced.extend_from_slice(b"tail");
        let copied = Payload::from(b"headlarge stringtail".to_vec());
        assert_eq!(digest(&spliced), digest(&copied));
        assert_ne!(
            digest(&copied),
            digest(&Payload::from(b"headtail".to_vec()))
        );
    }
}
