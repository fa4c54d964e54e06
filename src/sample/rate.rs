//! Every rate the agent publishes, computed in one place: the change of a counter of
//! work done (`used`: CPU time, busy ticks, throttled periods) over the change of a
//! counter of opportunity (`span`: wall time, all ticks, all periods), between two
//! readings. Counters are cumulative, so the one hard part is a counter that does not move
//! forward: a reset (a container restarted, a CPU unplugged), a clock stepped back, or no
//! time at all between the readings. Each caller decides what such a gap means for its
//! metric; none is ever turned into a number by accident.

/// One reading of a pair of cumulative counters, in units the caller keeps consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Work done so far.
    pub used: u64,
    /// Opportunity so far: the denominator's counter.
    pub span: u64,
}

/// Why two readings give no rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The work counter went down: it was reset (a restart, a new cgroup).
    UsedBackwards,
    /// The opportunity counter went down: a clock stepped back, a counter reset.
    SpanBackwards,
    /// The opportunity counter did not move: nothing can be divided by it.
    NoSpan,
}

/// Δused / Δspan between `prev` and `cur`: 0 when no work was done, 1 when all of the
/// span was used (more where `used` counts several CPUs). Checked in that order: the span
/// first, as a span that went backwards makes any change of `used` meaningless.
pub fn ratio(prev: Reading, cur: Reading) -> Result<f64, Gap> {
    let span = cur.span.checked_sub(prev.span).ok_or(Gap::SpanBackwards)?;
    if span == 0 {
        return Err(Gap::NoSpan);
    }
    let used = cur.used.checked_sub(prev.used).ok_or(Gap::UsedBackwards)?;
    Ok(used as f64 / span as f64)
}

/// A ratio as a percentage of `capacity` (the CPUs a scope may use; 1 for a share),
/// at most 100: rounding of tick counters can put `used` a tick above `span`.
pub fn percent_of(ratio: f64, capacity: f64) -> Option<f64> {
    (capacity > 0.0 && ratio.is_finite()).then(|| (ratio / capacity * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(used: u64, span: u64) -> Reading {
        Reading { used, span }
    }

    #[test]
    fn the_ratio_is_the_change_of_used_over_the_change_of_span() {
        assert_eq!(ratio(r(1000, 5000), r(1050, 5200)), Ok(0.25));
        assert_eq!(ratio(r(0, 0), r(0, 10)), Ok(0.0));
        assert_eq!(ratio(r(0, 0), r(500, 250)), Ok(2.0), "two CPUs' worth");
    }

    #[test]
    fn counters_that_do_not_move_forward_are_gaps_not_numbers() {
        assert_eq!(ratio(r(10, 100), r(5, 200)), Err(Gap::UsedBackwards));
        assert_eq!(ratio(r(10, 100), r(20, 50)), Err(Gap::SpanBackwards));
        assert_eq!(ratio(r(10, 100), r(5, 50)), Err(Gap::SpanBackwards));
        assert_eq!(ratio(r(10, 100), r(20, 100)), Err(Gap::NoSpan));
        assert_eq!(ratio(r(u64::MAX, 0), r(0, 1)), Err(Gap::UsedBackwards));
    }

    #[test]
    fn percentages_are_of_the_capacity_and_within_0_to_100() {
        assert_eq!(percent_of(0.25, 1.0), Some(25.0));
        assert_eq!(percent_of(0.25, 0.5), Some(50.0));
        assert_eq!(percent_of(1.02, 1.0), Some(100.0));
        assert_eq!(percent_of(0.5, 0.0), None);
        assert_eq!(percent_of(f64::NAN, 1.0), None);
    }
}
