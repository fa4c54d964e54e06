//! When each window goes to CloudWatch. Windows are aligned to the wall clock, so a
//! fleet closes them in the same second; sending them then would spend an account's
//! `PutMetricData` budget (500 requests/s per region by default) in one burst and have
//! most of the fleet throttled, although it uses a fraction of the budget on average. So
//! each agent sends at its own offset after the window (or group of `--send-every`
//! windows) ends: random at start within the first quarter of the period and at most
//! 15 s, so data stays fresh; anywhere in the period after being throttled, so that a
//! fleet larger than the first quarter can serve settles over the whole period. AWS's own
//! advice for throttled `PutMetricData` is the same: spread the calls with jitter.
//! Timestamps are not moved, only the sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::SendDelay;

/// The part of the period the first offset is drawn from (`--send-delay auto`).
const AUTO_FRACTION: f64 = 0.25;
/// The longest first offset under `auto`: a minute's window is then in CloudWatch within
/// about 15 s, in time for alarms evaluated on the next minute.
const AUTO_MAX: Duration = Duration::from_secs(15);

/// One agent's send times.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Seconds from the start of one group of windows to the next: `--period` ×
    /// `--send-every`.
    cycle: u64,
    /// Seconds of one window (`--period`).
    period: u64,
    /// This agent's offset after the end of each group; zero when spreading is off.
    offset: Duration,
    /// Whether the offset is spread at all (`--send-delay` other than 0).
    spreading: bool,
}

impl Schedule {
    /// The schedule of windows of `period_secs` sent `every` at a time, with the first
    /// offset drawn by `random` (uniform in [0, 1)) within `delay`.
    pub fn new(period_secs: u64, every: u64, delay: SendDelay, random: f64) -> Schedule {
        let period = period_secs.max(1);
        let cycle = period.saturating_mul(every.max(1));
        let reach = match delay {
            SendDelay::Auto => Duration::from_secs(cycle)
                .mul_f64(AUTO_FRACTION)
                .min(AUTO_MAX),
            SendDelay::Within(reach) => reach.min(Duration::from_secs(cycle)),
        };
        Schedule {
            cycle,
            period,
            offset: reach.mul_f64(random.clamp(0.0, 1.0)),
            spreading: !reach.is_zero(),
        }
    }

    /// Sends as soon as each window closes: no delay, no grouping.
    pub fn immediate(period_secs: u64) -> Schedule {
        Schedule::new(period_secs, 1, SendDelay::Within(Duration::ZERO), 0.0)
    }

    /// This agent's offset after each group of windows.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// When the window that starts at `start` (seconds since the epoch) is due: the end
    /// of its group of windows (groups are aligned to the wall clock like the windows,
    /// so a fleet groups alike) plus this agent's offset.
    pub fn due(&self, start: u64) -> SystemTime {
        // A time past what SystemTime holds cannot come from the agent's clock; were it
        // ever asked for, the window is due now rather than a panic.
        Duration::from_secs(self.group_end(start))
            .checked_add(self.offset)
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
            .unwrap_or(UNIX_EPOCH)
    }

    /// The start of the last window in the group of the window that starts at `start`:
    /// once that one is queued, the group is whole.
    pub fn last_of_group(&self, start: u64) -> u64 {
        self.group_end(start).saturating_sub(self.period)
    }

    fn group_end(&self, start: u64) -> u64 {
        (start / self.cycle)
            .saturating_add(1)
            .saturating_mul(self.cycle)
    }

    /// After a throttled send: a new offset anywhere in the cycle, drawn by `random`,
    /// kept while sends succeed. Nothing changes when spreading is off.
    pub fn relocate(&mut self, random: f64) {
        if self.spreading {
            self.offset = Duration::from_secs(self.cycle).mul_f64(random.clamp(0.0, 0.999_999));
        }
    }

    /// The longest a due window may wait: the cycle and the offset. A wall clock that
    /// jumps back cannot hold data longer than this.
    pub fn longest_wait(&self) -> Duration {
        Duration::from_secs(self.cycle) + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn auto_offsets_are_within_a_quarter_of_the_period_and_at_most_15_s() {
        for (period, every, reach) in [(2, 1, 0.5), (60, 1, 15.0), (300, 1, 15.0), (10, 3, 7.5)] {
            let low = Schedule::new(period, every, SendDelay::Auto, 0.0);
            let high = Schedule::new(period, every, SendDelay::Auto, 0.999_999);
            assert_eq!(low.offset(), Duration::ZERO);
            let got = high.offset().as_secs_f64();
            assert!(got < reach && got > reach * 0.99, "{period}×{every}: {got}");
        }
    }

    #[test]
    fn agents_drawing_different_numbers_spread_over_the_reach() {
        let offsets: Vec<f64> = (0..100)
            .map(|i| {
                let r = f64::from(i) / 100.0;
                Schedule::new(60, 1, SendDelay::Auto, r)
                    .offset()
                    .as_secs_f64()
            })
            .collect();
        for pair in offsets.windows(2) {
            assert!(pair[1] > pair[0], "distinct and ordered: {pair:?}");
        }
        assert!(offsets[99] < 15.0 && offsets[99] > 14.0);
    }

    #[test]
    fn a_window_is_due_at_the_end_of_its_group_plus_the_offset_and_stays_so() {
        let s = Schedule::new(60, 1, SendDelay::Within(Duration::from_secs(10)), 0.5);
        assert_eq!(s.offset(), Duration::from_secs(5));
        assert_eq!(s.due(120), at(185), "window 120–180, sent at 180 + 5");
        assert_eq!(s.due(120), s.due(120), "stable");
        // --send-every 3: windows 0, 60 and 120 go together at 180 + offset.
        let s = Schedule::new(60, 3, SendDelay::Within(Duration::ZERO), 0.9);
        for start in [0, 60, 120] {
            assert_eq!(s.due(start), at(180));
            assert_eq!(s.last_of_group(start), 120);
        }
        assert_eq!(s.due(180), at(360));
    }

    #[test]
    fn a_start_beyond_any_clock_is_due_at_once_not_a_panic() {
        let s = Schedule::new(60, 1, SendDelay::Auto, 0.5);
        assert_eq!(s.due(u64::MAX), UNIX_EPOCH);
        assert_eq!(s.last_of_group(u64::MAX), u64::MAX - 60);
    }

    #[test]
    fn zero_sends_at_once_and_never_moves() {
        let mut s = Schedule::new(60, 1, SendDelay::Within(Duration::ZERO), 0.7);
        assert_eq!(s.due(0), at(60));
        s.relocate(0.5);
        assert_eq!(s.due(0), at(60), "no spreading, no relocation");
        assert_eq!(Schedule::immediate(60), s);
    }

    #[test]
    fn throttled_agents_move_anywhere_in_the_cycle() {
        let mut s = Schedule::new(60, 1, SendDelay::Auto, 0.1);
        s.relocate(0.9);
        assert_eq!(s.offset(), Duration::from_secs(54));
        s.relocate(1.0);
        assert!(s.offset() < Duration::from_secs(60), "{:?}", s.offset());
        assert!(s.longest_wait() < Duration::from_secs(120));
    }

    #[test]
    fn a_fixed_reach_longer_than_the_cycle_is_cut_to_it() {
        let s = Schedule::new(10, 1, SendDelay::Within(Duration::from_secs(30)), 0.5);
        assert_eq!(s.offset(), Duration::from_secs(5));
    }
}
