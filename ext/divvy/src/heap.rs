//! How a worker's malloc treats the memory of large items. Every large
//! String item is a fresh allocation in the worker; glibc's defaults give
//! freed megabytes back to the system after each garbage collection, so the
//! next items fault the same pages in again, one by one, and that cost more
//! than moving the bytes. A worker that has received a large item keeps
//! freed memory for reuse instead.

use std::sync::atomic::{AtomicBool, Ordering};

/// Allocations below this come from the heap, whose freed memory is reused.
const MMAP_THRESHOLD: i32 = 32 * 1024 * 1024;
/// Free memory at the top of the heap kept rather than given back.
const TRIM_THRESHOLD: i32 = 256 * 1024 * 1024;

static KEEPING: AtomicBool = AtomicBool::new(false);

/// Makes this process keep the memory it frees for its next allocations
/// (up to 256 MB of it) instead of returning it to the system. Does
/// nothing after the first call, or where malloc is not glibc's.
/// Runs in a worker, on its first large item.
pub fn keep_freed_memory() {
    if KEEPING.swap(true, Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; both are
    // within the ranges glibc accepts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
