//! The send queue of the CloudWatch delivery and its retry state: a bounded queue of
//! datums, oldest first, taken in batches within the `PutMetricData` budget. Plain data
//! and methods, no task: [`super::sender`] drives it.
//!
//! A failed send keeps its datums queued and is retried with exponential backoff and
//! full jitter while new windows keep arriving; throttling, network errors, timeouts,
//! 5xx and credential problems are retried until the datums age out (CloudWatch takes
//! datapoints up to two weeks old) or the queue overflows, and both of those are counted
//! and logged. A request CloudWatch rejects as invalid is bisected so that only the
//! offending datums are dropped.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Report;
use super::schedule::Schedule;
use crate::aggregate::unix_secs;
use crate::alarm::Alarm;
use crate::config::Config;
use crate::publish::cloudwatch::{
    self, Datum, ErrorKind, MAX_DATUMS_PER_REQUEST, PublishError, PutRequest, rfc3339,
};

/// What the queue counts.
pub(super) const UNIT: &str = "datums";
/// CloudWatch accepts datapoints up to two weeks old (PutMetricData API reference).
pub const MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a group of windows (`--send-every`) waits past its send time for its last
/// window, which the pipeline hands over at its first sample after the window's end.
const HANDOVER_GRACE: Duration = Duration::from_secs(2);
/// First retry delay; it doubles per consecutive failure up to the configured cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// While flushing, no retry starts with less time left than this (or than twice what
/// the failed attempt took): the deadline would cut it off mid-request, and a request
/// cut off leaves unknown whether its datums were stored.
const RETRY_FLOOR: Duration = Duration::from_millis(250);

/// The datums waiting to be sent and the retry state.
pub(super) struct Queue {
    /// The namespace of every request.
    namespace: String,
    /// Most datums held (`--buffer-size`); the oldest go first when it is full.
    buffer_size: usize,
    /// Longest wait between retries (`--retry-max-backoff`).
    retry_max_backoff: Duration,
    /// The datums waiting, oldest first.
    datums: VecDeque<Datum>,
    /// What became of the datums so far.
    report: Report,
    /// No send before this instant (backing off after a failure).
    retry_at: Option<Instant>,
    /// Consecutive failed sends; sets the backoff.
    failures: u32,
    /// How long the last failed send took: a retry needs about as long.
    failed_took: Duration,
    /// Most datums in the next batch: lowered while bisecting an invalid request.
    batch_limit: usize,
    /// Since when sends have been failing, and the kind of the last failure.
    outage: Option<Outage>,
    /// Sends failing for long, said at the default log level.
    alarm: Alarm,
    /// Datums dropped since the first drop that no delivery has followed yet: one
    /// episode of loss, said when it starts and counted when a delivery ends it.
    dropping: Option<Drops>,
    /// When each window is due (`--send-delay`, `--send-every`).
    schedule: Schedule,
    /// The wall clock that says when a window is due and when it is too old.
    clock: Box<dyn Fn() -> SystemTime + Send>,
}

/// An episode of dropped datums.
#[derive(Debug, Clone, Copy)]
struct Drops {
    /// Datums dropped in it.
    count: u64,
    /// Why its first datums were dropped.
    why: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    started: Instant,
    /// When the first send succeeded again; the backlog is then being caught up.
    recovered: Option<Instant>,
    /// Datums delivered since the recovery.
    caught_up: u64,
}

impl Queue {
    pub(super) fn new(config: &Config) -> Self {
        let schedule = Schedule::new(
            config.period_secs,
            config.send_every,
            config.send_delay,
            fastrand::f64(),
        );
        log::info!(
            "each request goes {:.1} s after its window{} ends (--send-delay, --send-every)",
            schedule.offset().as_secs_f64(),
            match config.send_every {
                1 => String::new(),
                n => format!(" and the {} before it", n - 1),
            }
        );
        Queue {
            namespace: config.namespace.clone(),
            buffer_size: config.buffer_size,
            retry_max_backoff: config.retry_max_backoff,
            datums: VecDeque::new(),
            report: Report::empty(UNIT),
            retry_at: None,
            failures: 0,
            failed_took: Duration::ZERO,
            batch_limit: MAX_DATUMS_PER_REQUEST,
            outage: None,
            alarm: Alarm::new(config.period_secs),
            dropping: None,
            schedule,
            clock: Box::new(SystemTime::now),
        }
    }

