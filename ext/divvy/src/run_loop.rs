//! The master's run loop: feeds workers the items `dispatch` yields, collects
//! their answers, enforces the timeout and obeys signals. Forking, reaping
//! and respawning are the `supervisor`'s. Runs in the master only.
//!
//! Invariant: the `RunLoop` borrow is never held across a call into Ruby
//! (hooks, fork, Marshal, `$stderr`), so Ruby code run from those calls may
//! use the master's readers freely.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use magnus::{prelude::*, typed_data::Obj, value::Opaque, Error, RObject, Ruby, Value};

use crate::errors::{self, divvy_error, os_error, Kind};
use crate::link::Link;
use crate::marshal;
use crate::master::{bump, Master};
use crate::meter::Meter;
use crate::nogvl::without_gvl;
use crate::outcome::{self, item_failed, label, truncate, Cause};
use crate::pace::MAX_WINDOW;
use crate::pool::{Answer, Departure, Item, Pool, SlotState};
use crate::protocol::{Failure, Frame};
use crate::signals::{self, Stop, Traps};
use crate::stdio::{flush_all, say};
use crate::supervisor;
use crate::title;
use crate::wake::WakePipe;

/// How often live workers are checked for an exit the pipes did not show.
pub const REAP_INTERVAL: Duration = Duration::from_millis(250);
/// How often the master's process title is brought up to date.
const TITLE_INTERVAL: Duration = Duration::from_millis(500);
/// How many payload buffers are kept for reuse: enough for the items two
/// fast workers hold at once.
const SPARE_BUFFERS: usize = 1024;
/// Buffers larger than this are not kept: the reuse is for small items.
const SPARE_BUFFER_BYTES: usize = 4096;
/// How long a worker stopped for a timeout gets between TERM and KILL.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Why the run cannot go on.
#[derive(Debug, Clone)]
pub enum Fatal {
    /// Workers keep dying before they boot.
    BootFailure(String),
    /// A signal asked to stop at once.
    Abort,
}

/// The state of one `Master#run`.
pub struct RunLoop {
    /// Which worker holds what.
    pub pool: Pool,
    /// The pipes of each slot's current process.
    pub links: Vec<Option<Link>>,
    /// Items to send before asking `dispatch` for more: handed back by
    /// workers that never started them, or due for a retry.
    pub requeued: VecDeque<Item>,
    /// Workers stopped for a timeout, and when they get KILL.
    pub kill_at: Vec<(usize, Instant)>,
    /// True once no new process should start: the run is ending.
    pub closing: bool,
    /// How the run is asked to stop.
    pub stop: Stop,
    /// Why the run cannot go on, once it cannot.
    pub fatal: Option<Fatal>,
    /// Workers that died before booting since one last booted.
    pub boot_deaths_in_a_row: usize,
    /// When every live worker was last checked for an exit.
    pub last_reap_check: Instant,
    /// Wakes the loop from signal traps and Ruby's unblock function.
    pub wake: WakePipe,
    /// Payload buffers of performed small items, reused for new items so
    /// that an item costs no allocation.
    spare_buffers: Vec<Vec<u8>>,
    /// Items after which a worker is retired.
    max_tasks: Option<u64>,
    /// Lines to log under `-v`, written once the borrow ends.
    pub notices: Vec<String>,
    /// The progress display, under `progress: true`.
    meter: Option<Meter>,
    /// The script's name and the task's item count, for the title.
    script: String,
    total: Option<u64>,
    titled_at: Instant,
    next_index: u64,
    dispatched: u64,
    dispatch_done: bool,
}

/// What a polled descriptor is for.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// The wake pipe.
    Wake,
    /// A worker's answers.
    Answers(usize),
    /// A worker's task pipe, with room for queued items.
    Tasks(usize),
    /// One of a worker's output pipes (progress mode).
    Output(usize, usize),
}

/// Something a worker said, reported after the borrow ends.
pub enum Event {
    /// An item was performed.
    Performed,
    /// An item was performed and returned `result` (a Marshal dump), for
    /// the task's `completed` hook.
    Completed { item: Item, result: Vec<u8> },
    /// An item raised.
    Failed {
        slot: usize,
        item: Item,
        failure: Failure,
    },
    /// The worker broke the protocol and must be killed.
    Protocol { slot: usize, problem: String },
}

