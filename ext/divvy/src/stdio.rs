//! The standard streams as Ruby sees them (`$stdout`, `$stderr`), so that
//! divvy's reports go wherever the user pointed them.

use std::ffi::CString;

use magnus::{prelude::*, rb_sys::protect, Error, Ruby, Value};

fn global(name: &str) -> Result<Value, Error> {
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: rb_gv_get reads a global variable by its NUL-terminated name.
    let raw = protect(|| unsafe { rb_sys::rb_gv_get(name.as_ptr()) })?;
    // SAFETY: `raw` is a live VALUE just returned by Ruby, on this stack.
    Ok(unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) })
}

/// Writes one `divvy: ...` line to `$stderr`.
///
/// Raises what `$stderr.write` raises.
pub fn say(_ruby: &Ruby, line: &str) -> Result<(), Error> {
    let _: Value = global("$stderr")?.funcall("write", (format!("divvy: {line}\n"),))?;
    Ok(())
}

/// Flushes `$stdout` and `$stderr`, ignoring errors: used before the master
/// sleeps and on the way out of a worker, where a closed stream is no reason
/// to stop.
pub fn flush_all() {
    for name in ["$stdout", "$stderr"] {
        let _ = global(name).and_then(|io| io.funcall::<_, _, Value>("flush", ()));
    }
}
