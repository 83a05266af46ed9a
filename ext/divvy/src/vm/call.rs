//! Calling a Ruby method with its arguments in an Array, in a way the
//! garbage collector cannot break.

use magnus::{
    rb_sys::{protect, AsRawId, AsRawValue, FromRawValue},
    value::IntoId,
    Error, RArray, Ruby, Value,
};

/// Calls `receiver.method(*args)`, private methods included (as
/// `funcall` does). Ruby copies the arguments onto this thread's stack
/// before the call (`rb_apply`), where the GC sees and pins them: a slice
/// of the Array's elements would be read only after the method lookup,
/// which allocates and so may collect an Array that nothing else holds
/// (and, on Ruby 3.1, move its elements out of the transient heap under a
/// method written in C). Runs in the master and in the workers.
///
/// Returns what the method returned; raises what it raises.
pub fn apply(
    ruby: &Ruby,
    receiver: Value,
    method: impl IntoId,
    args: RArray,
) -> Result<Value, Error> {
    let method = method.into_id_with(ruby).as_raw();
    let (receiver, args) = (receiver.as_raw(), args.as_raw());
    // SAFETY: `receiver` and `args` are live values, which the call keeps
    // on its stack; a Ruby exception is caught by `protect`.
    let returned = protect(|| unsafe { rb_sys::rb_apply(receiver, method, args) })?;
    // SAFETY: `returned` is the live value the method just returned.
    Ok(unsafe { Value::from_raw(returned) })
}
