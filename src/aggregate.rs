//! Samples → windows aligned to the wall clock. A window starts at a multiple of the
//! period since the Unix epoch (period 60 → every minute on the minute), so each window's
//! datums land in exactly one CloudWatch period bucket, and agents on many hosts line up.

use crate::sample::Sample;

/// Percent values are kept to 0.1: the resolution CloudWatch users read, and it bounds a
/// window's memory to 1001 counters per metric however long the period.
const BUCKETS: usize = 1001;

/// Counts of values rounded to 0.1 over 0.0..=100.0.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]` is how many values rounded to `i / 10`.
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.distribution()).finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl Histogram {
    /// Adds a percentage; values outside 0–100 are clamped, NaN is ignored.
    pub fn add(&mut self, percent: f64) {
        if percent.is_nan() {
            return;
        }
        let tenths = (percent.clamp(0.0, 100.0) * 10.0).round() as usize;
        self.counts[tenths] += 1;
        self.total += 1;
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// `(value, count)` for every value seen, ascending.
    pub fn distribution(&self) -> impl Iterator<Item = (f64, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(tenths, n)| (tenths as f64 / 10.0, *n))
    }

    /// The largest value, or `None` when empty.
    pub fn max(&self) -> Option<f64> {
        self.distribution().last().map(|(v, _)| v)
    }

    /// The median: the middle value, or the mean of the two middle values for an even
    /// count; `None` when empty.
    pub fn median(&self) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let lower = self.nth((self.total - 1) / 2);
        let upper = self.nth(self.total / 2);
        Some(((lower + upper) / 2.0 * 100.0).round() / 100.0)
    }

    /// The value at 0-based rank `n` in ascending order; `n < total`.
    fn nth(&self, n: u64) -> f64 {
        let mut seen = 0u64;
        for (value, count) in self.distribution() {
            seen += u64::from(count);
            if seen > n {
                return value;
            }
        }
        100.0
    }
}

/// The samples of one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start of the window, in seconds since the Unix epoch: the datums' timestamp.
    pub start: u64,
    pub cpu: Histogram,
    pub memory: Histogram,
    pub throttled: Histogram,
}

impl Window {
    fn new(start: u64) -> Self {
        Window {
            start,
            cpu: Histogram::default(),
            memory: Histogram::default(),
            throttled: Histogram::default(),
        }
    }

    /// True when no metric has a value: nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.cpu.count() == 0 && self.memory.count() == 0 && self.throttled.count() == 0
    }
}

