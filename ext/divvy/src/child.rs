//! The worker process: what a forked child runs until it exits. It never
//! returns into the master's Ruby frames: it leaves with `_exit` after
//! flushing `$stdout` and `$stderr`, so no `ensure` block or `at_exit`
//! handler of the master runs here.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use magnus::{
    prelude::*,
    rb_sys::{protect, AsRawValue, FromRawValue},
    typed_data::Obj,
    Error, RArray, RString, Ruby, Value,
};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::getppid;

use crate::answers;
use crate::arity::Arity;
use crate::errors::failure_of;
use crate::link::WorkerEnds;
use crate::marshal;
use crate::progress::Progress;
use crate::protocol::{Decoder, Frame};
use crate::signals::install_worker_traps;
use crate::stdio::{flush_all, say};
use crate::title;
use crate::worker::Worker;

/// True while this worker runs `perform`.
static PERFORMING: AtomicBool = AtomicBool::new(false);
/// True once INT or QUIT asked this worker to leave after its current item.
static LEAVE_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Everything a freshly forked worker needs.
pub struct Child<'a> {
    /// The user's task object.
    pub task: Value,
    /// The worker's own `Divvy::Worker`.
    pub worker: Obj<Worker>,
    /// The method that performs an item (`perform`, or `process` for
    /// scripts written for divvy 1.1).
    pub perform_method: &'a str,
    /// The worker's ends of its pipes.
    pub ends: WorkerEnds,
    /// Descriptors inherited from the master that the worker must close.
    pub inherited_fds: Vec<RawFd>,
    /// The master's pid, to notice a master that died before the fork
    /// finished.
    pub master_pid: i32,
    /// The counter of finished items the master reads.
    pub progress: &'a Progress,
    /// The Ruby id of `perform_method`.
    pub perform_id: rb_sys::ID,
    /// True when the task has a `completed` hook: each item's return value
    /// then travels back to the master.
    pub wants_results: bool,
    /// Resident memory in bytes past which the worker leaves after its
    /// current item.
    pub max_memory: Option<u64>,
    /// True under `-v`.
    pub verbose: bool,
    /// The script's name, for the process title.
    pub script: String,
}

/// Runs the worker: boots, performs items until its task pipe ends, exits.
/// Runs in the worker process only and never returns.
pub fn run(ruby: &Ruby, child: Child<'_>) -> ! {
    for fd in &child.inherited_fds {
        // SAFETY: these descriptors belong to the master's side; nothing in
        // this process uses them.
        unsafe { libc::close(*fd) };
    }
    crate::wake::forget();
    for (stream, fd) in &child.ends.output_tx {
        // SAFETY: puts the pipe in place of stdout/stderr; both are open.
        unsafe { libc::dup2(fd.as_raw_fd(), *stream) };
    }
    // Backstop for a master that dies without closing our pipe (SIGKILL):
    // the kernel kills us. Checked after, in case it already died.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if getppid().as_raw() != child.master_pid {
        leave(1);
    }
    let worker = child.worker;
    worker.started(std::process::id() as i32, true);
    crate::worker::set_current(worker);
    title::set(ruby, &title::worker(worker.number(), &child.script));
    answers::open(child.ends.result_tx.as_raw_fd());
    let label = format!("worker {} (pid {})", worker.number(), std::process::id());

    if let Err(error) = install_worker_traps(ruby, on_interrupt) {
        report_and_leave(ruby, &format!("{label} could not trap signals"), &error);
    }
    if let Err(error) = child.task.funcall::<_, _, Value>("after_fork", (worker,)) {
        report_and_leave(ruby, &format!("{label} failed in after_fork"), &error);
    }
    if !answers::send(&Frame::Ready) {
        leave(1);
    }

    // Frames below this depth are the master's, inherited through fork:
    // they are cut from the backtraces reported for failed items.
    let inherited_frames = ruby
        .module_kernel()
        .funcall::<_, _, magnus::RArray>("caller", (0,))
        .map(|frames| frames.len())
        .unwrap_or(0);
    let arity = perform_arity(child.task, child.perform_method);
    let mut decoder = Decoder::new();
    loop {
        let incoming = match wait_for_task(ruby, &child.ends.task_rx, &mut decoder) {
            Ok(Incoming::End) => {
                answers::flush();
                leave(0)
            }
            Ok(incoming) => incoming,
            Err(error) => report_and_leave(ruby, &format!("{label} stopped"), &error),
        };
        let task = match incoming {
            Incoming::Large(len) => {
                match read_large_task(ruby, &child.ends.task_rx, &mut decoder, len) {
                    Ok(dump) => Task::Read(dump),
                    Err(error) => report_and_leave(ruby, &format!("{label} stopped"), &error),
                }
            }
            _ => match decoder.next_task() {
                Ok(Some(payload)) => Task::Buffered(payload),
                Ok(None) => continue,
                Err(error) => {
                    let error = crate::errors::divvy_error(
                        ruby,
                        format!("malformed frame from the master: {error}"),
                    );
                    report_and_leave(ruby, &format!("{label} stopped"), &error)
                }
            },
        };
        if task.len() >= marshal::LARGE_STRING && child.max_memory.is_none() {
            // Not under --max-memory: memory kept for reuse would count
            // against the limit.
            crate::heap::keep_freed_memory();
        }
        PERFORMING.store(true, Ordering::SeqCst);
        let answered = match perform(ruby, &child, arity, task) {
            Ok(answer) => {
                // Counted before its answer is queued: should the worker
                // die with the answer unsent, the master still knows.
                child.progress.record();
                answers::queue(&answer)
            }
            Err(error) => {
                let mut failure = failure_of(&error);
                let own = failure.backtrace.len().saturating_sub(inherited_frames);
                failure.backtrace.truncate(own);
                // Sent before it is counted: a failure is never mistaken
                // for a performed item.
                let sent = answers::send(&Frame::Failed(failure));
                child.progress.record();
                sent
            }
        };
        if !answered {
            leave(1);
        }
        if let Some(limit) = child.max_memory {
            let resident = resident_bytes();
            if resident > limit {
                LEAVE_REQUESTED.store(true, Ordering::SeqCst);
                if child.verbose {
                    let _ = say(
                        ruby,
                        &format!(
                            "{label} retires: {} MB resident, over {} MB",
                            resident >> 20,
                            limit >> 20
                        ),
                    );
                }
            }
        }
        // Cleared only once the answer is queued: a trap that runs during a
        // flush must not leave with the item performed but unanswered.
        PERFORMING.store(false, Ordering::SeqCst);
        if LEAVE_REQUESTED.load(Ordering::SeqCst) {
            say_bye_and_leave();
        }
    }
}