    /// The queue with `clock` as the wall clock that says when windows are due and when
    /// they are too old (tests run a virtual one).
    pub(super) fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// When the next request may go: after the backoff, and (unless `flushing`) once the
    /// oldest window is due; `None` when nothing holds it back.
    pub(super) fn next_send(&self, flushing: bool) -> Option<Instant> {
        let due = self
            .due_in((self.clock)())
            .filter(|_| !flushing)
            .map(|wait| Instant::now() + wait);
        self.retry_at.into_iter().chain(due).max()
    }

    /// A backoff that has passed no longer holds sends back.
    pub(super) fn forget_passed_retry(&mut self) {
        self.retry_at = self.retry_at.filter(|retry| *retry > Instant::now());
    }

    /// A request the flush deadline cut off while it was out: sent, with no answer, so
    /// whether CloudWatch stored its datums is unknown.
    pub(super) fn unanswered(&mut self, batch: Vec<Datum>) {
        self.report.unanswered += batch.len() as u64;
    }

    /// What became of the datums; an episode of drops still open is counted first.
    pub(super) fn into_report(self) -> Report {
        if let Some(drops) = self.dropping {
            log::error!(
                "{} datums were dropped because {} (first said above)",
                drops.count,
                drops.why
            );
        }
        self.report
    }

    pub(super) fn is_empty(&self) -> bool {
        self.datums.is_empty()
    }

    /// Adds a window's datums, dropping the oldest beyond the buffer size.
    pub(super) fn push(&mut self, datums: Vec<Datum>) {
        self.datums.extend(datums);
        let excess = self.datums.len().saturating_sub(self.buffer_size);
        if excess > 0 {
            self.datums.drain(..excess);
            self.drop_count(excess as u64, "the queue is full (--buffer-size)");
        }
        log::debug!("queue: {} datums", self.datums.len());
    }

    /// How long from `now` until the oldest datum is due; `None` when it is (or when
    /// nothing is queued). A wall clock set back cannot make it wait longer than a cycle.
    fn due_in(&self, now: SystemTime) -> Option<Duration> {
        let oldest = self.datums.front()?.timestamp;
        let newest = self.datums.back()?.timestamp;
        let mut due = self.schedule.due(oldest);
        // A window is handed over at the first sample after its end: a group still
        // missing its last window gives it that long to arrive.
        if newest < self.schedule.last_of_group(oldest) {
            due = due.checked_add(HANDOVER_GRACE).unwrap_or(due);
        }
        let wait = due
            .duration_since(now)
            .ok()
            .filter(|wait| !wait.is_zero())?;
        Some(wait.min(self.schedule.longest_wait() + HANDOVER_GRACE))
    }

    /// Drops datums too old for CloudWatch to accept, by the queue's clock.
    pub(super) fn expire(&mut self) {
        self.expire_at(unix_secs((self.clock)()));
    }

    /// Drops datums too old for CloudWatch to accept at `now_unix`.
    fn expire_at(&mut self, now_unix: u64) {
        let oldest_allowed = now_unix.saturating_sub(MAX_AGE.as_secs());
        let before = self.datums.len();
        self.datums.retain(|d| d.timestamp >= oldest_allowed);
        let expired = before - self.datums.len();
        if expired > 0 {
            self.drop_count(expired as u64, "they are older than CloudWatch's 14 days");
        }
    }

    /// Data lost is said at the default log level: once when an episode of drops
    /// starts, and with its count when the next delivery ends it (or in the report).
    fn drop_count(&mut self, n: u64, why: &'static str) {
        self.report.dropped += n;
        match &mut self.dropping {
            Some(drops) => drops.count += n,
            None => {
                log::error!(
                    "dropping datums: {n} oldest dropped because {why}; further drops are \
                     counted until a request succeeds"
                );
                self.dropping = Some(Drops { count: n, why });
            }
        }
    }

    /// The oldest datums that fit in one request, as CloudWatch's budget says
    /// ([`cloudwatch::request_len`]), at most `batch_limit` while bisecting.
    pub(super) fn next_batch(&mut self) -> Option<PutRequest> {
        let take = cloudwatch::request_len(&self.namespace, &self.datums, self.batch_limit);
        (take > 0).then(|| PutRequest {
            namespace: self.namespace.clone(),
            metric_data: self.datums.drain(..take).collect(),
        })
    }

