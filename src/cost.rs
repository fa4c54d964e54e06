//! What a configuration costs a month at CloudWatch's list prices: the requests it makes
//! (or the log data it writes, for EMF) and the custom metrics it creates. `check` prints
//! it; the cost table of docs/cost.md, and the README's summary of it, are this module's
//! own output (a test keeps them equal).
//!
//! An estimate: list prices of one region on one date, before the free tier (10 custom
//! metrics, 1 million API requests and 5 GB of logs a month) and before volume tiers
//! (custom metrics beyond 10,000 cost less). Alarms and dashboards are not counted.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::{Config, Output, Scope};
use crate::domain::{CONTAINER_DIMENSION, Dimension, Distribution, Group, Kind, Metric, Window};
use crate::publish::cloudwatch;
use crate::publish::emf::Emf;

/// Where and when the prices below were read.
pub const PRICES: &str =
    "US East (N. Virginia) list prices of aws.amazon.com/cloudwatch/pricing, read 2026-12-02";
/// A custom metric (one name with one set of dimension values), per month, for the first
/// 10,000 metrics; prorated by the hour.
pub const USD_PER_METRIC_MONTH: f64 = 0.30;
/// `PutMetricData` (and the other non-`GetMetricData` API calls).
pub const USD_PER_1000_REQUESTS: f64 = 0.01;
/// CloudWatch Logs ingestion, standard log class (EMF needs it to extract metrics).
pub const USD_PER_GB_INGESTED: f64 = 0.50;
/// AWS's month for prorating: 730 hours.
const SECONDS_PER_MONTH: f64 = 730.0 * 3600.0;
/// CloudWatch Logs counts each event's message plus 26 bytes.
const LOG_EVENT_OVERHEAD: f64 = 26.0;
const GB: f64 = 1e9;

/// One agent's month.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// `PutMetricData` requests (0 for EMF).
    pub requests: f64,
    /// Bytes of EMF documents CloudWatch Logs ingests (0 for `PutMetricData`).
    pub log_bytes: f64,
    /// Custom metrics: metric names × one set of dimension values. Every agent that
    /// publishes the same names with the same dimension values shares them.
    pub metrics: usize,
    /// Whether the estimate is of EMF.
    pub emf: bool,
    /// Why each agent's metrics are its own (a dimension value that differs per agent),
    /// or `None` when every agent of the service shares them.
    pub own_metrics: Option<String>,
}

/// Dimension names whose values name one instance, task, container or pod: every agent
/// that sends one publishes metrics of its own.
const PER_AGENT_NAMES: [&str; 10] = [
    "InstanceId",
    "TaskId",
    "TaskArn",
    "ContainerId",
    "ContainerName",
    "PodName",
    "Pod",
    "PodId",
    "Hostname",
    "Host",
];

/// Why the agents of `config` each publish their own metrics: `--ec2-dimensions` (its
/// `InstanceId`), a `--dimension` named like a per-instance value, or one whose value is
/// this machine's host name. `None` when nothing says the values differ.
fn own_metrics(config: &Config) -> Option<String> {
    if config.ec2_dimensions {
        return Some("InstanceId (--ec2-dimensions) differs per agent".to_owned());
    }
    if matches!(config.scope, Scope::EcsTask { task_id: true, .. }) {
        return Some("TaskId (--task-id-dimension) differs per task".to_owned());
    }
    let hostname = std::fs::read_to_string(config.root.join("proc/sys/kernel/hostname"))
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    config.dimensions.iter().find_map(|d| {
        if PER_AGENT_NAMES
            .iter()
            .any(|n| n.eq_ignore_ascii_case(d.name()))
        {
            Some(format!(
                "{} names one instance, so it differs per agent",
                d.name()
            ))
        } else if hostname.as_deref() == Some(d.value()) {
            Some(format!(
                "{}={} is this machine's host name, so it differs per agent",
                d.name(),
                d.value()
            ))
        } else {
            None
        }
    })
}