/// Returns this process's resident memory in bytes (0 if unreadable).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    pages * page_size
}

/// Reads the parameters of the task's perform method; `None` when Ruby
/// cannot tell (a `method_missing` task), and the call decides.
fn perform_arity(task: Value, method: &str) -> Option<Arity> {
    let parameters: RArray = task
        .funcall::<_, _, Value>("method", (method,))
        .and_then(|method| method.funcall("parameters", ()))
        .ok()?;
    let kinds: Vec<String> = parameters
        .into_iter()
        .filter_map(|pair| RArray::try_convert(pair).ok())
        .filter_map(|pair| pair.entry::<magnus::Symbol>(0).ok())
        .filter_map(|kind| kind.name().ok().map(|name| name.into_owned()))
        .collect();
    Some(Arity::from_kinds(kinds.iter().map(String::as_str)))
}

/// Performs one item. Returns the answer for the master: `Done`, or
/// `Result` with the Marshal dump of what `perform` returned when the task
/// wants results.
///
/// Raises what `perform` raises, an `ArgumentError` for an item of the
/// wrong arity, and a `TypeError` for a result Marshal cannot dump.
fn perform(
    ruby: &Ruby,
    child: &Child<'_>,
    arity: Option<Arity>,
    task: Task<'_>,
) -> Result<Frame, Error> {
    let args = match task {
        Task::Buffered(payload) => RArray::try_convert(marshal::load_borrowed(ruby, payload)?)?,
        Task::Read(dump) => marshal::load_args_from(ruby, dump)?,
    };
    if let Some(arity) = arity.filter(|arity| !arity.accepts(args.len())) {
        let class_name = unsafe { child.task.classname() }.into_owned();
        let message = format!(
            "{class_name}#{} takes {} but the item has {}",
            child.perform_method,
            arity.describe(),
            args.len()
        );
        return Err(ruby.exception_arg_error().new_instance((message,))?.into());
    }
    let task = child.task.as_raw();
    let method = child.perform_id;
    let returned = protect(|| {
        // SAFETY: `args` stays on this stack frame, so its elements are
        // live for the call; a Ruby exception is caught by `protect`.
        unsafe {
            rb_sys::rb_funcallv(
                task,
                method,
                args.len() as std::os::raw::c_int,
                rb_sys::RARRAY_CONST_PTR(args.as_raw()),
            )
        }
    })?;
    if !child.wants_results {
        return Ok(Frame::Done);
    }
    // SAFETY: `returned` is the live value perform just returned.
    let value = unsafe { Value::from_raw(returned) };
    match marshal::dump(ruby, value) {
        Ok(bytes) => Ok(Frame::Result(bytes)),
        Err(error) => {
            let reason = failure_of(&error).message;
            let message = format!("the result of perform cannot be marshalled: {reason}");
            Err(ruby.exception_type_error().new_instance((message,))?.into())
        }
    }
}

/// A task as the worker received it.
enum Task<'a> {
    /// A Marshal dump in the decoder's buffer.
    Buffered(&'a [u8]),
    /// A large Marshal dump read straight into a String of its own.
    Read(RString),
}

impl Task<'_> {
    /// The dump's length in bytes.
    fn len(&self) -> usize {
        match self {
            Task::Buffered(payload) => payload.len(),
            Task::Read(dump) => dump.len(),
        }
    }
}

