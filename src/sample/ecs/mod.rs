//! The ECS task scope: the whole task, measured against the task's limits, from the task
//! metadata endpoint v4 that ECS injects into every container as
//! `ECS_CONTAINER_METADATA_URI_V4`. From inside a sidecar neither `/proc` (the instance,
//! or a Fargate micro-VM larger than the task) nor the sidecar's own cgroup would measure
//! the application; this endpoint does.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Absolute, Capacity, Machine, Sample, SampleError, Source, Weight};
use crate::domain::{Metric, MetricSet};

mod counters;
pub mod metadata;
pub mod pace;
#[cfg(test)]
mod published;
pub mod tracker;
mod watch;

use metadata::Stats;
pub use metadata::Task;
use pace::{Clock, Found, News, Pace, Windows};
use tracker::{Tracker, Wants};
use watch::TaskWatch;

/// Each request to the endpoint, body included; a sample is due every second (a poll, on
/// EC2; on Fargate every tenth sample).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// A container the task document does not list makes the agent read it again, at most
/// this often: a stats document may keep naming a container that `/task` never will.
const TASK_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Stats unchanged for this many refreshes (and at least `MIN_STALE_SECS`) are said:
/// nothing is measured meanwhile.
const STALE_REFRESHES: u64 = 3;
const MIN_STALE_SECS: u64 = 30;
/// Largest answer read from the endpoint: a `/task/stats` of ten containers (the most a
/// task may have) is under 100 KiB. An answer past it fails that request.
pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// Samples the task from the metadata endpoint.
#[derive(Debug)]
pub struct EcsSource {
    http: MetadataClient,
    task_uri: Uri,
    stats_uri: Uri,
    /// The task document, read at start and again when an unknown container appears.
    task: Task,
    /// The instance, for tasks with no limits at all.
    instance: Machine,
    capacity: Capacity,
    tracker: Tracker,
    /// The agent's clock for the tracker, which compares it with the stats' own.
    started: Instant,
    /// When the task document was last read again for an unknown container, and
    /// whether that was said.
    refreshed_at: Option<Instant>,
    told_of_refresh: bool,
    /// Ephemeral storage and restarts: what `/task` is polled for, if anything.
    task_watch: Option<TaskWatch>,
    /// How often ECS refreshes the stats, and so when `/task/stats` is read.
    pace: Pace,
    /// The windows the pace is said against once learnt; `None` where the caller says
    /// it itself (`check`).
    announce: Option<Windows>,
}

impl EcsSource {
    /// Reads the task document once; fails when the endpoint does not answer it. The
    /// agent retries this until it succeeds, since without the task's limits there is
    /// nothing meaningful to measure.
    pub async fn connect(
        base_uri: &str,
        root: &Path,
        wanted: MetricSet,
        announce: Option<Windows>,
    ) -> Result<Self, SampleError> {
        let base = base_uri.trim_end_matches('/');
        let parse = |path: &str| {
            let url = format!("{base}{path}");
            url.parse::<Uri>().map_err(|e| SampleError::Endpoint {
                url: crate::redact::url(&url),
                reason: e.to_string(),
            })
        };
        let (task_uri, stats_uri) = (parse("/task")?, parse("/task/stats")?);
        let http = MetadataClient::new();
        let task: Task = http.get_json(&task_uri).await?;
        let instance = read_instance(root);
        let capacity = task.capacity(instance);
        log_capacity(&task, &capacity);
        let wants = Wants {
            containers: wanted.contains(Metric::ContainerCpuUtilized),
            network: wanted.contains(Metric::NetworkRx),
            storage: wanted.contains(Metric::StorageRead),
        };
        let task_watch = TaskWatch::new(
            &task,
            wanted.contains(Metric::EphemeralUtilized),
            wanted.contains(Metric::Restarts),
        );
        Ok(EcsSource {
            http,
            task_uri,
            stats_uri,
            task,
            instance,
            capacity,
            tracker: Tracker::new(wants),
            started: Instant::now(),
            refreshed_at: None,
            told_of_refresh: false,
            task_watch,
            pace: Pace::default(),
            announce,
        })
    }

    /// The task as last read.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Seconds between ECS's refreshes of the task's stats, as the documents read so far
    /// tell (one, in `check`).
    pub fn pace_secs(&self) -> Option<u32> {
        self.pace.told()
    }

