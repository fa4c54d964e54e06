//! The agent's vocabulary, shared by every layer: the metrics it measures, the dimensions
//! it sends them with, how a window is summarised, and a closed window itself. Nothing
//! here reads, writes or decides; every other module stands on this one.

use std::fmt;
use std::sync::Arc;

pub mod dimension;
pub mod job;

pub use dimension::{
    CONTAINER_DIMENSION, Dimension, DimensionError, SERVICE_DIMENSION, TASK_ID_DIMENSION,
};
pub use job::{Ending, JobRun};

/// A metric the agent measures: a percentage (0–100), a count ([`Metric::OomKills`],
/// [`Metric::Restarts`]), an absolute figure in the unit Container Insights uses for
/// it (CPU units, MiB, bytes a second, GiB), or a value of one run of the wrapped
/// command ([`Metric::JOB`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// `CPUUtilization`: share of the scope's CPU capacity in use.
    Cpu,
    /// `MemoryUtilization`: share of the scope's memory in use (the working set).
    Memory,
    /// `CPUThrottledPercent`: share of CFS periods throttled (cgroup scope).
    Throttled,
    /// `OOMKills`: processes the kernel's OOM killer ended in the scope; a count per
    /// window.
    OomKills,
    /// `CPUPressure`: share of wall time some task waited for a CPU (PSI `some`).
    CpuPressure,
    /// `MemoryPressure`: share of wall time some task stalled on memory (reclaim,
    /// swap-in, thrashing).
    MemoryPressure,
    /// `IOPressure`: share of wall time some task waited for block I/O.
    IoPressure,
    /// `CpuUtilized`: CPU in use, in CPU units (1024 per vCPU), as Container Insights.
    CpuUtilized,
    /// `CpuReserved`: the CPU capacity `CPUUtilization` is measured against, CPU units.
    CpuReserved,
    /// `MemoryUtilized`: the working set in MiB (CloudWatch's `Megabytes`).
    MemoryUtilized,
    /// `MemoryReserved`: the memory capacity `MemoryUtilization` is measured against, MiB.
    MemoryReserved,
    /// `CpuUtilized` of one container of an ECS task (with `ContainerName`).
    ContainerCpuUtilized,
    /// `MemoryUtilized` of one container of an ECS task (with `ContainerName`).
    ContainerMemoryUtilized,
    /// `NetworkRxBytes`: bytes received a second.
    NetworkRx,
    /// `NetworkTxBytes`: bytes sent a second.
    NetworkTx,
    /// `StorageReadBytes`: bytes read from block devices a second.
    StorageRead,
    /// `StorageWriteBytes`: bytes written to block devices a second.
    StorageWrite,
    /// `EphemeralStorageUtilized`: Fargate ephemeral storage in use, GiB.
    EphemeralUtilized,
    /// `EphemeralStorageReserved`: Fargate ephemeral storage of the task, GiB.
    EphemeralReserved,
    /// `EphemeralStorageUtilization`: the share of it in use, percent.
    EphemeralUtilization,
    /// `RestartCount`: containers restarted by ECS's restart policy; a count per window.
    Restarts,
    /// `JobDuration`: seconds from the wrapped command's start to its exit.
    JobDuration,
    /// `JobFailed`: 1 when the run failed, 0 when it succeeded (absent when stopped).
    JobFailed,
    /// `JobStopped`: 1 when the run ended after the agent passed on SIGTERM or SIGINT.
    JobStopped,
    /// `JobPeakMemory`: the run's peak memory, bytes.
    JobPeakMemory,
    /// `JobCPUTime`: seconds of CPU the command and its descendants used.
    JobCpuTime,
}

/// How a metric's values are kept and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0–100, kept to 0.1.
    Percent,
    /// Events: a window's total.
    Count,
    /// A figure of its own unit, kept to [`SIGNIFICANT_DIGITS`].
    Absolute,
    /// One value per run of the wrapped command, exact, in the window where it ended.
    Once,
}

/// Significant digits an absolute figure is kept to (at most 0.05 % off): few enough
/// that a window's values repeat and stay few, more than a dashboard shows.
pub const SIGNIFICANT_DIGITS: i32 = 4;

