//! Delivery: closed windows to where the output sends them, without ever making the
//! sampling loop wait. The loop talks to one [`Delivery`], chosen at start:
//!
//! - [`sender::Queued`], for CloudWatch: a send queue ([`queue`]) drained by its own task in batches
//!   within the `PutMetricData` limits, and the one retry layer. Only this output has
//!   anything to retry. [`schedule`] says when each window is due, so that a fleet
//!   spreads its requests.
//! - [`stdout::Printed`], for EMF and dry-run: lines handed to stdout's writer thread
//!   through a bounded buffer ([`crate::stdio`]), so a reader that stops reading cannot
//!   stop the agent; a reader that is gone ends the run.

use std::fmt;
use std::future::Future;

use tokio::time::Instant;

use crate::domain::Window;
use crate::stdio::Failure;

pub mod queue;
pub mod schedule;
pub mod sender;
pub mod stdout;

pub use sender::Queued;
pub use stdout::Printed;

/// Where closed windows go.
pub trait Delivery {
    /// Takes a closed window. Never waits: what cannot be kept is dropped and counted.
    fn send(&mut self, window: Window);

    /// A future that completes when the destination can take nothing more, ever
    /// (stdout's reader has gone); pending for as long as it can. Made once per run: it
    /// does not borrow the delivery, so windows keep being sent while it waits.
    fn closed(&mut self) -> impl Future<Output = Closed> + 'static;

    /// No more windows: delivers what it still holds until `deadline`, then reports.
    fn finish(self, deadline: Instant) -> impl Future<Output = Report>;
}

/// The destination is gone, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed(pub Failure);

/// What became of the data handed to delivery, in the output's own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Accepted by CloudWatch, or written to stdout.
    pub delivered: u64,
    /// Dropped while running: a buffer full, too old for CloudWatch, or rejected as
    /// invalid. Each kind of drop is logged.
    pub dropped: u64,
    /// Still held when the flush deadline passed (or the destination closed): not
    /// accepted.
    pub unflushed: u64,
    /// Sent in a request that had no answer when the flush deadline passed: CloudWatch
    /// may or may not have stored them.
    pub unanswered: u64,
    /// What is counted: "datums", "documents", "lines".
    pub unit: &'static str,
}

impl Report {
    /// Nothing delivered yet, in `unit`.
    pub fn empty(unit: &'static str) -> Self {
        Report {
            delivered: 0,
            dropped: 0,
            unflushed: 0,
            unanswered: 0,
            unit,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} delivered, {} dropped, {} not delivered, {} sent without an answer",
            self.delivered, self.unit, self.dropped, self.unflushed, self.unanswered
        )
    }
}
