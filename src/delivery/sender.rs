//! The CloudWatch delivery: a task of its own drains the send queue
//! ([`super::queue::Queue`]) through the publisher, so that the sampling loop never
//! waits for CloudWatch. Each window's datums are encoded as they arrive and handed to
//! the task, which sends them when they are due (see [`super::schedule`]) and retries
//! what fails, through the queue's methods.
//!
//! Shutdown reaches the task in two ways (as in mini-redis): the window channel closes
//! when the agent drops its sender, and a flush deadline arrives on a watch channel. Past
//! the deadline whatever is left counts as not delivered.

use std::future::Future;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::queue::{Queue, UNIT};
use super::{Closed, Delivery, Report};
use crate::config::Config;
use crate::domain::{Encoding, Window};
use crate::publish::cloudwatch::{self, Datum, Publisher};

/// Windows handed over and not yet taken by the task: it takes them between and during
/// requests, so this fills only if the task itself is stuck.
const HANDOVER_CAPACITY: usize = 64;

/// The CloudWatch delivery: windows are encoded as they arrive and queued for the task
/// that sends them.
#[derive(Debug)]
pub struct Queued {
    /// Each window's datums, to the task; dropped to tell it nothing more is coming.
    datums: mpsc::Sender<Vec<Datum>>,
    /// How windows become datums.
    encoding: Encoding,
    /// Set when the run ends: the task gives up what is left after it.
    flush_deadline: watch::Sender<Option<Instant>>,
    /// The task, which returns what became of the datums.
    task: JoinHandle<Report>,
    /// Datums handed over, and dropped because the task fell behind.
    handed_over: u64,
    dropped: u64,
}

impl Queued {
    /// Starts the task that sends through `publisher`; must be called inside the runtime.
    pub fn start<P: Publisher + Send + 'static>(publisher: P, config: &Config) -> Queued {
        Queued::start_clocked(publisher, config, SystemTime::now)
    }

    /// `start` with `clock` as the wall clock that says when windows are due, the one
    /// that stamped them (tests run a virtual one).
    pub fn start_clocked<P: Publisher + Send + 'static>(
        publisher: P,
        config: &Config,
        clock: impl Fn() -> SystemTime + Send + 'static,
    ) -> Queued {
        let (datums, receiver) = mpsc::channel(HANDOVER_CAPACITY);
        let (flush_deadline, deadline) = watch::channel(None);
        let queue = Queue::new(config).with_clock(clock);
        Queued {
            datums,
            encoding: config.encoding,
            flush_deadline,
            task: tokio::spawn(deliver(publisher, receiver, deadline, queue)),
            handed_over: 0,
            dropped: 0,
        }
    }
}

impl Delivery for Queued {
    fn send(&mut self, window: Window) {
        let datums = cloudwatch::encode(&window, &self.encoding);
        let n = datums.len() as u64;
        if self.datums.try_send(datums).is_err() {
            self.dropped += n;
            log::warn!(
                "delivery is {HANDOVER_CAPACITY} windows behind: dropped {n} datums ({} so far)",
                self.dropped
            );
        } else {
            self.handed_over += n;
        }
    }

    fn closed(&mut self) -> impl Future<Output = Closed> + 'static {
        // CloudWatch is never gone for good: outages are retried.
        std::future::pending()
    }

    async fn finish(self, deadline: Instant) -> Report {
        // Closing the channel tells the task that nothing more is coming.
        drop(self.datums);
        // The receiver lives until the task returns, so this send cannot fail.
        let _ = self.flush_deadline.send(Some(deadline));
        let mut report = match self.task.await {
            Ok(report) => report,
            Err(e) => {
                // Only a bug gets here; what it had delivered is unknown, so claim nothing.
                log::error!("delivery task failed: {e}");
                Report {
                    unflushed: self.handed_over,
                    ..Report::empty(UNIT)
                }
            }
        };
        report.dropped += self.dropped;
        report
    }
}

