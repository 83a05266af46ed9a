//! Reading back, without Ruby, a dump that `dump_into` wrote.

use std::ops::Range;

use super::{Encoding, Parsed, ParsedDump, HEADER};

/// Reads a dump of an Array of plain values, as `dump_into` writes them
/// for an item's arguments. Returns `None` for anything else, malformed
/// input included, which Ruby's Marshal then loads (or rejects).
pub fn parse(bytes: &[u8]) -> Option<ParsedDump> {
    parse_value(bytes).filter(|parsed| matches!(parsed.value, Parsed::Array(_)))
}

/// Reads a dump of one plain value, as `dump_into` writes it for a result.
/// Returns `None` for anything else, malformed input included.
pub fn parse_value(bytes: &[u8]) -> Option<ParsedDump> {
    let mut reader = Reader {
        bytes,
        at: 0,
        symbols: Vec::new(),
        last_string: None,
    };
    if reader.take(2)? != HEADER {
        return None;
    }
    let value = reader.value(0)?;
    if reader.at != bytes.len() {
        return None;
    }
    let last_string = reader
        .last_string
        .filter(|(_, record_end)| *record_end == bytes.len())
        .map(|(range, _)| range);
    Some(ParsedDump { value, last_string })
}

/// How deep the reader follows nested arrays.
const PARSE_DEPTH: usize = 64;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    symbols: Vec<Range<usize>>,
    /// The last String read and where its record ended.
    last_string: Option<(Range<usize>, usize)>,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(count)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn value(&mut self, depth: usize) -> Option<Parsed> {
        match self.byte()? {
            b'0' => Some(Parsed::Nil),
            b'T' => Some(Parsed::Bool(true)),
            b'F' => Some(Parsed::Bool(false)),
            b'i' => Some(Parsed::Int(self.long()?)),
            b':' | b';' => {
                self.at -= 1;
                Some(Parsed::Symbol(self.symbol()?))
            }
            b'"' => self.string(false),
            b'I' => match self.byte()? {
                b'"' => self.string(true),
                _ => None,
            },
            b'[' if depth < PARSE_DEPTH => {
                let count = self.length()?;
                // Each element takes at least one byte: a bad count cannot
                // make the reader allocate more than the dump holds.
                if count > self.bytes.len() - self.at {
                    return None;
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Some(Parsed::Array(items))
            }
            _ => None,
        }
    }

    /// A String after its `"`: its length and bytes, then, when `encoded`
    /// (it began with `I`), its one instance variable `E`, which gives its
    /// encoding.
    fn string(&mut self, encoded: bool) -> Option<Parsed> {
        let len = self.length()?;
        self.take(len)?;
        let bytes = self.at - len..self.at;
        let encoding = if encoded {
            if self.long()? != 1 || self.bytes.get(self.symbol()?)? != b"E" {
                return None;
            }
            match self.byte()? {
                b'T' => Encoding::Utf8,
                b'F' => Encoding::UsAscii,
                _ => return None,
            }
        } else {
            Encoding::Binary
        };
        self.last_string = Some((bytes.clone(), self.at));
        Some(Parsed::Str(bytes, encoding))
    }

    /// A Symbol (`:` with its name, or `;` and the index of one seen).
    fn symbol(&mut self) -> Option<Range<usize>> {
        match self.byte()? {
            b':' => {
                let len = self.length()?;
                if !self.take(len)?.is_ascii() {
                    return None;
                }
                let name = self.at - len..self.at;
                self.symbols.push(name.clone());
                Some(name)
            }
            b';' => {
                let index = usize::try_from(self.long()?).ok()?;
                self.symbols.get(index).cloned()
            }
            _ => None,
        }
    }

    fn length(&mut self) -> Option<usize> {
        usize::try_from(self.long()?).ok()
    }

    /// Marshal's variable-length integer (`r_long` in marshal.c).
    fn long(&mut self) -> Option<i64> {
        let lead = self.byte()? as i8;
        match lead {
            0 => Some(0),
            5..=127 => Some(i64::from(lead) - 5),
            -128..=-5 => Some(i64::from(lead) + 5),
            1..=4 => {
                let mut value: i64 = 0;
                for (shift, byte) in self.take(lead as usize)?.iter().enumerate() {
                    value |= i64::from(*byte) << (8 * shift);
                }
                Some(value)
            }
            _ => {
                let mut value: i64 = -1;
                for (shift, byte) in self.take(lead.unsigned_abs() as usize)?.iter().enumerate() {
                    value &= !(0xff << (8 * shift));
                    value |= i64::from(*byte) << (8 * shift);
                }
                Some(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plain::tests::dump;
    use crate::plain::Plain;

    /// Dumps `value` and reads it back.
    fn round_trip(value: Plain<'_>) -> (Vec<u8>, ParsedDump) {
        let bytes = dump(value);
        let parsed = parse(&bytes).expect("a plain dump parses");
        (bytes, parsed)
    }

    #[test]
    fn reads_back_what_it_writes() {
        for number in [
            0,
            1,
            -1,
            122,
            123,
            -123,
            -124,
            255,
            256,
            -256,
            -257,
            1 << 29,
            -(1 << 30),
        ] {
            let (_, parsed) = round_trip(Plain::Array(vec![Plain::Int(number)]));
            assert_eq!(
                parsed.value,
                Parsed::Array(vec![Parsed::Int(number)]),
                "{number}"
            );
        }
        let long = vec![b'a'; 300];
        let (bytes, parsed) = round_trip(Plain::Array(vec![
            Plain::Nil,
            Plain::Bool(true),
            Plain::Bool(false),
            Plain::Symbol(b"sym"),
            Plain::Symbol(b"sym"),
            Plain::Array(vec![Plain::Str(b"x", Encoding::UsAscii)]),
            Plain::Str(b"b", Encoding::Binary),
            Plain::Str(&long, Encoding::Utf8),
        ]));
        let Parsed::Array(items) = &parsed.value else {
            panic!("not an array: {parsed:?}");
        };
        let text = |range: &Range<usize>| bytes[range.clone()].to_vec();
        assert_eq!(
            items[..3],
            [Parsed::Nil, Parsed::Bool(true), Parsed::Bool(false)]
        );
        for item in &items[3..5] {
            let Parsed::Symbol(name) = item else {
                panic!("{item:?}")
            };
            assert_eq!(text(name), b"sym");
        }
        let Parsed::Array(inner) = &items[5] else {
            panic!("{:?}", items[5])
        };
        let Parsed::Str(x, Encoding::UsAscii) = &inner[0] else {
            panic!("{inner:?}")
        };
        assert_eq!(text(x), b"x");
        let Parsed::Str(b, Encoding::Binary) = &items[6] else {
            panic!("{:?}", items[6])
        };
        assert_eq!(text(b), b"b");
        let Parsed::Str(tail, Encoding::Utf8) = &items[7] else {
            panic!("{:?}", items[7])
        };
        assert_eq!(text(tail), long);
        assert_eq!(parsed.last_string.as_ref(), Some(tail));
    }

    #[test]
    fn names_the_string_that_ends_the_dump_only() {
        let (_, parsed) = round_trip(Plain::Array(vec![
            Plain::Str(b"a", Encoding::Binary),
            Plain::Nil,
        ]));
        assert_eq!(parsed.last_string, None);
        let (bytes, parsed) = round_trip(Plain::Array(vec![Plain::Str(b"blob", Encoding::Binary)]));
        assert_eq!(parsed.last_string, Some(bytes.len() - 4..bytes.len()));
    }

    #[test]
    fn reads_a_value_that_is_not_an_array_as_a_result() {
        assert_eq!(
            parse_value(&[4, 8, b'i', 6]).map(|parsed| parsed.value),
            Some(Parsed::Int(1))
        );
        let bytes = dump(Plain::Str(b"done", Encoding::Utf8));
        let parsed = parse_value(&bytes).expect("a plain String parses");
        assert_eq!(parsed.value, Parsed::Str(5..9, Encoding::Utf8));
        assert_eq!(parse(&bytes), None, "an item is always an Array");
        assert_eq!(parse_value(&[4, 8, b'0', b'0']), None, "trailing bytes");
        assert_eq!(parse_value(&[4, 8, b'f', 6]), None, "a Float");
    }

    #[test]
    fn refuses_what_it_does_not_write_without_panicking() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[4, 8, b'i', 6]), None, "not an array");
        assert_eq!(parse(&[4, 8, b'{', 0]), None, "a hash");
        assert_eq!(parse(&[4, 8, b'[', 6, b'i', 6, 0]), None, "trailing bytes");
        assert_eq!(parse(&[4, 8, b'[', 0x7f]), None, "more items than bytes");
        assert_eq!(
            parse(&[4, 8, b'[', 6, b'"', 0x7f, b'a']),
            None,
            "short string"
        );
        assert_eq!(
            parse(&[4, 8, b'[', 6, b';', 6]),
            None,
            "unknown symbol link"
        );
        let complete = dump(Plain::Array(vec![
            Plain::Str(b"caf\xc3\xa9", Encoding::Utf8),
            Plain::Array(vec![Plain::Int(-300), Plain::Symbol(b"k")]),
        ]));
        for end in 0..complete.len() {
            assert_eq!(parse(&complete[..end]), None, "cut at {end}");
        }
        let mut seed: u32 = 7;
        for _ in 0..20_000 {
            let mut bytes = complete.clone();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let at = (seed >> 8) as usize % bytes.len();
            bytes[at] = (seed >> 16) as u8;
            let _ = parse(&bytes);
        }
    }
}
