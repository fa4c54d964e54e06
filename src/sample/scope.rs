//! Choosing and opening the source the configured scope asks for, and saying what it
//! measures. `host` and `cgroup` are decided and opened at once, from files; `ecs-task`
//! needs the task metadata endpoint to answer first, which [`EcsConnector`] waits for.
//! A run and `check` open their source through here alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::cgroup::{self, CgroupSource};
use super::ecs::pace::Windows;
use super::kernel::{KernelFiles, Places, Unavailable};
use super::traffic::{self, TrafficFiles};
use super::{EcsSource, ScopedSource};
use crate::alarm::Alarm;
use crate::config::{Config, Scope};
use crate::dimensions;
use crate::domain::{Dimension, Metric, MetricSet};

/// Why the scope asked for cannot be measured here.
#[derive(Debug, Error)]
pub enum ScopeError {
    #[error("--scope cgroup cannot work here: {0}")]
    Cgroup(String),
    /// A metric of `--metrics` that the scope asked for by name cannot measure here.
    #[error("--metrics {arg}: {name} cannot be measured in the {scope} scope here: {reason}")]
    Unmeasurable {
        arg: &'static str,
        name: &'static str,
        scope: &'static str,
        reason: String,
    },
}

/// A source ready to sample, and what it measures (for the log and `check`).
#[derive(Debug)]
pub struct Opened {
    /// The source, ready to sample.
    pub source: ScopedSource,
    /// What it measures and why this scope, e.g. "cgroup (auto: the cgroup has limits): …".
    pub what: String,
}

impl Opened {
    /// `ClusterName` and `TaskDefinitionFamily` of the ECS task, where the scope is the
    /// task and `--ecs-dimensions` asks for them, then `TaskId` where
    /// `--task-id-dimension` does (as far as their values can be sent).
    pub fn ecs_dimensions(&self, scope: &Scope) -> Vec<Dimension> {
        let (
            Scope::EcsTask {
                dimensions,
                task_id,
                ..
            },
            Some(task),
        ) = (scope, self.source.ecs_task())
        else {
            return Vec::new();
        };
        let mut added = Vec::new();
        if *dimensions {
            added = dimensions::ecs(task.cluster_name(), &task.family);
        }
        if *task_id {
            added.extend(dimensions::task_id(&task.task_arn));
        }
        added
    }
}

/// How far opening got without waiting for anything.
#[derive(Debug)]
pub enum Opening {
    /// `host` or `cgroup`: ready now.
    Ready(Opened),
    /// `ecs-task`: ready once the task metadata endpoint answers.
    Ecs(EcsConnector),
}

/// The scope, opened or waiting, and the metrics of `--metrics` it cannot measure here.
/// Under `auto` those are not fatal, but the user named them: a run says each at the
/// default log level, `check` as a `warn` line.
#[derive(Debug)]
pub struct Scoped {
    pub opening: Opening,
    /// One sentence per metric left out, and why.
    pub unmeasured: Vec<String>,
}

/// Opens the configured scope under its root as far as files allow.
pub fn open(config: &Config) -> Result<Scoped, ScopeError> {
    let mut unmeasured = Vec::new();
    let opening = open_noting(config, &mut unmeasured)?;
    Ok(Scoped {
        opening,
        unmeasured,
    })
}

fn open_noting(config: &Config, unmeasured: &mut Vec<String>) -> Result<Opening, ScopeError> {
    let root = config.root.as_path();
    let kernel = Kernel {
        wanted: config.metrics,
        watch_oom: !config.command.is_empty(),
    };
    let opened = match &config.scope {
        Scope::Host => host(root, "asked for", kernel, true, unmeasured)?,
        Scope::Cgroup => {
            let source = match cgroup::detect(root) {
                Ok(Some(layout)) => CgroupSource::new(root, layout),
                Ok(None) => return Err(ScopeError::Cgroup("no cgroup filesystem found".into())),
                Err(e) => Err(e),
            }
            .map_err(|e| ScopeError::Cgroup(e.to_string()))?;
            cgroup_opened(source, "asked for", kernel, true, unmeasured)?
        }
        Scope::CgroupOrHost => match auto_cgroup(root) {
            Ok((source, why)) => cgroup_opened(source, why, kernel, false, unmeasured)?,
            Err(why) => {
                if config.metrics.contains(Metric::Throttled) {
                    unmeasured.push(format!(
                        "{} is measured only in the cgroup scope, and {why}: not sent",
                        Metric::Throttled.name()
                    ));
                }
                host(root, &why, kernel, false, unmeasured)?
            }
        },
        Scope::EcsTask { metadata_uri, .. } => {
            // Asked for by name, the config refused them already.
            for metric in config.metrics.iter().filter(|m| kernel_metric(*m)) {
                unmeasured.push(format!(
                    "{} is not in the ECS task metadata: not sent (measure it with --scope \
                     cgroup in the container instead)",
                    metric.name()
                ));
            }
            let alarm = Alarm::new(config.period_secs);
            let windows = Windows {
                period_secs: config.period_secs,
                high_resolution: config.encoding.storage_resolution == Some(1),
            };
            return Ok(Opening::Ecs(EcsConnector::new(
                metadata_uri,
                root,
                config.metrics,
                windows,
                alarm,
            )));
        }
    };
    Ok(Opening::Ready(opened))
}