impl RunLoop {
    fn new(
        workers: usize,
        max_tasks: Option<u64>,
        (script, total): (String, Option<u64>),
        meter: Option<Meter>,
        wake: WakePipe,
    ) -> RunLoop {
        RunLoop {
            pool: Pool::new(workers, MAX_WINDOW),
            links: (0..workers).map(|_| None).collect(),
            requeued: VecDeque::new(),
            kill_at: Vec::new(),
            closing: false,
            stop: Stop::No,
            fatal: None,
            boot_deaths_in_a_row: 0,
            last_reap_check: Instant::now(),
            wake,
            spare_buffers: Vec::new(),
            max_tasks,
            notices: Vec::new(),
            meter,
            script,
            total,
            titled_at: Instant::now(),
            next_index: 0,
            dispatched: 0,
            dispatch_done: false,
        }
    }

    /// Reads every live worker's progress counter into the pool.
    fn observe_progress(&mut self, now: Instant) {
        for (slot, link) in self.links.iter().enumerate() {
            if let Some(link) = link {
                self.pool.observe(slot, link.progress().finished(), now);
            }
        }
    }

    /// Queues `item` for the least loaded ready worker, and writes it at
    /// once when that worker is about to run out of work; otherwise it goes
    /// with the next batch. Returns the item back when every worker is
    /// full, booting or down.
    fn try_send(&mut self, item: Item) -> std::io::Result<Option<Item>> {
        let slot = match self.pool.least_loaded() {
            Some(slot) => slot,
            None => {
                // Workers may have finished items since their answers came.
                self.observe_progress(Instant::now());
                match self.pool.least_loaded() {
                    Some(slot) => slot,
                    None => return Ok(Some(item)),
                }
            }
        };
        let now = Instant::now();
        if let Some(link) = self.links[slot].as_mut() {
            self.pool.observe(slot, link.progress().finished(), now);
            let starving = self.pool.unfinished(slot) <= link.queued_items() + 1;
            link.queue_task(&item.payload)?;
            if starving || link.outbox_full() {
                link.flush()?;
            }
        }
        self.pool.assign(slot, item, now);
        if self
            .max_tasks
            .is_some_and(|max| self.pool.assigned(slot) >= max)
        {
            // Retired: it performs what it holds, reads end-of-file and
            // exits; a fresh worker takes its place.
            self.pool.leaving(slot);
            if let Some(link) = self.links[slot].as_mut() {
                link.close_tasks()?;
            }
            self.notices.push(format!(
                "worker {} retires after {} items",
                slot + 1,
                self.pool.assigned(slot)
            ));
        }
        Ok(None)
    }

