//! Byte counters of the task's stats documents (network interfaces, block I/O) turned
//! into bytes a second, each over the stats' own `read` times, and summed over the task.
//! Each counter is kept under a key (a container, an interface), so that a counter that
//! was not refreshed, was reset or appeared is handled on its own.

use crate::sample::rate::{self, Gap, Reading};

/// One counter's last reading and rate.
#[derive(Debug, Clone)]
struct Point {
    /// The container's `DockerId`, or empty for an interface the task's containers share.
    container: String,
    /// The interface, or empty for block I/O.
    interface: String,
    /// Bytes so far at the stats' `read` time (ns since the epoch).
    reading: Reading,
    /// Bytes a second over the last interval that moved on.
    rate: Option<f64>,
    /// Whether this document listed the counter.
    seen: bool,
}

/// Rates of one kind of counter (bytes received, say) across a task.
#[derive(Debug, Default)]
pub struct CounterRates {
    points: Vec<Point>,
    /// Whether a counter of this document moved on.
    advanced: bool,
}

impl CounterRates {
    /// Starts a document: nothing seen, nothing moved on.
    pub fn begin(&mut self) {
        self.advanced = false;
        for p in &mut self.points {
            p.seen = false;
        }
    }

    /// Reads one counter: `bytes` at `read_nanos`. Its first reading is a baseline; one
    /// not refreshed since keeps its last rate; one that went back (a container
    /// restarted, an interface recreated) counts 0 for the interval, like CPU; a `read`
    /// time that went back starts it again.
    pub fn add(&mut self, container: &str, interface: &str, bytes: u64, read_nanos: u64) {
        let cur = Reading {
            used: bytes,
            span: read_nanos,
        };
        let found = self
            .points
            .iter_mut()
            .find(|p| p.container == container && p.interface == interface);
        let Some(point) = found else {
            self.points.push(Point {
                container: container.to_owned(),
                interface: interface.to_owned(),
                reading: cur,
                rate: None,
                seen: true,
            });
            return;
        };
        point.seen = true;
        match rate::ratio(point.reading, cur) {
            Ok(per_nano) => {
                point.rate = Some(per_nano * 1e9);
                self.advanced = true;
            }
            Err(Gap::UsedBackwards) => {
                point.rate = Some(0.0);
                self.advanced = true;
            }
            Err(Gap::NoSpan) => return,
            Err(Gap::SpanBackwards) => point.rate = None,
        }
        point.reading = cur;
    }

    /// Ends a document: the task's bytes a second, the sum over its counters, when one
    /// moved on (`None` for a document with nothing new). Counters the document did not
    /// list are forgotten.
    pub fn finish(&mut self) -> Option<f64> {
        self.points.retain(|p| p.seen);
        self.advanced
            .then(|| self.points.iter().filter_map(|p| p.rate).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn document(rates: &mut CounterRates, counters: &[(&str, &str, u64, u64)]) -> Option<f64> {
        rates.begin();
        for (container, interface, bytes, at) in counters {
            rates.add(container, interface, *bytes, *at);
        }
        rates.finish()
    }

    #[test]
    fn rates_add_up_over_the_counters_and_need_a_baseline() {
        let mut rates = CounterRates::default();
        let first = [("a", "eth0", 1_000, 10 * S), ("b", "eth0", 5_000, 10 * S)];
        assert_eq!(document(&mut rates, &first), None, "baselines only");
        // a: 2000 bytes in 2 s; b: 3000 in 2 s.
        let second = [("a", "eth0", 3_000, 12 * S), ("b", "eth0", 8_000, 12 * S)];
        assert_eq!(document(&mut rates, &second), Some(1_000.0 + 1_500.0));
        // The same document again: nothing new.
        assert_eq!(document(&mut rates, &second), None);
        // Only b moved on; a counts at its last rate.
        let third = [("a", "eth0", 3_000, 12 * S), ("b", "eth0", 8_500, 13 * S)];
        assert_eq!(document(&mut rates, &third), Some(1_000.0 + 500.0));
    }

    #[test]
    fn a_counter_that_goes_back_counts_zero_and_starts_again() {
        let mut rates = CounterRates::default();
        document(&mut rates, &[("a", "", 10_000, 0)]);
        // The container restarted: its counter starts from 400.
        assert_eq!(document(&mut rates, &[("a", "", 400, S)]), Some(0.0));
        assert_eq!(
            document(&mut rates, &[("a", "", 1_400, 2 * S)]),
            Some(1_000.0)
        );
        // A stats clock that went back is no rate, and the next interval counts again.
        assert_eq!(document(&mut rates, &[("a", "", 1_500, S)]), None);
        assert_eq!(
            document(&mut rates, &[("a", "", 2_500, 2 * S)]),
            Some(1_000.0)
        );
    }

    #[test]
    fn a_counter_no_longer_listed_is_forgotten() {
        let mut rates = CounterRates::default();
        document(&mut rates, &[("a", "", 0, 0), ("b", "", 0, 0)]);
        assert_eq!(
            document(&mut rates, &[("a", "", 100, S), ("b", "", 100, S)]),
            Some(200.0)
        );
        // b stopped (its stats are null): only a counts, at its own rate.
        assert_eq!(document(&mut rates, &[("a", "", 300, 2 * S)]), Some(200.0));
        assert_eq!(rates.points.len(), 1);
    }
}