/// Delivers datums until the channel closes and the queue is empty, or the flush
/// deadline passes; returns what became of them.
async fn deliver<P: Publisher>(
    publisher: P,
    mut requests: mpsc::Receiver<Vec<Datum>>,
    mut flush_deadline: watch::Receiver<Option<Instant>>,
    mut queue: Queue,
) -> Report {
    let mut open = true;
    loop {
        while open {
            match requests.try_recv() {
                Ok(request) => queue.push(request),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if flush_deadline.borrow().is_some_and(|d| d <= Instant::now()) {
            queue.give_up();
            if !open {
                break;
            }
        }
        if queue.is_empty() {
            if !open {
                break;
            }
            match requests.recv().await {
                Some(request) => queue.push(request),
                None => open = false,
            }
            continue;
        }
        // Each window waits for its send time, the agent's offset after it (see
        // `schedule`); the final flush does not wait.
        let deadline = *flush_deadline.borrow();
        let flushing = !open || deadline.is_some();
        if deadline.is_some_and(|deadline| !queue.retry_within(deadline)) {
            queue.give_up();
            continue;
        }
        if let Some(at) = queue.next_send(flushing).filter(|at| *at > Instant::now()) {
            tokio::select! {
                request = requests.recv(), if open => match request {
                    Some(request) => queue.push(request),
                    None => open = false,
                },
                () = tokio::time::sleep_until(at) => queue.forget_passed_retry(),
                () = deadline_passes(&mut flush_deadline) => {}
            }
            continue;
        }
        queue.expire();
        let Some(request) = queue.next_batch() else {
            continue;
        };
        // Windows keep arriving while a request is out (it may take --request-timeout).
        let sent_at = Instant::now();
        let outcome = {
            let publish = publisher.publish(&request);
            tokio::pin!(publish);
            loop {
                tokio::select! {
                    outcome = &mut publish => break Some(outcome),
                    () = deadline_passes(&mut flush_deadline) => break None,
                    datums = requests.recv(), if open => match datums {
                        Some(datums) => queue.push(datums),
                        None => open = false,
                    },
                }
            }
        };
        if log::log_enabled!(target: crate::CLOUDWATCH_LOG, log::Level::Info) {
            let took = sent_at.elapsed().as_millis();
            let ended = match &outcome {
                Some(Ok(())) => format!("ok in {took} ms"),
                Some(Err(e)) => format!("failed in {took} ms ({:?}): {e}", e.kind),
                None => format!("cut off by the flush deadline after {took} ms"),
            };
            let request = cloudwatch::describe(&request);
            log::info!(target: crate::CLOUDWATCH_LOG, "{request} → {ended}");
        }
        match outcome {
            Some(Ok(())) => queue.delivered(request.metric_data),
            Some(Err(e)) => queue.failed(request.metric_data, &e, sent_at.elapsed()),
            None => queue.unanswered(request.metric_data),
        }
    }
    queue.into_report()
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::delivery::queue::MAX_AGE;
    use crate::delivery::queue::testing::{new_queue, now, window};
    use crate::publish::cloudwatch::{ErrorKind, PublishError, PutRequest};

    /// Rejects as invalid every request holding a datum with a negative value; records
    /// the others.
    #[derive(Clone, Default)]
    struct Strict {
        accepted: Arc<Mutex<Vec<Datum>>>,
        requests: Arc<Mutex<usize>>,
    }

    impl Publisher for Strict {
        async fn publish(&self, request: &PutRequest) -> Result<(), PublishError> {
            *self.requests.lock().unwrap() += 1;
            if request
                .metric_data
                .iter()
                .any(|d| d.value.is_some_and(|v| v < 0.0))
            {
                return Err(PublishError::new(
                    ErrorKind::Invalid,
                    "InvalidParameterValue",
                ));
            }
            self.accepted
                .lock()
                .unwrap()
                .extend(request.metric_data.iter().cloned());
            Ok(())
        }
    }

    async fn deliver_all<P: Publisher>(
        publisher: P,
        windows: Vec<Vec<Datum>>,
        queue: Queue,
    ) -> Report {
        let (tx, rx) = mpsc::channel(windows.len().max(1));
        for w in windows {
            tx.try_send(w).unwrap();
        }
        drop(tx);
        let (_deadline_tx, deadline) = watch::channel(None);
        deliver(publisher, rx, deadline, queue).await
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_datum_is_bisected_out_and_the_others_are_delivered() {
        let t = now();
        let mut windows: Vec<Vec<Datum>> = (0..100).map(|i| window(t - 100 + i)).collect();
        windows[37][1].value = Some(-1.0);
        let strict = Strict::default();
        let report = deliver_all(strict.clone(), windows, new_queue(5000)).await;
        assert_eq!(
            report,
            Report {
                delivered: 199,
                dropped: 1,
                unflushed: 0,
                unanswered: 0,
                unit: "datums"
            }
        );
        let accepted = strict.accepted.lock().unwrap();
        assert!(accepted.iter().all(|d| d.value != Some(-1.0)));
        let requests = *strict.requests.lock().unwrap();
        // Halving on rejection and doubling on success: a few requests per halving.
        assert!(
            requests <= 3 * 8,
            "bisection takes O(log2 200) requests, not {requests}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_oldest_and_counts_them() {
        let t = now();
        let strict = Strict::default();
        let windows: Vec<Vec<Datum>> = (0..10).map(|i| window(t - 10 + i)).collect();
        let report = deliver_all(strict.clone(), windows, new_queue(5)).await;
        // All ten windows arrive before the first send: 20 datums, 5 kept.
        assert_eq!(
            report,
            Report {
                delivered: 5,
                dropped: 15,
                unflushed: 0,
                unanswered: 0,
                unit: "datums"
            }
        );
        let kept: Vec<u64> = strict
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.timestamp)
            .collect();
        assert_eq!(
            kept,
            [t - 3, t - 2, t - 2, t - 1, t - 1],
            "the newest survive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn datums_older_than_14_days_are_dropped_not_sent() {
        let t = now();
        let stale = t - MAX_AGE.as_secs() - 60;
        let strict = Strict::default();
        let report = deliver_all(
            strict.clone(),
            vec![window(stale), window(t)],
            new_queue(100),
        )
        .await;
        assert_eq!(
            report,
            Report {
                delivered: 2,
                dropped: 2,
                unflushed: 0,
                unanswered: 0,
                unit: "datums"
            }
        );
    }

    /// Fails every request, each after `took` of (paused) time: a closed endpoint on a
    /// loaded machine.
    #[derive(Clone)]
    struct Refusing {
        took: Duration,
        attempts: Arc<Mutex<usize>>,
    }

    impl Publisher for Refusing {
        async fn publish(&self, _: &PutRequest) -> Result<(), PublishError> {
            *self.attempts.lock().unwrap() += 1;
            tokio::time::sleep(self.took).await;
            Err(PublishError::new(
                ErrorKind::Transient,
                "connection refused",
            ))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_gives_up_before_a_retry_the_deadline_would_cut_off() {
        let refusing = Refusing {
            took: Duration::from_millis(300),
            attempts: Arc::default(),
        };
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(window(now())).unwrap();
        drop(tx);
        let (_deadline_tx, deadline) =
            watch::channel(Some(Instant::now() + Duration::from_secs(3)));
        let started = Instant::now();
        let report = deliver(refusing.clone(), rx, deadline, new_queue(100)).await;
        assert_eq!(
            (report.unflushed, report.unanswered),
            (2, 0),
            "undelivered, and never cut off mid-request: {report:?}"
        );
        assert!(*refusing.attempts.lock().unwrap() >= 2, "it retried");
        assert!(started.elapsed() <= Duration::from_secs(3));
    }
}
