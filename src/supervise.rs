//! Wrapper mode (`cloudwatch_metrics_agent [options] -- CMD [ARGS…]`): run the workload as
//! a child, forward signals to it, reap every zombie, and end with its exit status. This
//! replaces tini plus an entrypoint script that starts the agent in the background.
//!
//! Reaping is careful about whose child a zombie is. The command is reaped by its pid, at
//! once. Other exited children are either orphans the agent adopted (as PID 1, or as a
//! child subreaper) or processes the agent itself started, such as the AWS SDK's
//! `credential_process`, whose exit status the SDK waits for: taking it would fail the
//! credentials. So another child is reaped only after it has stayed unclaimed for
//! [`ORPHAN_GRACE`], which its own waiter never takes.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal as listen};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::domain::{Ending, JobRun};

/// How long another exited child is left to whoever waits for it before it is reaped as
/// an orphan. The SDK's waits run on this same thread and take their child within a
/// turn of the event loop, which never blocks; half a second is ample.
pub const ORPHAN_GRACE: Duration = Duration::from_millis(500);

/// How long a command that a stop signal seems to have ended waits for the agent's own
/// (see `Supervisor::stop_on_its_way`): signals sent to a whole group arrive within
/// microseconds of each other.
const STOP_GRACE: Duration = Duration::from_millis(50);

/// Signals passed on to the child (as tini does); the rest keep their default meaning.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Why the command could not be started; the exit status follows the shell's convention.
#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("{0}: command not found")]
    NotFound(String),
    #[error("{0}: permission denied")]
    NotExecutable(String),
    #[error("{0}: cannot run: {1}")]
    Other(String, io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(io::Error),
}

impl SpawnError {
    /// 127 for a command not found, 126 for one that cannot be executed.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound(_) => 127,
            SpawnError::NotExecutable(_) | SpawnError::Other(..) => 126,
            SpawnError::Signals(_) => 1,
        }
    }
}

/// The running child, and the signal listeners that serve it.
pub struct Supervisor {
    child: Pid,
    /// When the command was started: its run's duration counts from here.
    started: Instant,
    /// A stop signal (SIGTERM, SIGINT) was passed on to the command.
    stopped: bool,
    /// The resource usage of the orphans reaped so far: the command's descendants that
    /// outlived their parent count towards its CPU time and peak memory.
    orphans: Usage,
    /// Signal the child's whole process group (`--signal-group`, like `tini -g`).
    group: bool,
    /// The child's group was given the terminal, to be taken back when it exits.
    terminal: bool,
    /// Signals received, from one small task per signal.
    received: mpsc::UnboundedReceiver<Signal>,
    /// A child exited (the command, an orphan, or one of the agent's own).
    sigchld: tokio::signal::unix::Signal,
    /// Other exited children, and when each was first seen.
    zombies: Vec<(Pid, Instant)>,
}