    /// Reads what the worker in `slot` has sent and settles each frame,
    /// pushing what needs reporting onto `events`.
    pub fn read_frames(&mut self, slot: usize, events: &mut Vec<Event>) -> std::io::Result<()> {
        let Some(link) = self.links[slot].as_mut() else {
            return Ok(());
        };
        link.receive()?;
        let mut handed_back = Vec::new();
        loop {
            let frame = match link.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    events.push(Event::Protocol {
                        slot,
                        problem: format!("sent a malformed frame ({error})"),
                    });
                    break;
                }
            };
            match frame {
                Frame::Ready => {
                    self.pool.booted(slot);
                    self.boot_deaths_in_a_row = 0;
                }
                Frame::Done | Frame::Result(_) | Frame::Failed(_) => {
                    let (failure, result) = match frame {
                        Frame::Failed(failure) => (Some(failure), None),
                        Frame::Result(result) => (None, Some(result)),
                        _ => (None, None),
                    };
                    match self.pool.answer(slot, failure) {
                        Ok(Answer::Performed(item)) => match result {
                            Some(result) => events.push(Event::Completed { item, result }),
                            None => {
                                let buffer = item.payload.into_buffer();
                                if self.spare_buffers.len() < SPARE_BUFFERS
                                    && buffer.capacity() <= SPARE_BUFFER_BYTES
                                {
                                    self.spare_buffers.push(buffer);
                                }
                                events.push(Event::Performed);
                            }
                        },
                        Ok(Answer::Failed(item, failure)) => events.push(Event::Failed {
                            slot,
                            item,
                            failure,
                        }),
                        Err(_) => events.push(Event::Protocol {
                            slot,
                            problem: String::from("answered for an item it does not hold"),
                        }),
                    }
                }
                Frame::Bye => {
                    handed_back.extend(self.pool.said_bye(slot));
                }
                Frame::Task(_) => events.push(Event::Protocol {
                    slot,
                    problem: String::from("sent a task frame to the master"),
                }),
            }
        }
        self.hand_back(&handed_back);
        Ok(())
    }

    /// Puts items that were never started back at the head of the queue, in
    /// their order.
    pub fn hand_back(&mut self, items: &[Item]) {
        for item in items.iter().rev() {
            self.requeued.push_front(item.clone());
        }
    }

    /// True when workers' output goes through the master (a progress bar is
    /// drawn on the terminal).
    pub fn captures_output(&self) -> bool {
        self.meter.as_ref().is_some_and(Meter::drawing)
    }

    /// Prints what the worker in `slot` still has in its output pipes.
    pub fn drain_output(&mut self, slot: usize) {
        let (Some(link), Some(meter)) = (self.links[slot].as_mut(), self.meter.as_ref()) else {
            return;
        };
        link.drain_output(|stream, bytes| meter.print_through(stream, bytes));
    }

    /// Lets every ready worker that holds nothing go: closes its task pipe,
    /// so it exits after reading end-of-file.
    fn release_idle(&mut self) -> std::io::Result<()> {
        for slot in 0..self.pool.len() {
            let state = self.pool.slot(slot);
            if state.state == SlotState::Ready && state.held.is_empty() {
                self.pool.leaving(slot);
                if let Some(link) = self.links[slot].as_mut() {
                    link.close_tasks()?;
                }
            }
        }
        Ok(())
    }

    /// Leaks the bytes spliced into task pipes when a worker may still be
    /// alive to read them (the run ended on an error before every worker
    /// was reaped): freed and reused, they would reach it changed.
    pub fn keep_spliced_bytes(&self) {
        if self.pool.alive().next().is_none() {
            return;
        }
        for item in self.pool.held_items().chain(&self.requeued) {
            item.payload.leak_references();
        }
    }

    /// Drops the pipes of the reaped worker in `slot` and settles its slot
    /// with the final reading of its progress counter.
    ///
    /// Returns what the worker leaves behind.
    pub fn release(&mut self, slot: usize) -> Departure {
        let finished = self.links[slot]
            .take()
            .map_or(0, |link| link.progress().finished());
        self.kill_at.retain(|(killed, _)| *killed != slot);
        self.pool.reaped(slot, finished)
    }

    /// The descriptors a forked worker must close: every master-side pipe.
    pub fn descriptors_for_child(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self
            .links
            .iter()
            .flatten()
            .flat_map(Link::raw_fds)
            .collect();
        fds.extend(self.wake.raw_fds());
        fds
    }

    /// True when a dead worker should be replaced: the run goes on and has
    /// items to send.
    pub fn should_respawn(&self) -> bool {
        self.stop == Stop::No
            && self.fatal.is_none()
            && !self.closing
            && (!self.dispatch_done || !self.requeued.is_empty())
    }
}

/// Runs `f` on the current run's state.
///
/// Raises `Divvy::Error` when a hook re-enters the loop or no run is active.
pub fn with_loop<R>(
    ruby: &Ruby,
    master: &Master,
    f: impl FnOnce(&mut RunLoop) -> R,
) -> Result<R, Error> {
    let mut guard = master
        .run_loop()
        .try_borrow_mut()
        .map_err(|_| divvy_error(ruby, "Divvy::Master#run re-entered from a hook"))?;
    let run_loop = guard
        .as_mut()
        .ok_or_else(|| divvy_error(ruby, "Divvy::Master is not running"))?;
    Ok(f(run_loop))
}

