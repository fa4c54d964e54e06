//! The agent's loop: sample once a second, close windows on period boundaries, hand them
//! to the delivery task; on shutdown publish the partial window within the flush timeout.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::aggregate::{Aggregator, unix_secs};
use crate::config::{Config, Output, Scope};
use crate::delivery::{self, Report};
use crate::publish::{self, CloudWatch, Dimension, DryRun, Emf, Encoding, Publisher};
use crate::sample::ecs::Task;
use crate::sample::{self, CgroupSource, EcsSource, Sample, ScopedSource, Source, cgroup};
use crate::shutdown::Signals;
use crate::supervise::{SpawnError, Supervisor};
use crate::ticker::Ticker;

/// Time between samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// On shutdown, a last sample is taken only if the previous one is at least this old;
/// a CPU delta over a few milliseconds is mostly rounding of 10 ms ticks.
const MIN_FINAL_SAMPLE_GAP: Duration = Duration::from_millis(500);
/// Windows handed over while delivery is busy with one request (at most
/// `--request-timeout`); the send queue behind it holds any backlog, so this never fills
/// unless delivery itself is stuck.
const QUEUE_CAPACITY: usize = 1024;
/// While sampling keeps failing, the error is logged again at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] publish::cloudwatch::ConnectError),
    #[error("--scope cgroup cannot work here: {0}")]
    Scope(String),
    #[error("cannot listen for signals: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("dimensions: {0}")]
    Dimensions(String),
}

/// What the loop needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Window length in seconds.
    pub period_secs: u64,
    /// How long the final flush may take.
    pub flush_timeout: Duration,
    /// How windows become datums.
    pub encoding: Encoding,
    /// Most datums the send queue holds.
    pub buffer_size: usize,
    /// Longest wait between retries.
    pub retry_max_backoff: Duration,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Settings {
            period_secs: config.period_secs,
            flush_timeout: config.flush_timeout,
            buffer_size: config.buffer_size,
            retry_max_backoff: config.retry_max_backoff,
            encoding: Encoding {
                namespace: config.namespace.clone(),
                service: config.service.clone(),
                aggregation: config.aggregation,
                metrics: config.metrics,
                storage_resolution: config.storage_resolution,
                extra_dimensions: config.dimensions.clone(),
            },
        }
    }
}

/// How a run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What became of the datums.
    pub report: Report,
    /// Wrapper mode: the status to exit with (the child's, or 128 + its signal).
    pub child_status: Option<u8>,
}

/// Runs the agent as configured until SIGTERM or SIGINT (or, wrapping a command, until
/// that command exits), then flushes.
pub async fn main(config: Config) -> Result<Outcome, StartError> {
    if config.command.is_empty() {
        let mut signals = Signals::install()?;
        let shutdown = async move {
            let name = signals.recv().await;
            log::info!("{name} received: publishing the partial window and exiting");
        };
        let report = measure(&config, std::pin::pin!(shutdown)).await?;
        return Ok(Outcome {
            report,
            child_status: None,
        });
    }
    let supervisor = Supervisor::spawn(&config.command, config.signal_group)?;
    let child = supervisor.pid();
    let status = std::sync::Arc::new(std::sync::Mutex::new(None));
    let child_exit = {
        let status = std::sync::Arc::clone(&status);
        async move {
            let code = supervisor.wait().await;
            log::info!("the command exited ({code}): publishing the partial window");
            *status.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        }
    };
    let report = match measure(&config, std::pin::pin!(child_exit)).await {
        Ok(report) => report,
        Err(e) => {
            // The agent cannot run as asked: do not leave the command running unwatched.
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGTERM);
            return Err(e);
        }
    };
    let child_status = *status.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Outcome {
        report,
        child_status,
    })
}