impl Supervisor {
    /// Starts `command` with the agent's stdin, stdout, stderr, environment and working
    /// directory. Signal handlers are installed first, so none is lost in between.
    pub fn spawn(command: &[String], group: bool) -> Result<Self, SpawnError> {
        let (tx, received) = mpsc::unbounded_channel();
        for sig in FORWARDED {
            let mut listener =
                listen(SignalKind::from_raw(sig as i32)).map_err(SpawnError::Signals)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while listener.recv().await.is_some() && tx.send(sig).is_ok() {}
            });
        }
        let sigchld = listen(SignalKind::child()).map_err(SpawnError::Signals)?;
        become_reaper();

        let (program, args) = command
            .split_first()
            .ok_or_else(|| SpawnError::Other(String::new(), io::Error::other("empty command")))?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        let terminal = group && terminal_is_ours();
        if group {
            // Its own process group, so that one kill reaches the workers it forks.
            cmd.process_group(0);
        }
        if terminal {
            // In a background group the command would be stopped (SIGTTIN) at its first
            // read of the terminal: its group becomes the foreground one, as `tini -g`
            // does. SIGTTOU is blocked around the call, which a background group makes.
            // SAFETY: between fork and exec only async-signal-safe calls are made
            // (sigprocmask, getpid, tcsetpgrp), on the child's own state.
            unsafe {
                cmd.pre_exec(|| {
                    let _ttou = TtouBlocked::new()?;
                    let _ = nix::unistd::tcsetpgrp(io::stdin(), nix::unistd::getpid());
                    Ok(())
                });
            }
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
        let pid = Pid::from_raw(child.id() as i32);
        // Dropping std's handle neither waits nor kills; reaping is ours (below).
        drop(child);
        log::info!("started {program} as pid {pid}");
        if terminal {
            log::info!("the command's process group has the terminal");
        }
        Ok(Supervisor {
            child: pid,
            started,
            stopped: false,
            orphans: Usage::default(),
            group,
            terminal,
            received,
            sigchld,
            zombies: Vec::new(),
        })
    }

    /// Forwards signals until the child exits, reaping orphans on the way, and returns
    /// how its run ended and what it used.
    pub async fn wait(mut self) -> JobRun {
        loop {
            if let Some(mut run) = self.reap() {
                if self.terminal {
                    take_terminal_back();
                }
                if !run.stopped {
                    run.stopped = self.stop_on_its_way(run.ending).await;
                }
                return run;
            }
            let next_look = self
                .zombies
                .iter()
                .map(|(_, seen)| *seen + ORPHAN_GRACE)
                .min();
            tokio::select! {
                Some(sig) = self.received.recv() => {
                    self.stopped |= matches!(sig, Signal::SIGTERM | Signal::SIGINT);
                    self.forward(sig);
                }
                _ = self.sigchld.recv() => {}
                () = tokio::time::sleep_until(next_look.unwrap_or_else(Instant::now)),
                    if next_look.is_some() => {}
            }
        }
    }

    /// Whether a stop signal reached the agent together with the command: systemd's
    /// default `KillMode` and Ctrl-C in a terminal signal every process at once, and the
    /// command's exit can be seen before the agent's own signal has gone through the
    /// signal driver and its listener. Those get their turns first; a command that a
    /// SIGTERM or SIGINT seems to have ended (killed by it, or exiting 130 or 143) waits
    /// up to [`STOP_GRACE`] more for the agent's.
    async fn stop_on_its_way(&mut self, ending: Ending) -> bool {
        let is_stop = |sig: Signal| matches!(sig, Signal::SIGTERM | Signal::SIGINT);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        while let Ok(sig) = self.received.try_recv() {
            if is_stop(sig) {
                return true;
            }
        }
        let stop_like = match ending {
            Ending::Signaled(sig, _) => {
                sig == Signal::SIGTERM as i32 || sig == Signal::SIGINT as i32
            }
            Ending::Exited(code) => code == 130 || code == 143,
        };
        if !stop_like {
            return false;
        }
        let deadline = Instant::now() + STOP_GRACE;
        while let Ok(Some(sig)) = tokio::time::timeout_at(deadline, self.received.recv()).await {
            if is_stop(sig) {
                return true;
            }
        }
        false
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.child
    }

    fn forward(&self, sig: Signal) {
        let target = if self.group {
            Pid::from_raw(-self.child.as_raw())
        } else {
            self.child
        };
        log::info!(
            "forwarding {sig} to {}",
            if self.group {
                "the child's process group"
            } else {
                "the child"
            }
        );
        if let Err(e) = signal::kill(target, sig) {
            log::warn!("cannot forward {sig}: {e}");
        }
    }

    /// The child's run once it has exited; reaps the other children that stayed
    /// unclaimed for the grace period on the way.
    fn reap(&mut self) -> Option<JobRun> {
        self.reap_orphans(Instant::now());
        let (ending, usage) = loop {
            match wait4(self.child, libc::WNOHANG) {
                Ok(Some((ending, usage))) => break (ending, Some(usage.and(self.orphans))),
                // Still running, or stopped or continued.
                Ok(None) => return None,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // Only a bug would reap it elsewhere; the status and the usage are
                    // then unknown, and no figure is made up for them.
                    log::error!("wait4({}): {e}", self.child);
                    break (Ending::Exited(1), None);
                }
            }
        };
        Some(JobRun {
            ending,
            stopped: self.stopped,
            duration: self.started.elapsed(),
            cpu: usage.map(|u| u.cpu),
            peak_memory: usage.map(|u| (u.max_rss_bytes, "ru_maxrss")),
        })
    }

    /// Reaps the exited children other than the command that have stayed unclaimed for
    /// [`ORPHAN_GRACE`], and remembers when the others were first seen.
    #[cfg(target_os = "linux")]
    fn reap_orphans(&mut self, now: Instant) {
        let exited = orphans::exited_children(self.child);
        self.zombies.retain(|(pid, _)| exited.contains(pid));
        for pid in exited {
            let seen = match self.zombies.iter().find(|(p, _)| *p == pid) {
                Some((_, seen)) => *seen,
                None => {
                    self.zombies.push((pid, now));
                    now
                }
            };
            if now >= seen + ORPHAN_GRACE {
                match wait4(pid, libc::WNOHANG) {
                    Ok(Some((ending, usage))) => {
                        log::debug!("reaped orphan {pid}: {ending:?}");
                        self.orphans = self.orphans.and(usage);
                    }
                    Ok(None) => {}
                    Err(e) => log::debug!("orphan {pid} was reaped elsewhere: {e}"),
                }
                self.zombies.retain(|(p, _)| *p != pid);
            }
        }
    }

    /// Off Linux the agent adopts no orphans (no subreaper), so only the command is its.
    #[cfg(not(target_os = "linux"))]
    fn reap_orphans(&mut self, _now: Instant) {}
}

/// What a reaped child used, with the descendants it had reaped itself (`wait4`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    /// User and system CPU time.
    cpu: Duration,
    /// The largest resident set of any one of those processes (not their sum).
    max_rss_bytes: u64,
}

impl Usage {
    /// This usage and `other`'s: CPU times add up, peaks do not.
    fn and(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu + other.cpu,
            max_rss_bytes: self.max_rss_bytes.max(other.max_rss_bytes),
        }
    }
}

