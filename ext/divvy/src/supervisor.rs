//! Supervision of the worker processes: forking them through Ruby, reaping
//! them by pid, accounting for what the dead held, replacing them, and
//! stopping them all when the run ends badly. Runs in the master.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use magnus::{prelude::*, Error, Ruby, Value};

use crate::child::{self, Child};
use crate::errors::os_error;
use crate::exit::{try_wait, Exit};
use crate::link;
use crate::master::{bump, Master};
use crate::nogvl::without_gvl;
use crate::outcome::{item_failed, label, Cause};
use crate::pool::SlotState;
use crate::run_loop::{fatal_error, handle, with_loop, Fatal, REAP_INTERVAL};
use crate::signals::{self, Stop};
use crate::stdio::say;
use crate::title;

/// How long workers get to exit after TERM before they are killed, when the
/// run stops at once.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Forks a worker into `slot`: `before_fork` in the master, then the fork.
/// The child never returns from here.
///
/// Raises what `before_fork` or `Process.fork` raise, and `Divvy::Error`
/// when no pipe can be opened.
pub fn spawn(ruby: &Ruby, master: &Master, slot: usize) -> Result<(), Error> {
    let worker = master.worker(ruby, slot);
    let task = master.task(ruby);
    let _: Value = task.funcall("before_fork", (worker,))?;
    let capture_output = with_loop(ruby, master, |lp| lp.captures_output())?;
    let (link, ends) =
        link::open(capture_output).map_err(|err| os_error(ruby, "opening worker pipes", err))?;
    let mut inherited_fds = with_loop(ruby, master, |lp| lp.descriptors_for_child())?;
    inherited_fds.extend(link.raw_fds());
    let perform_method = perform_method(ruby, task)?;
    let wants_results = task.respond_to("completed", true)?;
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
                progress: link.progress(),
                perform_id: magnus::rb_sys::AsRawId::as_raw(ruby.intern(perform_method)),
                wants_results,
                max_memory: master.options().max_memory,
                verbose: master.verbose(),
                script: title::script_name(ruby),
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
    bump(&stats.spawn_count, 1);
    if master.verbose() {
        say(ruby, &format!("{} started", label(&worker)))?;
    }
    Ok(())
}

/// Picks `perform`, or `process` for a divvy 1.1 script that defines
/// `process` but keeps `Parallelizable`'s default `perform`.
fn perform_method(ruby: &Ruby, task: Value) -> Result<&'static str, Error> {
    if !task.respond_to("process", true)? {
        return Ok("perform");
    }
    let owner = task
        .funcall::<_, _, Value>("method", ("perform",))
        .and_then(|method| method.funcall::<_, _, Value>("owner", ()))
        .ok();
    let default_owner = ruby
        .define_module("Divvy")?
        .const_get::<_, Value>("Parallelizable")
        .ok();
    let inherits_default = match (owner, default_owner) {
        (Some(owner), Some(default)) => owner.eql(default).unwrap_or(false),
        _ => true,
    };
    Ok(if inherits_default {
        "process"
    } else {
        "perform"
    })
}

/// Reaps workers that exited: those whose pipe hung up, or every live one
/// when `check_all` (a timeout or a signal, such as SIGCHLD, woke the loop).
///
/// Raises `BootFailure` when workers keep dying before they boot, and what
/// reporting raises.
pub fn reap(ruby: &Ruby, master: &Master, check_all: bool) -> Result<(), Error> {
    let candidates: Vec<(usize, i32)> = with_loop(ruby, master, |lp| {
        let all = check_all || lp.last_reap_check.elapsed() >= REAP_INTERVAL;
        if all {
            lp.last_reap_check = Instant::now();
        }
        lp.pool
            .alive()
            .filter(|slot| all || lp.links[*slot].as_ref().is_some_and(link::Link::hung_up))
            .filter_map(|slot| lp.pool.slot(slot).pid.map(|pid| (slot, pid)))
            .collect()
    })?;
    for (slot, pid) in candidates {
        if let Some(status) = try_wait(ruby, pid)? {
            // What the worker wrote before it exited is settled first: an
            // item it answered is not reported as lost, its output is shown.
            let events = with_loop(ruby, master, |lp| {
                lp.drain_output(slot);
                let mut events = Vec::new();
                lp.read_frames(slot, &mut events).map(|()| events)
            })?
            .map_err(|err| os_error(ruby, "reading from a worker", err))?;
            handle(ruby, master, events)?;
            settle_exit(ruby, master, slot, status)?;
        }
    }
    Ok(())
}

/// Accounts for a reaped worker: the item it was performing fails (or is
/// retried), items it never started go back to the queue, and the report
/// says how it ended.
fn settle_exit(ruby: &Ruby, master: &Master, slot: usize, status: Value) -> Result<(), Error> {
    let exit = Exit::from_status(status)?;
    let worker = master.worker(ruby, slot);
    worker.reaped(if exit == Exit::Unknown {
        ruby.qnil().as_value()
    } else {
        status
    });
    let (expected, departure) = with_loop(ruby, master, |lp| {
        let state = lp.pool.slot(slot);
        let expected = state.state == SlotState::Leaving && !state.timed_out;
        let departure = lp.release(slot);
        lp.hand_back(&departure.unstarted);
        if departure.during_boot {
            lp.boot_deaths_in_a_row += 1;
        }
        (expected, departure)
    })?;
    let stats = master.stats();
    bump(&stats.performed, departure.finished.len() as u64);
    let who = label(&worker);
    if let Some(item) = departure.performing {
        let cause = match master.options().timeout {
            Some(timeout) if departure.timed_out => Cause::TimedOut(timeout),
            _ => Cause::Died(exit),
        };
        if let Some(retry) = item_failed(ruby, master, &worker, item, cause)? {
            with_loop(ruby, master, |lp| lp.requeued.push_back(retry))?;
        }
    } else if departure.during_boot {
        bump(&stats.failures, 1);
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
    } else if !expected && !departure.timed_out && !exit.is_clean() {
        bump(&stats.failures, 1);
        say(ruby, &format!("{who} {}", exit.describe()))?;
    } else if master.verbose() {
        say(ruby, &format!("{who} {}", exit.describe()))?;
    }
    Ok(())
}