/// The OOM kill and pressure metrics: the ones read from [`KernelFiles`].
fn kernel_metric(metric: Metric) -> bool {
    metric == Metric::OomKills || Metric::PRESSURE.contains(&metric)
}

/// What the kernel's counters are opened for.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    wanted: MetricSet,
    /// Wrapper mode: the OOM counter tells an OOM kill from another SIGKILL.
    watch_oom: bool,
}

impl Kernel {
    /// Opens the counters at `places`. What cannot be measured is an error when the
    /// scope was asked for by name (`explicit`), a warning under `auto`.
    fn open(
        self,
        places: &Places,
        scope: &'static str,
        explicit: bool,
        unmeasured: &mut Vec<String>,
    ) -> Result<KernelFiles, ScopeError> {
        let (files, unavailable) = KernelFiles::open(places, self.wanted, self.watch_oom);
        note(unavailable, scope, explicit, unmeasured)?;
        Ok(files)
    }

    /// Opens the network and block device counters at `places`, as [`Kernel::open`];
    /// `places` is only looked for (`/sys/block` listed, files checked) when they are
    /// asked for.
    fn traffic(
        self,
        places: impl FnOnce() -> traffic::Places,
        scope: &'static str,
        explicit: bool,
        unmeasured: &mut Vec<String>,
    ) -> Result<TrafficFiles, ScopeError> {
        if !(self.wanted.contains(Metric::NetworkRx) || self.wanted.contains(Metric::StorageRead)) {
            return Ok(TrafficFiles::default());
        }
        let (files, unavailable) = TrafficFiles::open(&places(), self.wanted);
        note(unavailable, scope, explicit, unmeasured)?;
        Ok(files)
    }
}

