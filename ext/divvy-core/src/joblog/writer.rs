//! The thread that writes a job log. The master gathers each turn's
//! records in a buffer and, once the thread has taken the last ones, swaps
//! its buffer with the thread's empty one, under a lock, and goes on; the
//! thread takes the records every `WRITE_INTERVAL` or so, writes their
//! lines to the file, and starts their write-back to disk every
//! `SYNC_INTERVAL` and at the end (`os::start_writeback`). So disk latency
//! never stalls the master's loop, and a master killed outright loses at
//! most the records of its last interval.
//!
//! Two buffers swapped under a lock cost no allocation once they have
//! grown, no copy and no wake-up of the thread unless it falls behind. A
//! bounded `crossbeam-channel` carrying each turn's records, tried first,
//! woke the thread and freed in it a `Vec` allocated in the master for
//! every batch: on the tiny-item benchmark the log then cost 11 to 14% of
//! the run, against about 8% with the swapped buffers (bench/RESULTS.md
//! has the current figure). The lines are put together in the thread, not
//! in the master, whose loop is what the run waits for; and the end of the
//! run starts the write-back rather than wait for it with `fdatasync`.
//!
//! The thread starts once every worker of the pool has (`Writer::start`):
//! a process that has run a second thread forks workers in which malloc
//! takes locks, about 5% slower on CPU-bound items (see
//! `os::SignalTimer`). Until then, and in a run that ends first or cannot
//! start a thread, the master writes each turn's records itself.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::record::{Record, RunFields};

/// How often the thread takes the records the master handed over and
/// writes them to the file, while records come; it sleeps longer, up to
/// `IDLE_INTERVAL`, while none do. Short, because the master waits at the
/// end of a run for the records of the last interval.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(2);

/// The longest the thread sleeps, when no record came for a while.
pub const IDLE_INTERVAL: Duration = Duration::from_millis(100);

/// How often the thread starts the write-back of what it wrote.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Records handed over before the master wakes the thread early.
const WAKE_AT: usize = 1 << 16;

/// Records the master holds before it waits for the thread to take the
/// last ones (a disk slower than the run).
const MAX_PENDING: usize = 1 << 18;

/// Lines kept before they are written, interval or not.
const BUFFER_BYTES: usize = 1 << 20;

/// What the master and the thread share.
#[derive(Debug)]
struct Shared {
    /// What writes the lines: the master's while no thread runs, until the
    /// thread takes it.
    sink: Mutex<Option<Sink>>,
    pending: Mutex<Pending>,
    /// Tells a master waiting on a full buffer that the thread took it.
    taken: Condvar,
    /// True while `pending` holds no record: the master reads it without
    /// the lock, to hand its records over only when they can be swapped in.
    empty: AtomicBool,
    /// The first error writing met, for the master to say at once.
    failure: Mutex<Option<String>>,
}

/// The records handed over and not yet taken.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<Record>,
    /// True once the master is done: the thread writes what is left, syncs
    /// and ends.
    closed: bool,
}

impl Shared {
    fn new(sink: Sink) -> Shared {
        Shared {
            sink: Mutex::new(Some(sink)),
            pending: Mutex::default(),
            taken: Condvar::new(),
            empty: AtomicBool::new(true),
            failure: Mutex::new(None),
        }
    }

    /// Locks the sink, which is `None` once the thread took it.
    fn sink(&self) -> MutexGuard<'_, Option<Sink>> {
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `error`, the first the sink met, for the master to say.
    fn fail(&self, error: &str) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_owned());
    }

    /// Locks the buffer. A thread that panicked holding the lock leaves
    /// records that are still whole, so the lock is taken anyway.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The master's end of the writer thread. Runs in the master.
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
    /// The thread, once started.
    thread: Option<JoinHandle<Result<(), String>>>,
    /// The log's descriptor, which the thread owns.
    fd: RawFd,
}

impl Writer {
    /// Returns the writer that appends records to `file`, the job log at
    /// `path`, with the fields every record of the run shares; its thread
    /// is not started yet. Runs in the master, before the workers start.
    pub fn new(file: File, path: &Path, fields: RunFields) -> Writer {
        let fd = file.as_raw_fd();
        let sink = Sink {
            file,
            shown: path.display().to_string(),
            fields,
            lines: Vec::with_capacity(BUFFER_BYTES),
            error: None,
            synced_at: Instant::now(),
            unsynced: false,
        };
        Writer {
            shared: Arc::new(Shared::new(sink)),
            thread: None,
            fd,
        }
    }

    /// Starts the thread, unless it runs. Runs in the master, once every
    /// worker of the pool started and while the run goes on.
    ///
    /// Where no thread can be started, the master goes on writing the
    /// records itself, and the next call tries again.
    pub fn start(&mut self) {
        if self.thread.is_some() {
            return;
        }
        let theirs = Arc::clone(&self.shared);
        self.thread = std::thread::Builder::new()
            .name(String::from("divvy joblog"))
            .spawn(move || {
                let sink = theirs.sink().take();
                sink.map_or(Ok(()), |sink| sink.run(&theirs))
            })
            .ok();
    }