/// Runs a whole `Master#run`: see `Master::run` for what it returns and
/// raises.
pub fn run(ruby: &Ruby, master: Obj<Master>) -> Result<(), Error> {
    let started = Instant::now();
    let wake = WakePipe::open().map_err(|err| os_error(ruby, "opening a pipe", err))?;
    master.truncate_workers(master.worker_count());
    let script = title::script_name(ruby);
    let task = master.task(ruby);
    // The count only decorates the title: a `total` that fails is ignored.
    let total = if task.respond_to("total", true)? {
        task.funcall::<_, _, Option<u64>>("total", ())
            .ok()
            .flatten()
    } else {
        None
    };
    title::set(ruby, &title::master(&script, 0, total));
    *master.run_loop().borrow_mut() = Some(RunLoop::new(
        master.worker_count(),
        master.options().max_tasks,
        (script, total),
        master.options().progress.then(|| Meter::new(total)),
        wake,
    ));
    let outcome = Traps::install(ruby).and_then(|traps| {
        let outcome = drive(ruby, master);
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(error) => supervisor::terminate_all(ruby, &master).and(Err(error)),
        };
        traps.restore(ruby).and(outcome)
    });
    let (done, failed) = master.stats().settled();
    let last_line = master.run_loop().borrow_mut().take().and_then(|mut lp| {
        lp.keep_spliced_bytes();
        lp.meter.as_mut()?.finish(done, failed)
    });
    if let Some(line) = last_line {
        say(ruby, &line)?;
    }
    title::restore(ruby);
    if master.verbose() || master.stats().failures.get() > 0 {
        outcome::summarize(ruby, &master, started.elapsed())?;
    }
    outcome
}

fn drive(ruby: &Ruby, master: Obj<Master>) -> Result<(), Error> {
    compact_heap(ruby)?;
    // The rest start during dispatch, one per turn of the loop.
    supervisor::spawn(ruby, &master, 0)?;
    let dispatched = dispatch(ruby, master);
    with_loop(ruby, &master, |lp| lp.dispatch_done = true)?;
    if with_loop(ruby, &master, |lp| lp.fatal.is_some())? {
        return dispatched;
    }
    if dispatched.is_ok() {
        // Every worker runs once, even when dispatch yielded fewer items
        // than there are workers; not when it raised.
        supervisor::start_remaining(ruby, &master)?;
    }
    finish(ruby, &master)?;
    dispatched?;
    if let Stop::Drain | Stop::Abort = with_loop(ruby, &master, |lp| lp.stop)? {
        return Err(shutdown_error(
            ruby,
            &master,
            "after the items in flight finished",
        ));
    }
    Ok(())
}