/// `value` rounded to `digits` significant digits; 0, negative, infinite and NaN values
/// as they are. Without `log10`, which alone would make the glibc build load libm
/// (src/no_libm.rs): the decimal exponent is found by steps of ten.
pub fn round_significant(value: f64, digits: i32) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return value;
    }
    // floor(log10(value)), for the values a metric takes (at most ~600 steps at f64's
    // extremes).
    let (mut exponent, mut scaled) = (0i32, value);
    while scaled >= 10.0 {
        scaled /= 10.0;
        exponent += 1;
    }
    while scaled < 1.0 {
        scaled *= 10.0;
        exponent -= 1;
    }
    let scale = 10f64.powi(digits - 1 - exponent);
    let rounded = (value * scale).round() / scale;
    // A scale past f64's range (values near its limits) keeps the value as it is.
    if rounded.is_finite() && rounded > 0.0 {
        rounded
    } else {
        value
    }
}

impl Metric {
    /// Every metric, in the order windows and requests list them.
    pub const ALL: [Metric; 26] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::Throttled,
        Metric::OomKills,
        Metric::CpuPressure,
        Metric::MemoryPressure,
        Metric::IoPressure,
        Metric::CpuUtilized,
        Metric::CpuReserved,
        Metric::MemoryUtilized,
        Metric::MemoryReserved,
        Metric::ContainerCpuUtilized,
        Metric::ContainerMemoryUtilized,
        Metric::NetworkRx,
        Metric::NetworkTx,
        Metric::StorageRead,
        Metric::StorageWrite,
        Metric::EphemeralUtilized,
        Metric::EphemeralReserved,
        Metric::EphemeralUtilization,
        Metric::Restarts,
        Metric::JobDuration,
        Metric::JobFailed,
        Metric::JobStopped,
        Metric::JobPeakMemory,
        Metric::JobCpuTime,
    ];

    /// The job metrics (`--metrics …,job`), in order.
    pub const JOB: [Metric; 5] = [
        Metric::JobDuration,
        Metric::JobFailed,
        Metric::JobStopped,
        Metric::JobPeakMemory,
        Metric::JobCpuTime,
    ];

    /// The pressure metrics, in order.
    pub const PRESSURE: [Metric; 3] = [
        Metric::CpuPressure,
        Metric::MemoryPressure,
        Metric::IoPressure,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "CPUUtilization",
            Metric::Memory => "MemoryUtilization",
            Metric::Throttled => "CPUThrottledPercent",
            Metric::OomKills => "OOMKills",
            Metric::CpuPressure => "CPUPressure",
            Metric::MemoryPressure => "MemoryPressure",
            Metric::IoPressure => "IOPressure",
            Metric::CpuUtilized | Metric::ContainerCpuUtilized => "CpuUtilized",
            Metric::CpuReserved => "CpuReserved",
            Metric::MemoryUtilized | Metric::ContainerMemoryUtilized => "MemoryUtilized",
            Metric::MemoryReserved => "MemoryReserved",
            Metric::NetworkRx => "NetworkRxBytes",
            Metric::NetworkTx => "NetworkTxBytes",
            Metric::StorageRead => "StorageReadBytes",
            Metric::StorageWrite => "StorageWriteBytes",
            Metric::EphemeralUtilized => "EphemeralStorageUtilized",
            Metric::EphemeralReserved => "EphemeralStorageReserved",
            Metric::EphemeralUtilization => "EphemeralStorageUtilization",
            Metric::Restarts => "RestartCount",
            Metric::JobDuration => "JobDuration",
            Metric::JobFailed => "JobFailed",
            Metric::JobStopped => "JobStopped",
            Metric::JobPeakMemory => "JobPeakMemory",
            Metric::JobCpuTime => "JobCPUTime",
        }
    }

    /// The name of the window's maximum in `median-max` mode, as the original agent sent.
    pub fn max_name(self) -> &'static str {
        match self {
            Metric::Cpu => "MaxCPUUtilization",
            Metric::Memory => "MaxMemoryUtilization",
            Metric::Throttled => "MaxCPUThrottledPercent",
            // A count is sent as its window's total, and a run's value as it is, in
            // every mode.
            Metric::OomKills
            | Metric::Restarts
            | Metric::JobDuration
            | Metric::JobFailed
            | Metric::JobStopped
            | Metric::JobPeakMemory
            | Metric::JobCpuTime => self.name(),
            Metric::CpuPressure => "MaxCPUPressure",
            Metric::MemoryPressure => "MaxMemoryPressure",
            Metric::IoPressure => "MaxIOPressure",
            Metric::CpuUtilized | Metric::ContainerCpuUtilized => "MaxCpuUtilized",
            Metric::CpuReserved => "MaxCpuReserved",
            Metric::MemoryUtilized | Metric::ContainerMemoryUtilized => "MaxMemoryUtilized",
            Metric::MemoryReserved => "MaxMemoryReserved",
            Metric::NetworkRx => "MaxNetworkRxBytes",
            Metric::NetworkTx => "MaxNetworkTxBytes",
            Metric::StorageRead => "MaxStorageReadBytes",
            Metric::StorageWrite => "MaxStorageWriteBytes",
            Metric::EphemeralUtilized => "MaxEphemeralStorageUtilized",
            Metric::EphemeralReserved => "MaxEphemeralStorageReserved",
            Metric::EphemeralUtilization => "MaxEphemeralStorageUtilization",
        }
    }

    /// How the metric's values are kept: each metric named, so that a new one must say.
    pub fn kind(self) -> Kind {
        match self {
            Metric::Cpu
            | Metric::Memory
            | Metric::Throttled
            | Metric::CpuPressure
            | Metric::MemoryPressure
            | Metric::IoPressure
            | Metric::EphemeralUtilization => Kind::Percent,
            Metric::OomKills | Metric::Restarts => Kind::Count,
            Metric::CpuUtilized
            | Metric::CpuReserved
            | Metric::MemoryUtilized
            | Metric::MemoryReserved
            | Metric::ContainerCpuUtilized
            | Metric::ContainerMemoryUtilized
            | Metric::NetworkRx
            | Metric::NetworkTx
            | Metric::StorageRead
            | Metric::StorageWrite
            | Metric::EphemeralUtilized
            | Metric::EphemeralReserved => Kind::Absolute,
            Metric::JobDuration
            | Metric::JobFailed
            | Metric::JobStopped
            | Metric::JobPeakMemory
            | Metric::JobCpuTime => Kind::Once,
        }
    }

    /// The CloudWatch unit: Container Insights' for the figures it has.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::CpuUtilized | Metric::CpuReserved | Metric::ContainerCpuUtilized => "None",
            Metric::MemoryUtilized | Metric::MemoryReserved | Metric::ContainerMemoryUtilized => {
                "Megabytes"
            }
            Metric::NetworkRx | Metric::NetworkTx | Metric::StorageRead | Metric::StorageWrite => {
                "Bytes/Second"
            }
            Metric::EphemeralUtilized | Metric::EphemeralReserved => "Gigabytes",
            Metric::JobDuration | Metric::JobCpuTime => "Seconds",
            Metric::JobFailed | Metric::JobStopped => "Count",
            Metric::JobPeakMemory => "Bytes",
            m => match m.kind() {
                Kind::Count => "Count",
                _ => "Percent",
            },
        }
    }

    /// Whether the metric counts events: its window is their total (0 in a quiet
    /// window), not a distribution of samples.
    pub fn is_count(self) -> bool {
        self.kind() == Kind::Count
    }

    /// Whether the metric's window is one value, sent as it is in every mode: a count's
    /// total, or a run's value.
    pub fn is_single(self) -> bool {
        matches!(self.kind(), Kind::Count | Kind::Once)
    }

    /// Whether the metric is sent once per container, with a `ContainerName` dimension.
    pub fn per_container(self) -> bool {
        matches!(
            self,
            Metric::ContainerCpuUtilized | Metric::ContainerMemoryUtilized
        )
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Which metrics are sent (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSet(u32);

impl MetricSet {
    /// No metric.
    pub const EMPTY: MetricSet = MetricSet(0);

    /// The set of `metrics`.
    pub fn of(metrics: &[Metric]) -> MetricSet {
        MetricSet(metrics.iter().fold(0, |bits, m| bits | m.bit()))
    }

    pub fn contains(self, metric: Metric) -> bool {
        self.0 & metric.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The metrics of the set, in [`Metric::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Metric> {
        Metric::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl Default for MetricSet {
    /// CPU and memory: what the original agent sent.
    fn default() -> Self {
        MetricSet::of(&[Metric::Cpu, Metric::Memory])
    }
}

/// Most distinct values one `PutMetricData` datum may carry in `Values` (PutMetricData
/// API reference, `MetricDatum.Values`: "up to 150 unique values").
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Distinct values a percentage takes at 0.1 resolution (0.0–100.0).
const DISTINCT_PERCENTAGES: usize = 1001;

/// How windows become datums; the same for every window of a run, part of the checked
/// configuration, read by every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Every sample, or the median and the maximum.
    pub aggregation: Aggregation,
    /// `Some(1)` for high-resolution metrics; `None` for CloudWatch's standard 60 s.
    pub storage_resolution: Option<u32>,
}

impl Encoding {
    /// The most `PutMetricData` datums one window of `metrics` over `period_secs` becomes
    /// (a sample a second, and one more when a late tick lands in it): a distribution
    /// needs a datum per [`MAX_VALUES_PER_DATUM`] distinct values.
    pub fn datums_per_window(self, metrics: MetricSet, period_secs: u64) -> usize {
        let samples = usize::try_from(period_secs.saturating_add(1)).unwrap_or(usize::MAX);
        metrics
            .iter()
            .map(|metric| {
                let datums = match (self.aggregation, metric.kind()) {
                    (_, Kind::Count | Kind::Once) => 1,
                    (Aggregation::Distribution, Kind::Percent) => samples
                        .min(DISTINCT_PERCENTAGES)
                        .div_ceil(MAX_VALUES_PER_DATUM),
                    (Aggregation::Distribution, Kind::Absolute) => {
                        samples.div_ceil(MAX_VALUES_PER_DATUM)
                    }
                    _ => self.aggregation.names(metric).len(),
                };
                if metric.per_container() {
                    datums * MAX_CONTAINERS_PER_TASK
                } else {
                    datums
                }
            })
            .sum()
    }
}

/// Most containers one ECS task definition may have (ECS service quotas: "Containers per
/// task definition", 10): the most `ContainerName` dimension sets a window may carry.
pub const MAX_CONTAINERS_PER_TASK: usize = 10;

/// How a window's samples are summarised for the outputs (`--aggregation`, `--compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Every sample, as values and their counts: any statistic can be computed later.
    Distribution,
    /// The median, and the maximum under a `Max…` name.
    MedianMax,
    /// What the original agent (0.1.x) published, so that its users' alarms keep working:
    /// the median CPU and memory and the maximum memory (`MaxMemoryUtilization`), as
    /// fractions 0–1 under the unit `Percent`.
    Original,
}

impl Aggregation {
    /// The names `metric` is published under in this mode: a distribution or a count
    /// under its own name, the median and the maximum under two, and 0.1.x's three.
    pub fn names(self, metric: Metric) -> Vec<&'static str> {
        match (self, metric) {
            (Aggregation::Original, Metric::Cpu) => vec![metric.name()],
            (Aggregation::Original, Metric::Memory) => vec![metric.name(), metric.max_name()],
            (Aggregation::Original, _) => Vec::new(),
            (Aggregation::MedianMax, m) if !m.is_single() => vec![m.name(), m.max_name()],
            (_, m) => vec![m.name()],
        }
    }

    /// The named single values `metric`'s window is sent as, in order; `None` when it is
    /// sent as a distribution. Empty for a metric without samples, or one the mode does
    /// not send.
    pub fn single_values(
        self,
        metric: Metric,
        distribution: &Distribution,
    ) -> Option<Vec<(&'static str, f64)>> {
        if metric.is_single() {
            // One value in every mode but 0.1.x's, which had neither.
            return Some(match self {
                Aggregation::Original => Vec::new(),
                _ => vec![(metric.name(), distribution.sum())],
            });
        }
        let (Some(median), Some(max)) = (distribution.median(), distribution.max()) else {
            return (self != Aggregation::Distribution).then(Vec::new);
        };
        // 0.1.x divided its percentages by 100; the median has two decimals, so four.
        let fraction = |percent: f64| (percent * 100.0).round() / 10_000.0;
        match (self, metric) {
            (Aggregation::Distribution, _) => None,
            (Aggregation::MedianMax, _) => {
                Some(vec![(metric.name(), median), (metric.max_name(), max)])
            }
            (Aggregation::Original, Metric::Cpu) => Some(vec![(metric.name(), fraction(median))]),
            (Aggregation::Original, Metric::Memory) => Some(vec![
                (metric.name(), fraction(median)),
                (metric.max_name(), fraction(max)),
            ]),
            (Aggregation::Original, _) => Some(Vec::new()),
        }
    }
}

/// The values one metric took in a window, at 0.1 resolution: `(value, count)` pairs in
/// ascending order of value, each count at least 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// Ascending by value, every count at least 1.
    pairs: Vec<(f64, u32)>,
}

impl Distribution {
    /// From `(value, count)` pairs in ascending order of value; pairs with a count of 0
    /// are left out.
    pub fn from_sorted(pairs: impl IntoIterator<Item = (f64, u32)>) -> Distribution {
        Distribution {
            pairs: pairs.into_iter().filter(|(_, n)| *n > 0).collect(),
        }
    }

    /// `(value, count)` in ascending order of value.
    pub fn pairs(&self) -> &[(f64, u32)] {
        &self.pairs
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.pairs.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The largest value, or `None` when empty.
    pub fn max(&self) -> Option<f64> {
        self.pairs.last().map(|(v, _)| *v)
    }

    /// The median: the middle value, or the mean of the two middle values for an even
    /// count (rounded to 0.01); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let lower = self.nth((total - 1) / 2)?;
        let upper = self.nth(total / 2)?;
        Some(((lower + upper) / 2.0 * 100.0).round() / 100.0)
    }

    /// The smallest value, or `None` when empty.
    pub fn min(&self) -> Option<f64> {
        self.pairs.first().map(|(v, _)| *v)
    }

    /// The sum of every value: a count metric's total.
    pub fn sum(&self) -> f64 {
        self.pairs.iter().map(|(v, n)| v * f64::from(*n)).sum()
    }

    /// The mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.sum() / self.count() as f64)
    }

    /// The value at 0-based rank `n` in ascending order.
    fn nth(&self, n: u64) -> Option<f64> {
        let mut seen = 0u64;
        self.pairs.iter().find_map(|(value, count)| {
            seen += u64::from(*count);
            (seen > n).then_some(*value)
        })
    }
}

/// `unix_secs` as RFC 3339 UTC, e.g. `2026-11-25T15:12:00Z`: how times are written for
/// people and for the `PutMetricData` JSON.
pub fn rfc3339(unix_secs: u64) -> String {
    use aws_smithy_types::DateTime;
    use aws_smithy_types::date_time::Format;
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| DateTime::from_secs(secs).fmt(Format::DateTime).ok())
        .unwrap_or_else(|| format!("@{unix_secs}"))
}

