//! Writing to stdout and stderr without ever waiting for them.
//!
//! A `write(2)` to a pipe blocks while the pipe is full: when the reader is slow (Docker's
//! `awslogs` driver in its default blocking mode while CloudWatch Logs is slow), or gone
//! for good. On the agent's one thread that would stop sampling, signal handling, child
//! supervision and the flush deadline. So an [`Outlet`] hands each line to a small thread
//! of its own, started at the first line, through a bounded buffer: the agent only ever
//! takes a lock for a queue push. While the pipe is full, lines wait; when the buffer
//! overflows, the oldest are dropped and counted. A write that fails (EPIPE once the
//! reader has gone) ends the outlet for good, and the agent is told. A regular file or
//! `/dev/null` cannot block that way: those are written at once, with no thread.
//!
//! The thread writes through a duplicate of the descriptor, never through `std::io`'s
//! buffered `Stdout`, so nothing is left for the exit path to flush: the process can
//! always exit, even while that thread is stuck in `write(2)`. Stdout is also watched in
//! the reactor for the error a pipe's write end reports once its reader has gone, so
//! `--dry-run | head -1` ends as soon as `head` does, not at the next write.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// Documents waiting for stdout: minutes of EMF or dry-run output at a 1 s period,
/// hours at 60 s, for a bounded 1 MiB.
pub const STDOUT_CAPACITY: usize = 1 << 20;
/// Log lines waiting for stderr.
pub const STDERR_CAPACITY: usize = 256 << 10;
/// The writer thread only loops over `write(2)`.
const THREAD_STACK: usize = 64 << 10;

/// Whether descriptor 1 was closed when the process started (`>&-`). Rust's runtime puts
/// `/dev/null` on a closed standard descriptor before `main` runs, so documents would
/// vanish there with status 0; the look is taken earlier, from the ELF `.init_array`,
/// which the C runtime runs before `main` (as the `ctor` crate does).
static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static LOOK_AT_STDOUT_BEFORE_MAIN: extern "C" fn() = look_at_stdout;

#[cfg(target_os = "linux")]
extern "C" fn look_at_stdout() {
    // SAFETY: F_GETFD reads a descriptor's flags and changes nothing; on a closed one it
    // fails with EBADF.
    let closed = unsafe { nix::libc::fcntl(1, nix::libc::F_GETFD) } == -1;
    STDOUT_CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

/// Whether stdout was closed when the agent started (Linux; elsewhere never known).
pub fn stdout_closed_at_start() -> bool {
    STDOUT_CLOSED_AT_START.load(Ordering::Relaxed)
}

/// Why an outlet stopped writing: the error of the write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// What kind of error: `BrokenPipe` when the reader has gone.
    pub kind: io::ErrorKind,
    /// The OS error number, for the message.
    code: Option<i32>,
}

impl Failure {
    /// The failure of `e`.
    pub fn of(e: &io::Error) -> Self {
        Failure {
            kind: e.kind(),
            code: e.raw_os_error(),
        }
    }

    /// There was no stdout to begin with (`>&-`): EBADF.
    pub fn descriptor_closed(&self) -> bool {
        self.code == Some(nix::errno::Errno::EBADF as i32)
    }

    /// The reader closed its end (EPIPE): nothing written from now on can arrive.
    pub fn reader_gone(&self) -> bool {
        self.kind == io::ErrorKind::BrokenPipe
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => io::Error::from_raw_os_error(code).fmt(f),
            None => io::Error::from(self.kind).fmt(f),
        }
    }
}

/// What an outlet has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Lines not yet written, the one being written included.
    pub pending: usize,
    /// Lines written.
    pub written: u64,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    /// Set once a write has failed; nothing is written after that.
    pub failed: Option<Failure>,
}

/// The result of handing a line over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; this many of the oldest lines were dropped to make room.
    Queued { dropped: u64 },
    /// Not queued: writing has failed for good.
    Failed(Failure),
}