    /// Ticks to come at which neither the stats nor `/task` is due.
    pub fn quiet_ticks(&self) -> u32 {
        let now = self.clock();
        let stats = self.pace.quiet_ticks(now);
        match &self.task_watch {
            Some(watch) => {
                let due = watch.due_at().saturating_duration_since(self.started);
                let due = u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
                stats.min(pace::ticks_before(due, now))
            }
            None => stats,
        }
    }

    /// Nanoseconds on the source's own clock.
    fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A sample of a tick with no new document: the restarts counted since, if asked
    /// for, and what failed.
    fn idle(&mut self, mut sample: Sample) -> Sample {
        if let Some(watch) = self.task_watch.as_mut() {
            watch.restarts_into(&mut sample);
        }
        sample.idle = sample.errors.is_empty();
        sample
    }

    /// A sample of a due poll that found the last document again: idle, unless ECS has
    /// not refreshed the stats for long, which is said (and, lasting, alarmed on) as a
    /// sample that could not be taken, rather than windows going silent.
    fn unchanged(&mut self, mut sample: Sample, now: u64) -> Sample {
        let pace = u64::from(self.pace.secs().unwrap_or(1));
        let stale_after = (STALE_REFRESHES * pace).max(MIN_STALE_SECS) * 1_000_000_000;
        if let Some(unchanged) = self.pace.unchanged_for(now).filter(|ns| *ns >= stale_after) {
            sample.errors.push(SampleError::Endpoint {
                url: crate::redact::url(&self.stats_uri.to_string()),
                reason: format!(
                    "ECS has not refreshed the task's stats for {} s (the same `read` times)",
                    unchanged / 1_000_000_000
                ),
            });
        }
        self.idle(sample)
    }

    /// Says the pace just learnt, and what it does to windows shorter than it.
    fn say_pace(&self, secs: u32) {
        let Some(windows) = self.announce else {
            return;
        };
        log::info!("{}", pace::said(secs));
        if let Some(warning) =
            pace::period_warning(windows.period_secs, windows.high_resolution, secs)
        {
            log::error!("{warning}");
        }
    }

    /// Re-reads the task document after a container it did not know appeared.
    async fn refresh_task(&mut self) -> Result<(), SampleError> {
        let task: Task = self.http.get_json(&self.task_uri).await?;
        self.take_task(task);
        Ok(())
    }

    /// Takes a task document read again: its containers, its size.
    fn take_task(&mut self, task: Task) {
        let capacity = task.capacity(self.instance);
        if capacity != self.capacity {
            log_capacity(&task, &capacity);
        }
        self.task = task;
        self.capacity = capacity;
    }
}