impl Estimate {
    /// The month of an agent run with `config`, in a task of `containers` containers
    /// where per-container metrics are asked for; a dry run is costed as `--output
    /// cloudwatch`, what it previews.
    pub fn of(config: &Config, containers: usize) -> Estimate {
        let window = typical_window(config, containers);
        let encoding = config.encoding;
        let windows = SECONDS_PER_MONTH / config.period_secs as f64;
        let datums = cloudwatch::encode(&window, &encoding);
        // A custom metric is a name with one set of dimension values.
        let names: BTreeSet<(&str, Vec<(&str, &str)>)> = datums
            .iter()
            .map(|d| {
                let values = d.dimensions.iter().map(|d| (d.name(), d.value()));
                (d.metric_name, values.collect())
            })
            .collect();
        let emf = config.output == Output::Emf;
        let (requests, log_bytes) = if emf {
            let emf = Emf {
                namespace: config.namespace.clone(),
                encoding,
            };
            let bytes: f64 = emf
                .documents(&window)
                .iter()
                .map(|d| d.to_string().len() as f64 + 1.0 + LOG_EVENT_OVERHEAD)
                .sum();
            (0.0, bytes * windows)
        } else {
            (windows / config.send_every as f64, 0.0)
        };
        Estimate {
            requests,
            log_bytes,
            metrics: names.len(),
            emf,
            own_metrics: own_metrics(config),
        }
    }

    /// Dollars a month for the requests or the log data.
    pub fn usd_traffic(&self) -> f64 {
        self.requests / 1000.0 * USD_PER_1000_REQUESTS + self.log_bytes / GB * USD_PER_GB_INGESTED
    }

    /// Dollars a month for the custom metrics.
    pub fn usd_metrics(&self) -> f64 {
        self.metrics as f64 * USD_PER_METRIC_MONTH
    }

    /// Dollars a month for `agents` such agents: sharing their metrics (one service, the
    /// same dimension values), or each with its own.
    pub fn usd_fleet(&self, agents: u32) -> f64 {
        let metric_sets = if self.own_metrics.is_some() {
            f64::from(agents)
        } else {
            1.0
        };
        f64::from(agents) * self.usd_traffic() + metric_sets * self.usd_metrics()
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let traffic = if self.emf {
            format!(
                "{:.1} MB of EMF logs ingested ({})",
                self.log_bytes / 1e6,
                dollars(self.usd_traffic())
            )
        } else {
            format!(
                "{} PutMetricData requests ({})",
                thousands(self.requests),
                dollars(self.usd_traffic())
            )
        };
        let shared = match &self.own_metrics {
            Some(why) => format!("each agent's own: {why}"),
            None => "shared by every agent publishing the same dimension values".to_owned(),
        };
        write!(
            f,
            "about {} a month: {traffic} and {} custom metrics ({}, {shared}); 1,000 such \
             agents: {}. An estimate at {PRICES}, before the free tier",
            dollars(self.usd_traffic() + self.usd_metrics()),
            self.metrics,
            dollars(self.usd_metrics()),
            dollars(self.usd_fleet(1000))
        )
    }
}

/// What each group of `--metrics` beyond CPU and memory adds, in custom metrics and
/// dollars a month, with `containers` containers in the task; `None` when there is none.
/// E.g. "beyond CPU and memory: absolute 4, containers 2 × 3 containers = 6: 10 custom
/// metrics, $3.00 a month for each set of dimension values (shared by the agents that
/// send it)".
pub fn by_group(config: &Config, containers: usize) -> Option<String> {
    // Per group: its argument, its metric names, and its metrics' first.
    let mut groups: Vec<(&str, usize, Metric)> = Vec::new();
    for metric in config
        .metrics
        .iter()
        .filter(|m| !matches!(m, Metric::Cpu | Metric::Memory))
    {
        let names = config.encoding.aggregation.names(metric).len();
        let arg = crate::config::metric_arg(metric);
        match groups.iter_mut().find(|(a, _, _)| *a == arg) {
            Some((_, n, _)) => *n += names,
            None => groups.push((arg, names, metric)),
        }
    }
    if groups.is_empty() {
        return None;
    }
    let mut total = 0;
    let parts: Vec<String> = groups
        .iter()
        .map(|&(arg, names, metric)| {
            if metric.per_container() {
                total += names * containers;
                format!(
                    "{arg} {names} × {containers} containers = {}",
                    names * containers
                )
            } else if metric.kind() == Kind::Once {
                // Custom metrics are prorated by the hour and billed only for the hours
                // they are published in: one run a day is 30 of a month's 730.
                total += names;
                format!(
                    "{arg} {names} (billed only for the hours a run ends in: {} a month \
                     for one run a day)",
                    dollars(names as f64 * USD_PER_METRIC_MONTH * 30.0 / 730.0)
                )
            } else {
                total += names;
                format!("{arg} {names}")
            }
        })
        .collect();
    let each = match own_metrics(config) {
        Some(why) => format!("for each agent ({why})"),
        None => "for each set of dimension values (shared by the agents that send it)".into(),
    };
    Some(format!(
        "beyond CPU and memory: {}: {total} custom metrics, {} a month {each}",
        parts.join(", "),
        dollars(total as f64 * USD_PER_METRIC_MONTH)
    ))
}

