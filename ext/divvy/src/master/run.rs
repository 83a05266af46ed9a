//! The state of one `Master#run` as the master sees it: the engine's
//! state, the Ruby objects the run uses, the wake pipe, the progress
//! display and the process title. The block `dispatch` yields to borrows
//! it for each item (`RunCell`). It holds no Ruby object the garbage
//! collector cannot see: the task and the workers' views are kept in an
//! anchored Array.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use magnus::{prelude::*, typed_data::Obj, value::BoxValue, Error, RArray, RHash, Ruby, Value};

use divvy_core::engine::options::RunOptions;
use divvy_core::engine::scoreboard::Scoreboard;
use divvy_core::engine::worker::Occupant;
use divvy_core::engine::{Action, Engine};
use divvy_core::joblog;
use divvy_core::wire::wake::WakePipe;

use super::fork_watch::ForkWatch;
use super::joblog::{self as log, Resumed};
use super::meter::Meter;
use super::view::WorkerView;
use crate::marshal;
use crate::vm::errors::{divvy_error, os_error};
use crate::vm::gc::register;
use crate::vm::title;

/// What `Master#run` hands over to a run.
pub struct Setup {
    /// The user's task object.
    pub task: Value,
    /// The master's `Divvy::Worker` views, numbered from 1; a run adds to
    /// it on TTIN and drops from its end on TTOU.
    pub views: RArray,
    /// The Array results are stored in, at their items' dispatch indexes.
    pub results: Option<RArray>,
    /// The run's options.
    pub options: RunOptions,
    /// The job log, when one is asked for.
    pub joblog: Option<joblog::Settings>,
    /// True under `-v`.
    pub verbose: bool,
    /// The master's counters, kept across its runs.
    pub board: Arc<Scoreboard>,
    /// The pid of the master process.
    pub master_pid: i32,
}

const ANCHOR_TASK: isize = 0;
const ANCHOR_VIEWS: isize = 1;
const ANCHOR_TAG: isize = 2;
const ANCHOR_KEPT: isize = 3;
const ANCHOR_RESULTS: isize = 4;

/// One run's state.
pub struct Run {
    /// The decisions, and the workers' pipes.
    pub engine: Engine,
    /// What the engine asked for and the master has not yet done.
    pub actions: Vec<Action>,
    /// Wakes the wait from signal traps and Ruby's unblock function.
    pub wake: WakePipe,
    /// The progress display, under `progress: true`.
    pub meter: Option<Meter>,
    /// Gives up a fork that keeps failing.
    pub fork_watch: ForkWatch,
    /// True under `-v`.
    pub verbose: bool,
    /// The master's counters.
    pub board: Arc<Scoreboard>,
    /// The pid of the master process.
    pub master_pid: i32,
    /// Items `dispatch` yielded, this machine's shard or not.
    pub yielded: u64,
    /// True when the task has a hook that gets an item's arguments
    /// (`completed`, `failed`, `broke`): the arguments of an item whose dump
    /// may not load back are then kept until it settles.
    pub keeps_args: bool,
    /// True when the task has a `completed` hook.
    pub calls_completed: bool,
    /// True when results are stored in an Array (`results:`).
    pub stores_results: bool,
    /// INT and QUIT signals sent on to the workers so far.
    pub forwarded_interrupts: usize,
    /// True when standard output is a pipe or socket, watched for a reader
    /// that goes away.
    pub watch_stdout: bool,
    /// True once the reader of standard output went away: the run stops at
    /// once, quietly, as `head` expects.
    pub stdout_closed: bool,
    /// The script's name, for process titles.
    pub script: String,
    /// How many items the task says it has, for the title.
    pub total: Option<u64>,
    /// What a resumed run skips, when it resumes from a job log.
    pub resumed: Option<Resumed>,
    /// When the title was last brought up to date.
    pub titled_at: Instant,
    /// Ruby objects the run uses, kept from the garbage collector, and from
    /// compaction, for as long as the run lives: the task, the views, the
    /// tag `dispatch` is ended with, the arguments kept for items, and the
    /// results Array.
    anchor: BoxValue<RArray>,
}