    /// Returns, once, the error writing met, so that the master says it
    /// when it happens rather than at the end of a long run. Runs in the
    /// master.
    pub fn take_failure(&mut self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Returns the log's descriptor, which a forked worker closes: it holds
    /// the log's lock too (see `os::try_lock`). Runs in the master, before
    /// each fork.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Offers the records in `batch` to the thread: hands them over when
    /// it has taken the last ones, swapping the two buffers so that no
    /// record is copied and `batch` gets back an empty buffer; else leaves
    /// them in `batch`, to grow until the next offer, unless `batch` holds
    /// `MAX_PENDING` records (a disk slower than the run): then waits for
    /// the thread. While no thread runs, writes them itself. Runs in the
    /// master, once per turn of its loop.
    pub fn offer(&self, batch: &mut Vec<Record>) {
        if self.thread.is_none() {
            if let Some(sink) = self.shared.sink().as_mut() {
                sink.round(batch, false, &self.shared);
            }
            return;
        }
        if batch.is_empty()
            || (batch.len() < MAX_PENDING && !self.shared.empty.load(Ordering::Acquire))
        {
            return;
        }
        let mut pending = self.shared.lock();
        while !pending.records.is_empty() && !pending.closed {
            self.wake();
            pending = self
                .shared
                .taken
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.swap_in(&mut pending, batch);
    }

    /// Hands the records in `batch` to the thread now, leaving `batch`
    /// empty. Runs in the master, as the run ends.
    pub fn hand_over(&self, batch: &mut Vec<Record>) {
        let mut pending = self.shared.lock();
        self.swap_in(&mut pending, batch);
    }

    /// Puts `batch`'s records in `pending` (swapping the buffers when
    /// `pending` is empty), and wakes the thread early when they are many.
    fn swap_in(&self, pending: &mut Pending, batch: &mut Vec<Record>) {
        if pending.records.is_empty() {
            std::mem::swap(&mut pending.records, batch);
        } else {
            pending.records.append(batch);
        }
        self.shared
            .empty
            .store(pending.records.is_empty(), Ordering::Release);
        if pending.records.len() >= WAKE_AT {
            self.wake();
        }
    }

    /// Wakes the thread.
    fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// Lets the thread write what it holds and start its write-back, and
    /// waits for it to end; where no thread ran, does that itself. Runs in
    /// the master, as the run ends.
    ///
    /// Returns the first error writing met, naming the file.
    pub fn finish(&mut self) -> Result<(), String> {
        self.shared.lock().closed = true;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            return thread
                .join()
                .unwrap_or_else(|_| Err(String::from("the job log's writer failed")));
        }
        let sink = self.shared.sink().take();
        sink.map_or(Ok(()), |sink| sink.run(&self.shared))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A run that ended without `finish` still writes its records.
        let _ = self.finish();
    }
}

/// The thread's side: the file, and the lines not yet written.
#[derive(Debug)]
struct Sink {
    file: File,
    shown: String,
    fields: RunFields,
    lines: Vec<u8>,
    /// The first error met; nothing more is written after it.
    error: Option<String>,
    /// When the write-back was last started.
    synced_at: Instant,
    /// True when lines were written since.
    unsynced: bool,
}

impl Sink {
    /// Takes and writes what the master handed over, every interval, until
    /// the master is done (at once when it is already). Runs in the thread,
    /// or in the master at the end of a run that started none.
    fn run(mut self, shared: &Shared) -> Result<(), String> {
        let mut taken = Vec::new();
        let mut interval = WRITE_INTERVAL;
        loop {
            let closed = {
                let mut pending = shared.lock();
                std::mem::swap(&mut pending.records, &mut taken);
                shared.empty.store(true, Ordering::Release);
                pending.closed
            };
            shared.taken.notify_all();
            interval = match taken.is_empty() {
                true => (interval * 2).min(IDLE_INTERVAL),
                false => WRITE_INTERVAL,
            };
            self.round(&mut taken, closed, shared);
            if closed {
                return self.error.map_or(Ok(()), Err);
            }
            std::thread::park_timeout(interval);
        }
    }

    /// Writes `records` and empties it; starts the write-back of what was
    /// written every `SYNC_INTERVAL`, and at the end (`last`); hands the
    /// first error met to `shared`, for the master to say.
    fn round(&mut self, records: &mut Vec<Record>, last: bool, shared: &Shared) {
        let failed = self.error.is_some();
        self.take(records);
        self.unsynced |= self.write();
        if self.unsynced && (last || self.synced_at.elapsed() >= SYNC_INTERVAL) {
            self.sync();
            self.synced_at = Instant::now();
            self.unsynced = false;
        }
        if let Some(error) = self.error.as_ref().filter(|_| !failed) {
            shared.fail(error);
        }
    }

