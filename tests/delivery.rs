//! Nothing lost: the agent against the test server through a fault-injecting proxy.
//! Outages, throttling and shutdowns during outages, each bounded in time.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use common::proxy::{Fault, FaultProxy};
use common::{Agent, TestServer};

const NAMESPACE: &str = "Test/Delivery";

/// The agent publishing through `proxy`, sampling every second, retrying within
/// `max_backoff` seconds.
fn agent(server: &TestServer, proxy: &FaultProxy, max_backoff: &str, extra: &[&str]) -> Agent {
    let mut env = server.agent_env_via(&proxy.url());
    env.push(("RUST_LOG", "debug".to_owned()));
    let args = [
        &[
            "--namespace",
            NAMESPACE,
            "-s",
            "web",
            "--period",
            "1",
            "--retry-max-backoff",
            max_backoff,
        ][..],
        &["--request-timeout", "2", "--scope", "host"],
        extra,
    ]
    .concat();
    Agent::spawn(&args, &env)
}

/// Reads the agent's log while `scenario` runs: `(at, fault)` steps from the start.
fn run_scenario(agent: &mut Agent, proxy: &FaultProxy, steps: &[(u64, Fault)], until: u64) {
    let started = Instant::now();
    for &(at, fault) in steps.iter().chain([(until, Fault::None)].iter()) {
        let when = started + Duration::from_secs(at);
        // A scenario's timeline, not a wait for a condition: the fault has a duration.
        while Instant::now() < when {
            if let Ok(line) = agent.stderr.recv_timeout(when - Instant::now()) {
                agent.log.push(line);
            }
        }
        proxy.set(fault);
    }
}

/// Memory samples the agent logged (one per sample, every sample has memory).
fn samples_taken(log: &[String]) -> usize {
    log.iter()
        .filter(|l| l.contains("sample at") && l.contains("memory Some("))
        .count()
}

