//! The sampling loop: a sample every tick, windows closed on period boundaries and handed
//! to delivery, until shutdown or until delivery's destination is gone; then the partial
//! window and the bounded flush. Nothing in it waits on an output: delivery takes each
//! window at once, whatever happens downstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::aggregate::{Aggregator, unix_secs, window_start};
use crate::alarm::Alarm;
use crate::config::Config;
use crate::delivery::{Closed, Delivery, Report};
use crate::domain::{Dimension, JobRun, Metric, Window};
use crate::sample::{Sample, Source};
use crate::ticker::Ticker;

/// Time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// On shutdown, a last sample is taken only if the previous one is at least this old;
/// a CPU delta over a few milliseconds is mostly rounding of 10 ms ticks.
const MIN_FINAL_SAMPLE_GAP: Duration = Duration::from_millis(500);
/// While sampling keeps failing, the error is logged again at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// What became of the data.
    pub report: Report,
    /// Set when the loop ended because delivery's destination is gone.
    pub closed: Option<Closed>,
}

/// Samples `source` at each tick of `ticker` into the windows `config` describes, each
/// carrying `dimensions`, and hands every closed window to `delivery`, until `shutdown`
/// completes or delivery's destination closes. After a shutdown it takes a last sample,
/// hands over the partial window (with the run of the wrapped command, when `shutdown`
/// was its end), and gives delivery the flush timeout to finish. `clock` gives the
/// wall-clock time that decides each sample's window.
pub async fn run<S: Source, D: Delivery>(
    config: &Config,
    dimensions: Arc<[Dimension]>,
    source: &mut S,
    mut delivery: D,
    mut ticker: Ticker,
    mut shutdown: Pin<&mut impl Future<Output = Option<JobRun>>>,
    clock: impl Fn() -> SystemTime,
) -> Ended {
    let mut aggregator = Aggregator::new(config.period_secs, config.metrics, dimensions);
    let mut errors = ErrorLog::new(config.period_secs);
    let mut last_sample = None;
    let mut gone = std::pin::pin!(delivery.closed());
    let mut job = None;
    let closed = loop {
        tokio::select! {
            biased;
            run = shutdown.as_mut() => {
                job = run;
                break None;
            }
            closed = &mut gone => break Some(closed),
            _ = ticker.tick() => {
                let sample = source.sample().await;
                last_sample = Some(Instant::now());
                let at = unix_secs(clock());
                errors.record(at, &sample);
                if let Some(window) = aggregator.add(at, &sample) {
                    hand_over(&mut delivery, window);
                }
                ticker.skip(ticks_to_sleep(source.quiet_ticks(), at, config.period_secs));
            }
        }
    };
    if closed.is_none() {
        let recent = last_sample.is_some_and(|at| at.elapsed() < MIN_FINAL_SAMPLE_GAP);
        // Rates over a few milliseconds are noise, so a last sample right after the
        // previous one is taken only for a count, which is exact: a kill since then (the
        // one that ended a wrapped command) is still sent.
        if last_sample.is_some() && (!recent || config.metrics.contains(Metric::OomKills)) {
            let mut sample = source.sample().await;
            let at = unix_secs(clock());
            if recent {
                sample = Sample {
                    oom_kills: sample.oom_kills.filter(|k| *k > 0.0),
                    ..Sample::default()
                };
            } else {
                errors.record(at, &sample);
            }
            if (!recent || sample.oom_kills.is_some())
                && let Some(window) = aggregator.add(at, &sample)
            {
                hand_over(&mut delivery, window);
            }
        }
        if let Some(mut run) = job {
            // The kernel's record of the whole scope, where it keeps one, rather than
            // the largest single process.
            run.peak_memory = source.recorded_peak().or(run.peak_memory);
            say_ended(&run, ": publishing the partial window");
            if let Some(window) = aggregator.add_job(unix_secs(clock()), &run) {
                hand_over(&mut delivery, window);
            }
        }
        if let Some(window) = aggregator.finish() {
            hand_over(&mut delivery, window);
        }
    }
    let report = delivery.finish(Instant::now() + config.flush_timeout).await;
    Ended { report, closed }
}

