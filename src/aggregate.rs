//! Samples → windows aligned to the wall clock. A window starts at a multiple of the
//! period since the Unix epoch (period 60 → every minute on the minute), so each window's
//! data land in exactly one CloudWatch period bucket, and agents on many hosts line up.

use std::sync::Arc;

use crate::domain::{
    CONTAINER_DIMENSION, Dimension, Distribution, Group, JobRun, Kind, MAX_CONTAINERS_PER_TASK,
    Metric, MetricSet, SIGNIFICANT_DIGITS, Window, round_significant,
};
use crate::sample::{ContainerSample, Sample, Weight};

/// Percent values are kept to 0.1: the resolution CloudWatch users read, and it bounds a
/// window's memory to 1001 counters per metric however long the period.
const BUCKETS: usize = 1001;

/// Counts of values rounded to 0.1 over 0.0..=100.0: the window being filled.
#[derive(Clone, PartialEq, Eq)]
struct Histogram {
    /// `counts[i]` is how many values rounded to `i / 10`.
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.pairs()).finish()
    }
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    /// Adds a percentage `weight` times; values outside 0–100 are clamped, NaN is
    /// ignored.
    fn add(&mut self, percent: f64, weight: u32) {
        if percent.is_nan() {
            return;
        }
        let tenths = (percent.clamp(0.0, 100.0) * 10.0).round() as usize;
        self.counts[tenths] = self.counts[tenths].saturating_add(weight);
        self.total += u64::from(weight);
    }

    fn pairs(&self) -> impl Iterator<Item = (f64, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(tenths, n)| (tenths as f64 / 10.0, *n))
    }

    /// The values seen, and the histogram emptied for the next window.
    fn take(&mut self) -> Distribution {
        let distribution = Distribution::from_sorted(self.pairs());
        self.counts.fill(0);
        self.total = 0;
        distribution
    }
}

/// The values of an absolute figure (CPU units, MiB, bytes a second): kept to
/// [`SIGNIFICANT_DIGITS`], as `(value, count)` pairs in ascending order. Emptied, not
/// freed, at each window's end, so a steady run stops allocating once it has seen a
/// window's worth of distinct values.
#[derive(Debug, Clone, PartialEq, Default)]
struct Values {
    pairs: Vec<(f64, u32)>,
}

impl Values {
    /// Adds a figure `weight` times; negative, infinite and NaN values are ignored.
    fn add(&mut self, value: f64, weight: u32) {
        if !(value.is_finite() && value >= 0.0) {
            return;
        }
        let value = round_significant(value, SIGNIFICANT_DIGITS);
        match self.pairs.binary_search_by(|(v, _)| v.total_cmp(&value)) {
            Ok(i) => self.pairs[i].1 = self.pairs[i].1.saturating_add(weight),
            Err(i) => self.pairs.insert(i, (value, weight)),
        }
    }

    fn take(&mut self) -> Distribution {
        let distribution = Distribution::from_sorted(self.pairs.iter().copied());
        self.pairs.clear();
        distribution
    }
}

/// What a window keeps of one metric: the distribution of a percentage or an absolute
/// figure, the total of a count (`OOMKills`) and whether any sample measured it, or a
/// run's value.
#[derive(Debug, Clone, PartialEq)]
enum Accumulator {
    Percent(Histogram),
    Absolute(Values),
    Count { total: f64, measured: bool },
    Once(Option<f64>),
}

impl Accumulator {
    fn new(metric: Metric) -> Self {
        match metric.kind() {
            Kind::Count => Accumulator::Count {
                total: 0.0,
                measured: false,
            },
            Kind::Percent => Accumulator::Percent(Histogram::new()),
            Kind::Absolute => Accumulator::Absolute(Values::default()),
            Kind::Once => Accumulator::Once(None),
        }
    }