/// A closed window: what flows from aggregation to the outputs. Each output encodes it
/// in its own format, within its own limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Start of the window in seconds since the Unix epoch: the data's timestamp.
    pub start: u64,
    /// `ServiceName` first, then the others; the same for every window of a run.
    pub dimensions: Arc<[Dimension]>,
    /// The metrics that had samples, in [`Metric::ALL`] order; none is empty. A count
    /// metric carries one value: the window's total; a job metric its run's value.
    pub series: Vec<(Metric, Distribution)>,
    /// The per-container metrics, one entry per container that had samples.
    pub containers: Vec<Group>,
}

/// Series sent with dimensions of their own: the run's and `ContainerName`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The run's dimensions, then `ContainerName`.
    pub dimensions: Arc<[Dimension]>,
    /// As [`Window::series`].
    pub series: Vec<(Metric, Distribution)>,
}

impl Window {
    /// Every set of dimensions with its series: the run's first, then each container's.
    pub fn groups(&self) -> impl Iterator<Item = (&Arc<[Dimension]>, &[(Metric, Distribution)])> {
        std::iter::once((&self.dimensions, self.series.as_slice())).chain(
            self.containers
                .iter()
                .map(|g| (&g.dimensions, g.series.as_slice())),
        )
    }
}

/// A window as one log line (the `cloudwatch_metrics_agent::publisher` target): when,
/// with which dimensions, and per metric its samples' count, minimum, median, mean and
/// maximum.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", rfc3339(self.start))?;
        for (i, d) in self.dimensions.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}={}", d.name(), d.value())?;
        }
        let container = |dimensions: &[Dimension]| {
            dimensions
                .iter()
                .skip(self.dimensions.len())
                .map(|d| format!("{}={} ", d.name(), d.value()))
                .collect::<String>()
        };
        let series = self
            .groups()
            .flat_map(|(dimensions, series)| series.iter().map(move |s| (dimensions, s)));
        for (i, (dimensions, (metric, d))) in series.enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            let sep = format!("{sep}{}", container(dimensions));
            let stat = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
            if metric.is_count() {
                write!(f, "{sep}{} total={}", metric.name(), d.sum())?;
                continue;
            }
            if metric.kind() == Kind::Once {
                write!(f, "{sep}{} value={}", metric.name(), d.sum())?;
                continue;
            }
            write!(
                f,
                "{sep}{} n={} min={} median={} mean={} max={}",
                metric.name(),
                d.count(),
                stat(d.min()),
                stat(d.median()),
                stat(d.mean()),
                stat(d.max())
            )?;
        }
        Ok(())
    }
}

