//! Marshal dumps and loads of the values that cross the pipes. Plain items
//! (see `plain_marshal`) are dumped without calling Ruby; everything else
//! goes through Ruby's own Marshal.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use magnus::{
    prelude::*,
    rb_sys::{protect, AsRawValue, FromRawValue},
    value::BoxValue,
    Error, RArray, RString, Ruby, Value,
};
use rb_sys::{ruby_value_type, VALUE};

use crate::payload::{Frozen, Payload};
use crate::plain_marshal::{dump_into, parse, Encoding, Parsed, Plain, FIXNUM_RANGE};

/// How deep nested arrays may go on the plain path.
const PLAIN_DEPTH: usize = 8;

/// Strings at least this long are referenced by a payload, not copied.
pub const LARGE_STRING: usize = 64 * 1024;

/// What a walk over an item on the plain path has seen.
#[derive(Default)]
struct Walk {
    /// Strings and Arrays seen so far: one seen twice needs Marshal's object
    /// links, so it takes the Ruby path.
    identities: Vec<VALUE>,
    /// Large Strings with their frozen snapshots, made before the walk.
    snapshots: Vec<(VALUE, Arc<Frozen>)>,
    /// Large Strings met that have no snapshot yet.
    unfrozen: Vec<VALUE>,
}

/// Dumps the argument list `args` as a Marshal dump of an Array into
/// `buffer` (cleared first; pass a recycled one to spare an allocation).
/// Large plain Strings are not copied: the payload refers to a frozen
/// snapshot of each, which shares the String's bytes (Ruby copies them only
/// should the String be changed later), so what is sent is the item as it
/// was yielded.
///
/// Returns the payload; raises what `Marshal.dump` raises (`TypeError` for
/// a Proc, an IO or a singleton).
pub fn dump_args(ruby: &Ruby, args: &[Value], buffer: Vec<u8>) -> Result<Payload, Error> {
    let mut out = Payload::from_buffer(buffer);
    let mut walk = Walk::default();
    let mut described = describe(ruby, args, &mut walk);
    let mut gc_paused = None;
    if described.is_some() && !walk.unfrozen.is_empty() {
        // The Strings found are held here as raw VALUEs, which a compacting
        // GC could move, so the GC waits until the snapshots are made (and
        // registered) and the dump written. Snapshots allocate, so the
        // description is made again afterwards rather than trusted across
        // them.
        drop(described);
        gc_paused = Some(GcPause::start());
        for string in std::mem::take(&mut walk.unfrozen) {
            walk.snapshots.push((string, snapshot(ruby, string)?));
        }
        walk.identities.clear();
        described = describe(ruby, args, &mut walk);
    }
    if let Some(items) = described {
        dump_into(&Plain::Array(items), &mut out);
        return Ok(out);
    }
    drop(gc_paused);
    let dumped = dump(ruby, ruby.ary_new_from_values(args).as_value())?;
    out.extend_from_slice(&dumped);
    Ok(out)
}

/// Keeps Ruby's GC from running while it lives (unless it was already
/// disabled, which it leaves as it was).
struct GcPause {
    was_disabled: bool,
}

impl GcPause {
    /// Disables the GC until the pause is dropped.
    fn start() -> GcPause {
        // SAFETY: rb_gc_disable only flips the GC's switch.
        let was_disabled =
            unsafe { rb_sys::rb_gc_disable() } == rb_sys::special_consts::Qtrue as VALUE;
        GcPause { was_disabled }
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if !self.was_disabled {
            // SAFETY: rb_gc_enable only flips the GC's switch.
            unsafe { rb_sys::rb_gc_enable() };
        }
    }
}

/// Describes every argument for the plain path, or `None` when one needs
/// Ruby's Marshal.
fn describe<'a>(ruby: &Ruby, args: &[Value], walk: &mut Walk) -> Option<Vec<Plain<'a>>> {
    args.iter()
        .map(|arg| plain(ruby, arg.as_raw(), 0, walk))
        .collect()
}

