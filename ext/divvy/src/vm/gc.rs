//! What divvy asks of Ruby's garbage collector: to see the values that
//! Rust keeps, to hold still while raw references to Strings are in use,
//! and to compact a large heap before the first fork.

use magnus::{
    rb_sys::AsRawValue,
    value::{BoxValue, ReprValue},
    Error, Ruby, Value,
};
use rb_sys::VALUE;

/// Keeps `value` where the GC looks for it (this thread's stack) up to
/// here, as C's `RB_GC_GUARD` does: call it after a call that may allocate,
/// and so collect, while the other copies of `value` were only where the
/// GC does not look (a Rust struct on the heap, a `Vec`, a dead local).
pub fn guard<T: ReprValue>(value: T) {
    let raw = value.as_raw();
    let _ = rb_sys::rb_gc_guard!(raw);
}

/// Returns `value` in a box registered with the GC, which keeps it alive
/// and in place (pinned) for as long as the box lives. Registering
/// allocates, so the GC may run before the box is registered: `value` is
/// guarded until it is.
pub fn register<T: ReprValue>(value: T) -> BoxValue<T> {
    let boxed = BoxValue::new(value);
    guard(value);
    boxed
}

/// Keeps Ruby's GC from running while it lives (unless it was already
/// disabled, which it leaves as it was).
pub struct GcPause {
    was_disabled: bool,
}

impl GcPause {
    /// Disables the GC until the pause is dropped. Ruby first finishes a
    /// collection under way, which may move objects (`GC.auto_compact`):
    /// raw references to movable objects are to be taken after this.
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

/// Heaps with fewer live objects than this are not compacted: the memory
/// the workers could share more of is under a few megabytes, and the
/// compaction (two full collections' worth of work) would be most of a
/// short run's start-up.
const COMPACT_FROM_LIVE_SLOTS: u64 = 100_000;

/// Compacts the heap (a full garbage collection that also moves objects
/// together, where Ruby can) so that workers forked next share more of the
/// master's memory copy-on-write. Skipped for a heap of fewer than
/// `COMPACT_FROM_LIVE_SLOTS` live objects, and when `DIVVY_COMPACT=0`.
/// Runs in the master, before the first fork.
///
/// Raises what `GC.stat` or `GC.compact` raise.
pub fn compact_heap(ruby: &Ruby) -> Result<(), Error> {
    if std::env::var_os("DIVVY_COMPACT").is_some_and(|value| value == "0") {
        return Ok(());
    }
    let gc = ruby.module_gc();
    let live: u64 = gc.funcall("stat", (ruby.to_symbol("heap_live_slots"),))?;
    if live < COMPACT_FROM_LIVE_SLOTS {
        return Ok(());
    }
    // GC.compact runs a full collection itself: no GC.start before it.
    if gc.respond_to("compact", false)? {
        let _: Value = gc.funcall("compact", ())?;
    } else {
        let _: Value = gc.funcall("start", ())?;
    }
    Ok(())
}