/// Runs a full garbage collection and compacts the heap (Ruby 3.0+) before
/// the first fork, so the workers share more of the master's memory
/// copy-on-write. `DIVVY_COMPACT=0` skips it.
fn compact_heap(ruby: &Ruby) -> Result<(), Error> {
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

/// Calls the task's `dispatch` with a block that sends each item, inside a
/// `catch` so the loop can end `dispatch` early when asked to stop.
fn dispatch(ruby: &Ruby, master: Obj<Master>) -> Result<(), Error> {
    let tag: Value = ruby.class_object().new_instance(())?;
    let opaque_tag: Opaque<Value> = tag.into();
    let opaque_master: Opaque<Obj<Master>> = master.into();
    let task: Opaque<Value> = master.task(ruby).into();
    let body = ruby.proc_from_fn(move |ruby, _args, _block| {
        let task = ruby.get_inner(task);
        let item_block = ruby.proc_from_fn(move |ruby, args, _block| {
            let master = ruby.get_inner(opaque_master);
            on_item(ruby, &master, ruby.get_inner(opaque_tag), args)
        });
        task.funcall_with_block::<_, _, Value>("dispatch", (), item_block)
    });
    let _: Value = ruby
        .module_kernel()
        .funcall_with_block("catch", (tag,), body)?;
    Ok(())
}

/// Sends one item yielded by `dispatch`, waiting for a free worker.
///
/// Raises `Divvy::Error` when the item cannot be marshalled.
fn on_item(ruby: &Ruby, master: &Master, tag: Value, args: &[Value]) -> Result<Value, Error> {
    if stopping(ruby, master)? {
        return ruby.module_kernel().funcall("throw", (tag,));
    }
    let position = with_loop(ruby, master, |lp| {
        lp.dispatched += 1;
        lp.dispatched - 1
    })?;
    if master
        .options()
        .shard
        .is_some_and(|shard| !shard.owns(position))
    {
        return Ok(ruby.qnil().as_value());
    }
    let buffer = with_loop(ruby, master, |lp| {
        lp.spare_buffers.pop().unwrap_or_default()
    })?;
    let payload = marshal::dump_args(ruby, args, buffer)
        .map_err(|error| unmarshalable_item(ruby, args, &error))?;
    let index = with_loop(ruby, master, |lp| {
        lp.next_index += 1;
        lp.next_index - 1
    })?;
    let mut pending = Some(Item {
        index,
        payload,
        attempt: 1,
    });
    while let Some(item) = pending.take() {
        pending = with_loop(ruby, master, |lp| lp.try_send(item))?
            .map_err(|err| os_error(ruby, "sending an item", err))?;
        if pending.is_some() {
            pump(ruby, master)?;
            if stopping(ruby, master)? {
                return ruby.module_kernel().funcall("throw", (tag,));
            }
        } else {
            let stats = master.stats();
            bump(&stats.tasks_distributed, 1);
        }
    }
    Ok(ruby.qnil().as_value())
}

/// Builds the error for an item Marshal refused, naming the argument at
/// fault and its class.
fn unmarshalable_item(ruby: &Ruby, args: &[Value], error: &Error) -> Error {
    let culprit = args
        .iter()
        .enumerate()
        .find(|(_, arg)| marshal::dump(ruby, **arg).is_err());
    let reason = errors::failure_of(error).message;
    let item = truncate(ruby.ary_new_from_values(args).inspect());
    let which = match culprit {
        Some((position, arg)) => format!(
            "argument {} (a {}) cannot be marshalled",
            position + 1,
            unsafe { arg.classname() }
        ),
        None => String::from("it cannot be marshalled"),
    };
    divvy_error(
        ruby,
        format!("cannot dispatch item {item}: {which}: {reason}"),
    )
}

fn stopping(ruby: &Ruby, master: &Master) -> Result<bool, Error> {
    let requested = master.shutdown_requested();
    with_loop(ruby, master, |lp| {
        lp.stop = lp.stop.max(signals::requested_stop());
        lp.stop != Stop::No || requested
    })
}

/// Waits until every item sent is answered (and every retry done), then
/// lets the workers go and waits for them to exit. Without retries, a
/// worker with nothing left to do is let go at once, so its exit overlaps
/// the others' last items.
fn finish(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    // With retries, an item in flight may come back and need a worker:
    // idle ones then stay until the end rather than leave and be forked
    // again.
    let retries = master.options().retries;
    loop {
        let busy = with_loop(ruby, master, |lp| -> std::io::Result<bool> {
            if lp.requeued.is_empty() && retries == 0 {
                lp.release_idle()?;
            }
            Ok(lp.pool.in_flight() > 0 || (!lp.requeued.is_empty() && lp.stop == Stop::No))
        })?
        .map_err(|err| os_error(ruby, "closing a task pipe", err))?;
        if !busy {
            break;
        }
        pump(ruby, master)?;
    }
    with_loop(ruby, master, |lp| -> std::io::Result<()> {
        lp.closing = true;
        for slot in 0..lp.pool.len() {
            lp.pool.leaving(slot);
            if let Some(link) = lp.links[slot].as_mut() {
                link.close_tasks()?;
            }
        }
        Ok(())
    })?
    .map_err(|err| os_error(ruby, "closing a task pipe", err))?;
    while with_loop(ruby, master, |lp| lp.pool.alive().next().is_some())? {
        pump(ruby, master)?;
    }
    Ok(())
}

/// One turn of the loop: waits (without the GVL) for a worker to answer, a
/// pipe to drain, a signal or a deadline, then handles what happened.
///
/// Raises `Shutdown` when a signal asks to stop at once, `BootFailure` when
/// workers keep dying before they boot.
pub fn pump(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    if let Some(fatal) = with_loop(ruby, master, |lp| lp.fatal.clone())? {
        return Err(fatal_error(ruby, master, fatal));
    }
    let timeout = master.options().timeout;
    let limit = master.worker_count();
    let prepared = with_loop(ruby, master, |lp| {
        // While workers are still to start, the wait is only a look.
        let starting = lp.should_respawn() && lp.pool.first_unstarted(limit).is_some();
        // Batched items go out before the wait.
        for link in lp.links.iter_mut().flatten() {
            if link.has_queued() {
                link.flush()?;
            }
        }
        let mut fds = vec![pollfd(lp.wake.read_fd().as_raw_fd(), libc::POLLIN)];
        let mut owners = vec![Owner::Wake];
        let mut hung_up_waiting = false;
        for (slot, link) in lp.links.iter().enumerate() {
            let Some(link) = link else { continue };
            if link.hung_up() {
                hung_up_waiting = true;
            } else {
                fds.push(pollfd(link.result_fd().as_raw_fd(), libc::POLLIN));
                owners.push(Owner::Answers(slot));
            }
            if let (true, Some(task_fd)) = (link.has_queued(), link.task_fd()) {
                fds.push(pollfd(task_fd.as_raw_fd(), libc::POLLOUT));
                owners.push(Owner::Tasks(slot));
            }
            for (index, output_fd) in link.output_fds() {
                fds.push(pollfd(output_fd.as_raw_fd(), libc::POLLIN));
                owners.push(Owner::Output(slot, index));
            }
        }
        let mut wait = if starting {
            Duration::ZERO
        } else if hung_up_waiting {
            Duration::from_millis(5)
        } else {
            REAP_INTERVAL
        };
        let deadlines = timeout
            .and_then(|timeout| lp.pool.next_deadline(timeout))
            .into_iter()
            .chain(lp.kill_at.iter().map(|(_, at)| *at));
        for deadline in deadlines {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        Ok((fds, owners, lp.wake.write_raw_fd(), wait.as_millis() as i32))
    })?;
    let (mut fds, owners, wake_write, wait_ms) =
        prepared.map_err(|err: std::io::Error| os_error(ruby, "sending items", err))?;

    // What the master printed shows up before it sleeps, not at exit.
    flush_all();
    let polled = without_gvl(ruby, wake_write, || {
        // SAFETY: `fds` is a valid array of pollfd for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        (ready, std::io::Error::last_os_error())
    })?;
    let check_all = match polled {
        Some((ready, err)) if ready < 0 => {
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(os_error(ruby, "waiting for workers", err));
            }
            true
        }
        Some((0, _)) | None => true,
        Some(_) => fds[0].revents != 0,
    };

    let events = with_loop(ruby, master, |lp| collect(lp, &fds, &owners, check_all))?
        .map_err(|err| os_error(ruby, "talking to workers", err))?;
    handle(ruby, master, events)?;
    supervisor::reap(ruby, master, check_all)?;
    enforce_timeout(ruby, master)?;

    let stop = signals::requested_stop();
    with_loop(ruby, master, |lp| lp.stop = lp.stop.max(stop))?;
    if stop == Stop::Abort {
        with_loop(ruby, master, |lp| lp.fatal = Some(Fatal::Abort))?;
        return Err(fatal_error(ruby, master, Fatal::Abort));
    }
    supervisor::resize(ruby, master)?;
    supervisor::respawn(ruby, master)?;
    send_requeued(ruby, master)?;
    log_notices(ruby, master)?;
    show_progress(ruby, master)?;
    retitle(ruby, master)
}

/// Updates the progress display; logs the plain line when one is due.
fn show_progress(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let (done, failed) = master.stats().settled();
    let line = with_loop(ruby, master, |lp| lp.meter.as_mut()?.update(done, failed))?;
    match line {
        Some(line) => say(ruby, &line),
        None => Ok(()),
    }
}

/// Shows the run's progress in the master's process title, at most twice
/// a second.
fn retitle(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let (done, _) = master.stats().settled();
    let title = with_loop(ruby, master, |lp| {
        (lp.titled_at.elapsed() >= TITLE_INTERVAL).then(|| {
            lp.titled_at = Instant::now();
            title::master(&lp.script, done, lp.total)
        })
    })?;
    if let Some(title) = title {
        title::set(ruby, &title);
    }
    Ok(())
}

/// Writes the notices the loop collected, under `-v`.
fn log_notices(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let notices = with_loop(ruby, master, |lp| std::mem::take(&mut lp.notices))?;
    if master.verbose() {
        for notice in notices {
            say(ruby, &notice)?;
        }
    }
    Ok(())
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Reads and writes what the poll found ready and turns frames into events.
fn collect(
    lp: &mut RunLoop,
    fds: &[libc::pollfd],
    owners: &[Owner],
    check_all: bool,
) -> Result<Vec<Event>, std::io::Error> {
    if check_all || fds[0].revents != 0 {
        lp.wake.drain();
    }
    lp.observe_progress(Instant::now());
    let mut events = Vec::new();
    // Output pipes are read last and from the highest index down, so that
    // a pipe closed at end-of-file does not shift the ones still to read.
    let mut outputs = Vec::new();
    for (pollfd, owner) in fds.iter().zip(owners) {
        if pollfd.revents == 0 {
            continue;
        }
        match *owner {
            Owner::Wake => {}
            Owner::Tasks(slot) => {
                if let Some(link) = lp.links[slot].as_mut() {
                    link.flush()?;
                }
            }
            Owner::Answers(slot) => lp.read_frames(slot, &mut events)?,
            Owner::Output(slot, index) => outputs.push((slot, index)),
        }
    }
    for (slot, index) in outputs.into_iter().rev() {
        if let (Some(link), Some(meter)) = (lp.links[slot].as_mut(), lp.meter.as_ref()) {
            link.relay_output(index, |stream, bytes| meter.print_through(stream, bytes));
        }
    }
    Ok(events)
}

/// Reports and counts what `read_frames` found.
///
/// Raises what reporting or the task's `failed` hook raise.
pub fn handle(ruby: &Ruby, master: &Master, events: Vec<Event>) -> Result<(), Error> {
    for event in events {
        match event {
            Event::Performed => {
                let stats = master.stats();
                bump(&stats.performed, 1);
            }
            Event::Completed { item, result } => {
                let stats = master.stats();
                bump(&stats.performed, 1);
                outcome::item_completed(ruby, master, &item, &result)?;
            }
            Event::Failed {
                slot,
                item,
                failure,
            } => {
                let worker = master.worker(ruby, slot);
                let cause = Cause::Raised(failure);
                if let Some(retry) = item_failed(ruby, master, &worker, item, cause)? {
                    with_loop(ruby, master, |lp| lp.requeued.push_back(retry))?;
                }
            }
            Event::Protocol { slot, problem } => {
                let worker = master.worker(ruby, slot);
                say(ruby, &format!("{}: {problem}; killing it", label(&worker)))?;
                let _: bool = worker.funcall("kill", ("KILL",))?;
            }
        }
    }
    Ok(())
}

/// Stops workers whose item overran the timeout (TERM, then KILL after a
/// grace period); the supervisor reports the item when it reaps them.
fn enforce_timeout(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let Some(timeout) = master.options().timeout else {
        return Ok(());
    };
    let now = Instant::now();
    let (overdue, due_for_kill) = with_loop(ruby, master, |lp| {
        let overdue = lp.pool.overdue(now, timeout);
        for slot in &overdue {
            lp.pool.timed_out(*slot);
            lp.kill_at.push((*slot, now + TIMEOUT_GRACE));
        }
        let (due, later): (Vec<_>, Vec<_>) = lp.kill_at.iter().partition(|(_, at)| *at <= now);
        lp.kill_at = later;
        (
            overdue,
            due.into_iter().map(|(slot, _)| slot).collect::<Vec<_>>(),
        )
    })?;
    for slot in overdue {
        let _: bool = master.worker(ruby, slot).funcall("kill", ("TERM",))?;
    }
    for slot in due_for_kill {
        let _: bool = master.worker(ruby, slot).funcall("kill", ("KILL",))?;
    }
    Ok(())
}

fn send_requeued(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    with_loop(ruby, master, |lp| -> std::io::Result<()> {
        if lp.stop != Stop::No {
            return Ok(());
        }
        while let Some(item) = lp.requeued.pop_front() {
            if let Some(item) = lp.try_send(item)? {
                lp.requeued.push_front(item);
                break;
            }
        }
        Ok(())
    })?
    .map_err(|err| os_error(ruby, "sending an item", err))
}

/// Returns the error for a run that cannot go on.
pub fn fatal_error(ruby: &Ruby, master: &Master, fatal: Fatal) -> Error {
    match fatal {
        Fatal::BootFailure(message) => Error::new(errors::class(ruby, Kind::BootFailure), message),
        Fatal::Abort => shutdown_error(ruby, master, "at once"),
    }
}

/// Builds `Divvy::Master::Shutdown` for the signal that stopped the run.
fn shutdown_error(ruby: &Ruby, master: &Master, how: &str) -> Error {
    let signo = signals::last_signal();
    let name = nix::sys::signal::Signal::try_from(signo)
        .map(|signal| signal.as_str().to_string())
        .unwrap_or_else(|_| String::from("shutdown"));
    let stats = master.stats();
    let message = format!(
        "stopped by {name} {how}: {} items sent, {} performed",
        stats.tasks_distributed.get(),
        stats.performed.get()
    );
    let class = errors::class(ruby, Kind::Shutdown);
    let exception = class
        .new_instance((message.clone(),))
        .and_then(|exception| {
            RObject::try_convert(exception.as_value())?.ivar_set("@signo", signo)?;
            Ok(exception)
        });
    match exception {
        Ok(exception) => Error::from(exception),
        Err(_) => Error::new(class, message),
    }
}