impl Run {
    /// Prepares a run of `setup`'s task: opens the wake pipe, reads the
    /// task's `total`, opens the job log, starts the progress display.
    /// Starts no process. Runs in the master.
    ///
    /// Raises `Divvy::Error` when no pipe can be opened, and when the job
    /// log cannot be (see `joblog::open`).
    pub fn new(ruby: &Ruby, setup: Setup) -> Result<Run, Error> {
        divvy_core::os::fill_standard_fds();
        let wake = WakePipe::open().map_err(|err| os_error(ruby, "opening a pipe", err))?;
        let fork_watch = ForkWatch::start().map_err(|err| {
            divvy_error(
                ruby,
                format!("cannot start a run: no timer for its forks can be made ({err})"),
            )
        })?;
        let occupants = occupants(ruby, setup.views, setup.board.worker_count())?;
        let total = total(setup.task)?;
        let calls_completed = setup.task.respond_to("completed", true)?;
        let options = RunOptions {
            wants_results: calls_completed || setup.results.is_some(),
            total,
            ..setup.options
        };
        let tag: Value = ruby.class_object().new_instance(())?;
        let kept = ruby.hash_new();
        let results = setup
            .results
            .map_or_else(|| ruby.qnil().as_value(), |results| results.as_value());
        let anchor = ruby.ary_new_from_values(&[
            setup.task,
            setup.views.as_value(),
            tag,
            kept.as_value(),
            results,
        ]);
        let mut keeps_args = calls_completed;
        for hook in ["failed", "broke"] {
            keeps_args |= setup.task.respond_to(hook, true)?;
        }
        let script = title::script_name(ruby);
        let mut engine = Engine::new(options, Arc::clone(&setup.board), occupants);
        engine.land_results(Box::new(marshal::land_in_string));
        let resumed = match &setup.joblog {
            Some(settings) => log::open(ruby, settings, &mut engine, &script)?,
            None => None,
        };
        Ok(Run {
            engine,
            actions: Vec::new(),
            wake,
            meter: options.progress.then(|| Meter::new(total)),
            fork_watch,
            verbose: setup.verbose,
            board: setup.board,
            master_pid: setup.master_pid,
            yielded: 0,
            keeps_args,
            calls_completed,
            stores_results: setup.results.is_some(),
            forwarded_interrupts: 0,
            watch_stdout: divvy_core::os::stdout_is_pipe(),
            stdout_closed: false,
            script,
            total,
            resumed,
            titled_at: Instant::now(),
            anchor: register(anchor),
        })
    }

    /// The task object.
    ///
    /// Raises nothing in practice: the anchor always holds it.
    pub fn task(&self) -> Result<Value, Error> {
        self.anchor.entry(ANCHOR_TASK)
    }

    /// The `catch` tag that ends `dispatch` early.
    ///
    /// Raises nothing in practice: the anchor always holds it.
    pub fn tag(&self) -> Result<Value, Error> {
        self.anchor.entry(ANCHOR_TAG)
    }

    /// Keeps `args`, the arguments `dispatch` yielded for the item at
    /// `index`, until `kept_args` takes them.
    ///
    /// Raises nothing in practice: the anchor always holds the Hash.
    pub fn keep_args(&self, index: u64, args: RArray) -> Result<(), Error> {
        self.anchor.entry::<RHash>(ANCHOR_KEPT)?.aset(index, args)
    }

    /// The arguments kept for the item at `index`, if any; with `release`,
    /// forgets them (the item settled).
    ///
    /// Raises nothing in practice: the anchor always holds the Hash.
    pub fn kept_args(&self, index: u64, release: bool) -> Result<Option<RArray>, Error> {
        let kept = self.anchor.entry::<RHash>(ANCHOR_KEPT)?;
        if release {
            kept.delete(index)
        } else {
            kept.lookup(index)
        }
    }

    /// Stores `result` at `index` in the results Array, when there is one.
    ///
    /// Raises what `Array#[]=` raises (`FrozenError` for an Array frozen
    /// since the run began).
    pub fn store_result(&self, index: u64, result: Value) -> Result<(), Error> {
        match self.results()? {
            Some(results) => results.store(position(index), result),
            None => Ok(()),
        }
    }

    /// Makes the results Array, when there is one, reach `index` (with
    /// nil there), for an item that returned no result: its place shows
    /// among the results gathered.
    ///
    /// Raises what `Array#[]=` raises.
    pub fn reach_result(&self, index: u64) -> Result<(), Error> {
        match self.results()? {
            Some(results) if position(index) >= results.len() as isize => {
                results.store(position(index), Ruby::get_with(results).qnil())
            }
            _ => Ok(()),
        }
    }