    /// Adds a value standing for `weight` seconds: a distribution counts it that many
    /// times; a count's total and a run's value are what they are.
    fn add(&mut self, value: f64, weight: u32) {
        match self {
            Accumulator::Percent(h) => h.add(value, weight),
            Accumulator::Absolute(v) => v.add(value, weight),
            Accumulator::Count { total, measured } => {
                if value.is_finite() && value >= 0.0 {
                    *total += value;
                    *measured = true;
                }
            }
            Accumulator::Once(run) => *run = Some(value).filter(|v| v.is_finite()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Accumulator::Percent(h) => h.total == 0,
            Accumulator::Absolute(v) => v.pairs.is_empty(),
            Accumulator::Count { measured, .. } => !measured,
            Accumulator::Once(run) => run.is_none(),
        }
    }

    /// The window's values (a count: its total, one value), and emptied for the next.
    fn take(&mut self) -> Distribution {
        match self {
            Accumulator::Percent(h) => h.take(),
            Accumulator::Absolute(v) => v.take(),
            Accumulator::Count { total, measured } => {
                let sum = std::mem::take(total);
                *measured = false;
                Distribution::from_sorted([(sum, 1)])
            }
            Accumulator::Once(run) => Distribution::from_sorted(run.take().map(|v| (v, 1))),
        }
    }
}

/// The accumulators of one container's metrics.
#[derive(Debug)]
struct ContainerAccumulators {
    name: Arc<str>,
    /// The run's dimensions and `ContainerName`.
    dimensions: Arc<[Dimension]>,
    accumulators: Vec<(Metric, Accumulator)>,
    /// Whether a sample of the current window named the container.
    seen: bool,
}

/// Whole seconds since the Unix epoch at `at` (0 for a clock set before 1970): the time
/// windows, timestamps and the data's age are counted in.
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
    /// Window length; windows start at its multiples since the epoch.
    period_secs: u64,
    /// Carried by every window: the run's dimensions.
    dimensions: Arc<[Dimension]>,
    /// One accumulator per metric sent, kept from window to window.
    histograms: Vec<(Metric, Accumulator)>,
    /// The per-container metrics asked for.
    per_container: MetricSet,
    /// One set per container seen; a container absent for a whole window is forgotten.
    containers: Vec<ContainerAccumulators>,
    /// Container names CloudWatch would refuse as a dimension value, said once.
    refused: Vec<Arc<str>>,
    /// Start of the window being filled, once a sample has arrived.
    current: Option<u64>,
}

impl Aggregator {
    /// Windows of `period_secs` (at least 1) of the `metrics` asked for, each carrying
    /// `dimensions`.
    pub fn new(period_secs: u64, metrics: MetricSet, dimensions: Arc<[Dimension]>) -> Self {
        Aggregator {
            period_secs: period_secs.max(1),
            dimensions,
            histograms: metrics
                .iter()
                .filter(|m| !m.per_container())
                .map(|m| (m, Accumulator::new(m)))
                .collect(),
            per_container: MetricSet::of(
                &metrics
                    .iter()
                    .filter(|m| m.per_container())
                    .collect::<Vec<_>>(),
            ),
            containers: Vec::new(),
            refused: Vec::new(),
            current: None,
        }
    }

    /// Adds a sample taken at `unix_secs`. When it belongs to a later window (or an
    /// earlier one, after the clock was set back), the current window closes and is
    /// returned if it holds any value.
    pub fn add(&mut self, unix_secs: u64, sample: &Sample) -> Option<Window> {
        let closed = self.advance(unix_secs);
        for (metric, histogram) in &mut self.histograms {
            if let Some(value) = sample.value(*metric) {
                histogram.add(value, sample.weight.get());
            }
        }
        if !self.per_container.is_empty() {
            for container in &sample.containers {
                self.add_container(container, sample.weight);
            }
        }
        closed
    }

    /// Adds the values of a run of the wrapped command that ended at `unix_secs` (the
    /// job metrics asked for), closing the current window as [`Aggregator::add`] does.
    pub fn add_job(&mut self, unix_secs: u64, run: &JobRun) -> Option<Window> {
        let closed = self.advance(unix_secs);
        for (metric, accumulator) in &mut self.histograms {
            if let Some(value) = run.value(*metric) {
                accumulator.add(value, 1);
            }
        }
        closed
    }

