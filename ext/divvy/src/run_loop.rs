//! The master's run loop: forks workers, feeds them the items `dispatch`
//! yields, collects their answers, reaps and replaces the dead, and obeys
//! signals. Runs in the master only.
//!
//! Invariant: the `RunLoop` borrow is never held across a call into Ruby
//! (hooks, fork, Marshal, `$stderr`), so Ruby code run from those calls may
//! use the master's readers freely.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use magnus::{prelude::*, typed_data::Obj, value::Opaque, Error, Exception, Ruby, Value};

use crate::child::{self, Child};
use crate::errors::{self, divvy_error, os_error, Kind};
use crate::exit::{try_wait, Exit};
use crate::link::{self, Link};
use crate::marshal;
use crate::master::Master;
use crate::nogvl::without_gvl;
use crate::pool::{Answer, Item, Pool, SlotState};
use crate::protocol::{Failure, Frame};
use crate::signals::{self, Stop, Traps};
use crate::stdio::{flush_all, say};
use crate::wake::WakePipe;

/// How long workers get to exit after TERM before they are killed.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often live workers are checked for an exit the pipes did not show.
const REAP_INTERVAL: Duration = Duration::from_millis(250);
/// Items a worker holds at once.
const WINDOW: usize = 1;
/// The longest item description printed in a report.
const ITEM_DESCRIPTION_LIMIT: usize = 200;

/// Why the run cannot go on.
#[derive(Debug, Clone)]
enum Fatal {
    BootFailure(String),
    Abort,
}

/// The state of one `Master#run`.
pub struct RunLoop {
    pool: Pool,
    links: Vec<Option<Link>>,
    requeued: VecDeque<Item>,
    next_index: u64,
    dispatch_done: bool,
    closing: bool,
    stop: Stop,
    fatal: Option<Fatal>,
    boot_deaths_in_a_row: usize,
    last_reap_check: Instant,
    wake: WakePipe,
}

/// Something that happened to a worker, reported after the borrow ends.
enum Event {
    Performed,
    Failed {
        slot: usize,
        item: Item,
        failure: Failure,
    },
    Protocol {
        slot: usize,
        problem: String,
    },
}

impl RunLoop {
    fn new(workers: usize, wake: WakePipe) -> RunLoop {
        RunLoop {
            pool: Pool::new(workers, WINDOW),
            links: (0..workers).map(|_| None).collect(),
            requeued: VecDeque::new(),
            next_index: 0,
            dispatch_done: false,
            closing: false,
            stop: Stop::No,
            fatal: None,
            boot_deaths_in_a_row: 0,
            last_reap_check: Instant::now(),
            wake,
        }
    }

    /// Sends `item` to the least loaded ready worker. Returns the item back
    /// when every worker is busy, booting or down.
    fn try_send(&mut self, item: Item) -> std::io::Result<Option<Item>> {
        let Some(slot) = self.pool.least_loaded() else {
            return Ok(Some(item));
        };
        if let Some(link) = self.links[slot].as_mut() {
            link.queue_task(&item.payload);
            link.flush()?;
        }
        self.pool.assign(slot, item);
        Ok(None)
    }

    /// Reads what the worker in `slot` has sent and settles each frame,
    /// pushing what needs reporting onto `events`.
    fn read_frames(&mut self, slot: usize, events: &mut Vec<Event>) -> std::io::Result<()> {
        let Some(link) = self.links[slot].as_mut() else {
            return Ok(());
        };
        link.receive()?;
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
                Frame::Done | Frame::Failed(_) => {
                    let failure = match frame {
                        Frame::Failed(failure) => Some(failure),
                        _ => None,
                    };
                    match self.pool.answer(slot, failure) {
                        Ok(Answer::Performed(_)) => events.push(Event::Performed),
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
                    let unstarted = self.pool.said_bye(slot);
                    for item in unstarted.into_iter().rev() {
                        self.requeued.push_front(item);
                    }
                }
                Frame::Task(_) => events.push(Event::Protocol {
                    slot,
                    problem: String::from("sent a task frame to the master"),
                }),
            }
        }
        Ok(())
    }

    fn descriptors_for_child(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self
            .links
            .iter()
            .flatten()
            .flat_map(Link::raw_fds)
            .collect();
        fds.extend(self.wake.raw_fds());
        fds
    }

    fn should_respawn(&self) -> bool {
        self.stop == Stop::No
            && self.fatal.is_none()
            && !self.closing
            && (!self.dispatch_done || !self.requeued.is_empty())
    }
}