/// Whole seconds since the Unix epoch at `at` (0 for a clock set before 1970): the time
/// windows, timestamps and the datums' age are counted in.
pub fn unix_secs(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Start of the window holding `unix_secs`.
pub fn window_start(unix_secs: u64, period_secs: u64) -> u64 {
    unix_secs - unix_secs % period_secs
}

/// Collects samples into the current window and hands back each window as it closes.
#[derive(Debug)]
pub struct Aggregator {
    period_secs: u64,
    current: Option<Window>,
}

impl Aggregator {
    /// An aggregator of `period_secs`-long windows; `period_secs` must be at least 1.
    pub fn new(period_secs: u64) -> Self {
        Aggregator {
            period_secs: period_secs.max(1),
            current: None,
        }
    }

    /// Adds a sample taken at `unix_secs`. When it belongs to a later window (or an
    /// earlier one, after the clock was set back), the current window closes and is
    /// returned if it holds any value.
    pub fn add(&mut self, unix_secs: u64, sample: &Sample) -> Option<Window> {
        let start = window_start(unix_secs, self.period_secs);
        let closed = match &self.current {
            Some(w) if w.start != start => self.current.take(),
            _ => None,
        };
        let window = self.current.get_or_insert_with(|| Window::new(start));
        if let Some(cpu) = sample.cpu {
            window.cpu.add(cpu);
        }
        if let Some(memory) = sample.memory {
            window.memory.add(memory);
        }
        if let Some(throttled) = sample.throttled {
            window.throttled.add(throttled);
        }
        closed.filter(|w| !w.is_empty())
    }

    /// Closes the current, partial window (on shutdown); `None` if it holds no value.
    pub fn finish(&mut self) -> Option<Window> {
        self.current.take().filter(|w| !w.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: Option<f64>, memory: Option<f64>) -> Sample {
        Sample {
            cpu,
            memory,
            ..Sample::default()
        }
    }

    fn histogram(values: &[f64]) -> Histogram {
        let mut h = Histogram::default();
        values.iter().for_each(|v| h.add(*v));
        h
    }

    #[test]
    fn windows_start_on_multiples_of_the_period_since_the_epoch() {
        // 2026-11-25T15:12:34Z
        let t = 1_795_619_554;
        assert_eq!(window_start(t, 60), 1_795_619_520);
        assert_eq!(window_start(t, 60) % 60, 0);
        assert_eq!(window_start(t, 5), 1_795_619_550);
        assert_eq!(window_start(t, 1), t);
        assert_eq!(window_start(t, 86_400) % 86_400, 0);
        assert_eq!(
            window_start(1_795_619_520, 60),
            1_795_619_520,
            "a boundary opens its window"
        );
    }

    #[test]
    fn a_window_closes_when_the_first_sample_of_the_next_arrives() {
        let mut agg = Aggregator::new(5);
        assert_eq!(agg.add(100, &sample(None, Some(10.0))), None);
        assert_eq!(agg.add(103, &sample(Some(20.0), Some(11.0))), None);
        assert_eq!(agg.add(104, &sample(Some(30.0), Some(12.0))), None);
        let closed = agg
            .add(105, &sample(Some(40.0), Some(13.0)))
            .expect("window 100 closes");
        assert_eq!(closed.start, 100);
        assert_eq!(closed.cpu, histogram(&[20.0, 30.0]));
        assert_eq!(closed.memory, histogram(&[10.0, 11.0, 12.0]));
        let last = agg.finish().expect("partial window 105");
        assert_eq!(
            (last.start, last.cpu.count(), last.memory.count()),
            (105, 1, 1)
        );
        assert_eq!(agg.finish(), None);
    }

    #[test]
    fn a_clock_set_back_closes_the_window_too() {
        let mut agg = Aggregator::new(60);
        agg.add(600, &sample(Some(1.0), None));
        assert_eq!(
            agg.add(590, &sample(Some(2.0), None)).map(|w| w.start),
            Some(600)
        );
    }

    #[test]
    fn windows_with_no_values_are_not_handed_on() {
        let mut agg = Aggregator::new(1);
        assert_eq!(agg.add(1, &sample(None, None)), None);
        assert_eq!(agg.add(2, &sample(None, None)), None);
        assert_eq!(agg.finish(), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(histogram(&[5.0, 1.0, 3.0]).median(), Some(3.0));
        assert_eq!(histogram(&[4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
        assert_eq!(histogram(&[7.0, 7.0, 7.0, 90.0]).median(), Some(7.0));
        assert_eq!(histogram(&[0.1, 0.2]).median(), Some(0.15));
        assert_eq!(histogram(&[]).median(), None);
    }

    #[test]
    fn max_is_the_largest_value() {
        assert_eq!(histogram(&[5.0, 99.9, 3.0]).max(), Some(99.9));
        assert_eq!(histogram(&[100.0]).max(), Some(100.0));
        assert_eq!(histogram(&[]).max(), None);
    }

    #[test]
    fn values_round_to_a_tenth_and_clamp_to_0_100() {
        let h = histogram(&[12.34, 12.26, 150.0, -3.0, f64::NAN]);
        let d: Vec<_> = h.distribution().collect();
        assert_eq!(d, vec![(0.0, 1), (12.3, 2), (100.0, 1)]);
        assert_eq!(h.count(), 4);
    }
}
