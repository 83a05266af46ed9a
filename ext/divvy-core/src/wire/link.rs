//! The channels between the master and one worker process: the item pipe
//! (master to worker), the answer pipe (worker to master), the shared
//! counter of finished items and, while a progress bar is drawn, a pipe for
//! each of the worker's stdout and stderr. The master's ends are
//! non-blocking so it never waits on a single worker: frames it sends queue
//! in an outbox flushed when the pipe has room, and frames it receives are
//! reassembled by a `Decoder`. Every pipe closes on `exec`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::counter::Counter;
use super::decoder::Decoder;
use super::frame::{item_header, Frame, ProtocolError};
use super::landing::Lander;
use super::outbox::{write_parts, Outbox};
use super::payload::Payload;
use crate::os;

/// The master's ends of one worker's pipes.
#[derive(Debug)]
pub struct Link {
    item_tx: Option<OwnedFd>,
    answer_rx: OwnedFd,
    outbox: Outbox,
    decoder: Decoder,
    closing: bool,
    hung_up: bool,
    /// Whether the item pipe was asked to grow to `PIPE_SIZE`.
    enlarged: bool,
    counter: Counter,
    output: Vec<Output>,
}

/// One of a worker's output pipes, relayed by the master while a progress
/// bar is drawn. Whole lines are printed as they come; the start of a line
/// is held until its end, so that the bar is never drawn after it.
#[derive(Debug)]
struct Output {
    /// The stream it stands for: 1 (stdout) or 2 (stderr).
    stream: RawFd,
    /// The pipe, until its end-of-file.
    pipe: Option<OwnedFd>,
    /// The start of a line the worker has not ended yet.
    partial: Vec<u8>,
}

/// The longest line held back: past it, the start of the line is printed
/// as a line of its own.
const PARTIAL_LINE_LIMIT: usize = 64 * 1024;

/// The worker's ends of its pipes, blocking.
#[derive(Debug)]
pub struct WorkerEnds {
    /// Where the worker reads `Item` frames.
    pub item_rx: OwnedFd,
    /// Where the worker writes its answers.
    pub answer_tx: OwnedFd,
    /// Pipes to put in place of the worker's stdout (1) and stderr (2),
    /// when the master prints the worker's output itself.
    pub output_tx: Vec<(RawFd, OwnedFd)>,
}

/// The size asked for an item pipe once the default one (64 KB on Linux)
/// is too small for what the worker is sent: Linux's default limit for
/// users. Asked for only then, because a user's pipes share an allowance
/// (`pipe-user-pages-soft`, 64 MB): past it, every new pipe of the user's
/// gets a single page, so growing every worker's pipe at start would leave
/// a run of 64 workers or more, and the user's other programs, with tiny
/// pipes.
const PIPE_SIZE: usize = 1024 * 1024;

/// Bytes queued for a worker past which the master writes them at once.
const OUTBOX_FLUSH_BYTES: usize = 64 * 1024;

/// Opens the pipes and the counter for a new worker; with
/// `capture_output`, also pipes for its stdout and stderr.
///
/// Returns the master's ends and the worker's ends, or the OS error when the
/// process is out of descriptors or memory.
pub fn open(capture_output: bool) -> io::Result<(Link, WorkerEnds)> {
    let mut output = Vec::new();
    let mut output_tx = Vec::new();
    if capture_output {
        for stream in [1, 2] {
            let (rx, tx) = os::pipe()?;
            set_nonblocking(&rx)?;
            output.push(Output {
                stream,
                pipe: Some(rx),
                partial: Vec::new(),
            });
            output_tx.push((stream, tx));
        }
    }
    let (item_rx, item_tx) = os::pipe()?;
    let (answer_rx, answer_tx) = os::pipe()?;
    set_nonblocking(&item_tx)?;
    set_nonblocking(&answer_rx)?;
    let link = Link {
        item_tx: Some(item_tx),
        answer_rx,
        outbox: Outbox::default(),
        decoder: Decoder::new(),
        closing: false,
        hung_up: false,
        enlarged: false,
        counter: Counter::new()?,
        output,
    };
    Ok((
        link,
        WorkerEnds {
            item_rx,
            answer_tx,
            output_tx,
        },
    ))
}

