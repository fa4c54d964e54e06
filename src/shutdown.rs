//! SIGTERM and SIGINT as one future. Installed first thing, so a signal that arrives
//! while the agent is still starting (loading AWS config can take seconds) is not lost.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that ask the agent to flush and exit.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Starts listening for SIGTERM and SIGINT; must be called inside the runtime.
    pub fn install() -> io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name and number.
    pub async fn recv(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", SignalKind::terminate().as_raw_value()),
            _ = self.int.recv() => ("SIGINT", SignalKind::interrupt().as_raw_value()),
        }
    }
}