    /// Puts an unsent batch back at the front, in order.
    fn requeue(&mut self, batch: Vec<Datum>) {
        for datum in batch.into_iter().rev() {
            self.datums.push_front(datum);
        }
    }

    /// While flushing, a backoff longer than half the time left is cut to a jittered
    /// quarter of it: waiting out a long backoff would only reach the deadline, and a
    /// fleet stopped together would retry in step. `false` when a retry is due but could
    /// not end before the deadline (see [`RETRY_FLOOR`]): the datums are better given up
    /// unsent than sent and cut off.
    pub(super) fn retry_within(&mut self, deadline: Instant) -> bool {
        let Some(mut at) = self.retry_at else {
            return true;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if at.saturating_duration_since(Instant::now()) > left / 2 {
            at = Instant::now() + (left / 4).mul_f64(fastrand::f64());
            self.retry_at = Some(at);
        }
        deadline.saturating_duration_since(at) >= RETRY_FLOOR.max(self.failed_took * 2)
    }

    /// Datums still queued at the flush deadline (or with no time left to retry them).
    pub(super) fn give_up(&mut self) {
        self.report.unflushed += self.datums.len() as u64;
        self.datums.clear();
        self.retry_at = None;
    }

    pub(super) fn delivered(&mut self, batch: Vec<Datum>) {
        let n = batch.len() as u64;
        if let Some(drops) = self.dropping.take() {
            log::error!(
                "{} datums were dropped because {} (first said above); {} dropped in all",
                drops.count,
                drops.why,
                self.report.dropped
            );
        }
        self.report.delivered += n;
        self.failures = 0;
        // Its end is said below, with the backlog caught up.
        let _ = self.alarm.worked();
        self.batch_limit = (self.batch_limit * 2).min(MAX_DATUMS_PER_REQUEST);
        if let Some(outage) = &mut self.outage {
            let recovered = *outage.recovered.get_or_insert_with(Instant::now);
            outage.caught_up += n;
            if self.datums.is_empty() {
                log::info!(
                    "delivered {} datums queued during a {} s outage",
                    outage.caught_up,
                    (recovered - outage.started).as_secs()
                );
                self.outage = None;
            }
        }
    }

    /// A send that failed with `error` after `took`.
    pub(super) fn failed(&mut self, batch: Vec<Datum>, error: &PublishError, took: Duration) {
        self.failed_took = took;
        if error.kind == ErrorKind::Invalid {
            if batch.len() == 1 {
                let d = &batch[0];
                log::error!(
                    "CloudWatch rejected {} at {} (values {:?}{:?}), dropped: {error}",
                    d.metric_name,
                    rfc3339(d.timestamp),
                    d.value,
                    d.values
                );
                self.report.dropped += 1;
            } else {
                // Bisect: resend in halves, immediately, to find the offending datums.
                self.batch_limit = batch.len().div_ceil(2);
                log::warn!(
                    "CloudWatch rejected a request of {} datums; retrying in halves: {error}",
                    batch.len()
                );
                self.requeue(batch);
            }
            return;
        }
        let n = batch.len();
        self.requeue(batch);
        if error.kind == ErrorKind::Throttled {
            // The fleet is colliding at this agent's send time: move it.
            self.schedule.relocate(fastrand::f64());
            log::debug!(
                "throttled: sending {:.1} s after each window from now on",
                self.schedule.offset().as_secs_f64()
            );
        }
        self.failures = self.failures.saturating_add(1);
        let delay = backoff(self.failures, self.retry_max_backoff);
        self.retry_at = Some(Instant::now() + delay);
        let queued = self.datums.len();
        let first = self.outage.is_none();
        if first || self.outage.is_some_and(|o| o.recovered.is_some()) {
            self.outage = Some(Outage {
                started: Instant::now(),
                recovered: None,
                caught_up: 0,
            });
        }
        let message = format!(
            "sending {n} datums failed ({:?}): {error}; retrying in {:.1} s, {queued} datums queued",
            error.kind,
            delay.as_secs_f64()
        );
        match error.kind {
            // The user must act: say so on every attempt.
            ErrorKind::Auth => log::error!("{message}"),
            _ if first => log::warn!("{message}"),
            _ => log::debug!("{message}"),
        }
        if let Some(lasting) = self.alarm.failed() {
            log::error!(
                "nothing has been delivered to CloudWatch {}: {error}; {queued} datums queued",
                lasting.describe()
            );
        }
    }
}

/// Exponential backoff with full jitter: a random wait in [0, min(cap, 1 s × 2^(n−1))]
/// ("Exponential Backoff And Jitter", AWS Architecture Blog).
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = FIRST_BACKOFF.saturating_mul(1 << exponent).min(cap);
    ceiling.mul_f64(fastrand::f64())
}