/// Obeys TTIN (one more worker) and TTOU (one fewer, after the last
/// worker's current items; never below one).
///
/// Raises `Divvy::Error` when a task pipe cannot be closed.
pub fn resize(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let (more, fewer) = signals::take_resizes();
    for _ in 0..more {
        let count = master.worker_count() + 1;
        master.set_worker_count(count);
        if count > master.slot_count() {
            master.add_worker(ruby);
            with_loop(ruby, master, |lp| {
                lp.pool.add_slot();
                lp.links.push(None);
            })?;
        }
        with_loop(ruby, master, |lp| {
            lp.notices.push(format!("TTIN: {count} workers"));
        })?;
    }
    for _ in 0..fewer {
        let count = master.worker_count();
        if count <= 1 {
            with_loop(ruby, master, |lp| {
                lp.notices
                    .push(String::from("TTOU ignored: one worker left"));
            })?;
            continue;
        }
        master.set_worker_count(count - 1);
        with_loop(ruby, master, |lp| -> std::io::Result<()> {
            lp.pool.leaving(count - 1);
            if let Some(link) = lp.links[count - 1].as_mut() {
                link.close_tasks()?;
            }
            lp.notices.push(format!("TTOU: {} workers", count - 1));
            Ok(())
        })?
        .map_err(|err| os_error(ruby, "closing a task pipe", err))?;
    }
    // Slots past the count go once their processes are gone.
    let count = master.worker_count();
    let gone = with_loop(ruby, master, |lp| {
        let gone = (count..lp.pool.len()).all(|slot| lp.pool.slot(slot).pid.is_none());
        if gone && lp.pool.len() > count {
            lp.pool.truncate(count);
            lp.links.truncate(count);
        }
        gone
    })?;
    if gone {
        master.truncate_workers(count);
    }
    Ok(())
}

/// Replaces dead workers while the run goes on, and starts one worker
/// that never ran (at the start of a run, or added by TTIN): starting them
/// one per turn of the loop lets the first ones work while the others
/// fork.
///
/// Raises what `spawn` raises.
pub fn respawn(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let limit = master.worker_count();
    let (replaceable, unstarted) = with_loop(ruby, master, |lp| {
        if !lp.should_respawn() {
            return (Vec::new(), None);
        }
        let replaceable = lp.pool.replaceable(limit).collect();
        (replaceable, lp.pool.first_unstarted(limit))
    })?;
    for slot in replaceable {
        spawn(ruby, master, slot)?;
        let stats = master.stats();
        bump(&stats.respawned, 1);
    }
    if let Some(slot) = unstarted {
        spawn(ruby, master, slot)?;
    }
    Ok(())
}

/// Starts every worker that never ran, so each of the pool's workers runs
/// at least once even when `dispatch` yielded fewer items than there are
/// workers. Starts none once the run is stopping.
///
/// Raises what `spawn` raises.
pub fn start_remaining(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let limit = master.worker_count();
    while let Some(slot) = with_loop(ruby, master, |lp| {
        let going_on = lp.stop == Stop::No && lp.fatal.is_none() && !lp.closing;
        going_on.then(|| lp.pool.first_unstarted(limit)).flatten()
    })? {
        spawn(ruby, master, slot)?;
    }
    Ok(())
}

/// Stops every live worker: TERM, a grace period, then KILL; reaps them
/// all, so the run leaves neither orphans nor zombies.
///
/// Raises what `Worker#kill` or waiting raise (an `Interrupt` from a trap).
pub fn terminate_all(ruby: &Ruby, master: &Master) -> Result<(), Error> {
    let alive = |ruby: &Ruby| with_loop(ruby, master, |lp| lp.pool.alive().collect::<Vec<_>>());
    for slot in alive(ruby)? {
        let _: bool = master.worker(ruby, slot).funcall("kill", ("TERM",))?;
    }
    let deadline = Instant::now() + TERM_GRACE;
    let mut killed = false;
    while !alive(ruby)?.is_empty() {
        if !killed && Instant::now() >= deadline {
            killed = true;
            for slot in alive(ruby)? {
                let _: bool = master.worker(ruby, slot).funcall("kill", ("KILL",))?;
            }
        }
        // Waits briefly for SIGCHLD's wake-up without holding the GVL.
        let (wake_read, wake_write) = with_loop(ruby, master, |lp| {
            (lp.wake.read_fd().as_raw_fd(), lp.wake.write_raw_fd())
        })?;
        let mut fds = [libc::pollfd {
            fd: wake_read,
            events: libc::POLLIN,
            revents: 0,
        }];
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
                with_loop(ruby, master, |lp| lp.release(slot))?;
            }
        }
    }
    Ok(())
}