    /// Turns `records` into lines, writing as they pile up, and empties it.
    fn take(&mut self, records: &mut Vec<Record>) {
        if self.error.is_none() {
            for record in records.iter() {
                record.write_to(&mut self.fields, &mut self.lines);
                if self.lines.len() >= BUFFER_BYTES {
                    self.write();
                }
            }
        }
        records.clear();
    }

    /// Writes the lines held to the file.
    ///
    /// Returns true when it wrote some.
    fn write(&mut self) -> bool {
        let wrote = self.error.is_none() && !self.lines.is_empty();
        if wrote {
            if let Err(error) = self.file.write_all(&self.lines) {
                self.error = Some(format!("cannot write the job log {}: {error}", self.shown));
            }
        }
        self.lines.clear();
        wrote
    }

    /// Starts writing what was written to disk.
    fn sync(&mut self) {
        if self.error.is_none() {
            if let Err(error) = crate::os::start_writeback(&self.file) {
                self.error = Some(format!("cannot write the job log {}: {error}", self.shown));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::joblog::record::tests::performed;

    /// A writer of `file` at `path` whose thread runs.
    fn started(file: File, path: &Path) -> Writer {
        let mut writer = Writer::new(file, path, RunFields::new("h", "c"));
        writer.start();
        writer
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("divvy-writer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn says_at_once_when_writing_fails() {
        let path = std::path::Path::new("/dev/full");
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let mut writer = started(file, path);
        writer.hand_over(&mut vec![performed(0, 1)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut failure = None;
        while failure.is_none() && Instant::now() < deadline {
            std::thread::sleep(WRITE_INTERVAL);
            failure = writer.take_failure();
        }
        let failure = failure.expect("said before the end of the run");
        assert!(
            failure.starts_with("cannot write the job log /dev/full: "),
            "{failure}"
        );
        assert_eq!(writer.take_failure(), None, "said once");
        assert_eq!(writer.finish(), Err(failure), "and again at the end");
    }

    #[test]
    fn writes_each_batch_within_the_interval_and_the_rest_at_the_end() {
        let path = temp("interval");
        let file = File::create(&path).unwrap();
        let mut writer = started(file, &path);
        let mut batch = vec![performed(0, 1), performed(1, 2)];
        writer.hand_over(&mut batch);
        assert!(batch.is_empty());
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        let deadline = Instant::now() + WRITE_INTERVAL + Duration::from_secs(2);
        while lines() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(lines(), 2, "written within the write interval");
        writer.hand_over(&mut vec![performed(2, 3)]);
        writer.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|line| line.split('\t').count() == 15));
    }

    #[test]
    fn reports_the_first_write_error() {
        let path = temp("readonly");
        std::fs::write(&path, "").unwrap();
        let file = File::open(&path).unwrap();
        let mut writer = started(file, &path);
        writer.hand_over(&mut vec![performed(0, 1)]);
        let error = writer.finish().unwrap_err();
        assert!(error.starts_with("cannot write the job log "), "{error}");
    }

    #[test]
    fn writes_each_offer_itself_until_started() {
        let path = temp("unstarted");
        let file = File::create(&path).unwrap();
        let mut writer = Writer::new(file, &path, RunFields::new("h", "c"));
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        let mut batch = vec![performed(0, 1)];
        writer.offer(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(lines(), 1, "written by the master, at once");
        writer.start();
        writer.start();
        let mut batch = vec![performed(1, 2)];
        writer.offer(&mut batch);
        assert!(batch.is_empty(), "handed over to the thread");
        writer.finish().unwrap();
        assert_eq!(lines(), 2);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn says_a_write_error_of_the_master_at_once() {
        let path = std::path::Path::new("/dev/full");
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let mut writer = Writer::new(file, path, RunFields::new("h", "c"));
        writer.offer(&mut vec![performed(0, 1)]);
        let failure = writer.take_failure().expect("said at once");
        assert!(
            failure.starts_with("cannot write the job log /dev/full: "),
            "{failure}"
        );
        writer.offer(&mut vec![performed(1, 2)]);
        assert_eq!(writer.take_failure(), None, "said once");
        assert_eq!(writer.finish(), Err(failure), "and again at the end");
    }

    #[test]
    fn writes_the_records_itself_when_no_thread_ran() {
        let path = temp("threadless");
        let file = File::create(&path).unwrap();
        let mut writer = Writer::new(file, &path, RunFields::new("h", "c"));
        writer.hand_over(&mut vec![performed(0, 1), performed(1, 2)]);
        writer.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert_eq!(writer.finish(), Ok(()), "finished once");
    }
}
