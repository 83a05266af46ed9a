//! Naming a worker's crash. Ruby's own handler for SIGSEGV, SIGBUS, SIGILL
//! and SIGFPE prints its crash report and aborts, so the worker would seem
//! to die by SIGABRT. A handler of the worker's, in front of Ruby's, first
//! records the signal in the counters the master reads, then hands over
//! to Ruby's handler, whose report stays.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use divvy_core::wire::counter::Counter;

/// The signals of a crash.
const CRASH_SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// The worker's counters, for the handler.
static COUNTER: AtomicPtr<Counter> = AtomicPtr::new(std::ptr::null_mut());

/// The handlers in place before the worker's (Ruby's), and their flags.
static PREVIOUS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static PREVIOUS_FLAGS: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// Installs the worker's crash handlers, recording into `counter`. Runs
/// in the worker, once, right after the fork.
pub fn name_crashes(counter: &Counter) {
    // The worker never returns from `worker::run`, so `counter` (in the
    // master's link, on the stack below) outlives every crash.
    COUNTER.store((counter as *const Counter).cast_mut(), Ordering::SeqCst);
    for (slot, signo) in CRASH_SIGNALS.into_iter().enumerate() {
        let mut previous = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: sigaction only reads the handler in place into `previous`.
        if unsafe { libc::sigaction(signo, std::ptr::null(), previous.as_mut_ptr()) } != 0 {
            continue;
        }
        // SAFETY: sigaction succeeded, so `previous` is filled in.
        let previous = unsafe { previous.assume_init() };
        PREVIOUS[slot].store(previous.sa_sigaction, Ordering::SeqCst);
        PREVIOUS_FLAGS[slot].store(previous.sa_flags, Ordering::SeqCst);
        let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a zeroed sigaction is valid; the handler has the
        // signature SA_SIGINFO asks for, and runs on Ruby's alternate stack
        // like Ruby's own (SA_ONSTACK), so a stack overflow still reaches it.
        unsafe {
            let action = action.as_mut_ptr();
            (*action).sa_sigaction = on_crash as *const () as usize;
            (*action).sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut (*action).sa_mask);
            libc::sigaction(signo, action, std::ptr::null_mut());
        }
    }
}

/// Records `signo` and hands over to the handler that was there before.
/// Async-signal-safe: atomic loads and a store, then a call.
extern "C" fn on_crash(signo: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let counter = COUNTER.load(Ordering::SeqCst);
    if !counter.is_null() {
        // SAFETY: the counters outlive the worker (see `name_crashes`).
        unsafe { (*counter).set_fatal_signal(signo) };
    }
    let Some(slot) = CRASH_SIGNALS.iter().position(|crash| *crash == signo) else {
        return;
    };
    let handler = PREVIOUS[slot].load(Ordering::SeqCst);
    if handler <= libc::SIG_IGN {
        // SAFETY: puts the default action back; returning re-runs the
        // faulting instruction, which then ends the process.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
        return;
    }
    if PREVIOUS_FLAGS[slot].load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        handler(signo, info, context);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes the signal
        // number only.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        handler(signo);
    }
}
