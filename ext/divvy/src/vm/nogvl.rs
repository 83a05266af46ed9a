//! Blocking calls made with the GVL released, so other Ruby threads and
//! signal traps run while the master waits on its workers.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use magnus::{
    rb_sys::{protect, AsRawValue},
    Error, Ruby,
};

use divvy_core::wire::wake::wake_fd;

use super::errors::divvy_error;

/// What became of the function run without the GVL.
enum Outcome<R> {
    /// Ruby skipped it: an interrupt was already pending.
    Skipped,
    /// It returned this.
    Returned(R),
    /// It panicked (a bug), caught before it could cross the C frame.
    Panicked,
}

struct Call<F, R> {
    func: Option<F>,
    outcome: Outcome<R>,
}

unsafe extern "C" fn trampoline<F, R>(data: *mut c_void) -> *mut c_void
where
    F: FnOnce() -> R,
{
    // SAFETY: `data` is the `Call` that `without_gvl` keeps alive for the
    // duration of the call.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    if let Some(func) = call.func.take() {
        // A panic must not cross the C frame.
        call.outcome = match catch_unwind(AssertUnwindSafe(func)) {
            Ok(result) => Outcome::Returned(result),
            Err(_) => Outcome::Panicked,
        };
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn unblock(data: *mut c_void) {
    wake_fd(data as isize as RawFd);
}

/// Runs `func` with the GVL released. Ruby interrupts it (a signal, a
/// `Thread#raise`) by writing to `wake_write_fd`, so `func` must be a wait
/// that also polls that pipe's read end, and it runs no Ruby code.
///
/// Returns `func`'s result, or `None` when Ruby skipped `func` because an
/// interrupt was already pending. Raises whatever Ruby raises when it
/// handles interrupts afterwards (an `Interrupt`, an exception from a
/// trap), and `Divvy::Error` should `func` panic (a bug in divvy).
pub fn without_gvl<F, R>(ruby: &Ruby, wake_write_fd: RawFd, func: F) -> Result<Option<R>, Error>
where
    F: FnOnce() -> R,
{
    let mut call = Call {
        func: Some(func),
        outcome: Outcome::Skipped,
    };
    let data: *mut Call<F, R> = &mut call;
    protect(|| {
        // SAFETY: `call` outlives the call; the unblock function only
        // writes a byte to a pipe, which is async-signal-safe. Saying so
        // (RB_NOGVL_UBF_ASYNC_SAFE) lets Ruby call it from its signal
        // handler; otherwise, with no other Ruby thread, Ruby starts a
        // helper Thread on every call just to deliver signals.
        unsafe {
            rb_sys::rb_nogvl(
                Some(trampoline::<F, R>),
                data.cast(),
                Some(unblock),
                wake_write_fd as isize as *mut c_void,
                rb_sys::RB_NOGVL_UBF_ASYNC_SAFE as std::os::raw::c_int,
            );
        }
        ruby.qnil().as_raw()
    })?;
    match call.outcome {
        Outcome::Skipped => Ok(None),
        Outcome::Returned(result) => Ok(Some(result)),
        Outcome::Panicked => Err(divvy_error(ruby, "internal error: a wait panicked")),
    }
}