/// What waiting for the master brought.
enum Incoming {
    /// A whole frame is buffered.
    Frame,
    /// A large task has begun; its payload is this long.
    Large(usize),
    /// End-of-file: the master is done with this worker.
    End,
}

/// Waits until a whole frame is buffered, or a large task has begun;
/// before waiting, sends the answers queued so far. Waits through Ruby so
/// signal traps run.
///
/// Raises `Divvy::Error` when the pipe cannot be read.
fn wait_for_task(ruby: &Ruby, task_rx: &OwnedFd, decoder: &mut Decoder) -> Result<Incoming, Error> {
    loop {
        if decoder.has_frame() {
            return Ok(Incoming::Frame);
        }
        if let Some(len) = decoder.large_task_pending(marshal::LARGE_STRING) {
            return Ok(Incoming::Large(len));
        }
        wait_readable(ruby, task_rx)?;
        match decoder.read_from(task_rx.as_fd()) {
            Ok(0) => return Ok(Incoming::End),
            result => read_count(ruby, result)?,
        };
    }
}

/// Sends the answers queued so far, then waits through Ruby (so signal
/// traps run) until the task pipe is readable. Leaves when the master no
/// longer takes answers.
///
/// Raises what a trap raises while waiting.
fn wait_readable(ruby: &Ruby, task_rx: &OwnedFd) -> Result<(), Error> {
    if !answers::flush() {
        leave(1);
    }
    ruby.thread_wait_fd(task_rx)
}

/// What a read of the task pipe brought: the bytes read, 0 when it was
/// interrupted or found nothing.
///
/// Raises `Divvy::Error` for any other failure.
fn read_count(ruby: &Ruby, result: nix::Result<usize>) -> Result<usize, Error> {
    match result {
        Ok(count) => Ok(count),
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(0),
        Err(errno) => Err(crate::errors::os_error(ruby, "reading a task", errno)),
    }
}

/// Reads the large task whose start `decoder` holds into a new String of
/// `len` bytes: the pipe writes straight into the String's memory, with no
/// buffer in between. Waits through Ruby so signal traps run.
///
/// Returns the String; raises `Divvy::Error` when the pipe fails or ends
/// before the task does.
fn read_large_task(
    ruby: &Ruby,
    task_rx: &OwnedFd,
    decoder: &mut Decoder,
    len: usize,
) -> Result<RString, Error> {
    let capacity = std::os::raw::c_long::try_from(len).unwrap_or(std::os::raw::c_long::MAX);
    // SAFETY: allocating may raise NoMemoryError, which `protect` catches.
    let raw = protect(|| unsafe { rb_sys::rb_str_buf_new(capacity) })?;
    // SAFETY: `raw` is the String just made, on this stack.
    let dump = RString::from_value(unsafe { Value::from_raw(raw) })
        .ok_or_else(|| Error::new(ruby.exception_type_error(), "not a String"))?;
    // SAFETY: the String has room for `len` bytes in a heap buffer that
    // stays put while it lives (on this stack, so the GC keeps it).
    let room = unsafe {
        std::slice::from_raw_parts_mut(
            rb_sys::RSTRING_PTR(dump.as_raw())
                .cast_mut()
                .cast::<std::mem::MaybeUninit<u8>>(),
            len,
        )
    };
    let mut filled = decoder.take_task_start(room);
    while filled < len {
        wait_readable(ruby, task_rx)?;
        let rest = &mut room[filled..];
        // SAFETY: reads at most `rest.len()` bytes into the String's room.
        let read = unsafe { libc::read(task_rx.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match Errno::result(read).map(|count| count as usize) {
            Ok(0) => {
                return Err(crate::errors::divvy_error(
                    ruby,
                    String::from("the master closed the pipe in the middle of a task"),
                ))
            }
            result => filled += read_count(ruby, result)?,
        }
    }
    // SAFETY: all `len` bytes are now written.
    unsafe { rb_sys::rb_str_set_len(dump.as_raw(), len as std::os::raw::c_long) };
    Ok(dump)
}

fn on_interrupt(
    _ruby: &Ruby,
    _args: &[Value],
    _block: Option<magnus::block::Proc>,
) -> Result<(), Error> {
    if PERFORMING.load(Ordering::SeqCst) {
        LEAVE_REQUESTED.store(true, Ordering::SeqCst);
    } else {
        say_bye_and_leave();
    }
    Ok(())
}

/// Sends the answers queued so far, tells the master that the tasks this
/// worker still holds were never started, then exits.
fn say_bye_and_leave() -> ! {
    answers::send(&Frame::Bye);
    leave(0)
}

fn report_and_leave(ruby: &Ruby, context: &str, error: &Error) -> ! {
    let failure = failure_of(error);
    let _ = say(
        ruby,
        &format!("{context}: {}: {}", failure.class_name, failure.message),
    );
    leave(1)
}

/// Flushes `$stdout` and `$stderr`, then ends the process with `status`
/// without running `at_exit` handlers or unwinding.
fn leave(status: i32) -> ! {
    flush_all();
    // SAFETY: _exit ends the process; nothing after it runs.
    unsafe { libc::_exit(status) }
}
