//! Marshal dumps of plain items written without Ruby's Marshal: an array
//! of nil, true, false, small Integers, ASCII Symbols, Strings (UTF-8,
//! US-ASCII or binary, without instance variables) and such arrays. The
//! bytes are exactly those `Marshal.dump` writes (format 4.8), so
//! `Marshal.load` reads them; anything else goes through Ruby's Marshal.
//! `parse` reads such a dump back without Ruby, which a worker does for
//! large items. This is the master's hot path for small items; a large String
//! is referenced in the dump rather than copied into it (see `payload`).

use std::ops::Range;
use std::sync::Arc;

use crate::payload::{Frozen, Payload};

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

/// Writes the Marshal dump of `value` to `out`.
pub fn dump_into(value: &Plain<'_>, out: &mut Payload) {
    out.extend_from_slice(&HEADER);
    let mut symbols: Vec<&[u8]> = Vec::new();
    write_value(value, out, &mut symbols);
}

fn write_value<'a>(value: &'a Plain<'a>, out: &mut Payload, symbols: &mut Vec<&'a [u8]>) {
    match value {
        Plain::Nil => out.push(b'0'),
        Plain::Bool(true) => out.push(b'T'),
        Plain::Bool(false) => out.push(b'F'),
        Plain::Int(number) => {
            out.push(b'i');
            write_long(*number, out);
        }
        Plain::Symbol(name) => write_symbol(name, out, symbols),
        Plain::Str(bytes, encoding) => write_string(bytes.len(), *encoding, out, symbols, |out| {
            out.extend_from_slice(bytes)
        }),
        Plain::Large(frozen, encoding) => {
            write_string(frozen.bytes().len(), *encoding, out, symbols, |out| {
                out.refer(Arc::clone(frozen))
            })
        }
        Plain::Array(items) => {
            out.push(b'[');
            write_long(items.len() as i64, out);
            for item in items {
                write_value(item, out, symbols);
            }
        }
    }
}

/// Writes a String of `len` bytes in `encoding`; `body` writes the bytes.
fn write_string(
    len: usize,
    encoding: Encoding,
    out: &mut Payload,
    symbols: &mut Vec<&[u8]>,
    body: impl FnOnce(&mut Payload),
) {
    if encoding != Encoding::Binary {
        out.push(b'I');
    }
    out.push(b'"');
    write_long(len as i64, out);
    body(out);
    if encoding != Encoding::Binary {
        write_long(1, out);
        write_symbol(b"E", out, symbols);
        out.push(if encoding == Encoding::Utf8 {
            b'T'
        } else {
            b'F'
        });
    }
}

fn write_symbol<'a>(name: &'a [u8], out: &mut Payload, symbols: &mut Vec<&'a [u8]>) {
    match symbols.iter().position(|known| *known == name) {
        Some(index) => {
            out.push(b';');
            write_long(index as i64, out);
        }
        None => {
            out.push(b':');
            write_long(name.len() as i64, out);
            out.extend_from_slice(name);
            symbols.push(name);
        }
    }
}

/// Marshal's variable-length integer (`w_long` in marshal.c).
fn write_long(value: i64, out: &mut Payload) {
    match value {
        0 => out.push(0),
        1..=122 => out.push((value + 5) as u8),
        -123..=-1 => out.push(((value - 5) & 0xff) as u8),
        _ => {
            let mut rest = value;
            let mut bytes = [0u8; 8];
            let mut count = 0;
            loop {
                bytes[count] = (rest & 0xff) as u8;
                count += 1;
                rest >>= 8;
                if rest == 0 {
                    out.push(count as u8);
                    break;
                }
                if rest == -1 {
                    out.push((-(count as i8)) as u8);
                    break;
                }
            }
            out.extend_from_slice(&bytes[..count]);
        }
    }
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
    /// The dumped Array.
    pub value: Parsed,
    /// The bytes of the String whose record ends the dump, if one does:
    /// nothing but its encoding follows them.
    pub last_string: Option<Range<usize>>,
}

