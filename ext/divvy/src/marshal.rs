//! Marshal dumps and loads of the values that cross the pipes.

use magnus::{prelude::*, value::Lazy, Error, RModule, RString, Ruby, Value};

static MARSHAL: Lazy<RModule> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get("Marshal")
        .expect("Marshal is part of Ruby")
});

/// Dumps `value` with `Marshal.dump`.
///
/// Returns the bytes; raises what `Marshal.dump` raises (`TypeError` for a
/// Proc, an IO or a singleton).
pub fn dump(ruby: &Ruby, value: Value) -> Result<Vec<u8>, Error> {
    let dumped: RString = ruby.get_inner(&MARSHAL).funcall("dump", (value,))?;
    // SAFETY: the bytes are copied before any other Ruby call can run.
    Ok(unsafe { dumped.as_slice() }.to_vec())
}

/// Loads `bytes` with `Marshal.load`.
///
/// Returns the value; raises what `Marshal.load` raises.
pub fn load(ruby: &Ruby, bytes: &[u8]) -> Result<Value, Error> {
    ruby.get_inner(&MARSHAL)
        .funcall("load", (ruby.str_from_slice(bytes),))
}
