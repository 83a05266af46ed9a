//! Building the Ruby value a plain dump describes, its bytes read from
//! the String a large dump arrived in or from bytes the master read.

use std::ops::Range;

use magnus::{prelude::*, rb_sys::AsRawValue, rb_sys::FromRawValue, Error, RString, Ruby, Value};
use rb_sys::VALUE;

use divvy_core::plain::Parsed;

use super::encoding_index;

/// Where the bytes of a plain dump are.
pub(super) enum Source<'a> {
    /// A String a large dump was read into, given up by its reader (the
    /// worker for an item, the master for a result): the String at `tail`
    /// shares its buffer.
    Owned {
        dump: RString,
        tail: Option<&'a Range<usize>>,
    },
    /// Bytes the master received (a small result).
    Bytes(&'a [u8]),
}

impl Source<'_> {
    /// Returns the bytes at `range`, copied, for a Symbol's name.
    fn copy(&self, range: &Range<usize>) -> Vec<u8> {
        match self {
            // SAFETY: the bytes are copied before any Ruby call could change
            // `dump`.
            Source::Owned { dump, .. } => (unsafe { dump.as_slice() })[range.clone()].to_vec(),
            Source::Bytes(bytes) => bytes[range.clone()].to_vec(),
        }
    }

    /// Makes a String of the bytes at `range`.
    fn string(&self, ruby: &Ruby, range: &Range<usize>) -> VALUE {
        match self {
            Source::Owned { dump, tail } if Some(range) == *tail => {
                // rb_str_subseq shares a buffer only with a substring that
                // runs to its end, so the dump is cut there first: what
                // followed was this String's encoding, already read.
                // SAFETY: `dump` is a live String its reader gave up, at
                // least `range.end` long; it is not used again as a dump.
                unsafe {
                    rb_sys::rb_str_set_len(dump.as_raw(), range.end as std::os::raw::c_long);
                    rb_sys::rb_str_subseq(
                        dump.as_raw(),
                        range.start as std::os::raw::c_long,
                        range.len() as std::os::raw::c_long,
                    )
                }
            }
            // SAFETY: the bytes are copied into the new String before any
            // other Ruby call could change `dump`.
            Source::Owned { dump, .. } => ruby
                .str_from_slice(&(unsafe { dump.as_slice() })[range.clone()])
                .as_raw(),
            Source::Bytes(bytes) => ruby.str_from_slice(&bytes[range.clone()]).as_raw(),
        }
    }
}

/// Makes the Ruby value `parsed` describes, its bytes read from `source`.
/// The Ruby calls here raise nothing but `NoMemoryError`, which, as in
/// magnus, is left to unwind through these frames.
pub(super) fn build(ruby: &Ruby, source: &Source<'_>, parsed: &Parsed) -> Result<Value, Error> {
    Ok(match parsed {
        Parsed::Nil => ruby.qnil().as_value(),
        Parsed::Bool(true) => ruby.qtrue().as_value(),
        Parsed::Bool(false) => ruby.qfalse().as_value(),
        Parsed::Int(number) => ruby.integer_from_i64(*number).as_value(),
        Parsed::Symbol(name) => {
            let name = String::from_utf8_lossy(&source.copy(name)).into_owned();
            ruby.to_symbol(name).as_value()
        }
        Parsed::Str(bytes, encoding) => {
            let raw = source.string(ruby, bytes);
            // SAFETY: `raw` is the live String just made.
            unsafe {
                rb_sys::rb_enc_associate_index(raw, encoding_index(*encoding));
                Value::from_raw(raw)
            }
        }
        Parsed::Array(items) => {
            let array = ruby.ary_new_capa(items.len());
            for item in items {
                array.push(build(ruby, source, item)?)?;
            }
            array.as_value()
        }
    })
}