impl Source for EcsSource {
    async fn sample(&mut self) -> Sample {
        let mut sample = Sample::default();
        let polled_at = self.clock();
        // The stats when ECS may have refreshed them; `/task`, when the watch is due, at
        // the same time: one timeout for both, not one after the other.
        let stats_due = self.pace.due(polled_at);
        // With the stats, `/task` if it falls due before their next poll.
        let ahead = match self.pace.secs() {
            Some(secs) if stats_due => Duration::from_secs(u64::from(secs) - 1),
            _ => Duration::ZERO,
        };
        let task_due = match self.task_watch.as_mut() {
            Some(watch) if watch.due_within(ahead) => {
                watch.polled();
                true
            }
            _ => false,
        };
        let (stats, task) = match (stats_due, task_due) {
            (true, true) => {
                let (stats, task) = tokio::join!(
                    self.http.get_json::<Stats>(&self.stats_uri),
                    self.http.get_json::<Task>(&self.task_uri)
                );
                (Some(stats), Some(task))
            }
            (true, false) => (
                Some(self.http.get_json::<Stats>(&self.stats_uri).await),
                None,
            ),
            (false, true) => (None, Some(self.http.get_json::<Task>(&self.task_uri).await)),
            (false, false) => (None, None),
        };
        let now = self.clock();
        match task {
            Some(Ok(task)) => {
                self.take_task(task);
                if let Some(watch) = self.task_watch.as_mut() {
                    watch.read(&self.task);
                }
            }
            Some(Err(e)) => sample.errors.push(e),
            None => {}
        }
        let stats = match stats {
            None => return self.idle(sample),
            Some(Ok(stats)) => stats,
            Some(Err(e)) => {
                self.pace.found(Found::Nothing, polled_at);
                if let Some(watch) = self.task_watch.as_mut() {
                    watch.sample_into(&mut sample);
                }
                sample.errors.push(e);
                return sample;
            }
        };
        // At a task's start no container has stats yet: that tells nothing.
        let Some(clock) = Clock::of(&stats) else {
            self.pace.found(Found::Nothing, polled_at);
            return self.idle(sample);
        };
        match self.pace.found(Found::Document(clock), polled_at) {
            // Its values are in the windows already, for the time they stood for.
            News::Same => return self.unchanged(sample, polled_at),
            News::New { weight, learnt } => {
                sample.weight = Weight::secs(weight);
                if let Some(secs) = learnt {
                    self.say_pace(secs);
                }
            }
        }
        if let Some(watch) = self.task_watch.as_mut() {
            watch.sample_into(&mut sample);
        }
        let unknown = stats
            .iter()
            .any(|(id, s)| s.is_some() && !self.task.knows(id));
        let due = self
            .refreshed_at
            .is_none_or(|at| at.elapsed() >= TASK_REFRESH_INTERVAL);
        if unknown && due {
            if !self.told_of_refresh {
                log::info!(
                    "a container appeared in the task's stats: reading the task again (and \
                     again at most once a minute while the task does not list it)"
                );
                self.told_of_refresh = true;
            }
            self.refreshed_at = Some(Instant::now());
            if let Err(e) = self.refresh_task().await {
                sample.errors.push(e);
            }
        }
        let utilization = self.tracker.update(&self.task, &stats, &self.capacity, now);
        sample.cpu = utilization.cpu;
        sample.memory = utilization.memory;
        sample.absolute = Absolute::of(utilization.vcpus, utilization.memory_bytes, &self.capacity);
        (sample.network_rx, sample.network_tx) = utilization.network.unzip();
        (sample.storage_read, sample.storage_write) = utilization.storage.unzip();
        sample.containers = utilization.containers;
        if let Some(what) = utilization.implausible {
            sample.errors.push(SampleError::Implausible {
                origin: crate::redact::url(&self.stats_uri.to_string()),
                what,
            });
        }
        sample
    }
}

fn log_capacity(task: &Task, capacity: &Capacity) {
    log::info!(
        "ECS task {} of cluster {}: CPU measured against {} vCPU ({}), memory against {} MiB ({})",
        crate::redact::for_log(&task.family),
        crate::redact::for_log(task.cluster_name()),
        capacity.cpus,
        capacity.cpus_from,
        capacity.memory_bytes as f64 / (1024.0 * 1024.0),
        capacity.memory_from
    );
}

/// Online CPUs and memory of the instance, for tasks without limits; the figures are
/// only used if the task has none, so a failed read falls back to what Rust can tell.
fn read_instance(root: &Path) -> Machine {
    Machine::read(root, &mut String::new())
}

/// A keep-alive HTTP/1.1 client for the endpoint (plain HTTP on a link-local address).
#[derive(Debug)]
struct MetadataClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl MetadataClient {
    fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
        MetadataClient {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build(connector),
        }
    }

    /// GETs `uri` and decodes its JSON body of at most `MAX_METADATA_BYTES`, all within
    /// `REQUEST_TIMEOUT`. Errors say what happened: no connection, no answer in time, an
    /// answer too large, an error status (with the start of its body), bad JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, uri: &Uri) -> Result<T, SampleError> {
        let error = |reason: String| SampleError::Endpoint {
            url: crate::redact::url(&uri.to_string()),
            reason: crate::redact::for_log(&reason),
        };
        let fetch = async {
            let response = self.client.get(uri.clone()).await.map_err(|e| {
                if e.is_connect() {
                    error(format!("could not connect: {}", crate::redact::chain(&e)))
                } else {
                    error(crate::redact::chain(&e))
                }
            })?;
            let status = response.status();
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type")
                .to_owned();
            let body = Limited::new(response.into_body(), MAX_METADATA_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        error(crate::http::too_large(MAX_METADATA_BYTES))
                    } else {
                        error(format!("the answer broke off: {e}"))
                    }
                })?
                .to_bytes();
            if !status.is_success() {
                let start = String::from_utf8_lossy(&body[..body.len().min(120)]);
                return Err(error(format!(
                    "answered HTTP {} ({content_type}): {start}",
                    status.as_u16()
                )));
            }
            serde_json::from_slice(&body).map_err(|e| error(format!("bad JSON: {e}")))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fetch)
            .await
            .map_err(|_| error(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }
}