/// A destination written by its own thread through a bounded buffer (or at once, where
/// a write cannot block). Pushing never blocks; waiting for the buffer to drain is
/// bounded by the caller.
#[derive(Debug)]
pub struct Outlet {
    /// What the pusher and the writer thread share.
    shared: Arc<Shared>,
    /// The writer's progress, for waiting on it in the runtime.
    progress: watch::Receiver<Progress>,
    /// A duplicate of the destination to watch for its reader's departure (`EPOLLERR` on
    /// a pipe's write end), until [`Outlet::failure`] takes it to the reactor.
    watch: Option<OwnedFd>,
}

#[derive(Debug)]
struct Shared {
    /// "stdout", "stderr": the thread's name and the drop note's subject.
    name: &'static str,
    /// Most bytes waiting; beyond it the oldest lines are dropped.
    capacity: usize,
    /// Write a line saying how many lines were dropped, before the next one (stderr).
    note_drops: bool,
    state: Mutex<State>,
    /// Signalled when a line arrives.
    more: Condvar,
    /// Signalled when the buffer empties or writing fails.
    idle: Condvar,
    /// The progress, published after every change for async waiters.
    progress: watch::Sender<Progress>,
}

#[derive(Debug)]
struct State {
    /// Where the lines go.
    target: Target,
    /// Lines waiting, oldest first.
    lines: VecDeque<Vec<u8>>,
    /// Their size in all, against the capacity.
    bytes: usize,
    /// The writer thread is in `write(2)` with a line taken off `lines`.
    writing: bool,
    /// Lines written, dropped, and dropped already told of (stderr's note).
    written: u64,
    dropped: u64,
    noted: u64,
    /// The error that ended writing.
    failed: Option<Failure>,
}

/// Where the lines go, and who writes them.
#[derive(Debug)]
enum Target {
    /// A pipe, socket or terminal, which can block: the writer thread takes it at the
    /// first line.
    Later(File),
    /// A regular file or `/dev/null`, which never blocks for long: written at once, on
    /// the pusher's thread, with no thread of its own.
    Direct(File),
    /// With the writer thread, or gone.
    Taken,
}

impl Target {
    fn of(file: File) -> Target {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let null = std::fs::metadata("/dev/null").ok();
        let direct = file.metadata().is_ok_and(|m| {
            m.file_type().is_file()
                || (m.file_type().is_char_device() && null.is_some_and(|n| n.rdev() == m.rdev()))
        });
        if direct {
            Target::Direct(file)
        } else {
            Target::Later(file)
        }
    }
}

impl State {
    fn progress(&self) -> Progress {
        Progress {
            pending: self.lines.len() + usize::from(self.writing),
            written: self.written,
            dropped: self.dropped,
            failed: self.failed,
        }
    }

    fn busy(&self) -> bool {
        self.failed.is_none() && (self.writing || !self.lines.is_empty())
    }
}

impl Outlet {
    /// An outlet writing to `target`, which it owns (pass a duplicate of a shared
    /// descriptor). `capacity` bounds the bytes waiting.
    pub fn new(name: &'static str, target: io::Result<OwnedFd>, capacity: usize) -> Outlet {
        Outlet::build(name, target, capacity, false)
    }

    /// Also watches the destination for its reader's departure, through `watched` (a
    /// duplicate of the same descriptor).
    pub fn watching(mut self, watched: io::Result<OwnedFd>) -> Outlet {
        self.watch = watched.ok();
        self
    }

    fn build(
        name: &'static str,
        target: io::Result<OwnedFd>,
        capacity: usize,
        note_drops: bool,
    ) -> Outlet {
        let (target, failed) = match target {
            Ok(fd) => (Target::of(File::from(fd)), None),
            Err(e) => (Target::Taken, Some(Failure::of(&e))),
        };
        let state = State {
            target,
            lines: VecDeque::new(),
            bytes: 0,
            writing: false,
            written: 0,
            dropped: 0,
            noted: 0,
            failed,
        };
        let (progress, receiver) = watch::channel(state.progress());
        Outlet {
            shared: Arc::new(Shared {
                name,
                capacity,
                note_drops,
                state: Mutex::new(state),
                more: Condvar::new(),
                idle: Condvar::new(),
                progress,
            }),
            progress: receiver,
            watch: None,
        }
    }

