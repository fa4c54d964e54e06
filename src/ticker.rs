//! The once-a-second beat of sampling. On Linux it is a timerfd in the reactor: one
//! wakeup per sample. A tokio interval wakes twice for a deadline a second away (once
//! when its timer-wheel slot comes due, once at the deadline) and its re-arm pokes the
//! reactor's eventfd, which together cost more than the sample itself. Elsewhere, and
//! under tests' paused time, it is a tokio interval. Ticks at which the source has
//! nothing to read (an ECS task's stats between refreshes) are slept through.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// Ticks every period, the first at once. Ticks missed while the process was busy or
/// stopped are skipped, not caught up in a burst.
#[derive(Debug)]
pub enum Ticker {
    #[cfg(target_os = "linux")]
    TimerFd {
        fd: tokio::io::unix::AsyncFd<timerfd::Timer>,
        period: Duration,
    },
    Interval {
        interval: Interval,
        period: Duration,
        /// The deadline of the last tick, which skipped ticks are counted from.
        last: Option<tokio::time::Instant>,
    },
}

impl Ticker {
    /// The cheapest ticker this platform has.
    pub fn new(period: Duration) -> Ticker {
        #[cfg(target_os = "linux")]
        match timerfd::Timer::start(period).and_then(|timer| {
            // SAFETY: `Timer` owns its descriptor, which stays open and unchanged until
            // the `AsyncFd` drops it.
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    timer,
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| e.into_parts().1)
        }) {
            Ok(fd) => return Ticker::TimerFd { fd, period },
            Err(e) => log::warn!("no timerfd ({e}): sampling on tokio's timer"),
        }
        Ticker::interval(period)
    }

    /// A tokio interval, which follows tokio's clock (and so paused time in tests).
    pub fn interval(period: Duration) -> Ticker {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ticker::Interval {
            interval,
            period,
            last: None,
        }
    }

    /// Sleeps through the next `ticks` ticks: the one after them comes on the same grid,
    /// `ticks + 1` periods after the last. For a source with nothing to read until then
    /// (an ECS task's stats between refreshes), whose wakeups would cost more than the
    /// nothing they do.
    pub fn skip(&mut self, ticks: u32) {
        if ticks == 0 {
            return;
        }
        match self {
            #[cfg(target_os = "linux")]
            Ticker::TimerFd { fd, period } => {
                if let Err(e) = fd.get_ref().delay(*period * ticks, *period) {
                    // The ticks then come as before: only their cost is not saved.
                    log::debug!("cannot delay the timerfd: {e}");
                }
            }
            Ticker::Interval {
                interval,
                period,
                last,
            } => {
                if let Some(last) = last {
                    interval.reset_at(*last + *period * (ticks + 1));
                }
            }
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Ticker::TimerFd { fd, period } => loop {
                let Ok(mut ready) = fd.readable().await else {
                    // Not seen in practice; a sleep keeps a broken reactor from spinning.
                    tokio::time::sleep(*period).await;
                    return;
                };
                // The count of expirations is read and dropped: missed ticks are skipped.
                match ready.try_io(|fd| fd.get_ref().read_expirations()) {
                    Ok(_) => {
                        // Read to empty: not readable until the next expiry, so the next
                        // tick goes straight to the reactor instead of a read that fails.
                        ready.clear_ready();
                        return;
                    }
                    Err(_would_block) => continue,
                }
            },
            Ticker::Interval { interval, last, .. } => {
                *last = Some(interval.tick().await);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

    /// A non-blocking periodic timerfd on the monotonic clock.
    #[derive(Debug)]
    pub struct Timer(TimerFd);

    impl Timer {
        pub fn start(period: Duration) -> io::Result<Timer> {
            let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
            let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?;
            // The first expiry at once (a zero delay would disarm it), then every period.
            let first = TimeSpec::new(0, 1);
            fd.set(
                Expiration::IntervalDelayed(first, TimeSpec::from_duration(period)),
                TimerSetTimeFlags::empty(),
            )?;
            Ok(Timer(fd))
        }

        /// Moves the next expiry `extra` later; the ones after it follow every `period`.
        pub fn delay(&self, extra: Duration, period: Duration) -> io::Result<()> {
            let remaining = match self.0.get()? {
                Some(Expiration::OneShot(next) | Expiration::IntervalDelayed(next, _)) => {
                    Duration::from(next)
                }
                Some(Expiration::Interval(every)) => Duration::from(every),
                None => Duration::ZERO,
            };
            let first = (remaining + extra).max(Duration::from_nanos(1));
            self.0.set(
                Expiration::IntervalDelayed(
                    TimeSpec::from_duration(first),
                    TimeSpec::from_duration(period),
                ),
                TimerSetTimeFlags::empty(),
            )?;
            Ok(())
        }

        pub fn read_expirations(&self) -> io::Result<u64> {
            let mut count = [0u8; 8];
            nix::unistd::read(self.0.as_fd(), &mut count)?;
            Ok(u64::from_ne_bytes(count))
        }
    }

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_timerfd_ticker_sleeps_through_skipped_ticks() {
        // Long enough that a loaded machine's scheduling delays stay inside it; the
        // timer never fires early, so the lower bounds are exact.
        let period = Duration::from_millis(200);
        let start = Instant::now();
        let mut ticker = Ticker::new(period);
        ticker.tick().await;
        ticker.tick().await;
        ticker.skip(3);
        ticker.tick().await;
        let skipped = start.elapsed();
        assert!(
            skipped >= period * 5 && skipped < period * 6,
            "the tick after three skipped comes at the grid's fifth period: {skipped:?}"
        );
        ticker.tick().await;
        let next = start.elapsed();
        assert!(next >= period * 6, "then every period: {next:?}");
        ticker.skip(0);
        ticker.tick().await;
        let after = start.elapsed();
        assert!(
            after >= period * 7 && after < period * 8,
            "skip(0) skips nothing: {after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_ticker_sleeps_through_skipped_ticks() {
        let period = Duration::from_millis(200);
        let ticker = Ticker::interval(period);
        // Paused time: tokio's clock, not std's, measures it.
        let start = tokio::time::Instant::now();
        let mut ticker = ticker;
        ticker.tick().await;
        ticker.tick().await;
        ticker.skip(3);
        ticker.tick().await;
        assert_eq!(start.elapsed(), period * 5);
        ticker.tick().await;
        assert_eq!(start.elapsed(), period * 6);
    }

    #[tokio::test]
    async fn ticks_at_once_then_every_period_and_skips_missed_ticks() {
        // Long enough that a loaded machine's scheduling delays stay well inside it.
        let period = Duration::from_millis(200);
        let mut ticker = Ticker::new(period);
        #[cfg(target_os = "linux")]
        assert!(matches!(ticker, Ticker::TimerFd { .. }), "{ticker:?}");
        let start = Instant::now();
        ticker.tick().await;
        assert!(start.elapsed() < period, "the first tick is immediate");
        ticker.tick().await;
        ticker.tick().await;
        let two = start.elapsed();
        assert!(two >= period * 2 - Duration::from_millis(1), "{two:?}");
        // Busy for five periods: one tick is due at once, the rest were skipped.
        std::thread::sleep(period * 5);
        let late = Instant::now();
        ticker.tick().await;
        let missed = Instant::now();
        assert!(missed - late < period / 2, "the missed tick is due at once");
        // Ticks stay on the period's grid: a burst catching up would come before the
        // grid's next point after the missed tick.
        let periods_in = (missed - start).as_nanos() / period.as_nanos() + 1;
        let next_point = start + period * u32::try_from(periods_in).unwrap();
        ticker.tick().await;
        let next = Instant::now();
        assert!(
            next + Duration::from_millis(5) >= next_point,
            "the others are not caught up: a tick {:?} before the next point",
            next_point - next
        );
    }
}
