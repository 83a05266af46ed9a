//! Walking a Ruby value to describe it for the plain path: which values
//! Rust can dump itself, borrowing their bytes, and which large Strings
//! are referenced rather than copied.

use std::borrow::Cow;
use std::sync::Arc;

use magnus::{
    rb_sys::{protect, AsRawValue, FromRawValue},
    value::BoxValue,
    Error, RString, Ruby, Value,
};
use rb_sys::{ruby_value_type, VALUE};

use divvy_core::plain::{Plain, FIXNUM_RANGE};
use divvy_core::wire::payload::Frozen;

use super::{encoding_index, ENCODINGS, LARGE_STRING};

/// How deep nested arrays may go on the plain path.
const PLAIN_DEPTH: usize = 8;

/// What a walk over an item on the plain path has seen.
#[derive(Default)]
pub(super) struct Walk {
    /// Strings and Arrays seen so far: one seen twice needs Marshal's object
    /// links, so it takes the Ruby path.
    pub(super) identities: Vec<VALUE>,
    /// Large Strings with their frozen snapshots, made before the walk.
    pub(super) snapshots: Vec<(VALUE, Arc<Frozen>)>,
    /// Large Strings met that have no snapshot yet.
    pub(super) unfrozen: Vec<VALUE>,
}

impl Walk {
    /// Describes every argument for the plain path, or `None` when one
    /// needs Ruby's Marshal.
    pub(super) fn describe<'a>(&mut self, ruby: &Ruby, args: &[Value]) -> Option<Vec<Plain<'a>>> {
        args.iter()
            .map(|arg| plain(ruby, arg.as_raw(), 0, self))
            .collect()
    }
}

/// Returns a frozen snapshot of the String `string` that shares its bytes,
/// kept from the GC for as long as the snapshot lives.
///
/// Raises `NoMemoryError` when Ruby cannot allocate it.
pub(super) fn snapshot(ruby: &Ruby, string: VALUE) -> Result<Arc<Frozen>, Error> {
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
    // SAFETY: `owner` keeps the frozen String, whose `len` bytes at `ptr`
    // stay put and unchanged while it lives (see above).
    Ok(Arc::new(unsafe { Frozen::new(ptr, len, owner) }))
}

/// Describes `value` for the plain path, or `None` when Ruby's Marshal must
/// dump it. A large String is described by its snapshot when `walk` has
/// one, else recorded in `walk.unfrozen`.
///
/// No Ruby code runs while the result lives, so the borrowed bytes stay put.
fn plain<'a>(ruby: &Ruby, value: VALUE, depth: usize, walk: &mut Walk) -> Option<Plain<'a>> {
    if rb_sys::SPECIAL_CONST_P(value) {
        return immediate(value);
    }
    // SAFETY: `value` is a heap object, so it has a builtin type and class.
    let (kind, class) = unsafe { (rb_sys::RB_BUILTIN_TYPE(value), rb_sys::rb_obj_class(value)) };
    // SAFETY: a heap object's instance variables can be counted.
    if walk.identities.contains(&value) || unsafe { rb_sys::rb_ivar_count(value) } != 0 {
        return None;
    }
    match kind {
        ruby_value_type::RUBY_T_STRING if class == ruby.class_string().as_raw() => {
            walk.identities.push(value);
            string(value, walk)
        }
        ruby_value_type::RUBY_T_ARRAY
            if class == ruby.class_array().as_raw() && depth < PLAIN_DEPTH =>
        {
            walk.identities.push(value);
            array(ruby, value, depth, walk)
        }
        _ => None,
    }
}

/// Describes an immediate value: nil, true, false, a small Integer or an
/// ASCII static Symbol; `None` for any other.
fn immediate<'a>(value: VALUE) -> Option<Plain<'a>> {
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
    None
}

/// Describes the plain String `value` by its bytes and encoding, or by its
/// snapshot when it is large (recording it in `walk.unfrozen` when it has
/// none yet); `None` for an encoding the plain path does not write.
fn string<'a>(value: VALUE, walk: &mut Walk) -> Option<Plain<'a>> {
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

/// Describes the plain Array `value` (at nesting `depth`) by its elements,
/// or `None` when one of them is not plain.
fn array<'a>(ruby: &Ruby, value: VALUE, depth: usize, walk: &mut Walk) -> Option<Plain<'a>> {
    // SAFETY: `value` is an Array; its elements are read without any Ruby
    // code running in between.
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
