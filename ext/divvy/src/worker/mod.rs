//! The worker process: what a forked child runs until it exits. It boots
//! (`boot`), then takes items one at a time (`receive`), performs each
//! (`perform`) and answers for it (`answer`), and leaves (`leave`) when the
//! master closes its item pipe or a signal asks it to. It never returns into
//! the master's Ruby frames: it leaves with `_exit` after flushing
//! `$stdout` and `$stderr`, so no `ensure` block or `at_exit` handler of
//! the master runs here. The master's record of a worker is
//! `divvy_core::engine::worker`; this is the process itself.

mod answer;
mod arity;
mod boot;
mod crash;
mod leave;
mod perform;
mod receive;

use std::os::fd::RawFd;

use magnus::{Ruby, Value};

use divvy_core::os;
use divvy_core::wire::counter::Counter;
use divvy_core::wire::link::WorkerEnds;

use self::leave::leave;
use self::perform::Performer;
use self::receive::Receiver;

pub use self::boot::current;
pub use self::leave::{obey_early, report_and_leave};

/// Everything a freshly forked worker needs, handed over by the master.
pub struct Setup<'a> {
    /// The user's task object.
    pub task: Value,
    /// The worker's own `Divvy::Worker`.
    pub view: Value,
    /// The worker's number, from 1.
    pub number: usize,
    /// The object whose method performs an item: the task, or what the
    /// task's `divvy_performer` returned (`Divvy.map`'s block).
    pub performer: Value,
    /// That method (`perform`, `process` for scripts written for divvy
    /// 1.1, or `call`).
    pub perform_method: &'static str,
    /// The worker's ends of its pipes.
    pub ends: WorkerEnds,
    /// Descriptors inherited from the master that the worker must close.
    pub inherited_fds: Vec<RawFd>,
    /// The master's pid, to notice a master that died before the fork
    /// finished.
    pub master_pid: i32,
    /// The counter of finished items the master reads.
    pub counter: &'a Counter,
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

/// Runs the worker: boots, performs items until its item pipe ends, exits.
/// Runs in the worker process only and never returns.
pub fn run(ruby: &Ruby, setup: Setup<'_>) -> ! {
    let label = boot::boot(ruby, &setup);
    let performer = Performer::new(ruby, &setup);
    let mut receiver = Receiver::new(&setup.ends.item_rx);
    loop {
        let received = match receiver.next_item(ruby) {
            Ok(Some(received)) => received,
            Ok(None) => leave::leave_at_the_end(),
            Err(error) => report_and_leave(ruby, &format!("{label} stopped"), &error),
        };
        // Marked before anything of the item runs: should the worker die
        // from here on, the master knows the item had begun.
        setup.counter.start();
        if received.len() >= crate::marshal::LARGE_STRING && setup.max_memory.is_none() {
            // Not under --max-memory: memory kept for reuse would count
            // against the limit.
            os::keep_freed_memory();
        }
        leave::performing(true);
        let answered = performer.perform_and_answer(ruby, received, setup.counter);
        if !answered {
            leave(1);
        }
        check_memory(ruby, &setup, &label);
        // Cleared only once the answer is queued: a trap that runs during a
        // write must not leave with the item performed but unanswered.
        leave::performing(false);
        leave::leave_if_asked();
    }
}

/// Asks the worker to leave after this item when its resident memory
/// passed `max_memory`.
fn check_memory(ruby: &Ruby, setup: &Setup<'_>, label: &str) {
    let Some(limit) = setup.max_memory else {
        return;
    };
    let resident = os::resident_bytes();
    if resident <= limit {
        return;
    }
    leave::ask_to_leave();
    if setup.verbose {
        let _ = crate::vm::stdio::say(
            ruby,
            &format!(
                "{label} retires: {} MB resident, over {} MB",
                resident >> 20,
                limit >> 20
            ),
        );
    }
}