/// Reads a dump of an Array of plain values, as `dump_into` writes them.
/// Returns `None` for anything else, malformed input included, which
/// Ruby's Marshal then loads (or rejects).
pub fn parse(bytes: &[u8]) -> Option<ParsedDump> {
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
    if !matches!(value, Parsed::Array(_)) || reader.at != bytes.len() {
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

    fn dump(value: Plain<'_>) -> Vec<u8> {
        let mut out = Payload::default();
        dump_into(&value, &mut out);
        out.to_bytes().into_owned()
    }

    fn ints(values: &[i64]) -> Plain<'static> {
        Plain::Array(values.iter().map(|value| Plain::Int(*value)).collect())
    }

    // Every expectation below was printed by Ruby 3.1's Marshal.dump.
    #[test]
    fn writes_integers_as_marshal_does() {
        let cases: [(i64, &[u8]); 13] = [
            (0, &[0x00]),
            (1, &[0x06]),
            (122, &[0x7f]),
            (123, &[0x01, 0x7b]),
            (-1, &[0xfa]),
            (-123, &[0x80]),
            (-124, &[0xff, 0x84]),
            (255, &[0x01, 0xff]),
            (256, &[0x02, 0x00, 0x01]),
            (-256, &[0xff, 0x00]),
            (-257, &[0xfe, 0xff, 0xfe]),
            (1_073_741_823, &[0x04, 0xff, 0xff, 0xff, 0x3f]),
            (-1_073_741_824, &[0xfc, 0x00, 0x00, 0x00, 0xc0]),
        ];
        for (value, long) in cases {
            let mut expected = vec![0x04, 0x08, 0x5b, 0x06, 0x69];
            expected.extend_from_slice(long);
            assert_eq!(dump(ints(&[value])), expected, "{value}");
        }
        assert_eq!(dump(ints(&[])), [0x04, 0x08, 0x5b, 0x00]);
    }

    #[test]
    fn writes_nil_true_and_false() {
        let value = Plain::Array(vec![Plain::Nil, Plain::Bool(true), Plain::Bool(false)]);
        assert_eq!(dump(value), [0x04, 0x08, 0x5b, 0x08, 0x30, 0x54, 0x46]);
    }

    #[test]
    fn writes_strings_with_their_encoding() {
        let utf8 = Plain::Array(vec![Plain::Str(b"a", Encoding::Utf8)]);
        assert_eq!(
            dump(utf8),
            [0x04, 0x08, 0x5b, 0x06, 0x49, 0x22, 0x06, 0x61, 0x06, 0x3a, 0x06, 0x45, 0x54]
        );
        let binary = Plain::Array(vec![Plain::Str(b"a", Encoding::Binary)]);
        assert_eq!(dump(binary), [0x04, 0x08, 0x5b, 0x06, 0x22, 0x06, 0x61]);
        let ascii = Plain::Array(vec![Plain::Str(b"a", Encoding::UsAscii)]);
        assert_eq!(
            dump(ascii),
            [0x04, 0x08, 0x5b, 0x06, 0x49, 0x22, 0x06, 0x61, 0x06, 0x3a, 0x06, 0x45, 0x46]
        );
    }

    #[test]
    fn links_repeated_symbols() {
        let two = Plain::Array(vec![
            Plain::Str(b"a", Encoding::Utf8),
            Plain::Str(b"b", Encoding::Utf8),
        ]);
        assert_eq!(
            dump(two),
            [
                0x04, 0x08, 0x5b, 0x07, 0x49, 0x22, 0x06, 0x61, 0x06, 0x3a, 0x06, 0x45, 0x54, 0x49,
                0x22, 0x06, 0x62, 0x06, 0x3b, 0x00, 0x54
            ]
        );
        let symbols = Plain::Array(vec![
            Plain::Symbol(b"sym"),
            Plain::Symbol(b"sym"),
            Plain::Str(b"x", Encoding::Utf8),
        ]);
        assert_eq!(
            dump(symbols),
            [
                0x04, 0x08, 0x5b, 0x08, 0x3a, 0x08, 0x73, 0x79, 0x6d, 0x3b, 0x00, 0x49, 0x22, 0x06,
                0x78, 0x06, 0x3a, 0x06, 0x45, 0x54
            ]
        );
    }

    #[test]
    fn writes_nested_arrays_and_long_strings() {
        let nested = Plain::Array(vec![
            Plain::Array(vec![Plain::Int(1), Plain::Array(vec![Plain::Int(2)])]),
            Plain::Str(b"z", Encoding::Utf8),
        ]);
        assert_eq!(
            dump(nested),
            [
                0x04, 0x08, 0x5b, 0x07, 0x5b, 0x07, 0x69, 0x06, 0x5b, 0x06, 0x69, 0x07, 0x49, 0x22,
                0x06, 0x7a, 0x06, 0x3a, 0x06, 0x45, 0x54
            ]
        );
        let long = vec![b'a'; 300];
        let bytes = dump(Plain::Array(vec![Plain::Str(&long, Encoding::Utf8)]));
        assert_eq!(
            bytes[..9],
            [0x04, 0x08, 0x5b, 0x06, 0x49, 0x22, 0x02, 0x2c, 0x01]
        );
        assert_eq!(bytes.len(), 9 + 300 + 5);
    }

    #[test]
    fn refers_to_a_large_string_without_copying_it() {
        let long = vec![b'q'; 70_000];
        let copied = dump(Plain::Array(vec![
            Plain::Int(1),
            Plain::Str(&long, Encoding::Binary),
            Plain::Str(b"t", Encoding::Utf8),
        ]));
        let value = Plain::Array(vec![
            Plain::Int(1),
            Plain::Large(crate::payload::tests::frozen(&long), Encoding::Binary),
            Plain::Str(b"t", Encoding::Utf8),
        ]);
        let mut referenced = Payload::default();
        dump_into(&value, &mut referenced);
        assert!(referenced.has_references());
        assert_eq!(referenced.to_bytes().as_ref(), copied.as_slice());
    }

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