/// What cannot be measured: an error when the scope was asked for by name
/// (`explicit`), else a line for the log.
fn note(
    unavailable: Vec<Unavailable>,
    scope: &'static str,
    explicit: bool,
    unmeasured: &mut Vec<String>,
) -> Result<(), ScopeError> {
    for Unavailable { metric, reason } in unavailable {
        if explicit {
            return Err(ScopeError::Unmeasurable {
                arg: crate::config::metric_arg(metric),
                name: metric.name(),
                scope,
                reason,
            });
        }
        unmeasured.push(format!(
            "{} cannot be measured in the {scope} scope here, not sent: {reason}",
            metric.name()
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn host(
    root: &Path,
    why: &str,
    kernel: Kernel,
    explicit: bool,
    unmeasured: &mut Vec<String>,
) -> Result<Opened, ScopeError> {
    let files = kernel.open(&Places::host(root), "host", explicit, unmeasured)?;
    let traffic = kernel.traffic(|| traffic::Places::host(root), "host", explicit, unmeasured)?;
    let source = super::host_source(root)
        .with_kernel(files)
        .with_traffic(traffic);
    Ok(Opened {
        source: ScopedSource::Host(Box::new(source)),
        what: format!("host, the whole machine ({why})"),
    })
}

/// macOS has no OOM kill counter or PSI to read.
#[cfg(target_os = "macos")]
fn host(
    root: &Path,
    why: &str,
    kernel: Kernel,
    explicit: bool,
    unmeasured: &mut Vec<String>,
) -> Result<Opened, ScopeError> {
    let no_proc =
        Places::unavailable("macOS has no OOM kill counter or pressure stall information");
    kernel.open(&no_proc, "host", explicit, unmeasured)?;
    let no_traffic = traffic::Places {
        network: Err("macOS has no /proc/net/dev".into()),
        storage: Err("macOS has no /proc/diskstats".into()),
    };
    kernel.traffic(|| no_traffic, "host", explicit, unmeasured)?;
    Ok(Opened {
        source: ScopedSource::Host(Box::new(super::host_source(root))),
        what: format!("host, the whole machine ({why})"),
    })
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
    match (source.limits().any_limit(), container) {
        (true, _) => Ok((source, "auto: the cgroup has limits")),
        (false, true) => Ok((source, "auto: running in a container")),
        (false, false) => Err("auto: not in a container and no cgroup limits".into()),
    }
}

fn cgroup_opened(
    source: CgroupSource,
    why: &str,
    kernel: Kernel,
    explicit: bool,
    unmeasured: &mut Vec<String>,
) -> Result<Opened, ScopeError> {
    let files = kernel.open(
        &source.layout().kernel_places(),
        "cgroup",
        explicit,
        unmeasured,
    )?;
    let traffic = kernel.traffic(
        || source.layout().traffic_places(source.root()),
        "cgroup",
        explicit,
        unmeasured,
    )?;
    let source = source.with_kernel(files).with_traffic(traffic);
    let limits = source.limits();
    let what = format!(
        "cgroup ({why}): {}; CPU limit {} CPUs ({}), memory limit {} MiB ({})",
        source.layout(),
        limits.cpus,
        limits.cpus_from,
        limits.memory_bytes / (1024 * 1024),
        limits.memory_from,
    );
    Ok(Opened {
        source: ScopedSource::Cgroup(Box::new(source)),
        what,
    })
}

/// Reads the task document until the endpoint answers: without the task's limits there
/// is nothing meaningful to measure. Retries back off from 0.5 s to 30 s; the state is
/// kept between calls, so a caller may give up waiting and call again later.
#[derive(Debug)]
pub struct EcsConnector {
    /// `ECS_CONTAINER_METADATA_URI_V4`.
    uri: String,
    /// Where `/proc` is read, for the instance's CPUs and memory.
    root: PathBuf,
    /// The metrics asked for: what the source reads besides CPU and memory.
    wanted: MetricSet,
    /// The windows the stats' refresh pace is said against, once the source learns it;
    /// `None` for a caller that says it itself.
    announce: Option<Windows>,
    /// Attempts so far, and the wait before the next one.
    attempts: u32,
    delay: Duration,
    /// No answer for long: said at the default log level, as no sample can be taken.
    alarm: Alarm,
}

impl EcsConnector {
    fn new(uri: &str, root: &Path, wanted: MetricSet, windows: Windows, alarm: Alarm) -> Self {
        EcsConnector {
            uri: uri.to_owned(),
            root: root.to_owned(),
            wanted,
            announce: Some(windows),
            attempts: 0,
            delay: Duration::from_millis(500),
            alarm,
        }
    }

    /// Leaves the refresh pace unsaid in the log: for `check`, which prints it.
    pub fn without_pace_lines(&mut self) {
        self.announce = None;
    }

    /// Waits until the endpoint has answered the task document.
    pub async fn connect(&mut self) -> Opened {
        if self.attempts == 0 {
            log::info!(
                "scope: ecs-task (task metadata endpoint {}): waiting for it",
                self.uri
            );
        }
        loop {
            if self.attempts > 0 {
                tokio::time::sleep(self.delay).await;
                self.delay = (self.delay * 2).min(Duration::from_secs(30));
            }
            self.attempts += 1;
            match EcsSource::connect(&self.uri, &self.root, self.wanted, self.announce).await {
                Ok(source) => {
                    if let Some(failed) = self.alarm.worked() {
                        log::info!(
                            "the ECS task metadata answers, after {} s",
                            failed.as_secs()
                        );
                    }
                    let task = source.task();
                    let what = format!(
                        "ecs-task: task {} of {} ({} containers)",
                        crate::redact::for_log(&task.family),
                        crate::redact::for_log(task.cluster_name()),
                        task.measured().count()
                    );
                    return Opened {
                        source: ScopedSource::Ecs(Box::new(source)),
                        what,
                    };
                }
                Err(e) => {
                    let attempt = self.attempts;
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        log::warn!(
                            "cannot read the ECS task metadata yet (attempt {attempt}): {e}"
                        );
                    }
                    if let Some(lasting) = self.alarm.failed() {
                        log::error!(
                            "no sample could be taken {}: the ECS task metadata cannot be \
                             read: {e}",
                            lasting.describe()
                        );
                    }
                }
            }
        }
    }
}