    /// Stdout, for documents, watched for its reader's departure. A stdout that was
    /// closed when the agent started (`>&-`) fails at once: descriptor 1 then holds the
    /// `/dev/null` Rust's runtime put there, not a destination.
    pub fn stdout() -> Outlet {
        let dup = || {
            if stdout_closed_at_start() {
                Err(io::Error::from_raw_os_error(
                    nix::errno::Errno::EBADF as i32,
                ))
            } else {
                io::stdout().as_fd().try_clone_to_owned()
            }
        };
        Outlet::new("stdout", dup(), STDOUT_CAPACITY).watching(dup())
    }

    /// Queues `line` (with its newline) for writing, dropping the oldest lines when the
    /// buffer would hold more than its capacity. Never waits for the writer.
    pub fn push(&self, line: Vec<u8>) -> Pushed {
        let mut state = self.shared.lock();
        if let Some(failure) = state.failed {
            return Pushed::Failed(failure);
        }
        if let Target::Direct(file) = &state.target {
            match (&*file).write_all(&line) {
                Ok(()) => state.written += 1,
                Err(e) => state.failed = Some(Failure::of(&e)),
            }
            self.shared.publish(&state);
            return match state.failed {
                Some(failure) => Pushed::Failed(failure),
                None => Pushed::Queued { dropped: 0 },
            };
        }
        let mut dropped = 0;
        while state.bytes + line.len() > self.shared.capacity {
            let Some(oldest) = state.lines.pop_front() else {
                break;
            };
            state.bytes -= oldest.len();
            dropped += 1;
        }
        state.dropped += dropped;
        state.bytes += line.len();
        state.lines.push_back(line);
        if let Target::Later(target) = std::mem::replace(&mut state.target, Target::Taken) {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("{} writer", self.shared.name))
                .stack_size(THREAD_STACK)
                .spawn(move || shared.serve(target));
            if let Err(e) = spawned {
                // No thread to spare: nothing can be written, which `failure` reports.
                state.failed = Some(Failure::of(&e));
            }
        }
        self.shared.publish(&state);
        self.shared.more.notify_one();
        Pushed::Queued { dropped }
    }

    /// What has happened so far.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A future that completes once writing has failed for good, or the watched reader
    /// has gone. It owns what it waits on, so it is made once and polled for as long as
    /// wanted, beside pushes; the reader is watched by the first one made. Must be called
    /// inside the runtime.
    pub fn failure(&mut self) -> impl Future<Output = Failure> + Send + 'static {
        // Only the error readiness is wanted; a regular file cannot be watched.
        // SAFETY: the `OwnedFd` is this outlet's own duplicate, open until the `AsyncFd`
        // drops it.
        let watched = self
            .watch
            .take()
            .and_then(|fd| unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) }.ok());
        let mut progress = self.progress.clone();
        let shared = Arc::clone(&self.shared);
        async move {
            let failed = async {
                loop {
                    if let Some(failure) = progress.borrow_and_update().failed {
                        return failure;
                    }
                    if progress.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            };
            let hangup = async {
                match &watched {
                    Some(fd) if fd.ready(Interest::ERROR).await.is_ok() => {}
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                failure = failed => failure,
                () = hangup => {
                    let epipe = io::Error::from_raw_os_error(nix::errno::Errno::EPIPE as i32);
                    let gone = Failure::of(&epipe);
                    shared.fail(gone);
                    gone
                }
            }
        }
    }

    /// Completes once every line pushed so far is written, or writing has failed.
    pub async fn drained(&mut self) -> Progress {
        loop {
            let progress = *self.progress.borrow_and_update();
            if progress.pending == 0 || progress.failed.is_some() {
                return progress;
            }
            if self.progress.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Waits at most `timeout` for every line pushed so far to be written, without a
    /// runtime (the last lines of `main`). True when nothing is left.
    pub fn drain_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.busy() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        !state.busy()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: &State) {
        self.progress.send_replace(state.progress());
    }

    /// Ends writing from outside the writer thread: what is queued will not be written.
    fn fail(&self, failure: Failure) {
        let mut state = self.lock();
        state.failed.get_or_insert(failure);
        self.publish(&state);
        self.idle.notify_all();
    }

    /// The writer thread: one line at a time, the lock never held across `write(2)`.
    fn serve(&self, mut target: File) {
        loop {
            let (line, note) = {
                let mut state = self.lock();
                while state.lines.is_empty() {
                    state = self
                        .more
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                let Some(line) = state.lines.pop_front() else {
                    continue;
                };
                state.bytes -= line.len();
                state.writing = true;
                let unnoted = state.dropped - state.noted;
                state.noted = state.dropped;
                (line, (self.note_drops && unnoted > 0).then_some(unnoted))
            };
            let mut result = Ok(());
            if let Some(n) = note {
                let text = format!(
                    "cloudwatch_metrics_agent: {n} lines were dropped while {} was blocked\n",
                    self.name
                );
                result = target.write_all(text.as_bytes());
            }
            let result = result.and_then(|()| target.write_all(&line));
            let mut state = self.lock();
            state.writing = false;
            match result {
                Ok(()) => state.written += 1,
                Err(e) => state.failed = Some(Failure::of(&e)),
            }
            self.publish(&state);
            if !state.busy() {
                self.idle.notify_all();
            }
            if state.failed.is_some() {
                return;
            }
        }
    }
}

/// Stderr, for the log and the agent's last words: one outlet for the whole process.
pub fn stderr() -> &'static Outlet {
    static STDERR: OnceLock<Outlet> = OnceLock::new();
    STDERR.get_or_init(|| {
        Outlet::build(
            "stderr",
            io::stderr().as_fd().try_clone_to_owned(),
            STDERR_CAPACITY,
            true,
        )
    })
}

/// One line on stderr, through its outlet.
pub fn eprintln(line: impl fmt::Display) {
    stderr().push(format!("{line}\n").into_bytes());
}

/// The log's destination: each record (which the logger writes whole) becomes one line
/// of the stderr outlet.
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        stderr().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pipe() -> (io::PipeReader, OwnedFd) {
        let (reader, writer) = io::pipe().unwrap();
        (reader, OwnedFd::from(writer))
    }

    /// A pipe that holds only one page.
    fn small_pipe() -> (io::PipeReader, OwnedFd) {
        let (reader, writer) = pipe();
        nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
        (reader, writer)
    }

    #[test]
    fn lines_arrive_in_order_and_drain_is_reported() {
        let (mut reader, writer) = pipe();
        let outlet = Outlet::new("test", Ok(writer), 1 << 20);
        for i in 0..3 {
            assert_eq!(
                outlet.push(format!("line {i}\n").into_bytes()),
                Pushed::Queued { dropped: 0 }
            );
        }
        assert!(outlet.drain_blocking(Duration::from_secs(5)));
        let mut got = vec![0; 21];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, b"line 0\nline 1\nline 2\n");
        let progress = outlet.progress();
        assert_eq!((progress.written, progress.pending), (3, 0));
    }

    #[test]
    fn a_full_pipe_never_blocks_the_pusher_and_the_oldest_lines_go_first() {
        let (mut reader, writer) = small_pipe();
        let outlet = Outlet::new("test", Ok(writer), 10_000);
        // 200 lines of 1000 bytes: the pipe (4 KiB) fills, then the 10 kB buffer.
        let started = Instant::now();
        let mut dropped = 0;
        for i in 0..200u32 {
            let mut line = format!("{i:04}").into_bytes();
            line.resize(999, b'.');
            line.push(b'\n');
            if let Pushed::Queued { dropped: n } = outlet.push(line) {
                dropped += n;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1), "pushing waited");
        assert!(
            !outlet.drain_blocking(Duration::from_millis(100)),
            "stuck: {:?}",
            outlet.progress()
        );
        let progress = outlet.progress();
        assert!(dropped > 0 && progress.dropped == dropped, "{progress:?}");
        assert!(progress.pending <= 11, "{progress:?}");
        // The reader comes back: what was kept arrives in order, the newest last.
        let reading = std::thread::spawn(move || {
            let (mut all, mut chunk) = (Vec::new(), vec![0; 1 << 16]);
            let last_line = |all: &[u8]| {
                all.len() >= 1000
                    && all.len().is_multiple_of(1000)
                    && all[all.len() - 1000..].starts_with(b"0199")
            };
            while !last_line(&all) {
                let n = reader.read(&mut chunk).unwrap();
                assert!(n > 0, "the pipe closed early");
                all.extend_from_slice(&chunk[..n]);
            }
            all
        });
        assert!(outlet.drain_blocking(Duration::from_secs(5)));
        let all = reading.join().unwrap();
        let progress = outlet.progress();
        assert_eq!(progress.written + progress.dropped, 200, "{progress:?}");
        assert_eq!(all.len() as u64, progress.written * 1000);
        let numbers: Vec<u32> = all
            .chunks(1000)
            .map(|l| std::str::from_utf8(&l[..4]).unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order");
    }

    #[test]
    fn a_closed_reader_fails_the_outlet_for_good() {
        let (reader, writer) = pipe();
        drop(reader);
        let mut outlet = Outlet::new("test", Ok(writer), 1 << 20);
        outlet.push(b"lost\n".to_vec());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let failure = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), outlet.failure())
                .await
                .expect("the failure is reported")
        });
        assert!(failure.reader_gone(), "{failure:?}");
        assert_eq!(outlet.push(b"x\n".to_vec()), Pushed::Failed(failure));
        assert!(
            outlet.drain_blocking(Duration::ZERO),
            "nothing left to wait for"
        );
    }

    #[test]
    fn a_regular_file_is_written_at_once_without_a_thread() {
        let mut file = tempfile::tempfile().unwrap();
        let outlet = Outlet::new("test", Ok(OwnedFd::from(file.try_clone().unwrap())), 100);
        assert_eq!(
            outlet.push(b"one\n".to_vec()),
            Pushed::Queued { dropped: 0 }
        );
        // Written before push returned: no thread, nothing waiting.
        assert_eq!(outlet.progress().written, 1);
        let mut text = String::new();
        std::io::Seek::rewind(&mut file).unwrap();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one\n");
        let state = outlet.shared.lock();
        assert!(
            matches!(state.target, Target::Direct(_)),
            "{:?}",
            state.target
        );
    }

    #[test]
    fn a_pipe_gets_the_writer_thread() {
        let (_reader, writer) = pipe();
        let outlet = Outlet::new("test", Ok(writer), 100);
        assert!(matches!(outlet.shared.lock().target, Target::Later(_)));
        outlet.push(b"x\n".to_vec());
        assert!(matches!(outlet.shared.lock().target, Target::Taken));
        assert!(outlet.drain_blocking(Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn a_watched_pipe_whose_reader_leaves_fails_without_a_write() {
        let (reader, writer) = pipe();
        let watched = writer.try_clone();
        let mut outlet = Outlet::new("test", Ok(writer), 100).watching(watched);
        let mut failure = std::pin::pin!(outlet.failure());
        // Polled again and again, as the sampling loop does, while the reader is there.
        for _ in 0..3 {
            let waited = tokio::time::timeout(Duration::from_millis(50), &mut failure);
            assert!(waited.await.is_err(), "not failed while read");
        }
        drop(reader);
        let failure = tokio::time::timeout(Duration::from_secs(5), failure)
            .await
            .expect("noticed without writing");
        assert!(failure.reader_gone(), "{failure:?}");
        assert_eq!(outlet.progress().written, 0);
        assert!(matches!(outlet.push(b"x\n".to_vec()), Pushed::Failed(_)));
    }

    #[test]
    fn a_descriptor_that_cannot_be_had_fails_at_once() {
        let outlet = Outlet::new("test", Err(io::Error::from_raw_os_error(9)), 100);
        let failure = outlet.progress().failed.expect("failed from the start");
        assert!(
            failure.to_string().contains("Bad file descriptor"),
            "{failure}"
        );
        assert_eq!(outlet.push(b"x\n".to_vec()), Pushed::Failed(failure));
    }
}
