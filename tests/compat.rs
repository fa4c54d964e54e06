//! `--compat 0.1`: what the original agent published, so that its users' alarms keep
//! working: three metrics, one value each per period, 0–1 under the unit `Percent`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_smithy_types::date_time::Format;
use common::{Agent, TestServer, wait_until};
use serde_json::Value;

const NAMESPACE: &str = "Test/Compat";
const ORIGINAL: [&str; 3] = [
    "CPUUtilization",
    "MemoryUtilization",
    "MaxMemoryUtilization",
];

/// From a publisher log line, the window's time and each metric's median and maximum
/// (percent, as the line prints them: to 0.1).
fn window_stats(line: &str) -> (String, BTreeMap<String, (f64, f64)>) {
    let text = line.split_once("] ").unwrap().1;
    let (at, rest) = text.split_once(' ').unwrap();
    let (_, metrics) = rest.split_once(": ").unwrap();
    let mut stats = BTreeMap::new();
    for metric in metrics.split("; ") {
        let mut words = metric.split(' ');
        let name = words.next().unwrap().to_owned();
        let field = |key: &str| -> f64 {
            metric
                .split(' ')
                .find_map(|w| w.strip_prefix(key))
                .unwrap()
                .parse()
                .unwrap()
        };
        stats.insert(name, (field("median="), field("max=")));
    }
    (at.to_owned(), stats)
}

#[tokio::test(flavor = "current_thread")]
async fn compat_0_1_publishes_the_original_three_metrics_as_fractions_of_the_same_samples() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push((
        "RUST_LOG",
        "cloudwatch_metrics_agent::publisher=info".to_owned(),
    ));
    let args = [
        "--namespace",
        NAMESPACE,
        "--service",
        "web",
        "--period",
        "2",
        "--scope",
        "host",
        "--compat",
        "0.1",
    ];
    let mut agent = Agent::spawn(&args, &env);
    wait_until(Duration::from_secs(30), "four published windows", || {
        (server.accepted_puts().len() >= 4).then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(3)).success());
    let log = agent.rest_of_log();
    let windows: BTreeMap<String, BTreeMap<String, (f64, f64)>> =
        log.iter().map(|l| window_stats(l)).collect();

    let puts = server.accepted_puts();
    for (i, put) in puts.iter().enumerate() {
        let data = put["MetricData"].as_array().unwrap();
        let names: BTreeSet<&str> = data
            .iter()
            .map(|d| d["MetricName"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), data.len(), "each metric once: {put}");
        if i == 0 {
            // The host's first sample has no CPU value yet.
            assert!(names.iter().all(|n| ORIGINAL.contains(n)), "{put}");
        } else {
            assert_eq!(names, BTreeSet::from(ORIGINAL), "exactly the three: {put}");
        }
        for d in data {
            assert_eq!(d["Unit"], "Percent");
            assert!(
                d.get("Values").is_none() && d.get("Counts").is_none(),
                "{d}"
            );
            assert!(
                d.get("StorageResolution").is_none(),
                "standard, as 0.1.x: {d}"
            );
            let value = d["Value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&value), "{value} is a fraction");
            // The same run's distribution, from its publisher log line.
            let at = DateTime::from_secs(d["Timestamp"].as_f64().unwrap() as i64);
            let stats = &windows[&at.fmt(Format::DateTime).unwrap()];
            let name = d["MetricName"].as_str().unwrap();
            let percent = match name {
                "MaxMemoryUtilization" => stats["MemoryUtilization"].1,
                _ => stats[name].0,
            };
            assert!(
                (value * 100.0 - percent).abs() <= 0.05 + 1e-9,
                "{name} {value} against {percent} % in the log"
            );
        }
    }

    // Read back through the API: every value arrived as sent.
    for metric in ORIGINAL {
        let sent: Vec<f64> = puts
            .iter()
            .flat_map(|p| p["MetricData"].as_array().unwrap().clone())
            .filter(|d| d["MetricName"] == metric)
            .map(|d| d["Value"].as_f64().unwrap())
            .collect();
        let p = &server.statistics_around_now(NAMESPACE, metric, "web").await;
        let max = sent.iter().copied().fold(f64::MIN, f64::max);
        let min = sent.iter().copied().fold(f64::MAX, f64::min);
        assert_eq!(p.sample_count(), Some(sent.len() as f64), "{metric}");
        assert_eq!(
            (p.minimum(), p.maximum()),
            (Some(min), Some(max)),
            "{metric}"
        );
        assert!(max <= 1.0, "{metric}: {max}");
    }
}

#[test]
fn without_compat_the_same_run_publishes_percentages_as_distributions() {
    let mut agent = Agent::spawn(
        &[
            "--namespace",
            NAMESPACE,
            "--service",
            "web",
            "--period",
            "1",
            "--scope",
            "host",
            "--dry-run",
        ],
        &[],
    );
    let line = agent.first_line_then_stop();
    let request: Value = serde_json::from_str(&line).unwrap();
    for d in request["MetricData"].as_array().unwrap() {
        let name = d["MetricName"].as_str().unwrap();
        assert!(name != "MaxMemoryUtilization", "{d}");
        assert!(d.get("Value").is_none() && d["Values"].is_array(), "{d}");
        assert_eq!(d["StorageResolution"], 1, "{d}");
    }
}