/// Samples in the configured scope and publishes until `shutdown` completes.
async fn measure(
    config: &Config,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<Report, StartError> {
    let mut settings = Settings::from(config);
    log::info!(
        "publishing to {} with ServiceName={} every {} s as {:?}",
        config.namespace,
        config.service,
        config.period_secs,
        config.aggregation
    );
    match open_source(config, &mut settings, shutdown.as_mut()).await? {
        Some((source, _)) => publish(config, settings, source, shutdown).await,
        None => Ok(Report::default()),
    }
}

/// The source for the configured scope, with a line saying what it measures (also
/// logged), adding the scope's dimensions to `settings`. `None` when `shutdown` came
/// first, which only waiting for the ECS task metadata endpoint can take long enough for.
pub(crate) async fn open_source(
    config: &Config,
    settings: &mut Settings,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<(ScopedSource, String)>, StartError> {
    let root = config.root.as_path();
    let (source, what) = match &config.scope {
        Scope::Host => host_scope(root, "asked for"),
        Scope::Cgroup => {
            let source = match cgroup::detect(root) {
                Ok(Some(layout)) => CgroupSource::new(root, layout),
                Ok(None) => return Err(StartError::Scope("no cgroup filesystem found".into())),
                Err(e) => Err(e),
            }
            .map_err(|e| StartError::Scope(e.to_string()))?;
            let what = describe_cgroup(&source, "asked for");
            (ScopedSource::Cgroup(Box::new(source)), what)
        }
        Scope::CgroupOrHost => match auto_cgroup(root) {
            Ok((source, why)) => {
                let what = describe_cgroup(&source, why);
                (ScopedSource::Cgroup(Box::new(source)), what)
            }
            Err(why) => {
                if config.metrics.throttling {
                    log::warn!("CPU throttling is measured only in the cgroup scope; not sent");
                }
                host_scope(root, &why)
            }
        },
        Scope::EcsTask {
            metadata_uri,
            dimensions,
        } => {
            log::info!("scope: ecs-task (task metadata endpoint {metadata_uri}): waiting for it");
            let source = tokio::select! {
                source = connect_ecs(metadata_uri, root) => source,
                () = shutdown => return Ok(None),
            };
            if *dimensions {
                let ecs = ecs_dimensions(source.task());
                settings.encoding.extra_dimensions.extend(ecs);
            }
            let what = format!(
                "ecs-task: task {} of {} ({} containers)",
                source.task().family,
                source.task().cluster_name(),
                source.task().measured().count()
            );
            (ScopedSource::Ecs(Box::new(source)), what)
        }
    };
    log::info!("scope: {what}");
    Ok(Some((source, what)))
}

fn host_scope(root: &Path, why: &str) -> (ScopedSource, String) {
    let what = format!("host, the whole machine ({why})");
    (
        ScopedSource::Host(Box::new(sample::host_source(root))),
        what,
    )
}

/// `--scope auto` outside ECS: the agent's cgroup when it is in a container or under a
/// CPU quota or memory limit, with the reason; else why not.
fn auto_cgroup(root: &Path) -> Result<(CgroupSource, &'static str), String> {
    let layout = match cgroup::detect(root) {
        Ok(Some(layout)) => layout,
        Ok(None) => return Err("auto: no cgroup filesystem".into()),
        Err(e) => return Err(format!("auto: cgroup not readable: {e}")),
    };
    let container = cgroup::in_container(root, Some(&layout));
    let source = CgroupSource::new(root, layout).map_err(|e| {
        if container {
            log::warn!("in a container, but its cgroup cannot be measured: {e}");
        }
        format!("auto: cgroup not measurable: {e}")
    })?;
    match (source.limits().any(), container) {
        (true, _) => Ok((source, "auto: the cgroup has limits")),
        (false, true) => Ok((source, "auto: running in a container")),
        (false, false) => Err("auto: not in a container and no cgroup limits".into()),
    }
}

fn describe_cgroup(source: &CgroupSource, why: &str) -> String {
    let limits = source.limits();
    format!(
        "cgroup ({why}): {}; CPU limit {} CPUs ({}), memory limit {} MiB ({})",
        source.layout(),
        limits.cpus,
        if limits.cpu_quota {
            "CFS quota"
        } else {
            "CPUs available, no quota"
        },
        limits.memory_bytes / (1024 * 1024),
        if limits.memory_limit {
            "cgroup limit"
        } else {
            "host memory, no limit"
        },
    )
}

/// Runs `source` with the publisher the configuration asks for.
async fn publish<S: Source>(
    config: &Config,
    mut settings: Settings,
    source: S,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<Report, StartError> {
    if config.ec2_dimensions {
        let ec2 = tokio::select! {
            dimensions = crate::ec2::dimensions() => dimensions,
            () = &mut shutdown => return Ok(Report::default()),
        };
        settings.encoding.extra_dimensions.extend(ec2);
    }
    check_dimensions(&settings.encoding.extra_dimensions)?;
    let settings = &settings;
    match &config.output {
        Output::DryRun => Ok(run(
            settings,
            source,
            DryRun,
            ticker(),
            shutdown,
            SystemTime::now,
        )
        .await),
        Output::Emf => Ok(run(settings, source, Emf, ticker(), shutdown, SystemTime::now).await),
        Output::CloudWatch {
            region,
            endpoint_url,
        } => {
            let publisher = tokio::select! {
                publisher = CloudWatch::connect(region.clone(), endpoint_url.clone(), config.request_timeout) => publisher?,
                () = &mut shutdown => return Ok(Report::default()),
            };
            Ok(run(
                settings,
                source,
                publisher,
                ticker(),
                shutdown,
                SystemTime::now,
            )
            .await)
        }
    }
}

fn ticker() -> Ticker {
    Ticker::new(SAMPLE_INTERVAL)
}

/// Reads the task document until the endpoint answers: without the task's limits there
/// is nothing meaningful to measure. Retries back off from 0.5 s to 30 s.
async fn connect_ecs(metadata_uri: &str, root: &Path) -> EcsSource {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0u32;
    loop {
        match EcsSource::connect(metadata_uri, root).await {
            Ok(source) => return source,
            Err(e) => {
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(10) {
                    log::warn!("cannot read the ECS task metadata yet (attempt {attempt}): {e}");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// The dimensions from `--dimension`, ECS and EC2 together: unique, and within
/// CloudWatch's 30 per metric with `ServiceName`.
pub(crate) fn check_dimensions(extra: &[Dimension]) -> Result<(), StartError> {
    let names: Vec<&str> = extra.iter().map(|d| d.name.as_str()).collect();
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(StartError::Dimensions(format!(
            "{} is given twice",
            twice.1
        )));
    }
    if extra.len() + 1 > crate::config::MAX_DIMENSIONS {
        return Err(StartError::Dimensions(format!(
            "{} dimensions with ServiceName; CloudWatch takes at most {}",
            extra.len() + 1,
            crate::config::MAX_DIMENSIONS
        )));
    }
    Ok(())
}

/// `ClusterName` (short name) and `TaskDefinitionFamily` of the task.
fn ecs_dimensions(task: &Task) -> Vec<Dimension> {
    let dimensions = vec![
        Dimension {
            name: "ClusterName".to_owned(),
            value: task.cluster_name().to_owned(),
        },
        Dimension {
            name: "TaskDefinitionFamily".to_owned(),
            value: task.family.clone(),
        },
    ];
    for d in &dimensions {
        log::info!("dimension {}={}", d.name, d.value);
    }
    dimensions
}

/// Samples `source` at each tick of `ticker`, publishing each closed window through
/// `publisher`, until `shutdown` completes; then publishes the partial window, waits
/// for delivery for at most the flush timeout, and reports what became of the datums.
/// `clock` gives the wall-clock time that decides each sample's window.
pub async fn run<S, P, F, C>(
    settings: &Settings,
    mut source: S,
    publisher: P,
    mut ticker: Ticker,
    shutdown: F,
    clock: C,
) -> Report
where
    S: Source,
    P: Publisher + Send + 'static,
    F: Future<Output = ()>,
    C: Fn() -> SystemTime,
{
    let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
    let (deadline_tx, deadline) = watch::channel(None);
    let options = delivery::Options {
        namespace: settings.encoding.namespace.clone(),
        buffer_size: settings.buffer_size,
        retry_max_backoff: settings.retry_max_backoff,
    };
    let delivery = tokio::spawn(delivery::deliver(publisher, queue, deadline, options));
    let mut pipeline = Pipeline {
        aggregator: Aggregator::new(settings.period_secs),
        encoding: &settings.encoding,
        requests,
        handed_over: 0,
        dropped: 0,
        errors: ErrorLog::default(),
    };

    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_sample = None;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = ticker.tick() => {
                let sample = source.sample().await;
                last_sample = Some(Instant::now());
                pipeline.add(unix_secs(clock()), sample);
            }
        }
    }
    if last_sample.is_some_and(|at| at.elapsed() >= MIN_FINAL_SAMPLE_GAP) {
        let sample = source.sample().await;
        pipeline.add(unix_secs(clock()), sample);
    }
    pipeline.finish();
    let (handed_over, dropped) = (pipeline.handed_over, pipeline.dropped);
    // Closing the channel tells delivery that nothing more is coming.
    drop(pipeline);
    // The receiver lives until delivery returns, so this send cannot fail.
    let _ = deadline_tx.send(Some(Instant::now() + settings.flush_timeout));
    let mut report = match delivery.await {
        Ok(report) => report,
        Err(e) => {
            // Only a bug gets here; what it had delivered is unknown, so claim nothing.
            log::error!("delivery task failed: {e}");
            Report {
                unflushed: handed_over,
                ..Report::default()
            }
        }
    };
    report.dropped += dropped;
    report
}

/// Aggregation and the hand-off to delivery, for one run.
struct Pipeline<'a> {
    aggregator: Aggregator,
    encoding: &'a Encoding,
    requests: mpsc::Sender<publish::PutRequest>,
    /// Datums handed to delivery.
    handed_over: u64,
    /// Datums dropped because delivery fell `QUEUE_CAPACITY` windows behind.
    dropped: u64,
    errors: ErrorLog,
}

impl Pipeline<'_> {
    fn add(&mut self, unix_secs: u64, sample: Sample) {
        log::debug!(
            "sample at {unix_secs}: cpu {:?} memory {:?}",
            sample.cpu,
            sample.memory
        );
        self.errors.record(&sample);
        if let Some(window) = self.aggregator.add(unix_secs, &sample) {
            self.send(publish::encode(&window, self.encoding));
        }
    }

    fn finish(&mut self) {
        if let Some(window) = self.aggregator.finish() {
            self.send(publish::encode(&window, self.encoding));
        }
    }

    fn send(&mut self, request: Option<publish::PutRequest>) {
        let Some(request) = request else { return };
        let n = request.metric_data.len() as u64;
        if self.requests.try_send(request).is_err() {
            self.dropped += n;
            log::warn!(
                "delivery is {QUEUE_CAPACITY} windows behind: dropped {n} datums ({} so far)",
                self.dropped
            );
        } else {
            self.handed_over += n;
        }
    }
}

/// Logs sampling errors without flooding: the first at once, then at most once per
/// `ERROR_LOG_INTERVAL` with a count, and a note when sampling recovers.
#[derive(Debug, Default)]
struct ErrorLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn record(&mut self, sample: &Sample) {
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
                log::debug!("{e}");
            }
            return;
        }
        let again = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more failed samples since the last report)"),
        };
        for e in &sample.errors {
            log::warn!("{e}{again}");
        }
        self.last_logged = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::cli::Aggregation;
    use crate::publish::{ErrorKind, MetricSet, PublishError, PutRequest};

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

    /// A recent, hour-aligned Unix time: windows start on it, and delivery does not see
    /// the datums as too old.
    fn recent_hour() -> u64 {
        unix_secs(SystemTime::now()) / 3600 * 3600
    }

    fn settings(period_secs: u64) -> Settings {
        Settings {
            period_secs,
            flush_timeout: Duration::from_secs(5),
            buffer_size: 5000,
            retry_max_backoff: Duration::from_secs(60),
            encoding: Encoding {
                namespace: "NS".into(),
                service: "svc".into(),
                aggregation: Aggregation::Distribution,
                metrics: MetricSet::default(),
                storage_resolution: None,
                extra_dimensions: Vec::new(),
            },
        }
    }

    /// Wall clock that starts at `start_unix` and follows tokio's (paused) time.
    fn clock(start_unix: u64) -> impl Fn() -> SystemTime {
        let started = Instant::now();
        move || UNIX_EPOCH + Duration::from_secs(start_unix) + started.elapsed()
    }

    /// `run`, failing the test instead of hanging it if the agent never returns. Time is
    /// paused, so the virtual hour passes at once when nothing else is left to do.
    async fn run_bounded(
        settings: &Settings,
        recorder: Recorder,
        shutdown: tokio::time::Sleep,
        clock: impl Fn() -> SystemTime,
    ) -> Report {
        let ticker = Ticker::interval(SAMPLE_INTERVAL);
        let run = run(settings, Counting(0), recorder, ticker, shutdown, clock);
        tokio::time::timeout(Duration::from_secs(7200), run)
            .await
            .expect("the agent returns after shutdown")
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
        let report = run_bounded(&settings(5), recorder.clone(), shutdown, clock(start)).await;

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
            &settings(60),
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
        let report = run_bounded(&settings(1), recorder.clone(), shutdown, clock(start)).await;
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
        let report = run_bounded(&settings(60), recorder, shutdown, clock(recent_hour())).await;
        assert_eq!(
            report.unflushed, 1,
            "the memory datum of the partial window"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(5_300) && took < Duration::from_millis(5_400),
            "{took:?}"
        );
    }
}
