//! Marshal dumps of plain items written without Ruby's Marshal: an array
//! of nil, true, false, small Integers, ASCII Symbols, Strings (UTF-8,
//! US-ASCII or binary, without instance variables) and such arrays. The
//! bytes are exactly those `Marshal.dump` writes (format 4.8), so
//! `Marshal.load` reads them; anything else goes through Ruby's Marshal.
//! `dump` writes them (the master's hot path for small items; a large
//! String is referenced in the dump rather than copied into it, see
//! `wire::payload`) and `parse` reads them back without Ruby, which a
//! worker does for large items.

mod dump;
mod parse;

use std::ops::Range;
use std::sync::Arc;

use crate::wire::payload::Frozen;

pub use dump::dump_into;
pub use parse::{parse, parse_value};

/// The Marshal format version, major and minor.
const HEADER: [u8; 2] = [4, 8];

/// Smallest and largest Integer Marshal writes as a fixnum (`i`).
pub const FIXNUM_RANGE: std::ops::RangeInclusive<i64> = -(1 << 30)..=(1 << 30) - 1;

/// A String's encoding, as far as the plain path handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8: marked with the `E` instance variable set to true.
    Utf8,
    /// US-ASCII: marked with `E` set to false.
    UsAscii,
    /// ASCII-8BIT (binary): no marking.
    Binary,
}

/// A value the plain path can dump.
#[derive(Debug, Clone)]
pub enum Plain<'a> {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An Integer within `FIXNUM_RANGE`.
    Int(i64),
    /// A Symbol whose name is ASCII.
    Symbol(&'a [u8]),
    /// A String with its bytes and encoding.
    Str(&'a [u8], Encoding),
    /// A large String, referenced rather than copied, with its encoding.
    Large(Arc<Frozen>, Encoding),
    /// An Array of plain values.
    Array(Vec<Plain<'a>>),
}

/// A value read back from a plain dump, Strings and Symbols as ranges of
/// the dump's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An Integer.
    Int(i64),
    /// A Symbol's ASCII name.
    Symbol(Range<usize>),
    /// A String's bytes and encoding.
    Str(Range<usize>, Encoding),
    /// An Array.
    Array(Vec<Parsed>),
}

/// A plain dump read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDump {
    /// The dumped value.
    pub value: Parsed,
    /// The bytes of the String whose record ends the dump, if one does:
    /// nothing but its encoding follows them.
    pub last_string: Option<Range<usize>>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::payload::Payload;

    /// Returns the bytes `dump_into` writes for `value`.
    pub fn dump(value: Plain<'_>) -> Vec<u8> {
        let mut out = Payload::default();
        dump_into(&value, &mut out);
        out.to_bytes().into_owned()
    }

    /// An Array of Integers.
    pub fn ints(values: &[i64]) -> Plain<'static> {
        Plain::Array(values.iter().map(|value| Plain::Int(*value)).collect())
    }
}
