//! Marshal dumps and loads of the values that cross the pipes. Plain items
//! (see `divvy_core::plain`) are dumped by walking them in Rust (`walk`)
//! and large ones read back the same way (`build`); everything else goes
//! through Ruby's own Marshal.

mod build;
mod walk;

use std::cell::RefCell;

use build::Source;

use magnus::{
    prelude::*,
    rb_sys::{protect, AsRawValue, FromRawValue},
    value::BoxValue,
    Error, RArray, RString, Ruby, Value,
};

use divvy_core::plain::{dump_into, parse, parse_value, Encoding, ParsedDump, Plain};
use divvy_core::wire::frame::ResultBytes;
use divvy_core::wire::landing::Landing;
use divvy_core::wire::payload::Payload;

use crate::vm::gc::GcPause;

/// Strings at least this long are referenced by a payload, not copied.
pub const LARGE_STRING: usize = 64 * 1024;

/// Dumps the argument list `args` as a Marshal dump of an Array into
/// `buffer` (cleared first; pass a recycled one to spare an allocation).
/// Large plain Strings are not copied: the payload refers to a frozen
/// snapshot of each, which shares the String's bytes (Ruby copies them only
/// should the String be changed later), so what is sent is the item as it
/// was yielded.
///
/// Returns the payload, and whether it is a plain dump (which always loads
/// back; one Ruby's Marshal wrote may not, when a `marshal_load` raises);
/// raises what `Marshal.dump` raises (`TypeError` for a Proc, an IO or a
/// singleton).
pub fn dump_args(ruby: &Ruby, args: &[Value], buffer: Vec<u8>) -> Result<(Payload, bool), Error> {
    let mut out = Payload::from_buffer(buffer);
    if dump_plain(ruby, args, |items| {
        dump_into(&Plain::Array(items), &mut out)
    })? {
        return Ok((out, true));
    }
    let dumped = dump(ruby, ruby.ary_new_from_values(args).as_value())?;
    out.extend_from_slice(&dumped);
    Ok((out, false))
}

/// Describes `values` for the plain path, each large String by a frozen
/// snapshot that shares its bytes, and hands the description to `write`.
///
/// Returns false, without calling `write`, when a value needs Ruby's
/// Marshal; raises `NoMemoryError` when a snapshot cannot be made.
fn dump_plain(
    ruby: &Ruby,
    values: &[Value],
    write: impl for<'a> FnOnce(Vec<Plain<'a>>),
) -> Result<bool, Error> {
    let mut walk = walk::Walk::default();
    let mut described = walk.describe(ruby, values);
    let mut _gc_paused = None;
    if described.is_some() && !walk.unfrozen.is_empty() {
        // The Strings found are held here as raw VALUEs, which a compacting
        // GC could move, so the GC waits until the snapshots are made (and
        // registered) and the dump written. Pausing it first finishes a
        // collection under way, which under `GC.auto_compact` moves objects
        // (a String inside an Array is not pinned): so the Strings are found
        // again once it is paused. Snapshots allocate, so the description
        // is made again afterwards rather than trusted across them.
        drop(described);
        _gc_paused = Some(GcPause::start());
        walk = walk::Walk::default();
        drop(walk.describe(ruby, values));
        for string in std::mem::take(&mut walk.unfrozen) {
            walk.snapshots.push((string, walk::snapshot(ruby, string)?));
        }
        walk.identities.clear();
        described = walk.describe(ruby, values);
    }
    Ok(described.map(write).is_some())
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
    let parsed = parse(unsafe { dump.as_slice() });
    RArray::try_convert(load_owned(ruby, dump, parsed)?)
}

/// Loads the value `dump` holds, a String the caller gives up, from
/// `parsed`, its plain parse, or with `Marshal.load` when it has none. The
/// large String that ends a plain dump shares `dump`'s bytes.
///
/// Returns the value; raises what `Marshal.load` raises.
fn load_owned(ruby: &Ruby, dump: RString, parsed: Option<ParsedDump>) -> Result<Value, Error> {
    let Some(parsed) = parsed else {
        return load_string(dump);
    };
    let tail = parsed
        .last_string
        .filter(|bytes| bytes.len() >= LARGE_STRING);
    let source = Source::Owned {
        dump,
        tail: tail.as_ref(),
    };
    build::build(ruby, &source, &parsed.value)
}

/// Dumps what `perform` returned, in the worker: a plain value (see
/// `divvy_core::plain`) by walking it in Rust, its large Strings referenced
/// by frozen snapshots rather than copied (the answers keep them until the
/// master has read them); anything else with Ruby's Marshal.
///
/// Returns the dump; raises what `Marshal.dump` raises.
pub fn dump_result(ruby: &Ruby, value: Value) -> Result<ResultBytes, Error> {
    let mut out = Payload::default();
    let plain = dump_plain(ruby, &[value], |mut described| {
        if let Some(plain) = described.pop() {
            dump_into(&plain, &mut out);
        }
    })?;
    Ok(match plain {
        true if out.has_references() => ResultBytes::Dumped(out),
        true => ResultBytes::Owned(out.into_buffer()),
        false => ResultBytes::Owned(dump(ruby, value)?),
    })
}