/// Windows made up for the tests of the outputs and the loop.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The distribution of `values`, in any order.
    pub fn distribution(values: &[f64]) -> Distribution {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut pairs: Vec<(f64, u32)> = Vec::new();
        for v in sorted {
            match pairs.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => pairs.push((v, 1)),
            }
        }
        Distribution::from_sorted(pairs)
    }

    /// A window at `start` of these metrics' values, with `ServiceName=web` and then
    /// `dimensions`.
    pub fn test_window(
        start: u64,
        series: &[(Metric, &[f64])],
        dimensions: &[(&str, &str)],
    ) -> Window {
        let mut all = vec![Dimension::service("web").unwrap()];
        all.extend(
            dimensions
                .iter()
                .map(|(n, v)| Dimension::new(*n, *v).unwrap()),
        );
        Window {
            start,
            dimensions: all.into(),
            series: series
                .iter()
                .map(|(metric, values)| (*metric, distribution(values)))
                .collect(),
            containers: Vec::new(),
        }
    }

    /// `window` with a container's series under `ContainerName=<name>`.
    pub fn with_container(mut window: Window, name: &str, series: &[(Metric, &[f64])]) -> Window {
        let container = Dimension::new(CONTAINER_DIMENSION, name).unwrap();
        window.containers.push(Group {
            dimensions: window
                .dimensions
                .iter()
                .cloned()
                .chain([container])
                .collect(),
            series: series
                .iter()
                .map(|(metric, values)| (*metric, distribution(values)))
                .collect(),
        });
        window
    }
}

