//! Building the Ruby value a plain dump describes, its bytes read from
//! the String the dump arrived in.

use std::ops::Range;

use magnus::{prelude::*, rb_sys::AsRawValue, rb_sys::FromRawValue, Error, RString, Ruby, Value};

use divvy_core::plain::Parsed;

use super::encoding_index;

/// Makes the Ruby value `parsed` describes, its bytes read from `dump`;
/// the String at `tail` shares them. The Ruby calls here raise nothing but
/// `NoMemoryError`, which, as in magnus, is left to unwind through these
/// frames.
pub(super) fn build(
    ruby: &Ruby,
    dump: RString,
    parsed: &Parsed,
    tail: Option<&Range<usize>>,
) -> Result<Value, Error> {
    // SAFETY (each `as_slice` below): the bytes are read before any Ruby
    // call that could change `dump`.
    Ok(match parsed {
        Parsed::Nil => ruby.qnil().as_value(),
        Parsed::Bool(true) => ruby.qtrue().as_value(),
        Parsed::Bool(false) => ruby.qfalse().as_value(),
        Parsed::Int(number) => ruby.integer_from_i64(*number).as_value(),
        Parsed::Symbol(name) => {
            let name =
                String::from_utf8_lossy(&unsafe { dump.as_slice() }[name.clone()]).into_owned();
            ruby.to_symbol(name).as_value()
        }
        Parsed::Str(bytes, encoding) => {
            let raw = if Some(bytes) == tail {
                // rb_str_subseq shares a buffer only with a substring that
                // runs to its end, so the dump is cut there first: what
                // followed was this String's encoding, already read.
                // SAFETY: `dump` is a live String the worker owns, at
                // least `bytes.end` long; it is not used again as a dump.
                unsafe {
                    rb_sys::rb_str_set_len(dump.as_raw(), bytes.end as std::os::raw::c_long);
                    rb_sys::rb_str_subseq(
                        dump.as_raw(),
                        bytes.start as std::os::raw::c_long,
                        bytes.len() as std::os::raw::c_long,
                    )
                }
            } else {
                ruby.str_from_slice(&unsafe { dump.as_slice() }[bytes.clone()])
                    .as_raw()
            };
            // SAFETY: `raw` is the live String just made.
            unsafe {
                rb_sys::rb_enc_associate_index(raw, encoding_index(*encoding));
                Value::from_raw(raw)
            }
        }
        Parsed::Array(items) => {
            let array = ruby.ary_new_capa(items.len());
            for item in items {
                array.push(build(ruby, dump, item, tail)?)?;
            }
            array.as_value()
        }
    })
}