/// A window as a run typically closes them, for the size of an EMF document: a sample
/// a second, CPU spread over up to 30 distinct values, memory over 3, throttling over 5,
/// with `containers` containers' series where they are asked for.
fn typical_window(config: &Config, containers: usize) -> Window {
    let samples = config.period_secs;
    let series = |per_container: bool| -> Vec<(Metric, Distribution)> {
        config
            .metrics
            .iter()
            .filter(|m| m.per_container() == per_container)
            .map(|metric| (metric, typical(metric, samples)))
            .collect()
    };
    let dimensions = crate::dimensions::assemble(
        config.service.clone(),
        &config.dimensions,
        std::iter::empty(),
    );
    let per_container = series(true);
    let containers = if per_container.is_empty() {
        Vec::new()
    } else {
        (1..=containers)
            .filter_map(|i| Dimension::new(CONTAINER_DIMENSION, format!("container-{i}")).ok())
            .map(|name| Group {
                dimensions: dimensions.iter().cloned().chain([name]).collect(),
                series: per_container.clone(),
            })
            .collect()
    };
    Window {
        start: 0,
        dimensions,
        series: series(false),
        containers,
    }
}

/// A typical window's values of `metric` over `samples` samples.
fn typical(metric: Metric, samples: u64) -> Distribution {
    let (spread, base) = match metric {
        Metric::Cpu => (30, 20.0),
        Metric::Memory => (3, 20.0),
        Metric::Throttled => (5, 20.0),
        Metric::CpuPressure | Metric::MemoryPressure | Metric::IoPressure => (10, 20.0),
        // One value: the window's total.
        Metric::OomKills | Metric::Restarts => (1, 0.0),
        // Capacities change rarely.
        Metric::CpuReserved | Metric::MemoryReserved | Metric::EphemeralReserved => (1, 1024.0),
        Metric::CpuUtilized | Metric::ContainerCpuUtilized => (30, 204.8),
        Metric::MemoryUtilized | Metric::ContainerMemoryUtilized => (3, 300.1),
        // Rates spread like CPU, with more digits.
        Metric::NetworkRx | Metric::NetworkTx | Metric::StorageRead | Metric::StorageWrite => {
            (30, 123_400.0)
        }
        Metric::EphemeralUtilized | Metric::EphemeralUtilization => (1, 2.244),
        // One value, in the window a run ends in.
        Metric::JobDuration | Metric::JobCpuTime => (1, 123.456),
        Metric::JobFailed | Metric::JobStopped => (1, 0.0),
        Metric::JobPeakMemory => (1, 123_456_789.0),
    };
    let distinct = spread.min(samples).max(1);
    let pairs = (0..distinct).map(|i| {
        let count = samples / distinct + u64::from(i < samples % distinct);
        (
            base + i as f64 / 10.0,
            u32::try_from(count).unwrap_or(u32::MAX),
        )
    });
    Distribution::from_sorted(pairs)
}

/// 2628.6 → "$2,628.60".
fn dollars(usd: f64) -> String {
    let cents = (usd * 100.0).round();
    let whole = (cents / 100.0).trunc();
    format!("${}.{:02.0}", thousands(whole), cents - whole * 100.0)
}