fn with_loop<R>(
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
    let wake = WakePipe::open().map_err(|err| os_error(ruby, "opening a pipe", err))?;
    *master.run_loop().borrow_mut() = Some(RunLoop::new(master.worker_count(), wake));
    let outcome = Traps::install(ruby).and_then(|traps| {
        let outcome = drive(ruby, master);
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(error) => terminate_all(ruby, &master).and(Err(error)),
        };
        traps.restore(ruby).and(outcome)
    });
    master.run_loop().borrow_mut().take();
    outcome
}

fn drive(ruby: &Ruby, master: Obj<Master>) -> Result<(), Error> {
    for slot in 0..master.worker_count() {
        spawn(ruby, &master, slot)?;
    }
    let dispatched = dispatch(ruby, master);
    with_loop(ruby, &master, |lp| lp.dispatch_done = true)?;
    if with_loop(ruby, &master, |lp| lp.fatal.is_some())? {
        return dispatched;
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
fn on_item(ruby: &Ruby, master: &Master, tag: Value, args: &[Value]) -> Result<Value, Error> {
    if stopping(ruby, master)? {
        return ruby.module_kernel().funcall("throw", (tag,));
    }
    let array = ruby.ary_new_from_values(args);
    let payload = marshal::dump(ruby, array.as_value()).map_err(|error| {
        divvy_error(
            ruby,
            format!(
                "cannot send item {} to a worker: {}",
                truncate(array.inspect()),
                error_message(&error)
            ),
        )
    })?;
    let index = with_loop(ruby, master, |lp| {
        lp.next_index += 1;
        lp.next_index - 1
    })?;
    let mut pending = Some(Item { index, payload });
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
            stats
                .tasks_distributed
                .set(stats.tasks_distributed.get() + 1);
        }
    }
    Ok(ruby.qnil().as_value())
}

fn stopping(ruby: &Ruby, master: &Master) -> Result<bool, Error> {
    let requested = master.shutdown_requested();
    with_loop(ruby, master, |lp| {
        lp.stop = lp.stop.max(signals::requested_stop());
        lp.stop != Stop::No || requested
    })
}