    /// The results Array, when there is one.
    fn results(&self) -> Result<Option<RArray>, Error> {
        if !self.stores_results {
            return Ok(None);
        }
        self.anchor.entry::<RArray>(ANCHOR_RESULTS).map(Some)
    }

    /// The master's `Divvy::Worker` views.
    ///
    /// Raises nothing in practice: the anchor always holds them.
    pub fn views(&self) -> Result<RArray, Error> {
        self.anchor.entry(ANCHOR_VIEWS)
    }

    /// The view of worker `index` (its number minus one).
    ///
    /// Raises `Divvy::Error` should the views have been tampered with.
    pub fn view(&self, ruby: &Ruby, index: usize) -> Result<Obj<WorkerView>, Error> {
        self.views()?
            .entry::<Obj<WorkerView>>(index as isize)
            .map_err(|_| divvy_error(ruby, format!("worker {} has no Divvy::Worker", index + 1)))
    }

    /// True when workers' output goes through the master (a progress bar is
    /// drawn on the terminal).
    pub fn captures_output(&self) -> bool {
        self.meter.as_ref().is_some_and(Meter::drawing)
    }
}

/// Returns the views of the first `count` workers' processes, dropping
/// the views past them (left by TTOU in an earlier run).
fn occupants(ruby: &Ruby, views: RArray, count: usize) -> Result<Vec<Arc<Occupant>>, Error> {
    while views.len() > count {
        let _: Value = views.pop()?;
    }
    (0..views.len())
        .map(|index| {
            let view = views
                .entry::<Obj<WorkerView>>(index as isize)
                .map_err(|_| {
                    divvy_error(ruby, format!("worker {} has no Divvy::Worker", index + 1))
                })?;
            Ok(Arc::clone(view.occupant()))
        })
        .collect()
}

/// An item's dispatch index as an index into the results Array.
fn position(index: u64) -> isize {
    isize::try_from(index).unwrap_or(isize::MAX)
}

/// Returns the task's `total`, when it has one; a `total` that raises or
/// returns something else only leaves the title without it.
fn total(task: Value) -> Result<Option<u64>, Error> {
    if !task.respond_to("total", true)? {
        return Ok(None);
    }
    Ok(task
        .funcall::<_, _, Option<u64>>("total", ())
        .ok()
        .flatten())
}

/// A run's state, shared between `Master#run` and the block `dispatch`
/// yields to.
#[derive(Clone)]
pub struct RunCell(Rc<RefCell<Option<Run>>>);

// SAFETY: a run's state is reached only by Ruby threads holding the GVL
// (`Master#run` and the blocks it hands to `dispatch`), one at a time, and
// the GVL's own lock orders what each of them did before the next; so the
// reference count and the borrow flag are never touched concurrently.
unsafe impl Send for RunCell {}

/// The run's state, borrowed for one step of the run.
pub struct RunGuard<'a>(RefMut<'a, Option<Run>>);

impl std::ops::Deref for RunGuard<'_> {
    type Target = Run;

    fn deref(&self) -> &Run {
        match self.0.as_ref() {
            Some(run) => run,
            None => unreachable!("a guard is only made for a run that is there"),
        }
    }
}

impl std::ops::DerefMut for RunGuard<'_> {
    fn deref_mut(&mut self) -> &mut Run {
        match self.0.as_mut() {
            Some(run) => run,
            None => unreachable!("a guard is only made for a run that is there"),
        }
    }
}

impl RunCell {
    /// Holds `run`.
    pub fn new(run: Run) -> RunCell {
        RunCell(Rc::new(RefCell::new(Some(run))))
    }

    /// Borrows the run's state for one step.
    ///
    /// Raises `Divvy::Error` when the run is over (a block `dispatch` kept
    /// and called later) or its state is in use (a hook that re-enters the
    /// run, or another thread calling the block meanwhile).
    pub fn lock(&self, ruby: &Ruby) -> Result<RunGuard<'_>, Error> {
        let guard = self
            .0
            .try_borrow_mut()
            .map_err(|_| divvy_error(ruby, "Divvy::Master#run re-entered from a hook"))?;
        if guard.is_none() {
            return Err(divvy_error(ruby, "Divvy::Master is not running"));
        }
        Ok(RunGuard(guard))
    }

    /// Takes the state out at the end of the run: later calls of `lock`
    /// say the run is over.
    pub fn take(&self) -> Option<Run> {
        self.0.try_borrow_mut().ok().and_then(|mut run| run.take())
    }
}