/// Of the `quiet` ticks a source has nothing to read at, those to sleep through after a
/// sample at `at`: not the first of the next window, whose sample closes this one on
/// time.
fn ticks_to_sleep(quiet: u32, at: u64, period_secs: u64) -> u32 {
    let period = period_secs.max(1);
    let next_window = window_start(at, period) + period;
    let to_next = u32::try_from(next_window - at).unwrap_or(u32::MAX);
    quiet.min(to_next - 1)
}

/// The one info line that says how the wrapped command's run ended (under this module's
/// target wherever it is said, so that one `RUST_LOG` filter keeps it), then `what next`.
pub fn say_ended(run: &JobRun, next: &str) {
    log::info!("{run}{next}");
}

/// Gives a closed window to the output, saying so on the publisher log target.
fn hand_over(delivery: &mut impl Delivery, window: Window) {
    log::info!(target: crate::PUBLISHER_LOG, "{window}");
    delivery.send(window);
}

/// Logs each sample at debug level, and sampling errors without flooding: the first at
/// once, then at most once per `ERROR_LOG_INTERVAL` with a count, and a note when
/// sampling recovers; no sample at all for long is an error (see [`Alarm`]).
#[derive(Debug)]
struct ErrorLog {
    /// Samples without any value and with errors, for long.
    alarm: Alarm,
    /// When an error was last logged as a warning; `None` while sampling works.
    last_logged: Option<Instant>,
    /// Failed samples since then, said with the next warning.
    suppressed: u64,
}

impl ErrorLog {
    fn new(period_secs: u64) -> Self {
        ErrorLog {
            alarm: Alarm::new(period_secs),
            last_logged: None,
            suppressed: 0,
        }
    }

