//! The delivery task: hands each request to the publisher, oldest first, and is the one
//! place that decides what a failure costs. Today a request that still fails after the
//! SDK's retries is logged at error level and skipped.
//!
//! Shutdown reaches it in two ways (as in mini-redis): the request channel closes when the
//! agent drops its sender, and a deadline arrives on a watch channel. Past the deadline
//! whatever is left counts as not delivered.

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::publish::{Publisher, PutRequest, rfc3339};

/// What happened to the datums handed to delivery.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Datums the publisher accepted.
    pub delivered: u64,
    /// Datums of requests that failed while running, logged and skipped.
    pub skipped: u64,
    /// Datums of the final flush that failed or did not finish before the deadline.
    pub unflushed: u64,
}

/// Publishes requests until the channel closes; returns what became of them.
pub async fn deliver<P: Publisher>(
    publisher: P,
    mut requests: mpsc::Receiver<PutRequest>,
    mut flush_deadline: watch::Receiver<Option<Instant>>,
) -> Report {
    let mut report = Report::default();
    while let Some(request) = requests.recv().await {
        let datums = request.metric_data.len() as u64;
        let flushing = flush_deadline.borrow().is_some();
        if flush_deadline.borrow().is_some_and(|d| d <= Instant::now()) {
            report.unflushed += datums;
            continue;
        }
        let outcome = tokio::select! {
            outcome = publisher.publish(&request) => Some(outcome),
            () = deadline_passes(&mut flush_deadline) => None,
        };
        let window = rfc3339(request.metric_data.first().map_or(0, |d| d.timestamp));
        match outcome {
            Some(Ok(())) => {
                report.delivered += datums;
                log::info!(
                    "published {datums} datums to {} for the window at {window}",
                    request.namespace
                );
            }
            Some(Err(e)) if flushing => {
                report.unflushed += datums;
                log::error!("final flush of the window at {window} failed: {e}");
            }
            Some(Err(e)) => {
                report.skipped += datums;
                log::error!("skipping the window at {window} ({datums} datums): {e}");
            }
            None => {
                report.unflushed += datums;
                log::error!("flush timeout reached while publishing the window at {window}");
            }
        }
    }
    report
}

/// Completes once a deadline has been set and has passed; pending until then.
async fn deadline_passes(deadline: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let current = *deadline.borrow_and_update();
        match current {
            Some(at) => return tokio::time::sleep_until(at).await,
            None => {
                if deadline.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}