    /// Makes the window holding `unix_secs` the current one; the one it replaces, if it
    /// holds any value.
    fn advance(&mut self, unix_secs: u64) -> Option<Window> {
        let start = window_start(unix_secs, self.period_secs);
        let closed = match self.current {
            Some(current) if current != start => self.close(current),
            _ => None,
        };
        self.current = Some(start);
        closed
    }

    fn add_container(&mut self, sample: &ContainerSample, weight: Weight) {
        let index = match self.containers.iter().position(|c| c.name == sample.name) {
            Some(i) => i,
            None if self.refused.contains(&sample.name) => return,
            // The buffer is sized for a task definition's most (ECS quotas); a task
            // with more (containers ECS adds) keeps the first ones.
            None if self.containers.len() >= MAX_CONTAINERS_PER_TASK => {
                self.refused.push(Arc::clone(&sample.name));
                log::error!(
                    "container {:?} is not sent on its own: per-container metrics are \
                     sent for at most {MAX_CONTAINERS_PER_TASK} containers",
                    crate::redact::for_log(&sample.name)
                );
                return;
            }
            None => {
                let Some(dimensions) = self.container_dimensions(&sample.name) else {
                    self.refused.push(Arc::clone(&sample.name));
                    return;
                };
                self.containers.push(ContainerAccumulators {
                    name: Arc::clone(&sample.name),
                    dimensions,
                    accumulators: self
                        .per_container
                        .iter()
                        .map(|m| (m, Accumulator::new(m)))
                        .collect(),
                    seen: false,
                });
                self.containers.len() - 1
            }
        };
        let container = &mut self.containers[index];
        container.seen = true;
        for (metric, accumulator) in &mut container.accumulators {
            if let Some(value) = sample.value(*metric) {
                accumulator.add(value, weight.get());
            }
        }
    }

    /// The run's dimensions and `ContainerName=<name>`; `None`, said once, for a name
    /// CloudWatch would refuse as a dimension value.
    fn container_dimensions(&self, name: &str) -> Option<Arc<[Dimension]>> {
        match Dimension::new(CONTAINER_DIMENSION, name) {
            Ok(d) => Some(self.dimensions.iter().cloned().chain([d]).collect()),
            Err(e) => {
                log::error!(
                    "container {:?} is not sent on its own: {e}",
                    crate::redact::for_log(name)
                );
                None
            }
        }
    }

    /// Closes the current, partial window (on shutdown); `None` if it holds no value.
    pub fn finish(&mut self) -> Option<Window> {
        let current = self.current.take()?;
        self.close(current)
    }

    fn close(&mut self, start: u64) -> Option<Window> {
        let series = take_series(&mut self.histograms);
        // A container no sample of the window named has stopped or left the task.
        self.containers.retain(|c| c.seen);
        let containers: Vec<Group> = self
            .containers
            .iter_mut()
            .filter_map(|c| {
                c.seen = false;
                let series = take_series(&mut c.accumulators);
                (!series.is_empty()).then(|| Group {
                    dimensions: Arc::clone(&c.dimensions),
                    series,
                })
            })
            .collect();
        (!series.is_empty() || !containers.is_empty()).then(|| Window {
            start,
            dimensions: Arc::clone(&self.dimensions),
            series,
            containers,
        })
    }
}