/// 43800 → "43,800".
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;

    #[test]
    fn a_minute_period_is_43_800_requests_and_two_metrics() {
        let e = Estimate::of(&config(&[]), 1);
        assert_eq!(e.requests, 43_800.0);
        assert_eq!(e.metrics, 2);
        assert!((e.usd_traffic() - 0.438).abs() < 1e-9);
        assert!((e.usd_metrics() - 0.60).abs() < 1e-9);
        assert!((e.usd_fleet(1000) - 438.60).abs() < 1e-6);
        let line = e.to_string();
        assert!(line.starts_with("about $1.04 a month: 43,800 PutMetricData requests ($0.44)"));
        assert!(line.contains("2 custom metrics ($0.60"), "{line}");
        assert!(line.contains("1,000 such agents: $438.60"), "{line}");
        assert!(line.contains("read 2026-12-02"), "{line}");
    }

    #[test]
    fn agents_with_their_own_dimension_values_pay_for_their_own_metrics() {
        // The shipped systemd setup: --ec2-dimensions. 1,000 agents: 1000 × ($0.438 +
        // $0.60), where shared metrics would be 1000 × $0.438 + $0.60.
        let e = Estimate::of(&config(&["--ec2-dimensions"]), 1);
        assert!(
            (e.usd_fleet(1000) - 1038.0).abs() < 1.0,
            "{}",
            e.usd_fleet(1000)
        );
        let line = e.to_string();
        assert!(line.contains("1,000 such agents: $1,038.00"), "{line}");
        assert!(line.contains("each agent's own: InstanceId"), "{line}");
        let e = Estimate::of(&config(&["--dimension", "TaskId=abc"]), 1);
        assert!(e.to_string().contains("TaskId names one instance"), "{e}");
        // A dimension that says nothing of the agent: shared.
        let e = Estimate::of(&config(&["--dimension", "Env=prod"]), 1);
        assert_eq!(e.own_metrics, None);
        assert!((e.usd_fleet(1000) - 438.60).abs() < 1e-6);
        // A value equal to the machine's host name (read under --root).
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(root.path().join("proc/sys/kernel/hostname"), "web-7\n").unwrap();
        let root_arg = root.path().to_string_lossy().into_owned();
        let e = Estimate::of(
            &config(&["--root", &root_arg, "--dimension", "Node=web-7"]),
            1,
        );
        assert!(
            e.to_string()
                .contains("Node=web-7 is this machine's host name"),
            "{e}"
        );
    }

    #[test]
    fn send_every_divides_the_requests_and_the_shape_sets_the_metrics() {
        let every = Estimate::of(&config(&["--send-every", "5"]), 1);
        assert_eq!(every.requests, 43_800.0 / 5.0);
        let median_max = Estimate::of(&config(&["--aggregation", "median-max"]), 1);
        assert_eq!(median_max.metrics, 4, "two names per metric");
        let compat = Estimate::of(&config(&["--compat", "0.1"]), 1);
        assert_eq!(compat.metrics, 3);
        let ten = Estimate::of(&config(&["--period", "10"]), 1);
        assert_eq!(ten.requests, 262_800.0);
    }

    #[test]
    fn emf_costs_log_bytes_not_requests() {
        let e = Estimate::of(&config(&["--output", "emf"]), 1);
        assert_eq!(e.requests, 0.0);
        // 43,800 documents of a few hundred bytes each.
        let per_document = e.log_bytes / 43_800.0;
        assert!((300.0..2000.0).contains(&per_document), "{per_document}");
        assert!(e.usd_traffic() < Estimate::of(&config(&[]), 1).usd_traffic());
        assert!(e.to_string().contains("MB of EMF logs ingested"));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(43_800.0), "43,800");
        assert_eq!(thousands(262_800.0), "262,800");
        assert_eq!(thousands(8_760.0), "8,760");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
        assert_eq!(dollars(2628.6), "$2,628.60");
        assert_eq!(dollars(0.438), "$0.44");
        assert_eq!(dollars(0.995), "$1.00");
        assert_eq!(dollars(1234567.891), "$1,234,567.89");
    }

    /// The cost table of docs/cost.md, as this module computes it.
    fn docs_table() -> String {
        let mut table = String::from(
            "| period | output | requests or log data per agent | per agent | 1,000 agents |\n\
             |---|---|---|---|---|\n",
        );
        for period in ["10", "60", "300"] {
            for (name, extra) in [
                ("PutMetricData", &[][..]),
                (
                    "PutMetricData, `--send-every 5`",
                    &["--send-every", "5"][..],
                ),
                ("EMF", &["--output", "emf"][..]),
            ] {
                let args = [&["--period", period][..], extra].concat();
                let e = Estimate::of(&config(&args), 1);
                let traffic = if e.emf {
                    format!("{:.1} MB", e.log_bytes / 1e6)
                } else {
                    format!("{} requests", thousands(e.requests))
                };
                table += &format!(
                    "| {period} s | {name} | {traffic} | {} | {} |\n",
                    dollars(e.usd_traffic() + e.usd_metrics()),
                    dollars(e.usd_fleet(1000))
                );
            }
        }
        table
    }

    #[test]
    fn the_docs_cost_table_is_what_check_computes() {
        let table = docs_table();
        let page = include_str!("../docs/cost.md");
        assert!(page.contains(&table), "docs/cost.md should hold:\n{table}");
    }

    /// The README's summary: the default configuration's requests, monthly cost per agent
    /// and for 1,000 agents, as this module computes them.
    #[test]
    fn the_readme_cost_summary_is_what_check_computes() {
        let readme = include_str!("../README.md");
        let e = Estimate::of(&config(&[]), 1);
        for figure in [
            format!("{} `PutMetricData` requests a month", thousands(e.requests)),
            format!(
                "about {} a month",
                dollars(e.usd_traffic() + e.usd_metrics())
            ),
            format!("{} for 1,000 agents", dollars(e.usd_fleet(1000))),
        ] {
            assert!(readme.contains(&figure), "README should say {figure:?}");
        }
    }
}
