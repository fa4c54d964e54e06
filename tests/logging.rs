//! The original agent's log targets: `RUST_LOG=cloudwatch_metrics_agent::publisher=info`
//! shows each published window with its values, `...::cloudwatch=info` each request
//! sent to CloudWatch, and nothing else.

mod common;

use std::time::Duration;

use common::{Agent, TestServer, wait_until};
use serde_json::Value;

const PUBLISHER: &str = "cloudwatch_metrics_agent::publisher";
const CLOUDWATCH: &str = "cloudwatch_metrics_agent::cloudwatch";

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--namespace",
        "Test/Logs",
        "--service",
        "web",
        "--period",
        "1",
        "--scope",
        "host",
    ];
    args.extend(extra);
    args
}

fn only(target: &str) -> (&'static str, String) {
    ("RUST_LOG", format!("{target}=info"))
}

/// The log lines of `target`, after checking that there is no other.
fn lines_of(log: &[String], target: &str) -> Vec<String> {
    for line in log {
        assert!(
            line.starts_with(&format!("[INFO  {target}] ")),
            "only {target} lines: {line:?}"
        );
    }
    log.to_vec()
}

/// `Values` and `Counts` of a dry-run datum as (samples, smallest, largest).
fn stats(datum: &Value) -> (f64, f64, f64) {
    let values: Vec<f64> = datum["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let n = datum["Counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .sum();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (n, min, max)
}

#[test]
fn the_publisher_target_shows_each_published_window_with_its_values_and_nothing_else() {
    let mut agent = Agent::spawn(&args(&["--dry-run"]), &[only(PUBLISHER)]);
    let mut printed: Vec<Value> = (0..3)
        .map(|_| {
            let line = agent
                .stdout
                .recv_timeout(Duration::from_secs(10))
                .expect("a dry-run line");
            serde_json::from_str(&line).unwrap()
        })
        .collect();
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    // The partial window printed at exit.
    while let Ok(line) = agent.stdout.recv_timeout(Duration::from_millis(500)) {
        printed.push(serde_json::from_str(&line).unwrap());
    }
    let log = agent.rest_of_log();
    let lines = lines_of(&log, PUBLISHER);
    assert_eq!(lines.len(), printed.len(), "one line per window:\n{log:#?}");
    for (line, request) in lines.iter().zip(&printed) {
        let data = request["MetricData"].as_array().unwrap();
        let at = data[0]["Timestamp"].as_str().unwrap();
        assert!(
            line.contains(&format!("] {at} ServiceName=web: ")),
            "{line}"
        );
        for datum in data {
            let (n, min, max) = stats(datum);
            let said = format!(
                "{} n={n} min={min:.1} median=",
                datum["MetricName"].as_str().unwrap()
            );
            assert!(line.contains(&said), "{said:?} in {line}");
            assert!(line.contains(&format!(" max={max:.1}")), "{line}");
        }
    }
}

#[test]
fn the_cloudwatch_target_shows_one_line_per_request_and_how_it_ended() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(only(CLOUDWATCH));
    let mut agent = Agent::spawn(&args(&[]), &env);
    wait_until(Duration::from_secs(20), "three accepted requests", || {
        (server.accepted_puts().len() >= 3).then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(3)).success());
    let log = agent.rest_of_log();
    let lines = lines_of(&log, CLOUDWATCH);
    let puts = server.accepted_puts();
    assert_eq!(server.call_count(), puts.len(), "every request accepted");
    assert_eq!(lines.len(), puts.len(), "one line per request:\n{log:#?}");
    for (line, put) in lines.iter().zip(&puts) {
        let data = put["MetricData"].as_array().unwrap();
        assert!(
            line.contains(&format!(
                "PutMetricData Test/Logs [ServiceName=web], {} datums of ",
                data.len()
            )),
            "{line}"
        );
        for datum in data {
            let (n, min, max) = stats(datum);
            let name = datum["MetricName"].as_str().unwrap();
            let values = datum["Values"].as_array().unwrap().len();
            assert!(
                line.contains(&format!("{name}[{n} samples, {values} values {min}–{max}]")),
                "{name} in {line}"
            );
        }
        assert!(line.contains(" → ok in "), "{line}");
    }
}

#[test]
fn the_cloudwatch_target_says_when_a_request_failed() {
    // Nothing listens there: every attempt fails to connect.
    let port = common::CLOSED_PORT;
    let env = vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        only(CLOUDWATCH),
    ];
    let mut agent = Agent::spawn(&args(&[]), &env);
    let line = agent.wait_for_log(&["PutMetricData"], Duration::from_secs(10));
    assert!(line.contains(" → failed in "), "{line}");
    assert!(line.contains("(Transient)"), "{line}");
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "data left undelivered");
    // Besides the request lines, only the exit's own account of the undelivered data,
    // which is written whatever RUST_LOG says.
    let log = agent.rest_of_log();
    let (logged, other): (Vec<String>, Vec<String>) =
        log.into_iter().partition(|l| l.starts_with('['));
    lines_of(&logged, CLOUDWATCH);
    assert!(
        other.iter().all(|l| l.contains("could not be delivered")),
        "{other:#?}"
    );
}