/// Waits until every item sent is answered, then lets the workers go and
/// waits for them to exit.
fn finish(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    loop {
        let busy = with_loop(ruby, master, |lp| {
            lp.pool.in_flight() > 0 || (!lp.requeued.is_empty() && lp.stop == Stop::No)
        })?;
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
/// pipe to drain, a signal or a timeout, then handles what happened.
///
/// Raises `Shutdown` when a signal asks to stop at once, `BootFailure` when
/// workers keep dying before they boot.
fn pump(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    if let Some(fatal) = with_loop(ruby, master, |lp| lp.fatal.clone())? {
        return Err(fatal_error(ruby, master, fatal));
    }
    let (mut fds, owners, wake_write, timeout) = with_loop(ruby, master, |lp| {
        let mut fds = vec![pollfd(lp.wake.read_fd().as_raw_fd(), libc::POLLIN)];
        let mut owners = vec![None];
        let mut hung_up_waiting = false;
        for (slot, link) in lp.links.iter().enumerate() {
            let Some(link) = link else { continue };
            if link.hung_up() {
                hung_up_waiting = true;
            } else {
                fds.push(pollfd(link.result_fd().as_raw_fd(), libc::POLLIN));
                owners.push(Some(slot));
            }
            if let (true, Some(task_fd)) = (link.wants_write(), link.task_fd()) {
                fds.push(pollfd(task_fd.as_raw_fd(), libc::POLLOUT));
                owners.push(Some(slot));
            }
        }
        let timeout = if hung_up_waiting {
            5
        } else {
            REAP_INTERVAL.as_millis() as i32
        };
        (fds, owners, lp.wake.write_raw_fd(), timeout)
    })?;

    // What the master printed shows up before it sleeps, not at exit.
    flush_all();
    let polled = without_gvl(ruby, wake_write, || {
        // SAFETY: `fds` is a valid array of pollfd for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
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
    reap(ruby, master, check_all)?;

    let stop = signals::requested_stop();
    with_loop(ruby, master, |lp| lp.stop = lp.stop.max(stop))?;
    if stop == Stop::Abort {
        with_loop(ruby, master, |lp| lp.fatal = Some(Fatal::Abort))?;
        return Err(fatal_error(ruby, master, Fatal::Abort));
    }
    respawn(ruby, master)?;
    send_requeued(ruby, master)
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
    owners: &[Option<usize>],
    check_all: bool,
) -> Result<Vec<Event>, std::io::Error> {
    if check_all || fds[0].revents != 0 {
        lp.wake.drain();
    }
    let mut events = Vec::new();
    for (pollfd, owner) in fds.iter().zip(owners) {
        let Some(slot) = *owner else { continue };
        if pollfd.revents == 0 {
            continue;
        }
        if pollfd.events == libc::POLLOUT {
            if let Some(link) = lp.links[slot].as_mut() {
                link.flush()?;
            }
            continue;
        }
        lp.read_frames(slot, &mut events)?;
    }
    Ok(events)
}

/// Reports and counts what `read_frames` found.
fn handle(ruby: &Ruby, master: &Master, events: Vec<Event>) -> Result<(), Error> {
    for event in events {
        match event {
            Event::Performed => {
                let stats = master.stats();
                stats.performed.set(stats.performed.get() + 1);
            }
            Event::Failed {
                slot,
                item,
                failure,
            } => report_failure(ruby, master, slot, &item, &failure)?,
            Event::Protocol { slot, problem } => {
                let worker = master.worker(ruby, slot);
                say(ruby, &format!("{}: {problem}; killing it", label(&worker)))?;
                let _: bool = worker.funcall("kill", ("KILL",))?;
            }
        }
    }
    Ok(())
}

/// Reaps workers that exited: those whose pipe hung up, or every live one
/// when `check_all` (a timeout or a signal, such as SIGCHLD, woke the loop).
fn reap(ruby: &Ruby, master: &Master, check_all: bool) -> Result<(), Error> {
    let candidates: Vec<(usize, i32)> = with_loop(ruby, master, |lp| {
        let all = check_all || lp.last_reap_check.elapsed() >= REAP_INTERVAL;
        if all {
            lp.last_reap_check = Instant::now();
        }
        lp.pool
            .alive()
            .filter(|slot| all || lp.links[*slot].as_ref().is_some_and(Link::hung_up))
            .filter_map(|slot| lp.pool.slot(slot).pid.map(|pid| (slot, pid)))
            .collect()
    })?;
    for (slot, pid) in candidates {
        if let Some(status) = try_wait(ruby, pid)? {
            // What the worker wrote before it exited is settled first: an
            // item it answered is not reported as lost.
            let events = with_loop(ruby, master, |lp| {
                let mut events = Vec::new();
                lp.read_frames(slot, &mut events).map(|()| events)
            })?
            .map_err(|err| os_error(ruby, "reading from a worker", err))?;
            handle(ruby, master, events)?;
            settle_exit(ruby, master, slot, pid, status)?;
        }
    }
    Ok(())
}

/// Accounts for a reaped worker: its item, its slot, the report.
fn settle_exit(
    ruby: &Ruby,
    master: &Master,
    slot: usize,
    pid: i32,
    status: Value,
) -> Result<(), Error> {
    let exit = Exit::from_status(status)?;
    let worker = master.worker(ruby, slot);
    let known_status = exit != Exit::Unknown;
    if known_status {
        worker.reaped(status);
    } else {
        worker.reaped(ruby.qnil().as_value());
    }
    let (expected, departure) = with_loop(ruby, master, |lp| {
        let expected = lp.pool.slot(slot).state == SlotState::Leaving;
        lp.links[slot] = None;
        let departure = lp.pool.reaped(slot);
        for item in departure.unstarted.iter().rev() {
            lp.requeued.push_front(item.clone());
        }
        if departure.during_boot {
            lp.boot_deaths_in_a_row += 1;
        }
        (expected, departure)
    })?;
    let who = format!("worker {} (pid {pid})", worker.number());
    let stats = master.stats();
    if let Some(item) = &departure.performing {
        stats.failures.set(stats.failures.get() + 1);
        say(
            ruby,
            &format!(
                "{who} {} while performing {}",
                exit.describe(),
                describe_item(ruby, item)
            ),
        )?;
    } else if departure.during_boot {
        stats.failures.set(stats.failures.get() + 1);
        say(
            ruby,
            &format!("{who} {} before it was ready", exit.describe()),
        )?;
        let (deaths, limit) = with_loop(ruby, master, |lp| {
            (lp.boot_deaths_in_a_row, master.worker_count().max(3))
        })?;
        if deaths >= limit {
            let fatal = Fatal::BootFailure(format!(
                "workers failed to boot: {deaths} in a row died before they were ready, the last {who} {}",
                exit.describe()
            ));
            with_loop(ruby, master, |lp| lp.fatal = Some(fatal.clone()))?;
            return Err(fatal_error(ruby, master, fatal));
        }
    } else if !expected && !exit.is_clean() {
        stats.failures.set(stats.failures.get() + 1);
        say(ruby, &format!("{who} {}", exit.describe()))?;
    } else if master.verbose() {
        say(ruby, &format!("{who} {}", exit.describe()))?;
    }
    Ok(())
}

fn respawn(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let down: Vec<usize> = with_loop(ruby, master, |lp| {
        if !lp.should_respawn() {
            return Vec::new();
        }
        (0..lp.pool.len())
            .filter(|slot| lp.pool.slot(*slot).state == SlotState::Down)
            .collect()
    })?;
    for slot in down {
        spawn(ruby, master, slot)?;
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

/// Forks a worker into `slot`: `before_fork` in the master, then the fork.
/// The child never returns from here.
fn spawn(ruby: &Ruby, master: &Master, slot: usize) -> Result<(), Error> {
    let worker = master.worker(ruby, slot);
    let task = master.task(ruby);
    let _: Value = task.funcall("before_fork", (worker,))?;
    let (link, ends) = link::open().map_err(|err| os_error(ruby, "opening worker pipes", err))?;
    let mut inherited_fds = with_loop(ruby, master, |lp| lp.descriptors_for_child())?;
    inherited_fds.extend(link.raw_fds());
    let perform_method = perform_method(ruby, task)?;
    let forked: Option<i32> = ruby.module_process().funcall("fork", ())?;
    let Some(pid) = forked else {
        child::run(
            ruby,
            Child {
                task,
                worker,
                perform_method,
                ends,
                inherited_fds,
                master_pid: master.master_pid(),
            },
        )
    };
    drop(ends);
    worker.started(pid, false);
    with_loop(ruby, master, |lp| {
        lp.pool.started(slot, pid);
        lp.links[slot] = Some(link);
    })?;
    let stats = master.stats();
    stats.spawn_count.set(stats.spawn_count.get() + 1);
    if master.verbose() {
        say(
            ruby,
            &format!("worker {} (pid {pid}) started", worker.number()),
        )?;
    }
    Ok(())
}

/// Picks `perform`, or `process` for a divvy 1.1 script that defines
/// `process` but keeps `Parallelizable`'s default `perform`.
fn perform_method(ruby: &Ruby, task: Value) -> Result<&'static str, Error> {
    if !task.respond_to("process", true)? {
        return Ok("perform");
    }
    let owner: Value = task
        .funcall::<_, _, Value>("method", ("perform",))
        .and_then(|method| method.funcall("owner", ()))
        .unwrap_or_else(|_| ruby.qnil().as_value());
    let default_owner: Option<Value> = ruby
        .define_module("Divvy")?
        .const_get::<_, Value>("Parallelizable")
        .ok();
    Ok(
        if owner.is_nil()
            || Some(owner).is_some_and(|o| default_owner.is_some_and(|d| o.eql(d).unwrap_or(false)))
        {
            "process"
        } else {
            "perform"
        },
    )
}

/// Stops every live worker: TERM, a grace period, then KILL; reaps them all.
fn terminate_all(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let alive = |ruby: &Ruby| with_loop(ruby, master, |lp| lp.pool.alive().collect::<Vec<_>>());
    for slot in alive(ruby)? {
        let _: bool = master.worker(ruby, slot).funcall("kill", ("TERM",))?;
    }
    let deadline = Instant::now() + TERM_GRACE;
    let mut signal = "TERM";
    while !alive(ruby)?.is_empty() {
        if signal == "TERM" && Instant::now() >= deadline {
            signal = "KILL";
            for slot in alive(ruby)? {
                let _: bool = master.worker(ruby, slot).funcall("kill", ("KILL",))?;
            }
        }
        let wake_write = with_loop(ruby, master, |lp| lp.wake.write_raw_fd())?;
        // Waits briefly for SIGCHLD's wake-up without holding the GVL.
        let wake_read = with_loop(ruby, master, |lp| lp.wake.read_fd().as_raw_fd())?;
        let mut fds = [pollfd(wake_read, libc::POLLIN)];
        without_gvl(ruby, wake_write, || {
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 20) }
        })?;
        with_loop(ruby, master, |lp| lp.wake.drain())?;
        for slot in alive(ruby)? {
            let Some(pid) = with_loop(ruby, master, |lp| lp.pool.slot(slot).pid)? else {
                continue;
            };
            if let Some(status) = try_wait(ruby, pid)? {
                master.worker(ruby, slot).reaped(status);
                with_loop(ruby, master, |lp| {
                    lp.links[slot] = None;
                    lp.pool.reaped(slot);
                })?;
            }
        }
    }
    Ok(())
}

fn fatal_error(ruby: &Ruby, master: &Master, fatal: Fatal) -> Error {
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
    match class.new_instance((message.clone(),)) {
        Ok(exception) => {
            let _ = exception.funcall::<_, _, Value>("instance_variable_set", ("@signo", signo));
            Error::from(exception)
        }
        Err(_) => Error::new(class, message),
    }
}

fn report_failure(
    ruby: &Ruby,
    master: &Master,
    slot: usize,
    item: &Item,
    failure: &Failure,
) -> Result<(), Error> {
    let stats = master.stats();
    stats.failures.set(stats.failures.get() + 1);
    let worker = master.worker(ruby, slot);
    let mut line = format!(
        "{} failed performing {}: {}: {}",
        label(&worker),
        describe_item(ruby, item),
        failure.class_name,
        failure.message
    );
    if master.verbose() || std::env::var_os("DIVVY_VERBOSE_TRACE").is_some_and(|v| v == "1") {
        for frame in &failure.backtrace {
            line.push_str("\n\tfrom ");
            line.push_str(frame);
        }
    }
    say(ruby, &line)
}

fn label(worker: &crate::worker::Worker) -> String {
    match worker.pid() {
        Some(pid) => format!("worker {} (pid {pid})", worker.number()),
        None => format!("worker {}", worker.number()),
    }
}

/// Describes an item by the `inspect` of its arguments, cut to a readable
/// length.
fn describe_item(ruby: &Ruby, item: &Item) -> String {
    match marshal::load(ruby, &item.payload) {
        Ok(args) => truncate(args.inspect()),
        Err(_) => format!("item #{}", item.index),
    }
}

fn truncate(mut text: String) -> String {
    if text.chars().count() > ITEM_DESCRIPTION_LIMIT {
        text = text.chars().take(ITEM_DESCRIPTION_LIMIT).collect();
        text.push_str("...");
    }
    text
}

fn error_message(error: &Error) -> String {
    match error.value().and_then(Exception::from_value) {
        Some(exception) => {
            let message: String = exception.funcall("message", ()).unwrap_or_default();
            format!("{} ({message})", unsafe { exception.classname() })
        }
        None => error.to_string(),
    }
}
