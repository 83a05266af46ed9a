//! Which pipes the master waits on, and reading what they bring.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use super::{Action, Engine};

/// What a descriptor in the master's wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Worker `index`'s answer pipe.
    Answers(usize),
    /// Worker `index`'s item pipe, while frames wait for room in it.
    Items(usize),
    /// Output pipe `n` of worker `index` (while a progress bar is drawn).
    Output(usize, usize),
}

impl Engine {
    /// Writes what is queued for each worker, then lists what to wait on
    /// in `fds`, with what each is for in `watched`: each worker's answer
    /// pipe (until it hangs up), its item pipe while frames wait for room,
    /// and its output pipes.
    ///
    /// Returns the OS error of a failed write.
    pub fn watch(
        &mut self,
        fds: &mut Vec<libc::pollfd>,
        watched: &mut Vec<Watched>,
    ) -> io::Result<()> {
        for (index, worker) in self.pool.workers_mut().enumerate() {
            let Some(link) = worker.link_mut() else {
                continue;
            };
            if link.has_queued() {
                link.flush()?;
            }
            if !link.hung_up() {
                fds.push(pollfd(link.answer_fd().as_raw_fd(), libc::POLLIN));
                watched.push(Watched::Answers(index));
            }
            if let (true, Some(item_fd)) = (link.has_queued(), link.item_fd()) {
                fds.push(pollfd(item_fd.as_raw_fd(), libc::POLLOUT));
                watched.push(Watched::Items(index));
            }
            for (output, fd) in link.output_fds() {
                fds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
                watched.push(Watched::Output(index, output));
            }
        }
        Ok(())
    }

    /// Handles the pipes a wait found `ready`: reads the workers' counters
    /// and answers, writes what is queued, and hands what workers printed
    /// to `print` with the stream (1 or 2) it was for; then records in the
    /// job log the items workers finished (see `journal`).
    ///
    /// Returns the OS error of a failed read or write.
    pub fn collect(
        &mut self,
        ready: &[Watched],
        now: Instant,
        actions: &mut Vec<Action>,
        print: &mut dyn FnMut(RawFd, &[u8]),
    ) -> io::Result<()> {
        self.pool.observe_counters(now);
        self.stamp_journal(now);
        for watched in ready {
            match *watched {
                Watched::Items(index) => {
                    if let Some(link) = self.pool.worker_mut(index).link_mut() {
                        link.flush()?;
                    }
                }
                Watched::Answers(index) => {
                    self.read_answers(index, actions)?;
                    self.end_output_of_items(index, print);
                }
                Watched::Output(index, output) => {
                    if let Some(link) = self.pool.worker_mut(index).link_mut() {
                        link.relay_output(output, &mut *print);
                    }
                }
            }
        }
        self.sweep_journal(now, actions)
    }

    /// Once worker `index` has answered for every item it held, prints all
    /// it wrote, lines it left unfinished included: a worker flushes its
    /// output before it answers, and holds no item that could print more.
    /// While it holds another item, what is in its pipes may already be
    /// that item's, so an unfinished line waits for its end.
    fn end_output_of_items(&mut self, index: usize, print: &mut dyn FnMut(RawFd, &[u8])) {
        let worker = self.pool.worker_mut(index);
        if worker.held_count() > 0 {
            return;
        }
        if let Some(link) = worker.link_mut() {
            link.drain_output(print);
        }
    }

    /// Hands what worker `index` still has in its output pipes to `print`:
    /// used once it is gone.
    pub fn drain_output(&mut self, index: usize, print: &mut dyn FnMut(RawFd, &[u8])) {
        if let Some(link) = self.pool.worker_mut(index).link_mut() {
            link.drain_output(print);
        }
    }

    /// The descriptors a freshly forked worker must close: the master's
    /// ends of every worker's pipes, and the job log (whose lock a worker
    /// would otherwise hold after its master died).
    pub fn descriptors_for_child(&self) -> Vec<RawFd> {
        self.pool
            .workers()
            .filter_map(|worker| worker.link())
            .flat_map(|link| link.raw_fds())
            .chain(self.journal_fd())
            .collect()
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::options::RunOptions;
    use crate::engine::tests::engine;
    use crate::wire::frame::Frame;
    use crate::wire::link;

    #[test]
    fn waits_on_answers_and_reads_them() {
        let mut engine = engine(1, RunOptions::default());
        let (link, ends) = link::open(false).unwrap();
        engine.started(0, 42, Some(link));
        let (mut fds, mut watched) = (Vec::new(), Vec::new());
        engine.watch(&mut fds, &mut watched).unwrap();
        assert_eq!(watched, [Watched::Answers(0)]);
        assert_eq!(fds.len(), 1);
        assert_eq!(engine.descriptors_for_child().len(), 2);
        nix::unistd::write(&ends.answer_tx, &Frame::Ready.encode()).unwrap();
        let mut actions = Vec::new();
        engine
            .collect(&watched, Instant::now(), &mut actions, &mut |_, _| {})
            .unwrap();
        assert_eq!(engine.pool().least_loaded(), Some(0), "booted");
    }
}
