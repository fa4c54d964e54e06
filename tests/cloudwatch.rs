//! The agent binary against a real CloudWatch-compatible server (moto behind the CBOR
//! bridge), through the real AWS SDK, with the data read back through the API.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use aws_sdk_cloudwatch::types::StandardUnit;
use common::{Agent, TestServer, unix_now, wait_until};
use serde_json::Value;

const NAMESPACE: &str = "Test/Agent";

fn datums(puts: &[Value]) -> Vec<Value> {
    puts.iter()
        .flat_map(|p| p["MetricData"].as_array().unwrap().clone())
        .collect()
}

fn total_count(datums: &[Value], metric: &str) -> f64 {
    datums
        .iter()
        .filter(|d| d["MetricName"] == metric)
        .flat_map(|d| d["Counts"].as_array().unwrap().clone())
        .map(|c| c.as_f64().unwrap())
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn publishes_both_metrics_with_service_dimension_in_percent_on_period_boundaries() {
    let server = TestServer::start();
    let mut agent = Agent::spawn(
        &[
            "--namespace",
            NAMESPACE,
            "--service",
            "web",
            "--period",
            "2",
        ],
        &server.agent_env(),
    );
    let puts = wait_until(Duration::from_secs(20), "two published windows", || {
        let puts = server.accepted_puts();
        (puts.len() >= 2).then_some(puts)
    });
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());

    for put in &puts {
        assert_eq!(put["Namespace"], NAMESPACE);
    }
    let sent = datums(&puts);
    let names: BTreeSet<&str> = sent
        .iter()
        .map(|d| d["MetricName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["CPUUtilization", "MemoryUtilization"])
    );
    for d in &sent {
        assert_eq!(
            d["Dimensions"],
            serde_json::json!([{"Name": "ServiceName", "Value": "web"}])
        );
        assert_eq!(d["Unit"], "Percent");
        let ts = d["Timestamp"].as_f64().unwrap();
        assert_eq!(ts % 2.0, 0.0, "timestamp {ts} is on a 2 s boundary");
        let values = d["Values"].as_array().unwrap();
        assert_eq!(values.len(), d["Counts"].as_array().unwrap().len());
        for v in values {
            let v = v.as_f64().unwrap();
            assert!((0.0..=100.0).contains(&v), "{v} within 0–100");
        }
    }
    // One request per window: no two requests share a timestamp.
    let stamps: BTreeSet<u64> = puts
        .iter()
        .map(|p| p["MetricData"][0]["Timestamp"].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(stamps.len(), puts.len());

    // Read back through the real API.
    let mut listed_names = BTreeSet::new();
    for metric in server.listed(NAMESPACE).await {
        listed_names.insert(metric.metric_name().unwrap().to_owned());
        let dims = metric.dimensions();
        assert_eq!(dims.len(), 1);
        assert_eq!(
            (dims[0].name(), dims[0].value()),
            (Some("ServiceName"), Some("web"))
        );
    }
    assert!(listed_names.contains("CPUUtilization") && listed_names.contains("MemoryUtilization"));

    let all_sent = datums(&server.accepted_puts());
    for metric in ["CPUUtilization", "MemoryUtilization"] {
        let p = &server.statistics_around_now(NAMESPACE, metric, "web").await;
        assert_eq!(
            p.sample_count(),
            Some(total_count(&all_sent, metric)),
            "{metric}"
        );
        assert_eq!(p.unit(), Some(&StandardUnit::Percent));
        assert!(
            p.minimum().unwrap() >= 0.0 && p.maximum().unwrap() <= 100.0,
            "{p:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_mid_window_delivers_the_partial_window_and_exits_0_within_2_s() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(("RUST_LOG", "debug".to_owned()));
    // A one-hour window cannot close by itself during the test.
    let mut agent = Agent::spawn(
        &["--namespace", NAMESPACE, "-s", "batch", "--period", "3600"],
        &env,
    );
    agent.wait_for_log(&["sample at", "cpu Some("], Duration::from_secs(10));
    let window = unix_now() / 3600 * 3600;
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(2));
    assert_eq!(
        status.code(),
        Some(0),
        "log:\n{}",
        agent.rest_of_log().join("\n")
    );

    let puts = server.accepted_puts();
    let last = puts.last().expect("the partial window was published");
    let sent = datums(std::slice::from_ref(last));
    assert!(
        sent.iter()
            .all(|d| d["Timestamp"].as_f64() == Some(window as f64))
    );
    assert!(total_count(&sent, "CPUUtilization") >= 1.0);
    assert!(total_count(&sent, "MemoryUtilization") >= 2.0);
    assert_eq!(server.listed(NAMESPACE).await.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn region_and_endpoint_url_flags_override_the_environment() {
    let server = TestServer::start();
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        // Nothing listens here: only --endpoint-url can make the data arrive.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    let args = [
        "--namespace",
        NAMESPACE,
        "-s",
        "web",
        "--period",
        "3600",
        "--region",
        "eu-west-1",
    ];
    let mut agent = Agent::spawn(
        &[&args[..], &["--endpoint-url", &server.endpoint]].concat(),
        &env,
    );
    agent.wait_for_log(&["sample at", "cpu Some("], Duration::from_secs(10));
    agent.signal("TERM");
    assert_eq!(agent.wait(Duration::from_secs(3)).code(), Some(0));
    let in_eu = server
        .client_in("eu-west-1")
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await
        .unwrap();
    assert_eq!(in_eu.metrics().len(), 2, "published in --region");
    assert!(
        server.listed(NAMESPACE).await.is_empty(),
        "nothing in AWS_REGION's us-east-1"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dry_run_prints_json_lines_and_sends_nothing() {
    let server = TestServer::start();
    // An endpoint and no credentials: a dry run must need neither.
    let env = vec![("AWS_ENDPOINT_URL", server.endpoint.clone())];
    let mut agent = Agent::spawn(
        &[
            "--namespace",
            NAMESPACE,
            "-s",
            "web",
            "--period",
            "1",
            "--dryrun",
        ],
        &env,
    );
    let mut lines = Vec::new();
    while lines.len() < 2 {
        lines.push(
            agent
                .stdout
                .recv_timeout(Duration::from_secs(10))
                .expect("a JSON line"),
        );
    }
    agent.signal("INT");
    assert!(agent.wait(Duration::from_secs(2)).success());
    for line in &lines {
        let request: Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(request["Namespace"], NAMESPACE);
        for d in request["MetricData"].as_array().unwrap() {
            assert_eq!(d["Unit"], "Percent");
            assert_eq!(d["Dimensions"][0]["Value"], "web");
            let ts = d["Timestamp"].as_str().unwrap();
            assert!(
                ts.ends_with('Z') && ts.len() == 20,
                "RFC 3339 timestamp {ts}"
            );
        }
    }
    assert_eq!(server.call_count(), 0, "the server received nothing");
    assert!(server.listed(NAMESPACE).await.is_empty());
}

#[test]
fn a_flush_that_cannot_finish_in_time_is_reported_and_exits_1() {
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let env = vec![
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    let args = ["--namespace", NAMESPACE, "-s", "web", "--period", "3600"];
    let mut agent = Agent::spawn(
        &[
            &args[..],
            &["--endpoint-url", &endpoint, "--flush-timeout", "1"],
        ]
        .concat(),
        &env,
    );
    agent.wait_for_log(&["sample at"], Duration::from_secs(10));
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(4));
    assert_eq!(status.code(), Some(1));
    let log = agent.rest_of_log().join("\n");
    // The request was sent and never answered: it may have been stored, which is not
    // what "not delivered" says.
    assert!(
        log.contains("datums were sent, but CloudWatch had not answered when the flush timeout"),
        "{log}"
    );
    assert!(!log.contains("could not be delivered"), "{log}");
}

#[test]
fn no_region_anywhere_exits_2_with_what_to_do() {
    let output = common::agent_command(&["--namespace", NAMESPACE, "-s", "web"], &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("no AWS region") && stderr.contains("--region"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