/// Payloads this large are written straight from the item, not copied
/// into the outbox first.
const DIRECT_WRITE_BYTES: usize = 64 * 1024;

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Link {
    /// Queues an `Item` frame carrying `payload`; `flush` sends it. A large
    /// payload of owned bytes is written at once, straight from `payload`,
    /// when nothing is queued before it; only what the pipe does not take
    /// is copied. Referenced bytes are spliced, not copied (see `Outbox`).
    ///
    /// Returns the OS error of a failed write.
    pub fn queue_item(&mut self, payload: &Payload) -> io::Result<()> {
        let header = item_header(payload.len());
        let direct = payload.len() >= DIRECT_WRITE_BYTES && !payload.has_references();
        if payload.len() >= DIRECT_WRITE_BYTES {
            self.enlarge();
        }
        if direct {
            self.flush()?;
        }
        let written = match &self.item_tx {
            Some(item_tx) if direct && !self.has_queued() => {
                match write_parts(item_tx.as_fd(), [&header, &payload.to_bytes()]) {
                    Ok(written) => written,
                    Err(Errno::EAGAIN) => 0,
                    Err(Errno::EPIPE) => {
                        self.item_tx = None;
                        return Ok(());
                    }
                    Err(errno) => return Err(errno.into()),
                }
            }
            _ => 0,
        };
        if written < header.len() + payload.len() {
            self.outbox.queue(&header, payload, written);
        }
        Ok(())
    }

    /// Asks, once, for the item pipe to grow to `PIPE_SIZE`: the worker is
    /// sent more than the default pipe holds.
    fn enlarge(&mut self) {
        if let (false, Some(item_tx)) = (self.enlarged, &self.item_tx) {
            os::enlarge_pipe(item_tx.as_fd(), PIPE_SIZE);
            self.enlarged = true;
        }
    }

    /// Items queued and not yet written in full.
    pub fn queued_items(&self) -> usize {
        self.outbox.items()
    }

    /// True when enough is queued that it should be written now rather than
    /// batched with more.
    pub fn outbox_full(&self) -> bool {
        self.outbox.pending_bytes() >= OUTBOX_FLUSH_BYTES
    }

    /// True when queued bytes wait to be written.
    pub fn has_queued(&self) -> bool {
        self.item_tx.is_some() && !self.outbox.is_empty()
    }

    /// The worker's counter of finished items, which the worker bumps.
    pub fn counter(&self) -> &Counter {
        &self.counter
    }

    /// Writes as much of the outbox as the pipe takes without blocking, and
    /// closes the item pipe once the outbox is empty if `close_items` asked
    /// for it. A worker that is gone (`EPIPE`) drops the outbox: its items are
    /// accounted for when it is reaped.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut written = self.write_outbox();
        if matches!(written, Some(Ok(()))) && !self.outbox.is_empty() && !self.enlarged {
            self.enlarge();
            written = self.write_outbox();
        }
        match written {
            Some(Ok(())) if !self.outbox.is_empty() => return Ok(()),
            Some(Err(Errno::EPIPE)) => self.item_tx = None,
            Some(Err(errno)) => return Err(errno.into()),
            Some(Ok(())) | None => {}
        }
        self.outbox.clear();
        if self.closing {
            self.item_tx = None;
        }
        Ok(())
    }

    /// Writes as much of the outbox as the pipe takes without blocking.
    ///
    /// Returns how the write went, `None` once the item pipe is closed.
    fn write_outbox(&mut self) -> Option<nix::Result<()>> {
        let item_tx = self.item_tx.as_ref()?;
        Some(self.outbox.write_to(item_tx.as_fd()))
    }

    /// Asks for the item pipe to be closed once the outbox is sent, so the
    /// worker reads end-of-file after its last item and exits.
    pub fn close_items(&mut self) -> io::Result<()> {
        self.closing = true;
        self.flush()
    }

    /// Reads everything the worker has written so far into the decoder;
    /// the rest of a large result whose start is in goes straight into
    /// memory `lander` provides, if given (see `land`). Records end-of-file,
    /// after which `hung_up` is true.
    pub fn receive(&mut self, mut lander: Option<&mut Lander>) -> io::Result<()> {
        while !self.hung_up {
            if let Some(lander) = lander.as_deref_mut() {
                self.decoder.land(lander);
            }
            match self.decoder.read_from(self.answer_rx.as_fd()) {
                Ok(0) => self.hung_up = true,
                Ok(count) if self.decoder.drained(count) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(other) => return Err(other.into()),
            }
        }
        Ok(())
    }

    /// Begins reading the next frame, a large result whose start is
    /// received, straight into memory `lander` provides.
    ///
    /// Returns true when it began: `receive` then reads the rest there.
    /// (`receive` begins one itself, when the large result is the next
    /// frame as it reads; this is for one that becomes the next frame as
    /// the frames before it are taken.)
    pub fn land(&mut self, lander: &mut Lander) -> bool {
        self.decoder.land(lander)
    }

    /// Returns the next complete frame received, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.decoder.next_frame()
    }

    /// True once the worker's end of the answer pipe is closed: the worker
    /// has exited (or closed it, which it never does while alive).
    pub fn hung_up(&self) -> bool {
        self.hung_up
    }

    /// The answer pipe, to poll for reading.
    pub fn answer_fd(&self) -> BorrowedFd<'_> {
        self.answer_rx.as_fd()
    }

    /// The item pipe while it is open, to poll for writing.
    pub fn item_fd(&self) -> Option<BorrowedFd<'_>> {
        self.item_tx.as_ref().map(AsFd::as_fd)
    }

    /// The descriptors a forked worker must close: the master's ends.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.answer_rx.as_raw_fd()];
        fds.extend(self.item_tx.as_ref().map(AsRawFd::as_raw_fd));
        fds.extend(
            self.output
                .iter()
                .filter_map(|output| output.pipe.as_ref().map(AsRawFd::as_raw_fd)),
        );
        fds
    }

    /// The pipes carrying the worker's output, each with its index for
    /// `relay_output`, to poll for reading. An index stays the same for the
    /// life of the link.
    pub fn output_fds(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.output
            .iter()
            .enumerate()
            .filter_map(|(index, output)| Some((index, output.pipe.as_ref()?.as_fd())))
    }

    /// Reads what the worker wrote to output pipe `index` and hands each
    /// line it ended to `print` with its stream (1 or 2), holding the start
    /// of a line until its end; at end-of-file, closes the pipe and prints
    /// the line left unfinished.
    pub fn relay_output(&mut self, index: usize, print: &mut dyn FnMut(RawFd, &[u8])) {
        let Some(output) = self.output.get_mut(index) else {
            return;
        };
        let mut buffer = [0u8; 16 * 1024];
        while let Some(pipe) = &output.pipe {
            match nix::unistd::read(pipe, &mut buffer) {
                Ok(0) => {
                    output.pipe = None;
                    output.end_line(print);
                }
                Ok(count) => output.take(&buffer[..count], print),
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// Prints the lines the worker left unfinished, each ended: used at the
    /// end of its items.
    pub fn end_output_lines(&mut self, print: &mut dyn FnMut(RawFd, &[u8])) {
        for output in &mut self.output {
            output.end_line(print);
        }
    }

    /// Writes out whatever the worker's output pipes still hold, then the
    /// lines it left unfinished; used at the end of its items and once it
    /// is gone.
    pub fn drain_output(&mut self, print: &mut dyn FnMut(RawFd, &[u8])) {
        for index in 0..self.output.len() {
            // Reads until the pipe is empty for now (a grandchild may
            // still hold it open).
            self.relay_output(index, print);
        }
        self.end_output_lines(print);
    }
}

impl Output {
    /// Adds `bytes` the worker wrote, and prints the lines they end.
    fn take(&mut self, bytes: &[u8], print: &mut dyn FnMut(RawFd, &[u8])) {
        match bytes.iter().rposition(|&byte| byte == b'\n') {
            Some(last) if self.partial.is_empty() => {
                print(self.stream, &bytes[..=last]);
                self.partial.extend_from_slice(&bytes[last + 1..]);
            }
            Some(last) => {
                self.partial.extend_from_slice(&bytes[..=last]);
                print(self.stream, &self.partial);
                self.partial.clear();
                self.partial.extend_from_slice(&bytes[last + 1..]);
            }
            None => self.partial.extend_from_slice(bytes),
        }
        if self.partial.len() > PARTIAL_LINE_LIMIT {
            self.end_line(print);
        }
    }

    /// Prints the line held back, if any, ended with a newline.
    fn end_line(&mut self, print: &mut dyn FnMut(RawFd, &[u8])) {
        if self.partial.is_empty() {
            return;
        }
        self.partial.push(b'\n');
        print(self.stream, &self.partial);
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::Frame;
    use nix::unistd::{read, write};

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match read(fd, &mut buffer) {
                Ok(0) => return bytes,
                Ok(count) => bytes.extend_from_slice(&buffer[..count]),
                Err(errno) => panic!("read failed: {errno}"),
            }
        }
    }

    #[test]
    fn sends_an_item_larger_than_the_pipe_in_pieces() {
        let (mut link, ends) = open(false).unwrap();
        let payload = vec![3u8; 1024 * 1024];
        link.queue_item(&Payload::from(payload.clone())).unwrap();
        link.flush().unwrap();
        assert!(link.has_queued(), "a 1 MB frame cannot fit a pipe at once");
        let reader = std::thread::spawn(move || read_all(&ends.item_rx));
        while link.has_queued() {
            link.flush().unwrap();
            std::thread::yield_now();
        }
        link.close_items().unwrap();
        let received = reader.join().unwrap();
        assert_eq!(received, Frame::Item(payload).encode());
    }

    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn item_pipe_size(link: &Link) -> i32 {
        let item_tx = link.item_tx.as_ref().unwrap();
        fcntl(item_tx.as_fd(), FcntlArg::F_GETPIPE_SZ).unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn grows_the_item_pipe_only_when_the_default_is_too_small() {
        let (mut link, _ends) = open(false).unwrap();
        let default = item_pipe_size(&link);
        assert!(default < PIPE_SIZE as i32, "the test needs a default pipe");
        for _ in 0..100 {
            link.queue_item(&Payload::from(vec![1u8; 100])).unwrap();
        }
        link.flush().unwrap();
        assert_eq!(item_pipe_size(&link), default, "small items fit");
        for _ in 0..1000 {
            link.queue_item(&Payload::from(vec![2u8; 100])).unwrap();
        }
        link.flush().unwrap();
        assert_eq!(item_pipe_size(&link), PIPE_SIZE as i32);
        assert!(!link.has_queued(), "all of it fits the grown pipe");
    }

    #[test]
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn grows_the_item_pipe_for_a_large_item() {
        let (mut link, _ends) = open(false).unwrap();
        link.queue_item(&Payload::from(vec![3u8; DIRECT_WRITE_BYTES]))
            .unwrap();
        assert_eq!(item_pipe_size(&link), PIPE_SIZE as i32);
        assert!(!link.has_queued(), "written at once");
    }

    #[test]
    fn receives_frames_and_sees_the_worker_hang_up() {
        let (mut link, ends) = open(false).unwrap();
        let mut bytes = Frame::Ready.encode();
        Frame::Done.encode_into(&mut bytes);
        write(&ends.answer_tx, &bytes).unwrap();
        drop(ends);
        // A short read returns at once; end-of-file shows on the next one,
        // as it does when poll reports the pipe readable again.
        link.receive(None).unwrap();
        link.receive(None).unwrap();
        assert_eq!(link.next_frame().unwrap(), Some(Frame::Ready));
        assert_eq!(link.next_frame().unwrap(), Some(Frame::Done));
        assert_eq!(link.next_frame().unwrap(), None);
        assert!(link.hung_up());
    }

    #[test]
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    fn receives_what_follows_a_landed_result_in_the_same_call() {
        // As when a worker that exited is settled: one call must read all
        // it wrote, though the landing's last read is short of 64 KB.
        let (mut link, ends) = open(false).unwrap();
        os::enlarge_pipe(ends.answer_tx.as_fd(), 1024 * 1024);
        let mut bytes = Frame::Result(vec![5; 100_000].into()).encode();
        Frame::Done.encode_into(&mut bytes);
        write(&ends.answer_tx, &bytes).unwrap();
        drop(ends);
        let mut lander = crate::wire::landing::tests::vec_lander();
        link.receive(Some(&mut *lander)).unwrap();
        assert!(matches!(
            link.next_frame().unwrap(),
            Some(Frame::Result(crate::wire::frame::ResultBytes::Landed(_)))
        ));
        assert_eq!(link.next_frame().unwrap(), Some(Frame::Done));
    }

    #[test]
    fn a_vanished_worker_does_not_fail_the_master() {
        let (mut link, ends) = open(false).unwrap();
        drop(ends);
        link.queue_item(&Payload::from(b"item".to_vec())).unwrap();
        link.flush().unwrap();
        assert!(!link.has_queued());
    }

    /// Runs `relay` with a printer that collects what it prints.
    fn printed(relay: impl FnOnce(&mut dyn FnMut(RawFd, &[u8]))) -> Vec<(RawFd, String)> {
        let mut seen = Vec::new();
        relay(&mut |stream, bytes| {
            seen.push((stream, String::from_utf8_lossy(bytes).into_owned()))
        });
        seen
    }

    #[test]
    fn relays_whole_lines_and_holds_the_start_of_one() {
        let (mut link, ends) = open(true).unwrap();
        let (stdout, stderr) = (&ends.output_tx[0].1, &ends.output_tx[1].1);
        write(stdout, b"one\ntw").unwrap();
        write(stderr, b"oops").unwrap();
        let seen = printed(|print| {
            link.relay_output(0, print);
            link.relay_output(1, print);
        });
        assert_eq!(seen, [(1, String::from("one\n"))]);
        write(stdout, b"o\nthr").unwrap();
        let seen = printed(|print| link.relay_output(0, print));
        assert_eq!(seen, [(1, String::from("two\n"))]);
        let seen = printed(|print| link.end_output_lines(print));
        assert_eq!(
            seen,
            [(1, String::from("thr\n")), (2, String::from("oops\n"))]
        );
    }

    #[test]
    fn ends_the_last_line_when_the_worker_is_gone() {
        let (mut link, ends) = open(true).unwrap();
        write(&ends.output_tx[0].1, b"dots...").unwrap();
        drop(ends);
        let seen = printed(|print| link.drain_output(print));
        assert_eq!(seen, [(1, String::from("dots...\n"))]);
        assert_eq!(link.output_fds().count(), 0, "both pipes closed");
        assert_eq!(link.raw_fds().len(), 2, "the item and answer pipes");
    }

    #[test]
    fn breaks_a_line_too_long_to_hold() {
        let (mut link, ends) = open(true).unwrap();
        let long = vec![b'x'; PARTIAL_LINE_LIMIT + 1];
        let writer = std::thread::spawn(move || {
            write(&ends.output_tx[0].1, &long).unwrap();
            ends
        });
        let mut seen = Vec::new();
        while seen.is_empty() {
            seen = printed(|print| link.relay_output(0, print));
        }
        drop(writer.join().unwrap());
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.len(), PARTIAL_LINE_LIMIT + 2);
    }
}