/// Datums, windows and queues for the tests of the queue and of the task.
#[cfg(test)]
pub(super) mod testing {
    use std::time::SystemTime;

    use super::Queue;
    use crate::aggregate::unix_secs;
    use crate::domain::Dimension;
    use crate::publish::cloudwatch::Datum;

    pub(crate) fn datum(metric_name: &'static str, timestamp: u64, value: f64) -> Datum {
        Datum {
            metric_name,
            dimensions: vec![Dimension::service("svc").unwrap()].into(),
            timestamp,
            unit: "Percent",
            value: Some(value),
            values: Vec::new(),
            counts: Vec::new(),
            storage_resolution: None,
        }
    }

    pub(crate) fn window(timestamp: u64) -> Vec<Datum> {
        vec![
            datum("CPUUtilization", timestamp, 1.0),
            datum("MemoryUtilization", timestamp, 2.0),
        ]
    }

    /// A queue for namespace NS holding `buffer_size` datums (below what a run's
    /// configuration accepts, to test the mechanism), retrying within 8 s.
    pub(crate) fn new_queue(buffer_size: usize) -> Queue {
        let mut config = crate::config::testing::config(&["--retry-max-backoff", "8"]);
        config.buffer_size = buffer_size;
        Queue::new(&config)
    }

    pub(crate) fn now() -> u64 {
        unix_secs(SystemTime::now()) / 60 * 60
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::UNIX_EPOCH;

    use super::testing::{datum, new_queue, now, window};
    use super::*;
    use crate::publish::cloudwatch::MAX_REQUEST_BYTES;

    #[test]
    fn batches_stay_within_1000_datums_and_1_mb() {
        let t = now();
        let mut queue = new_queue(100_000);
        let big = |i: u64| Datum {
            values: (0..150).map(f64::from).collect(),
            counts: vec![1.0; 150],
            ..datum("CPUUtilization", t - i, 0.0)
        };
        queue.push((0..2000).map(big).collect());
        let batch = queue.next_batch().unwrap();
        let bytes: usize = batch.metric_data.iter().map(cloudwatch::encoded_size).sum();
        assert!(bytes <= MAX_REQUEST_BYTES, "{bytes}");
        assert!(
            batch.metric_data.len() < MAX_DATUMS_PER_REQUEST,
            "the size limit binds first"
        );

        let mut second = new_queue(100_000);
        second.push(
            (0..2500)
                .map(|i| datum("CPUUtilization", t - i, 1.0))
                .collect(),
        );
        assert_eq!(
            second.next_batch().unwrap().metric_data.len(),
            MAX_DATUMS_PER_REQUEST
        );
    }

    #[test]
    fn catching_up_never_splits_a_window_across_requests() {
        let t = now();
        let mut queue = new_queue(100_000);
        for i in 0..400 {
            let mut w = window(t - 400 + i);
            w.push(datum("CPUThrottledPercent", t - 400 + i, 3.0));
            queue.push(w);
        }
        let mut sent = Vec::new();
        while let Some(batch) = queue.next_batch() {
            assert!(batch.metric_data.len() <= MAX_DATUMS_PER_REQUEST);
            sent.push(batch.metric_data);
        }
        assert_eq!(sent[0].len(), 999, "333 whole windows of 3 datums");
        for pair in sent.windows(2) {
            let (last, first) = (pair[0].last().unwrap(), pair[1].first().unwrap());
            assert_ne!(
                last.timestamp, first.timestamp,
                "a window split across requests"
            );
        }
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 1200);
    }

