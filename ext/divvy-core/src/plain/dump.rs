//! Writing a plain value as the bytes `Marshal.dump` writes.

use std::sync::Arc;

use super::{Encoding, Plain, HEADER};
use crate::wire::payload::Payload;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plain::tests::{dump, ints};

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
            Plain::Large(crate::wire::payload::tests::frozen(&long), Encoding::Binary),
            Plain::Str(b"t", Encoding::Utf8),
        ]);
        let mut referenced = Payload::default();
        dump_into(&value, &mut referenced);
        assert!(referenced.has_references());
        assert_eq!(referenced.to_bytes().as_ref(), copied.as_slice());
    }
}
