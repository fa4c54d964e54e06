//! Wrapper mode (`cloudwatch_metrics_agent [options] -- CMD [ARGS…]`): run the workload as
//! a child, forward signals to it, reap every zombie, and end with its exit status. This
//! replaces tini plus an entrypoint script that starts the agent in the background.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal as listen};
use tokio::sync::mpsc;

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
    /// Signal the child's whole process group (`--signal-group`, like `tini -g`).
    group: bool,
    /// Signals received, from one small task per signal.
    received: mpsc::UnboundedReceiver<Signal>,
    sigchld: tokio::signal::unix::Signal,
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
        if group {
            // Its own process group, so that one kill reaches the workers it forks.
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound(program.clone()),
            io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(program.clone()),
            _ => SpawnError::Other(program.clone(), e),
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        // Dropping std's handle neither waits nor kills; reaping is ours (below).
        drop(child);
        log::info!("started {program} as pid {pid}");
        Ok(Supervisor {
            child: pid,
            group,
            received,
            sigchld,
        })
    }

    /// Forwards signals until the child exits, reaping every zombie on the way, and
    /// returns the exit status to end with: the child's, or 128 + N if signal N ended it.
    pub async fn wait(mut self) -> u8 {
        loop {
            if let Some(code) = self.reap() {
                return code;
            }
            tokio::select! {
                Some(sig) = self.received.recv() => self.forward(sig),
                _ = self.sigchld.recv() => {}
            }
        }
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

    /// Reaps every exited child (orphans included); the child's status once it is gone.
    fn reap(&self) -> Option<u8> {
        let mut status = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.child => {
                    log::info!("child exited with status {code}");
                    status = Some(code as u8);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.child => {
                    log::info!("child was killed by {sig}");
                    status = Some(128 + sig as u8);
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return status,
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return status;
                }
            }
        }
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