#[cfg(test)]
mod tests {
    use super::testing::distribution;
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(distribution(&[5.0, 1.0, 3.0]).median(), Some(3.0));
        assert_eq!(distribution(&[4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
        assert_eq!(distribution(&[7.0, 7.0, 7.0, 90.0]).median(), Some(7.0));
        assert_eq!(distribution(&[0.1, 0.2]).median(), Some(0.15));
        assert_eq!(distribution(&[]).median(), None);
    }

    #[test]
    fn max_and_count() {
        let d = distribution(&[5.0, 99.9, 3.0, 3.0]);
        assert_eq!((d.max(), d.count()), (Some(99.9), 4));
        assert_eq!(distribution(&[]).max(), None);
        assert!(Distribution::from_sorted([(1.0, 0)]).is_empty());
    }

    #[test]
    fn a_window_reads_as_one_line_with_each_metrics_statistics() {
        let w = testing::test_window(
            1_795_619_520,
            &[
                (Metric::Cpu, &[0.5, 7.1, 2.0, 2.0]),
                (Metric::Memory, &[41.2]),
            ],
            &[("Stage", "prod")],
        );
        assert_eq!(
            w.to_string(),
            "2026-11-25T15:12:00Z ServiceName=web,Stage=prod: \
             CPUUtilization n=4 min=0.5 median=2.0 mean=2.9 max=7.1; \
             MemoryUtilization n=1 min=41.2 median=41.2 mean=41.2 max=41.2"
        );
    }

    #[test]
    fn metric_sets_list_their_metrics_in_order() {
        let set = MetricSet::of(&[Metric::Throttled, Metric::Cpu]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Metric::Cpu, Metric::Throttled]
        );
        assert!(!set.contains(Metric::Memory));
        assert_eq!(
            MetricSet::default()
                .iter()
                .map(Metric::name)
                .collect::<Vec<_>>(),
            ["CPUUtilization", "MemoryUtilization"]
        );
        assert!(MetricSet::EMPTY.is_empty());
    }
}