/// Memory datums the server accepted, per timestamp: (datums, samples).
fn accepted_per_timestamp(server: &TestServer) -> BTreeMap<u64, (usize, f64)> {
    let mut seen = BTreeMap::new();
    for put in server.accepted_puts() {
        for d in put["MetricData"].as_array().unwrap() {
            if d["MetricName"] != "MemoryUtilization" {
                continue;
            }
            let counts: f64 = d["Counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_f64().unwrap())
                .sum();
            let entry = seen
                .entry(d["Timestamp"].as_f64().unwrap() as u64)
                .or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 += counts;
        }
    }
    seen
}

/// Every window once, every sample there: checked on the wire and through the API.
async fn assert_everything_arrived_once(server: &TestServer, log: &[String]) {
    let per_timestamp = accepted_per_timestamp(server);
    assert!(
        per_timestamp.values().all(|(datums, _)| *datums == 1),
        "a window twice: {per_timestamp:?}"
    );
    let samples: f64 = per_timestamp.values().map(|(_, s)| s).sum();
    assert_eq!(
        samples as usize,
        samples_taken(log),
        "every sample delivered"
    );

    let first = *per_timestamp.keys().next().unwrap() as i64;
    let last = *per_timestamp.keys().last().unwrap() as i64;
    let stats = server
        .client()
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("MemoryUtilization")
        .dimensions(
            Dimension::builder()
                .name("ServiceName")
                .value("web")
                .build(),
        )
        .start_time(DateTime::from_secs(first))
        .end_time(DateTime::from_secs(last + 1))
        .period(1)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .unwrap();
    for point in stats.datapoints() {
        let at = point.timestamp().unwrap().secs() as u64;
        let expected = per_timestamp.get(&at).map_or(0.0, |(_, s)| *s);
        assert_eq!(point.sample_count(), Some(expected), "datapoints at {at}");
    }
    assert_eq!(
        stats.datapoints().len(),
        per_timestamp.len(),
        "one datapoint per window"
    );
}

async fn outage(fault: Fault) {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    let mut agent = agent(&server, &proxy, "2", &[]);
    run_scenario(&mut agent, &proxy, &[(4, fault)], 14);
    // The backlog caught up: said once the queue has drained.
    agent.wait_for_log(&["queued during a"], Duration::from_secs(20));
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(8));
    let log = agent.rest_of_log();
    assert_eq!(status.code(), Some(0), "log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("queued during a")),
        "recovery reported:\n{}",
        log.join("\n")
    );
    if fault != Fault::Refuse {
        assert!(proxy.faulted_connections() > 0, "the outage was hit");
    }
    assert_everything_arrived_once(&server, &log).await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_outage_of_refused_connections_loses_and_duplicates_nothing() {
    outage(Fault::Refuse).await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_outage_of_reset_connections_loses_and_duplicates_nothing() {
    outage(Fault::Reset).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_black_holed_endpoint_loses_and_duplicates_nothing() {
    outage(Fault::Hang).await;
}

#[tokio::test(flavor = "current_thread")]
async fn throttling_backs_off_and_loses_nothing() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    // A longer cap, so backing off shows in the request count.
    let mut agent = agent(&server, &proxy, "8", &[]);
    run_scenario(&mut agent, &proxy, &[(3, Fault::Throttle)], 13);
    let throttled = proxy.faulted_requests();
    let log_snapshot = agent.log.clone();
    agent.wait_for_log(&["queued during a"], Duration::from_secs(20));
    agent.signal("TERM");
    assert_eq!(agent.wait(Duration::from_secs(4)).code(), Some(0));
    let log = agent.rest_of_log();
    assert!(throttled >= 2, "throttling was hit: {throttled}");
    assert!(
        throttled < 10,
        "{throttled} requests in 10 s of throttling: no backoff"
    );
    assert!(
        log_snapshot.iter().any(|l| l.contains("Throttled")),
        "the failure is named:\n{}",
        log_snapshot.join("\n")
    );
    assert_everything_arrived_once(&server, &log).await;
}

#[test]
fn sigterm_during_an_outage_exits_1_within_the_flush_timeout_and_counts_the_loss() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Status(503));
    let mut agent = agent(&server, &proxy, "2", &["--flush-timeout", "2"]);
    agent.wait_for_log(&["sending", "failed"], Duration::from_secs(15));
    let sent = Instant::now();
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(4));
    let took = sent.elapsed();
    let log = agent.rest_of_log().join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        took < Duration::from_millis(3500),
        "exit {took:?} after SIGTERM"
    );
    // Refused requests are "not accepted"; one the deadline cut off while it was out
    // may have been stored, and is said apart. Either way the count is there.
    let lost: u64 = log
        .lines()
        .filter(|l| l.contains("could not be delivered") || l.contains("were sent, but"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(lost >= 2, "says how many datums were lost:\n{log}");
    if let Some(line) = log.lines().find(|l| l.contains("could not be delivered")) {
        assert!(line.contains("CloudWatch had not accepted them"), "{line}");
    }
}

#[test]
fn a_small_buffer_bounds_the_queue_during_an_outage() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Refuse);
    let mut agent = agent(
        &server,
        &proxy,
        "2",
        // The smallest buffer this run takes: 6 windows of 2 datums (two sends'
        // worth, and 4 s of windows while a request may be out).
        &["--buffer-size", "12", "--flush-timeout", "1"],
    );
    let dropped = agent.wait_for_log(
        &["dropping datums", "--buffer-size"],
        Duration::from_secs(30),
    );
    // More windows arrive at a full queue: each drops datums, none logs again yet.
    for _ in 0..3 {
        agent.wait_for_log(&["queue: 12 datums"], Duration::from_secs(5));
    }
    agent.signal("TERM");
    assert_eq!(
        agent.wait(Duration::from_secs(4)).code(),
        Some(1),
        "the queue could not be delivered"
    );
    let log = agent.rest_of_log();
    let sizes: Vec<usize> = log
        .iter()
        .filter_map(|l| l.split("queue: ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(sizes.len() >= 3, "queue sizes logged: {sizes:?}");
    assert!(
        sizes.iter().all(|n| *n <= 12),
        "queue exceeded --buffer-size: {sizes:?}"
    );
    assert!(
        dropped.contains("ERROR") && dropped.contains("oldest dropped"),
        "said at the default level: {dropped}"
    );
    let drop_lines: Vec<&String> = agent
        .log
        .iter()
        .filter(|l| l.contains("dropping datums") || l.contains("were dropped because"))
        .collect();
    assert_eq!(
        drop_lines.len(),
        2,
        "one line when the episode starts, its count at the end: {drop_lines:?}"
    );
    assert!(drop_lines[1].contains("ERROR"), "{drop_lines:?}");
    assert_eq!(server.call_count(), 0, "nothing got through");
}

#[tokio::test(flavor = "current_thread")]
async fn access_denied_keeps_data_queued_logs_errors_and_recovers_when_allowed() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Deny);
    let mut agent = agent(&server, &proxy, "1", &[]);
    agent.wait_for_log(
        &["ERROR", "(Auth)", "AccessDenied"],
        Duration::from_secs(15),
    );
    agent.wait_for_log(
        &["ERROR", "(Auth)", "AccessDenied"],
        Duration::from_secs(15),
    );
    assert_eq!(server.call_count(), 0);
    // The role gets its permission: the queued windows go out by themselves.
    proxy.set(Fault::None);
    agent.wait_for_log(&["queued during a"], Duration::from_secs(15));
    agent.signal("TERM");
    assert_eq!(agent.wait(Duration::from_secs(4)).code(), Some(0));
    let log = agent.rest_of_log();
    assert_everything_arrived_once(&server, &log).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_datum_the_server_rejects_does_not_block_the_others() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    // Every CPU datum is "invalid"; memory datums must still all arrive, each once.
    proxy.set(Fault::RejectContaining("CPUUtilization"));
    let mut agent = agent(&server, &proxy, "2", &[]);
    agent.wait_for_log(
        &["CloudWatch rejected CPUUtilization", "dropped"],
        Duration::from_secs(15),
    );
    let samples_before = samples_taken(&agent.log);
    // Windows keep flowing after the rejections.
    let _ = wait_for_accepted_windows(&server, samples_before + 3);
    agent.signal("TERM");
    assert_eq!(agent.wait(Duration::from_secs(4)).code(), Some(0));
    let log = agent.rest_of_log();
    let puts = server.accepted_puts();
    assert!(puts.iter().all(|p| {
        p["MetricData"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["MetricName"] != "CPUUtilization")
    }));
    assert_everything_arrived_once(&server, &log).await;
}

/// Waits until the server holds memory datums for at least `n` windows.
fn wait_for_accepted_windows(server: &TestServer, n: usize) -> usize {
    common::wait_until(Duration::from_secs(15), "windows to be accepted", || {
        let got = accepted_per_timestamp(server).len();
        (got >= n).then_some(got)
    })
}