    fn record(&mut self, unix_secs: u64, sample: &Sample) {
        log::debug!(
            "sample at {unix_secs}: cpu {:?} memory {:?}",
            sample.cpu,
            sample.memory
        );
        // A tick with nothing due to be read says nothing of whether sampling works.
        if sample.idle {
            return;
        }
        let nothing = sample.is_empty();
        match sample.errors.first() {
            Some(e) if nothing => {
                if let Some(lasting) = self.alarm.failed() {
                    log::error!(
                        "no sample could be taken {}: {}",
                        lasting.describe(),
                        crate::redact::for_log(&e.to_string())
                    );
                }
            }
            _ if !nothing => {
                if let Some(failed) = self.alarm.worked() {
                    log::info!("samples again, after {} s without", failed.as_secs());
                }
            }
            _ => {}
        }
        if sample.errors.is_empty() {
            if self.last_logged.take().is_some() {
                log::info!("sampling recovered");
                self.suppressed = 0;
            }
            return;
        }
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            for e in &sample.errors {
                log::debug!("{}", crate::redact::for_log(&e.to_string()));
            }
            return;
        }
        let again = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more failed samples since the last report)"),
        };
        for e in &sample.errors {
            log::warn!("{}{again}", crate::redact::for_log(&e.to_string()));
        }
        self.last_logged = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::delivery::Queued;
    use crate::domain::Window;
    use crate::publish::cloudwatch::{ErrorKind, PublishError, Publisher, PutRequest};

    #[test]
    fn quiet_ticks_are_slept_through_but_not_the_first_of_the_next_window() {
        // An ECS task refreshed every 10 s, just polled: nine quiet ticks.
        assert_eq!(ticks_to_sleep(9, 100, 60), 9);
        // The tick at 120 opens the next window and closes this one.
        assert_eq!(ticks_to_sleep(9, 115, 60), 4);
        assert_eq!(ticks_to_sleep(9, 119, 60), 0);
        assert_eq!(ticks_to_sleep(9, 120, 60), 9);
        assert_eq!(ticks_to_sleep(9, 101, 2), 0, "every window gets its tick");
        assert_eq!(ticks_to_sleep(0, 100, 60), 0, "a source read every second");
    }

    /// Memory rises by one point per sample; CPU is there from the second sample on.
    struct Counting(u32);

    impl Source for Counting {
        async fn sample(&mut self) -> Sample {
            self.0 += 1;
            Sample {
                cpu: (self.0 > 1).then_some(50.0),
                memory: Some(f64::from(self.0)),
                ..Sample::default()
            }
        }
    }

    /// Records requests; fails the first `failures` calls, or hangs, when told to.
    #[derive(Clone, Default)]
    struct Recorder {
        sent: Arc<Mutex<Vec<PutRequest>>>,
        calls: Arc<Mutex<usize>>,
        failures: usize,
        hang: bool,
    }

    impl Publisher for Recorder {
        async fn publish(&self, request: &PutRequest) -> Result<(), PublishError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            if call <= self.failures {
                return Err(PublishError::new(
                    ErrorKind::Transient,
                    "connection refused",
                ));
            }
            self.sent.lock().unwrap().push(request.clone());
            Ok(())
        }
    }

    /// Records windows as the loop hands them over; its destination goes away at
    /// `close_at`.
    struct Windows {
        got: Vec<Window>,
        close_at: Instant,
    }

    impl Delivery for &mut Windows {
        fn send(&mut self, window: Window) {
            self.got.push(window);
        }

        fn closed(&mut self) -> impl Future<Output = Closed> + 'static {
            let at = self.close_at;
            async move {
                tokio::time::sleep_until(at).await;
                let epipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
                Closed(crate::stdio::Failure::of(&epipe))
            }
        }

        async fn finish(self, _deadline: Instant) -> Report {
            Report::empty("windows")
        }
    }

    /// A recent, hour-aligned Unix time: windows start on it, and delivery does not see
    /// the datums as too old.
    fn recent_hour() -> u64 {
        unix_secs(SystemTime::now()) / 3600 * 3600
    }

    fn config(period: &str) -> Config {
        crate::config::testing::config(&["--period", period])
    }

    fn dimensions() -> Arc<[Dimension]> {
        vec![Dimension::service("svc").unwrap()].into()
    }

    /// Wall clock that starts at `start_unix` and follows tokio's (paused) time.
    fn clock(start_unix: u64) -> impl Fn() -> SystemTime + Clone + Send + 'static {
        let started = Instant::now();
        move || UNIX_EPOCH + Duration::from_secs(start_unix) + started.elapsed()
    }

    /// `run` through the CloudWatch queue, failing the test instead of hanging it if the
    /// agent never returns. Time is paused, so the virtual hour passes at once when
    /// nothing else is left to do.
    async fn run_bounded(
        config: &Config,
        recorder: Recorder,
        shutdown: tokio::time::Sleep,
        clock: impl Fn() -> SystemTime + Clone + Send + 'static,
    ) -> Report {
        let ticker = Ticker::interval(SAMPLE_INTERVAL);
        let delivery = Queued::start_clocked(recorder, config, clock.clone());
        let shutdown = std::pin::pin!(async {
            shutdown.await;
            None
        });
        let mut source = Counting(0);
        let run = run(
            config,
            dimensions(),
            &mut source,
            delivery,
            ticker,
            shutdown,
            clock,
        );
        let ended = tokio::time::timeout(Duration::from_secs(7200), run)
            .await
            .expect("the agent returns after shutdown");
        assert_eq!(ended.closed, None);
        ended.report
    }

    fn memory_counts(request: &PutRequest) -> f64 {
        request
            .metric_data
            .iter()
            .filter(|d| d.metric_name == "MemoryUtilization")
            .flat_map(|d| d.counts.iter())
            .sum()
    }

    #[tokio::test(start_paused = true)]
    async fn each_window_is_published_once_and_shutdown_publishes_the_partial_one() {
        let recorder = Recorder::default();
        let shutdown = tokio::time::sleep(Duration::from_millis(12_500));
        let start = recent_hour();
        let report = run_bounded(&config("5"), recorder.clone(), shutdown, clock(start)).await;

        let sent = recorder.sent.lock().unwrap();
        let starts: Vec<u64> = sent.iter().map(|r| r.metric_data[0].timestamp).collect();
        assert_eq!(starts, vec![start, start + 5, start + 10]);
        // Samples at 0..=12 s, plus a final one at 12.5 s in the partial window.
        let counts: Vec<f64> = sent.iter().map(memory_counts).collect();
        assert_eq!(counts, vec![5.0, 5.0, 4.0]);
        let datums: usize = sent.iter().map(|r| r.metric_data.len()).sum();
        assert_eq!(report.delivered, datums as u64);
        assert_eq!((report.dropped, report.unflushed), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn one_hour_takes_3600_samples_without_drift() {
        let recorder = Recorder::default();
        // Shut down just before the 3601st tick at 3600 s.
        let shutdown = tokio::time::sleep(Duration::from_millis(3_599_900));
        run_bounded(
            &config("60"),
            recorder.clone(),
            shutdown,
            clock(recent_hour()),
        )
        .await;
        let total: f64 = recorder
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(memory_counts)
            .sum();
        assert_eq!(total, 3601.0, "3600 ticks plus the final sample");
        assert_eq!(recorder.sent.lock().unwrap().len(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_sends_keep_windows_queued_until_the_endpoint_recovers() {
        let recorder = Recorder {
            failures: 3,
            ..Recorder::default()
        };
        let start = recent_hour();
        let shutdown = tokio::time::sleep(Duration::from_millis(20_500));
        let report = run_bounded(&config("1"), recorder.clone(), shutdown, clock(start)).await;
        let sent = recorder.sent.lock().unwrap();
        // 21 ticks and a final sample, every one delivered once, none lost.
        let samples: f64 = sent.iter().map(memory_counts).sum();
        assert_eq!(samples, 22.0);
        let mut stamps: Vec<u64> = sent
            .iter()
            .flat_map(|r| r.metric_data.iter())
            .filter(|d| d.metric_name == "MemoryUtilization")
            .map(|d| d.timestamp)
            .collect();
        let n = stamps.len();
        stamps.dedup();
        assert_eq!(stamps.len(), n, "no window twice");
        assert_eq!(stamps, (start..=start + 20).collect::<Vec<_>>());
        assert!(
            *recorder.calls.lock().unwrap() > 3,
            "the failed sends were retried"
        );
        assert_eq!((report.dropped, report.unflushed), (0, 0));
        let datums: usize = sent.iter().map(|r| r.metric_data.len()).sum();
        assert_eq!(report.delivered, datums as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_that_cannot_finish_is_cut_at_the_timeout() {
        let recorder = Recorder {
            hang: true,
            ..Recorder::default()
        };
        let shutdown = tokio::time::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let report = run_bounded(&config("60"), recorder, shutdown, clock(recent_hour())).await;
        // Its request was out when the deadline came: sent, with no answer, which is
        // not the same as not accepted.
        assert_eq!(
            (report.unanswered, report.unflushed),
            (1, 0),
            "the memory datum of the partial window"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(5_300) && took < Duration::from_millis(5_400),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn windows_keep_being_taken_while_a_request_hangs() {
        // The first request never returns; two minutes of 1 s windows arrive meanwhile,
        // more than the hand-over channel holds: the task takes them into its queue.
        let recorder = Recorder {
            hang: true,
            ..Recorder::default()
        };
        let shutdown = tokio::time::sleep(Duration::from_secs(120));
        let report = run_bounded(&config("1"), recorder, shutdown, clock(recent_hour())).await;
        assert_eq!(report.dropped, 0, "{report:?}");
        assert!(report.unflushed > 200, "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_destination_ends_the_loop_without_waiting_for_shutdown() {
        // Windows close at 1 s and 2 s; the destination goes at 2.5 s.
        let mut windows = Windows {
            got: Vec::new(),
            close_at: Instant::now() + Duration::from_millis(2500),
        };
        let shutdown = std::pin::pin!(std::future::pending::<Option<JobRun>>());
        let (config, mut source) = (config("1"), Counting(0));
        let run = run(
            &config,
            dimensions(),
            &mut source,
            &mut windows,
            Ticker::interval(SAMPLE_INTERVAL),
            shutdown,
            clock(recent_hour()),
        );
        let ended = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the loop ends by itself");
        assert!(ended.closed.is_some_and(|Closed(f)| f.reader_gone()));
        assert_eq!(windows.got.len(), 2, "no partial window after the close");
    }

    /// `Counting`, in a scope whose kernel recorded a peak of 7 MiB.
    struct Recorded(Counting);

    impl Source for Recorded {
        async fn sample(&mut self) -> Sample {
            self.0.sample().await
        }

        fn recorded_peak(&self) -> Option<(u64, &'static str)> {
            Some((7 << 20, "memory.peak"))
        }
    }

    /// The windows a wrapped run of `source` with `args` hands over, its command ending
    /// when `ended` completes; the loop must hand over exactly one.
    async fn the_one_window(
        args: &[&str],
        source: &mut impl Source,
        ended: impl Future<Output = Option<JobRun>>,
    ) -> Window {
        let mut windows = Windows {
            got: Vec::new(),
            close_at: Instant::now() + Duration::from_secs(3600),
        };
        let config = crate::config::testing::config(&[args, &["--", "true"]].concat());
        run(
            &config,
            dimensions(),
            source,
            &mut windows,
            Ticker::interval(SAMPLE_INTERVAL),
            std::pin::pin!(ended),
            clock(recent_hour()),
        )
        .await;
        match <[Window; 1]>::try_from(windows.got) {
            Ok([window]) => window,
            Err(got) => panic!("one window: {got:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_shorter_than_a_period_puts_its_run_in_the_final_window() {
        use crate::domain::Ending;
        let ended = JobRun {
            ending: Ending::Exited(3),
            stopped: false,
            duration: Duration::from_millis(100),
            cpu: Some(Duration::from_millis(20)),
            peak_memory: Some((1 << 20, "ru_maxrss")),
        };
        let shutdown = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some(ended)
        };
        let mut source = Recorded(Counting(0));
        let args = ["--period", "60", "--metrics", "cpu,memory,job"];
        let window = the_one_window(&args, &mut source, shutdown).await;
        let value = |metric| {
            window
                .series
                .iter()
                .find(|(m, _)| *m == metric)
                .map(|(_, d)| d.pairs().to_vec())
        };
        assert_eq!(value(Metric::JobDuration), Some(vec![(0.1, 1)]));
        assert_eq!(value(Metric::JobFailed), Some(vec![(1.0, 1)]));
        assert_eq!(value(Metric::JobStopped), Some(vec![(0.0, 1)]));
        assert_eq!(value(Metric::JobCpuTime), Some(vec![(0.02, 1)]));
        assert_eq!(
            value(Metric::JobPeakMemory),
            Some(vec![(7_340_032.0, 1)]),
            "the scope's record of its peak, where the kernel keeps one"
        );
        assert!(value(Metric::Memory).is_some(), "the samples so far too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_gone_before_the_first_sample_still_has_its_run_published() {
        use crate::domain::Ending;
        let ended = JobRun {
            ending: Ending::Signaled(9, "SIGKILL"),
            stopped: false,
            duration: Duration::from_millis(1),
            cpu: None,
            peak_memory: None,
        };
        // Ready at once: the biased loop ends before its first tick.
        let mut source = Counting(0);
        let shutdown = std::future::ready(Some(ended));
        let window = the_one_window(&["--metrics", "cpu,job"], &mut source, shutdown).await;
        assert_eq!(source.0, 0, "no sample taken");
        let names: Vec<Metric> = window.series.iter().map(|(m, _)| *m).collect();
        assert_eq!(
            names,
            [Metric::JobDuration, Metric::JobFailed, Metric::JobStopped],
            "what is known of the run, and no invented CPU time or peak"
        );
    }
}
