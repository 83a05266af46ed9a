//! What divvy asks of Ruby's garbage collector: to hold still while raw
//! references to Strings are in use, and to compact the heap before the
//! first fork.

use magnus::{prelude::*, Error, Ruby, Value};
use rb_sys::VALUE;

/// Keeps Ruby's GC from running while it lives (unless it was already
/// disabled, which it leaves as it was).
pub struct GcPause {
    was_disabled: bool,
}

impl GcPause {
    /// Disables the GC until the pause is dropped.
    pub fn start() -> GcPause {
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

/// Runs a full garbage collection and compacts the heap (where Ruby can)
/// so that workers forked next share more of the master's memory
/// copy-on-write. `DIVVY_COMPACT=0` skips it. Runs in the master, before
/// the first fork.
///
/// Raises what `GC.start` or `GC.compact` raise.
pub fn compact_heap(ruby: &Ruby) -> Result<(), Error> {
    if std::env::var_os("DIVVY_COMPACT").is_some_and(|value| value == "0") {
        return Ok(());
    }
    let gc = ruby.module_gc();
    let _: Value = gc.funcall("start", ())?;
    if gc.respond_to("compact", false)? {
        let _: Value = gc.funcall("compact", ())?;
    }
    Ok(())
}