/// Runs `command` to its end as a plain child, passing on no signal and reaping nothing
/// else: how `check` shows the job metrics of `true`, leaving its own Ctrl-C as it was.
pub fn run_plain(command: &[String]) -> Result<JobRun, SpawnError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| SpawnError::Other(String::new(), io::Error::other("empty command")))?;
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    loop {
        match wait4(pid, 0) {
            Ok(Some((ending, usage))) => {
                return Ok(JobRun {
                    ending,
                    stopped: false,
                    duration: started.elapsed(),
                    cpu: Some(usage.cpu),
                    peak_memory: Some((usage.max_rss_bytes, "ru_maxrss")),
                });
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SpawnError::Other(program.clone(), e.into())),
        }
    }
}

/// The error for `program` that could not be started.
fn spawn_error(program: &str, e: io::Error) -> SpawnError {
    match e.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound(program.to_owned()),
        io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(program.to_owned()),
        _ => SpawnError::Other(program.to_owned(), e),
    }
}

/// `waitpid(pid, flags)` that also returns the child's resource usage, which includes
/// the descendants it waited for (wait4(2); nix has no wrapper for it): how it ended and
/// what it used, or `None` while it runs (or was stopped or continued). The status is
/// read with the C macros, so that any signal (a real-time one too) is kept.
fn wait4(pid: Pid, flags: libc::c_int) -> nix::Result<Option<(Ending, Usage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct, and both
    // pointers are to locals that outlive the call, which only writes through them.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    let res = unsafe { libc::wait4(pid.as_raw(), &mut status, flags, &mut rusage) };
    if Errno::result(res)? == 0 {
        return Ok(None);
    }
    let ending = if libc::WIFEXITED(status) {
        Ending::Exited(libc::WEXITSTATUS(status) as u8)
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let name = Signal::try_from(signal).map_or("a real-time signal", Signal::as_str);
        Ending::Signaled(signal, name)
    } else {
        return Ok(None);
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    // Linux counts ru_maxrss in KiB, macOS in bytes.
    let rss_unit: u64 = if cfg!(target_os = "macos") { 1 } else { 1024 };
    let usage = Usage {
        cpu: time(rusage.ru_utime) + time(rusage.ru_stime),
        max_rss_bytes: (rusage.ru_maxrss.max(0) as u64).saturating_mul(rss_unit),
    };
    Ok(Some((ending, usage)))
}

/// Whether stdin is a terminal whose foreground process group is the agent's own: only
/// then is the terminal the agent's to hand to the command (not when it was started in
/// the background, or with no terminal at all).
fn terminal_is_ours() -> bool {
    nix::unistd::tcgetpgrp(io::stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// Gives the terminal back to the agent's own process group once the command is gone,
/// so that the shell that started the agent finds it as it left it.
fn take_terminal_back() {
    match TtouBlocked::new() {
        Ok(_ttou) => {
            if let Err(e) = nix::unistd::tcsetpgrp(io::stdin(), nix::unistd::getpgrp()) {
                log::debug!("cannot take the terminal back: {e}");
            }
        }
        Err(e) => log::debug!("cannot take the terminal back: {e}"),
    }
}

/// SIGTTOU blocked in this thread for as long as the value lives: `tcsetpgrp` from a
/// background group is then allowed instead of stopping the caller.
struct TtouBlocked(nix::sys::signal::SigSet);

impl TtouBlocked {
    fn new() -> io::Result<Self> {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
        Ok(TtouBlocked(old))
    }
}

impl Drop for TtouBlocked {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&self.0),
            None,
        );
    }
}

/// Finding the exited children without reaping them.
#[cfg(target_os = "linux")]
mod orphans {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    use nix::unistd::Pid;

    /// The children other than `command` that have exited and wait to be reaped. From
    /// `/proc/self/task/*/children` (every child, looked at one by one without reaping);
    /// where the kernel lacks that file, the one `waitid` shows first.
    pub fn exited_children(command: Pid) -> Vec<Pid> {
        let exited = |pid: Pid| {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            matches!(
                waitid(Id::Pid(pid), flags),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
            )
        };
        match children() {
            Some(children) => children
                .into_iter()
                .filter(|pid| *pid != command && exited(*pid))
                .collect(),
            None => {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                match waitid(Id::All, flags) {
                    Ok(status) => status
                        .pid()
                        .filter(|pid| *pid != command)
                        .into_iter()
                        .collect(),
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// Every child of every thread of the agent, or `None` without the files.
    fn children() -> Option<Vec<Pid>> {
        let mut pids = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let text = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
            pids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw),
            );
        }
        Some(pids)
    }
}

/// As PID 1 the kernel hands us every orphan already; elsewhere ask for them, so that
/// grandchildren are reaped here rather than by the host's init.
#[cfg(target_os = "linux")]
fn become_reaper() {
    if nix::unistd::getpid().as_raw() != 1
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        log::warn!("cannot become a child subreaper: {e}");
    }
}

/// Only Linux has child subreapers; elsewhere orphans go to launchd/init as usual.
#[cfg(not(target_os = "linux"))]
fn become_reaper() {}
