//! Persistent failure, said at the default log level. A failure that passes (one refused
//! connection, one unreadable sample) is a warning, which the default level hides; one
//! that lasts three periods, and at least 30 s, means the metrics are not getting through
//! and the user must hear of it: one error line with what is failing and since when,
//! again at most every 10 minutes while it lasts, and an info line when it ends.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Shortest failure reported, whatever the period.
const AT_LEAST: Duration = Duration::from_secs(30);
/// A lasting failure is said again this often.
pub const REPEAT: Duration = Duration::from_secs(600);

/// The state of one thing that can fail for long (sampling, delivery).
#[derive(Debug)]
pub struct Alarm {
    /// How long a failure lasts before it is said: three periods, at least 30 s.
    after: Duration,
    /// When the current failure began, on the monotonic and the wall clock.
    since: Option<(Instant, SystemTime)>,
    /// When it was last said.
    said_at: Option<Instant>,
}

/// A failure that has lasted long enough to be said now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lasting {
    /// How long it has lasted.
    pub for_: Duration,
    /// When it began.
    pub since: SystemTime,
}

impl Lasting {
    /// "for 45 s (since 2026-12-02T07:00:00Z)".
    pub fn describe(&self) -> String {
        let since = self
            .since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!(
            "for {} s (since {})",
            self.for_.as_secs(),
            crate::domain::rfc3339(since)
        )
    }
}

impl Alarm {
    /// An alarm for windows of `period_secs`.
    pub fn new(period_secs: u64) -> Self {
        Alarm {
            after: Duration::from_secs(period_secs.saturating_mul(3)).max(AT_LEAST),
            since: None,
            said_at: None,
        }
    }

    /// Something failed now. `Some` when the failure is to be said: it has lasted long
    /// enough, and was not said in the last 10 minutes.
    pub fn failed(&mut self) -> Option<Lasting> {
        let now = Instant::now();
        let (began, since) = *self.since.get_or_insert((now, SystemTime::now()));
        let lasted = now - began;
        let due = lasted >= self.after && self.said_at.is_none_or(|at| now - at >= REPEAT);
        due.then(|| {
            self.said_at = Some(now);
            Lasting {
                for_: lasted,
                since,
            }
        })
    }

    /// It works again. `Some(how long it failed)` when the failure had been said, so
    /// that its end is said too.
    pub fn worked(&mut self) -> Option<Duration> {
        let (began, _) = self.since.take()?;
        self.said_at.take().map(|_| began.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_said_after_three_periods_then_every_ten_minutes_and_its_end() {
        let mut alarm = Alarm::new(60);
        assert_eq!(alarm.failed(), None, "a first failure is only a warning");
        tokio::time::advance(Duration::from_secs(179)).await;
        assert_eq!(alarm.failed(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        let said = alarm.failed().expect("three periods");
        assert_eq!(said.for_, Duration::from_secs(180));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(alarm.failed(), None, "not again within 10 minutes");
        tokio::time::advance(REPEAT).await;
        assert!(alarm.failed().is_some(), "again after 10 minutes");
        assert_eq!(alarm.worked(), Some(Duration::from_secs(840)));
        assert_eq!(alarm.worked(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn short_periods_wait_30_s_and_unsaid_failures_end_quietly() {
        let mut alarm = Alarm::new(1);
        alarm.failed();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(alarm.failed(), None);
        assert_eq!(alarm.worked(), None, "never said, so its end is not either");
        alarm.failed();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(alarm.failed().is_some());
    }
}
