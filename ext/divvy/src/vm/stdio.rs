//! The standard streams as Ruby sees them (`$stdout`, `$stderr`), so that
//! divvy's reports go wherever the user pointed them.

use magnus::{prelude::*, rb_sys::FromRawValue, value::LazyId, Error, Ruby, Value};

static FLUSH: LazyId = LazyId::new("flush");
static WRITE: LazyId = LazyId::new("write");

/// The current `$stdout` and `$stderr`: Ruby keeps them in these globals.
fn streams() -> [Value; 2] {
    // SAFETY: rb_stdout and rb_stderr always hold live IO-like objects,
    // read here on a Ruby thread.
    unsafe {
        [
            Value::from_raw(std::ptr::addr_of!(rb_sys::rb_stdout).read()),
            Value::from_raw(std::ptr::addr_of!(rb_sys::rb_stderr).read()),
        ]
    }
}

/// Writes one `divvy: ...` line to `$stderr`.
///
/// Raises what `$stderr.write` raises.
pub fn say(_ruby: &Ruby, line: &str) -> Result<(), Error> {
    let [_, stderr] = streams();
    let _: Value = stderr.funcall(*WRITE, (format!("divvy: {line}\n"),))?;
    Ok(())
}

/// Flushes `$stdout` and `$stderr`, both even when the first fails: used
/// where output that cannot be written matters (a worker's items).
///
/// Raises the first error a flush raised.
pub fn flush_streams() -> Result<(), Error> {
    let mut first = Ok(());
    for stream in streams() {
        if let Err(error) = stream.funcall::<_, _, Value>(*FLUSH, ()) {
            first = first.and(Err(error));
        }
    }
    first
}

/// Flushes `$stdout` and `$stderr`, ignoring errors: used before the master
/// sleeps and before a worker exits, where a closed stream is no reason to
/// stop.
pub fn flush_all() {
    for stream in streams() {
        let _ = stream.funcall::<_, _, Value>(*FLUSH, ());
    }
}