    #[test]
    fn send_every_3_holds_a_group_of_windows_and_sends_it_in_one_request() {
        let args = ["--period", "60", "--send-every", "3", "--send-delay", "0"];
        let mut queue = Queue::new(&crate::config::testing::config(&args));
        let group = 1_795_619_520 / 180 * 180;
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        queue.push(window(group));
        assert_eq!(
            queue.due_in(at(group + 61)),
            Some(Duration::from_secs(119) + HANDOVER_GRACE),
            "the first window waits for the group's end and its last window"
        );
        queue.push(window(group + 60));
        assert_eq!(
            queue.due_in(at(group + 180)),
            Some(HANDOVER_GRACE),
            "the last window is handed over after its end: it gets that long"
        );
        assert_eq!(queue.due_in(at(group + 180) + HANDOVER_GRACE), None);
        queue.push(window(group + 120));
        assert_eq!(
            queue.due_in(at(group + 180)),
            None,
            "due at the group's end"
        );
        let batch = queue.next_batch().unwrap();
        let starts: BTreeSet<u64> = batch.metric_data.iter().map(|d| d.timestamp).collect();
        assert_eq!(starts, BTreeSet::from([group, group + 60, group + 120]));
        assert!(queue.is_empty(), "one request for the three");
        // A window left over from an earlier group (a retry) is due at once.
        queue.push(window(group - 60));
        assert_eq!(queue.due_in(at(group + 5)), None);
    }

    #[test]
    fn windows_wait_for_the_agents_offset_and_a_throttled_agent_moves_it() {
        let mut queue = new_queue(100);
        let offset = queue.schedule.offset();
        assert!(offset < Duration::from_secs(15), "auto: at most 15 s");
        let start = 1_795_619_520;
        queue.push(window(start));
        let end = UNIX_EPOCH + Duration::from_secs(start + 60);
        assert_eq!(queue.due_in(end), Some(offset).filter(|o| !o.is_zero()));
        assert_eq!(queue.due_in(end + offset), None);
        let batch = queue.next_batch().unwrap();
        let throttled = PublishError::new(ErrorKind::Throttled, "Rate exceeded");
        let moved = (0..20).any(|_| {
            queue.failed(batch.metric_data.clone(), &throttled, Duration::ZERO);
            queue.next_batch();
            queue.schedule.offset() != offset
        });
        assert!(moved, "a new random offset after throttling");
        assert!(queue.schedule.offset() < Duration::from_secs(60));
    }

    #[test]
    fn a_flush_cuts_a_long_backoff_to_a_jittered_quarter_of_the_time_left() {
        let mut queue = new_queue(100);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut cut = Vec::new();
        for _ in 0..20 {
            queue.retry_at = Some(Instant::now() + Duration::from_secs(30));
            assert!(queue.retry_within(deadline));
            let wait = queue.retry_at.unwrap() - Instant::now();
            assert!(wait <= Duration::from_millis(1250), "{wait:?}");
            cut.push(wait);
        }
        assert!(cut.iter().any(|w| *w != cut[0]), "jittered: {cut:?}");
        let short = Instant::now() + Duration::from_secs(1);
        queue.retry_at = Some(short);
        assert!(queue.retry_within(deadline));
        assert_eq!(queue.retry_at, Some(short), "a short backoff is kept");
    }

    #[test]
    fn a_flush_starts_no_retry_the_deadline_would_cut_off() {
        let mut queue = new_queue(100);
        queue.push(window(now()));
        assert!(
            queue.retry_within(Instant::now() + Duration::from_millis(100)),
            "nothing failed yet: the first attempt always goes"
        );
        let batch = queue.next_batch().unwrap();
        let refused = PublishError::new(ErrorKind::Transient, "connection refused");
        queue.failed(batch.metric_data, &refused, Duration::from_millis(10));
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(!queue.retry_within(soon), "less than the floor left");
        assert!(queue.retry_within(Instant::now() + Duration::from_secs(5)));
        let batch = queue.next_batch().unwrap();
        queue.failed(batch.metric_data, &refused, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(3);
        assert!(
            !queue.retry_within(deadline),
            "an attempt took 2 s: a retry with less than twice that left is not started"
        );
        queue.give_up();
        assert!(queue.is_empty());
        assert_eq!(queue.retry_at, None);
        assert_eq!(queue.into_report().unflushed, 2);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_the_cap_with_full_jitter() {
        let cap = Duration::from_secs(60);
        for failures in 1..40 {
            let ceiling = Duration::from_secs(1 << (failures - 1).min(6)).min(cap);
            for _ in 0..50 {
                assert!(backoff(failures, cap) <= ceiling);
            }
        }
        let spread: Vec<Duration> = (0..50).map(|_| backoff(10, cap)).collect();
        assert!(
            spread.iter().any(|d| *d < Duration::from_secs(30)),
            "jitter spreads retries"
        );
    }
}