/// Returns a frozen snapshot of the String `string` that shares its bytes,
/// kept from the GC for as long as the snapshot lives.
///
/// Raises `NoMemoryError` when Ruby cannot allocate it.
fn snapshot(ruby: &Ruby, string: VALUE) -> Result<Arc<Frozen>, Error> {
    // SAFETY: `string` is a live String; a Ruby exception is caught.
    let raw = protect(|| unsafe { rb_sys::rb_str_new_frozen(string) })?;
    // SAFETY: `raw` is the String just returned, on this stack.
    let frozen = RString::from_value(unsafe { Value::from_raw(raw) })
        .ok_or_else(|| Error::new(ruby.exception_type_error(), "not a String"))?;
    // SAFETY: a frozen String's bytes never change, and a String this
    // large keeps them in a heap buffer that the GC does not move; the boxed
    // value keeps the String alive for as long as the snapshot.
    let (ptr, len) = unsafe {
        (
            rb_sys::RSTRING_PTR(raw).cast::<u8>(),
            rb_sys::RSTRING_LEN(raw),
        )
    };
    let len = usize::try_from(len).unwrap_or(0);
    let owner = Box::new(BoxValue::new(frozen));
    Ok(Arc::new(unsafe { Frozen::new(ptr, len, owner) }))
}

/// Dumps `value` with Ruby's Marshal.
///
/// Returns the bytes; raises what `Marshal.dump` raises.
pub fn dump(ruby: &Ruby, value: Value) -> Result<Vec<u8>, Error> {
    let nil = ruby.qnil().as_raw();
    // SAFETY: rb_marshal_dump is called with a live value and no port; a
    // Ruby exception is caught by `protect`.
    let raw = protect(|| unsafe { rb_sys::rb_marshal_dump(value.as_raw(), nil) })?;
    // SAFETY: `raw` is the String rb_marshal_dump returned, on this stack.
    let dumped = RString::from_value(unsafe { Value::from_raw(raw) }).ok_or_else(|| {
        Error::new(
            ruby.exception_type_error(),
            "Marshal.dump returned no String",
        )
    })?;
    // SAFETY: the bytes are copied before any other Ruby call can run.
    Ok(unsafe { dumped.as_slice() }.to_vec())
}

/// Loads `bytes` with `Marshal.load`.
///
/// Returns the value; raises what `Marshal.load` raises.
pub fn load(ruby: &Ruby, bytes: &[u8]) -> Result<Value, Error> {
    let string = ruby.str_from_slice(bytes);
    load_string(string)
}

/// Loads `bytes` with `Marshal.load` without copying them into Ruby first:
/// the String handed to Marshal points at `bytes`. Runs in the worker on
/// each item.
///
/// Returns the value; raises what `Marshal.load` raises.
pub fn load_borrowed(ruby: &Ruby, bytes: &[u8]) -> Result<Value, Error> {
    let len = std::os::raw::c_long::try_from(bytes.len()).unwrap_or(0);
    // SAFETY: the String only borrows `bytes`, which outlive this call;
    // Marshal.load copies what it keeps and nothing else holds the String
    // (it is frozen, so nothing can write through it).
    let string = unsafe {
        let raw = rb_sys::rb_str_new_static(bytes.as_ptr().cast(), len);
        rb_sys::rb_obj_freeze(raw);
        RString::from_value(Value::from_raw(raw))
    }
    .ok_or_else(|| Error::new(ruby.exception_type_error(), "not a String"))?;
    load_string(string)
}

/// Loads the argument Array of a large task that the worker read into
/// `dump`, a String it owns and gives up here. A plain dump is read without
/// Ruby's Marshal, and the large String that ends it (the common `yield
/// blob`) is not copied: it shares `dump`'s bytes. Runs in the worker.
///
/// Returns the arguments; raises what `Marshal.load` raises.
pub fn load_args_from(ruby: &Ruby, dump: RString) -> Result<RArray, Error> {
    // SAFETY: no Ruby code runs while the parse reads the bytes.
    let Some(parsed) = parse(unsafe { dump.as_slice() }) else {
        return RArray::try_convert(load_string(dump)?);
    };
    let tail = parsed
        .last_string
        .filter(|bytes| bytes.len() >= LARGE_STRING);
    RArray::try_convert(build(ruby, dump, &parsed.value, tail.as_ref())?)
}