/// Loads a result the master received: a plain dump is read without Ruby's
/// Marshal, anything else with it. A large one landed in a String of its
/// own (`land_in_string`), whose bytes a large String result then shares.
///
/// Returns the value; raises what `Marshal.load` raises.
pub fn load_result(ruby: &Ruby, result: ResultBytes) -> Result<Value, Error> {
    match result {
        ResultBytes::Owned(_) | ResultBytes::Dumped(_) => {
            let bytes = result.to_bytes();
            match parse_value(&bytes) {
                Some(parsed) => build::build(ruby, &Source::Bytes(&bytes), &parsed.value),
                None => load(ruby, &bytes),
            }
        }
        ResultBytes::Landed(landing) => {
            let dump = landed_dump(ruby, landing)?;
            // SAFETY: no Ruby code runs while the parse reads the bytes.
            let parsed = parse_value(unsafe { dump.as_slice() });
            load_owned(ruby, dump, parsed)
        }
    }
}

thread_local! {
    /// Why `land_in_string` could not make room, until `landing_failure`
    /// raises it.
    static LANDING_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes room for a large result or item to be read into: a String
/// (`hidden_dump`) kept from the GC (and from moving) while the landing
/// lives; `landed_dump` takes it over. Runs in the master (results) and
/// in a worker (items).
///
/// Returns `None` when Ruby cannot allocate it, and keeps why for
/// `landing_failure`: its reader must not go on as if nothing happened,
/// for Ruby is out of memory.
pub fn land_in_string(len: usize) -> Option<Landing> {
    let ruby = Ruby::get().ok()?;
    match hidden_dump(&ruby, len) {
        Ok((string, room)) => {
            let owner = Box::new(BoxValue::new(string));
            // SAFETY: nothing but the landing refers to the String, and
            // Ruby code cannot find it, so nothing else reads or writes the
            // room while the boxed value keeps it (see `hidden_dump`).
            Some(unsafe { Landing::new(room, len, owner) })
        }
        Err(error) => {
            let reason = format!("cannot make room for a dump of {len} bytes: {error}");
            LANDING_FAILURE.with(|failure| *failure.borrow_mut() = Some(reason));
            None
        }
    }
}

/// Raises, as a `NoMemoryError`, why `land_in_string` last failed, if it
/// did since the last call. Runs where `land_in_string` runs, after each
/// read that may have landed.
pub fn landing_failure(ruby: &Ruby) -> Result<(), Error> {
    match LANDING_FAILURE.with(|failure| failure.borrow_mut().take()) {
        Some(reason) => Err(Error::new(ruby.exception_no_mem_error(), reason)),
        None => Ok(()),
    }
}

/// Takes over the String `land_in_string` made for `landing`, shown to
/// Ruby again as the bytes read into it.
///
/// Returns the String; raises `TypeError` for a landing another lander
/// made.
pub fn landed_dump(ruby: &Ruby, landing: Landing) -> Result<RString, Error> {
    let len = landing.bytes().len();
    let dump = *landing
        .into_owner()
        .downcast::<BoxValue<RString>>()
        .map_err(|_| Error::new(ruby.exception_type_error(), "a dump landed elsewhere"))?;
    let dump = *dump;
    // SAFETY: the String, on this stack now, holds the `len` bytes read.
    unsafe { reveal_dump(dump, len) };
    Ok(dump)
}

/// Makes a String with room for `len` bytes, for a large dump to be read
/// into from a pipe, hidden from Ruby code until `reveal_dump` (no hook or
/// trap can find it through `ObjectSpace` and change it meanwhile). A
/// String this large keeps its room in a heap buffer that stays put while
/// the String lives.
///
/// Returns the String and where its room starts; raises `NoMemoryError`
/// when Ruby cannot allocate it.
fn hidden_dump(ruby: &Ruby, len: usize) -> Result<(RString, *mut u8), Error> {
    let capacity = std::os::raw::c_long::try_from(len).unwrap_or(std::os::raw::c_long::MAX);
    // SAFETY: allocating may raise NoMemoryError, which `protect` catches.
    let raw = protect(|| unsafe { rb_sys::rb_str_buf_new(capacity) })?;
    // SAFETY: hiding only clears the class of the String just made.
    unsafe { rb_sys::rb_obj_hide(raw) };
    // SAFETY: `raw` is the String just made, on this stack.
    let string = RString::from_value(unsafe { Value::from_raw(raw) })
        .ok_or_else(|| Error::new(ruby.exception_type_error(), "not a String"))?;
    // SAFETY: `raw` is a live String.
    let room = unsafe { rb_sys::RSTRING_PTR(raw) }.cast_mut().cast::<u8>();
    Ok((string, room))
}

/// Shows a String made by `hidden_dump` to Ruby again, as the `len` bytes
/// read into it.
///
/// # Safety
/// All `len` bytes of its room must have been written.
unsafe fn reveal_dump(dump: RString, len: usize) {
    rb_sys::rb_obj_reveal(dump.as_raw(), rb_sys::rb_cString);
    rb_sys::rb_str_set_len(dump.as_raw(), len as std::os::raw::c_long);
}

/// The encodings the plain path handles.
pub(crate) const ENCODINGS: [Encoding; 3] = [Encoding::Utf8, Encoding::UsAscii, Encoding::Binary];

/// Ruby's index of `encoding`.
pub(crate) fn encoding_index(encoding: Encoding) -> std::os::raw::c_int {
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