/// The series of the accumulators that hold values, emptied for the next window.
fn take_series(accumulators: &mut [(Metric, Accumulator)]) -> Vec<(Metric, Distribution)> {
    accumulators
        .iter_mut()
        .filter(|(_, a)| !a.is_empty())
        .map(|(metric, a)| (*metric, a.take()))
        .collect()
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

    fn aggregator(period_secs: u64) -> Aggregator {
        let dimensions: Arc<[Dimension]> = vec![Dimension::service("web").unwrap()].into();
        Aggregator::new(period_secs, MetricSet::default(), dimensions)
    }

    fn values(window: &Window, metric: Metric) -> Vec<(f64, u32)> {
        window
            .series
            .iter()
            .find(|(m, _)| *m == metric)
            .map_or_else(Vec::new, |(_, d)| d.pairs().to_vec())
    }

    #[test]
    fn windows_start_on_multiples_of_the_period_since_the_epoch() {
        // 2026-11-25T15:12:34Z
        let t = 1_795_619_554;
        assert_eq!(window_start(t, 60), 1_795_619_520);
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
        let mut agg = aggregator(5);
        assert_eq!(agg.add(100, &sample(None, Some(10.0))), None);
        assert_eq!(agg.add(103, &sample(Some(20.0), Some(11.0))), None);
        assert_eq!(agg.add(104, &sample(Some(30.0), Some(12.0))), None);
        let closed = agg
            .add(105, &sample(Some(40.0), Some(13.0)))
            .expect("window 100 closes");
        assert_eq!(closed.start, 100);
        assert_eq!(values(&closed, Metric::Cpu), [(20.0, 1), (30.0, 1)]);
        assert_eq!(
            values(&closed, Metric::Memory),
            [(10.0, 1), (11.0, 1), (12.0, 1)]
        );
        assert_eq!(closed.dimensions[0].value(), "web");
        let last = agg.finish().expect("partial window 105");
        assert_eq!(last.start, 105);
        assert_eq!(values(&last, Metric::Cpu), [(40.0, 1)]);
        assert_eq!(agg.finish(), None);
    }

    #[test]
    fn a_clock_set_back_closes_the_window_too() {
        let mut agg = aggregator(60);
        agg.add(600, &sample(Some(1.0), None));
        assert_eq!(
            agg.add(590, &sample(Some(2.0), None)).map(|w| w.start),
            Some(600)
        );
    }

    #[test]
    fn windows_with_no_values_are_not_handed_on_and_empty_metrics_are_left_out() {
        let mut agg = aggregator(1);
        assert_eq!(agg.add(1, &sample(None, None)), None);
        assert_eq!(agg.add(2, &sample(None, Some(5.0))), None);
        let w = agg.add(3, &sample(None, None)).unwrap();
        assert_eq!(w.series.len(), 1, "{w:?}");
        assert_eq!(w.series[0].0, Metric::Memory);
        assert_eq!(agg.finish(), None);
    }

    #[test]
    fn only_the_metrics_asked_for_are_aggregated() {
        let dimensions: Arc<[Dimension]> = Vec::new().into();
        let mut agg = Aggregator::new(60, MetricSet::of(&[Metric::Throttled]), dimensions);
        let s = Sample {
            cpu: Some(1.0),
            memory: Some(2.0),
            throttled: Some(3.0),
            ..Sample::default()
        };
        agg.add(0, &s);
        let w = agg.finish().unwrap();
        assert_eq!(w.series.len(), 1);
        assert_eq!(values(&w, Metric::Throttled), [(3.0, 1)]);
    }

    #[test]
    fn values_round_to_a_tenth_and_clamp_to_0_100() {
        let mut agg = aggregator(60);
        for v in [12.34, 12.26, 150.0, -3.0, f64::NAN] {
            agg.add(0, &sample(Some(v), None));
        }
        let w = agg.finish().unwrap();
        assert_eq!(values(&w, Metric::Cpu), [(0.0, 1), (12.3, 2), (100.0, 1)]);
    }

    #[test]
    fn a_count_is_the_windows_total_and_0_in_a_quiet_window() {
        let dimensions: Arc<[Dimension]> = Vec::new().into();
        let metrics = MetricSet::of(&[Metric::OomKills, Metric::CpuPressure]);
        let mut agg = Aggregator::new(10, metrics, dimensions);
        let s = |kills: Option<f64>, pressure: f64| Sample {
            oom_kills: kills,
            cpu_pressure: Some(pressure),
            ..Sample::default()
        };
        agg.add(0, &s(Some(0.0), 10.0));
        agg.add(1, &s(Some(2.0), 30.0));
        agg.add(2, &s(None, 20.0));
        agg.add(3, &s(Some(1.0), 20.0));
        let busy = agg.add(10, &s(Some(0.0), 5.0)).unwrap();
        assert_eq!(values(&busy, Metric::OomKills), [(3.0, 1)], "the total");
        assert_eq!(
            values(&busy, Metric::CpuPressure),
            [(10.0, 1), (20.0, 2), (30.0, 1)],
            "pressure is a distribution like CPU"
        );
        let quiet = agg.finish().unwrap();
        assert_eq!(
            values(&quiet, Metric::OomKills),
            [(0.0, 1)],
            "0, not missing"
        );
        assert!(quiet.to_string().contains("OOMKills total=0"), "{quiet}");
        // A window in which the counter could not be read has no OOMKills at all.
        agg.add(20, &s(None, 5.0));
        let unread = agg.finish().unwrap();
        assert!(unread.series.iter().all(|(m, _)| *m != Metric::OomKills));
    }

    fn container(name: &str, cpu: f64, memory: f64) -> ContainerSample {
        ContainerSample {
            name: name.into(),
            cpu_utilized: Some(cpu),
            memory_utilized: Some(memory),
        }
    }

    #[test]
    fn each_value_counts_for_the_seconds_it_stands_for_and_a_count_for_itself() {
        let metrics = MetricSet::of(&[
            Metric::Cpu,
            Metric::Memory,
            Metric::CpuUtilized,
            Metric::MemoryUtilized,
            Metric::OomKills,
            Metric::ContainerCpuUtilized,
            Metric::ContainerMemoryUtilized,
        ]);
        let dimensions: Arc<[Dimension]> = vec![Dimension::service("web").unwrap()].into();
        let mut agg = Aggregator::new(20, metrics, dimensions);
        // Two ECS documents that stand for 10 s each, and one for 1 s.
        let document = |cpu: f64, memory: f64, secs: u32| Sample {
            cpu: Some(cpu),
            memory: Some(memory),
            absolute: crate::sample::Absolute {
                cpu_utilized: Some(cpu * 5.12),
                memory_utilized: Some(memory * 10.0),
                ..Default::default()
            },
            oom_kills: Some(1.0),
            containers: vec![container("app", cpu * 5.12, memory * 10.0)],
            weight: Weight::secs(secs),
            ..Sample::default()
        };
        assert_eq!(agg.add(100, &document(40.0, 30.0, 10)), None);
        // An idle tick between them carries nothing.
        let idle = Sample {
            idle: true,
            ..Sample::default()
        };
        assert_eq!(agg.add(105, &idle), None);
        assert_eq!(agg.add(110, &document(50.0, 31.0, 10)), None);
        assert_eq!(agg.add(111, &document(50.0, 32.0, 0)), None);
        let w = agg.add(120, &idle).expect("window 100 closes");
        assert_eq!(values(&w, Metric::Cpu), [(40.0, 10), (50.0, 11)]);
        assert_eq!(
            values(&w, Metric::Memory),
            [(30.0, 10), (31.0, 10), (32.0, 1)]
        );
        assert_eq!(values(&w, Metric::CpuUtilized), [(204.8, 10), (256.0, 11)]);
        assert_eq!(
            values(&w, Metric::MemoryUtilized),
            [(300.0, 10), (310.0, 10), (320.0, 1)]
        );
        assert_eq!(
            values(&w, Metric::OomKills),
            [(3.0, 1)],
            "a count is its total"
        );
        let (_, app) = w.groups().nth(1).expect("the container's group");
        let app_values = |metric| {
            app.iter()
                .find(|(m, _)| *m == metric)
                .map(|(_, d)| d.pairs().to_vec())
        };
        assert_eq!(
            app_values(Metric::ContainerCpuUtilized),
            Some(vec![(204.8, 10), (256.0, 11)])
        );
        assert_eq!(
            app_values(Metric::ContainerMemoryUtilized),
            Some(vec![(300.0, 10), (310.0, 10), (320.0, 1)])
        );
    }

    #[test]
    fn absolute_figures_keep_four_significant_digits_and_any_size() {
        let significant = |v| round_significant(v, SIGNIFICANT_DIGITS);
        assert_eq!(significant(123_456.0), 123_500.0);
        assert_eq!(significant(0.123_456), 0.1235);
        assert_eq!(significant(2.0), 2.0);
        assert_eq!(significant(1000.0), 1000.0);
        assert_eq!(significant(9999.5), 10_000.0);
        assert_eq!(significant(0.0), 0.0);
        assert_eq!(significant(f64::MAX), f64::MAX);
        assert_eq!(significant(f64::MIN_POSITIVE), f64::MIN_POSITIVE);
        let dimensions: Arc<[Dimension]> = Vec::new().into();
        let metrics = MetricSet::of(&[Metric::NetworkRx, Metric::MemoryReserved]);
        let mut agg = Aggregator::new(60, metrics, dimensions);
        for rx in [125_000.4, 125_040.0, 3.0e9, -1.0, f64::NAN] {
            let s = Sample {
                network_rx: Some(rx),
                absolute: crate::sample::Absolute {
                    memory_reserved: Some(512.0),
                    ..Default::default()
                },
                ..Sample::default()
            };
            agg.add(0, &s);
        }
        let w = agg.finish().unwrap();
        assert_eq!(
            values(&w, Metric::NetworkRx),
            [(125_000.0, 2), (3.0e9, 1)],
            "not clamped to 100, negative and NaN left out"
        );
        assert_eq!(values(&w, Metric::MemoryReserved), [(512.0, 5)]);
    }

    #[test]
    fn each_container_is_a_group_with_its_own_container_name() {
        let dimensions: Arc<[Dimension]> = vec![Dimension::service("web").unwrap()].into();
        let metrics = MetricSet::of(&[
            Metric::Cpu,
            Metric::ContainerCpuUtilized,
            Metric::ContainerMemoryUtilized,
        ]);
        let mut agg = Aggregator::new(10, metrics, dimensions);
        let sample = |containers: Vec<ContainerSample>| Sample {
            cpu: Some(50.0),
            containers,
            ..Sample::default()
        };
        agg.add(
            0,
            &sample(vec![
                container("app", 200.0, 250.0),
                container("log", 12.0, 50.0),
            ]),
        );
        agg.add(
            1,
            &sample(vec![
                container("app", 300.0, 250.0),
                container("log", 12.0, 50.0),
            ]),
        );
        let w = agg
            .add(10, &sample(vec![container("app", 100.0, 260.0)]))
            .unwrap();
        assert_eq!(w.series.len(), 1, "the task's CPUUtilization alone: {w:?}");
        type Shown = (Vec<String>, Vec<(Metric, Vec<(f64, u32)>)>);
        let groups: Vec<Shown> = w
            .containers
            .iter()
            .map(|g| {
                let dims = g
                    .dimensions
                    .iter()
                    .map(|d| format!("{}={}", d.name(), d.value()));
                let series = g.series.iter().map(|(m, d)| (*m, d.pairs().to_vec()));
                (dims.collect(), series.collect())
            })
            .collect();
        assert_eq!(
            groups,
            [
                (
                    vec!["ServiceName=web".to_owned(), "ContainerName=app".to_owned()],
                    vec![
                        (Metric::ContainerCpuUtilized, vec![(200.0, 1), (300.0, 1)]),
                        (Metric::ContainerMemoryUtilized, vec![(250.0, 2)])
                    ]
                ),
                (
                    vec!["ServiceName=web".to_owned(), "ContainerName=log".to_owned()],
                    vec![
                        (Metric::ContainerCpuUtilized, vec![(12.0, 2)]),
                        (Metric::ContainerMemoryUtilized, vec![(50.0, 2)])
                    ]
                )
            ]
        );
        assert!(
            w.to_string().contains("ContainerName=log CpuUtilized n=2"),
            "{w}"
        );
        // `log` stopped: the next window has `app` alone, and `log` is forgotten.
        let next = agg.finish().unwrap();
        assert_eq!(next.containers.len(), 1);
        assert_eq!(agg.containers.len(), 1);
        // A name CloudWatch would refuse is left out (and said once), not the others.
        agg.add(
            20,
            &sample(vec![container("", 1.0, 1.0), container("app", 1.0, 1.0)]),
        );
        agg.add(
            21,
            &sample(vec![container("", 1.0, 1.0), container("app", 1.0, 1.0)]),
        );
        assert_eq!(agg.refused.len(), 1);
        assert_eq!(agg.finish().unwrap().containers.len(), 1);
        // Per-container figures are not kept when not asked for.
        let mut plain = aggregator(10);
        plain.add(0, &sample(vec![container("app", 1.0, 1.0)]));
        assert!(plain.finish().unwrap().containers.is_empty());
    }

    #[test]
    fn a_steady_run_of_every_metric_allocates_nothing_per_sample() {
        use crate::counting_alloc::allocations_during;
        let dimensions: Arc<[Dimension]> = vec![Dimension::service("web").unwrap()].into();
        let mut agg = Aggregator::new(60, MetricSet::of(&Metric::ALL), dimensions);
        let sample = |i: u64| Sample {
            cpu: Some((i % 7) as f64),
            memory: Some(30.0),
            network_rx: Some(1_000.0 * (i % 5) as f64),
            absolute: crate::sample::Absolute {
                cpu_utilized: Some((i % 9) as f64 * 10.0),
                memory_utilized: Some(300.0),
                ..Default::default()
            },
            restarts: Some(0.0),
            containers: vec![container("app", (i % 3) as f64, 250.0)],
            ..Sample::default()
        };
        let samples: Vec<Sample> = (0..120).map(sample).collect();
        // A first window grows the buffers; a second of the same values needs none.
        for (i, s) in samples[..60].iter().enumerate() {
            agg.add(i as u64, s);
        }
        let closed = agg.add(60, &samples[60]).expect("the first window closes");
        assert_eq!(closed.containers.len(), 1);
        let n = allocations_during(|| {
            for (i, s) in samples[61..].iter().enumerate() {
                assert!(agg.add(61 + i as u64, s).is_none());
            }
        });
        assert_eq!(n, 0, "allocations in 59 samples");
    }

    #[test]
    fn a_runs_values_go_exact_into_the_window_where_it_ended_and_only_there() {
        use crate::domain::{Ending, JobRun};
        use std::time::Duration;
        let dimensions: Arc<[Dimension]> = vec![Dimension::service("web").unwrap()].into();
        let metrics = MetricSet::of(&[Metric::Cpu, Metric::JobDuration, Metric::JobPeakMemory]);
        let mut agg = Aggregator::new(5, metrics, dimensions);
        agg.add(100, &sample(Some(20.0), None));
        let run = JobRun {
            ending: Ending::Exited(3),
            stopped: false,
            duration: Duration::from_millis(6_123),
            cpu: Some(Duration::ZERO),
            peak_memory: Some((123_456_789, "ru_maxrss")),
        };
        let closed = agg
            .add_job(106, &run)
            .expect("the run ended in the next window");
        assert_eq!(closed.start, 100);
        assert_eq!(values(&closed, Metric::JobDuration), []);
        let last = agg.finish().expect("the window of the run's end");
        assert_eq!(last.start, 105);
        assert_eq!(values(&last, Metric::JobDuration), [(6.123, 1)]);
        assert_eq!(
            values(&last, Metric::JobPeakMemory),
            [(123_456_789.0, 1)],
            "exact, not kept to 4 digits"
        );
        assert_eq!(values(&last, Metric::Cpu), [], "no sample in it");
        let mut alone = aggregator(60);
        assert_eq!(alone.add_job(106, &run), None);
        assert_eq!(alone.finish(), None, "job metrics not asked for");
    }
}