/// Makes the Ruby value `parsed` describes, its bytes read from `dump`;
/// the String at `tail` shares them. The Ruby calls here raise nothing but
/// `NoMemoryError`, which, as in magnus, is left to unwind through these
/// frames.
fn build(
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

/// The encodings the plain path handles.
const ENCODINGS: [Encoding; 3] = [Encoding::Utf8, Encoding::UsAscii, Encoding::Binary];

/// Ruby's index of `encoding`.
fn encoding_index(encoding: Encoding) -> std::os::raw::c_int {
    // SAFETY: these return fixed indexes of built-in encodings.
    unsafe {
        match encoding {
            Encoding::Utf8 => rb_sys::rb_utf8_encindex(),
            Encoding::UsAscii => rb_sys::rb_usascii_encindex(),
            Encoding::Binary => rb_sys::rb_ascii8bit_encindex(),
        }
    }
}

fn load_string(string: RString) -> Result<Value, Error> {
    // SAFETY: rb_marshal_load reads the live String; a Ruby exception is
    // caught by `protect`.
    let raw = protect(|| unsafe { rb_sys::rb_marshal_load(string.as_raw()) })?;
    // SAFETY: `raw` is the value rb_marshal_load returned, on this stack.
    Ok(unsafe { Value::from_raw(raw) })
}

/// Describes `value` for the plain path, or `None` when Ruby's Marshal must
/// dump it. A large String is described by its snapshot when `walk` has
/// one, else recorded in `walk.unfrozen`.
///
/// No Ruby code runs while the result lives, so the borrowed bytes stay put.
fn plain<'a>(ruby: &Ruby, value: VALUE, depth: usize, walk: &mut Walk) -> Option<Plain<'a>> {
    use rb_sys::special_consts::{Qfalse, Qnil, Qtrue};
    if value == Qnil as VALUE {
        return Some(Plain::Nil);
    }
    if value == Qtrue as VALUE || value == Qfalse as VALUE {
        return Some(Plain::Bool(value == Qtrue as VALUE));
    }
    if rb_sys::FIXNUM_P(value) {
        // SAFETY: `value` is a Fixnum.
        let number: i64 = unsafe { rb_sys::FIX2LONG(value) };
        return FIXNUM_RANGE.contains(&number).then_some(Plain::Int(number));
    }
    if rb_sys::STATIC_SYM_P(value) {
        // SAFETY: `value` is a static Symbol.
        let symbol = unsafe { magnus::Symbol::from_value(Value::from_raw(value)) }?;
        return match symbol.name().ok()? {
            Cow::Borrowed(name) if name.is_ascii() => Some(Plain::Symbol(name.as_bytes())),
            _ => None,
        };
    }
    if rb_sys::SPECIAL_CONST_P(value) {
        return None;
    }
    // SAFETY: `value` is a heap object, so it has a builtin type and class.
    let (kind, class) = unsafe { (rb_sys::RB_BUILTIN_TYPE(value), rb_sys::rb_obj_class(value)) };
    if walk.identities.contains(&value) || unsafe { rb_sys::rb_ivar_count(value) } != 0 {
        return None;
    }
    match kind {
        ruby_value_type::RUBY_T_STRING if class == ruby.class_string().as_raw() => {
            walk.identities.push(value);
            // SAFETY: `value` is a String; its encoding index is readable.
            let index = unsafe { rb_sys::rb_enc_get_index(value) };
            let encoding = ENCODINGS
                .into_iter()
                .find(|encoding| encoding_index(*encoding) == index)?;
            // SAFETY: the String's bytes stay valid while no Ruby code runs,
            // which holds for the life of the plain description.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    rb_sys::RSTRING_PTR(value).cast::<u8>(),
                    usize::try_from(rb_sys::RSTRING_LEN(value)).ok()?,
                )
            };
            if bytes.len() < LARGE_STRING {
                return Some(Plain::Str(bytes, encoding));
            }
            match walk.snapshots.iter().find(|(string, _)| *string == value) {
                Some((_, frozen)) => Some(Plain::Large(Arc::clone(frozen), encoding)),
                None => {
                    walk.unfrozen.push(value);
                    Some(Plain::Str(bytes, encoding))
                }
            }
        }
        ruby_value_type::RUBY_T_ARRAY
            if class == ruby.class_array().as_raw() && depth < PLAIN_DEPTH =>
        {
            walk.identities.push(value);
            // SAFETY: `value` is an Array; its elements are read without any
            // Ruby code running in between.
            let elements = unsafe {
                std::slice::from_raw_parts(
                    rb_sys::RARRAY_CONST_PTR(value),
                    usize::try_from(rb_sys::RARRAY_LEN(value)).ok()?,
                )
            };
            elements
                .iter()
                .map(|element| plain(ruby, *element, depth + 1, walk))
                .collect::<Option<Vec<_>>>()
                .map(Plain::Array)
        }
        _ => None,
    }
}
