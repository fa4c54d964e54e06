//! Fitting the AWS ecosystem: EMF output, high resolution, extra and EC2 dimensions.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::http::read_message;
use common::{Agent, TestServer, agent_command};
use serde_json::Value;

/// Checks one EMF document against the rules of the "Embedded metric format
/// specification": the `_aws` metadata with an integer millisecond `Timestamp` and a
/// non-empty `CloudWatchMetrics` array; each directive's `Namespace`, `Dimensions` (arrays
/// of at most 30 keys, each a top-level string member) and `Metrics` (at most 100, each
/// with a `Name` that has a top-level value: a number, at most 100 numbers, or a
/// `Values`/`Counts` pair of equal length, at most 100); `Unit` a string and
/// `StorageResolution` 1 or 60.
fn check_emf(doc: &Value) -> Result<(), String> {
    let aws = doc.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_u64()
        .ok_or("Timestamp is not an integer")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("empty CloudWatchMetrics".into());
    }
    for directive in directives {
        let ns = directive["Namespace"].as_str().ok_or("no Namespace")?;
        if ns.is_empty() || ns.len() > 255 {
            return Err(format!("bad Namespace {ns:?}"));
        }
        for set in directive["Dimensions"].as_array().ok_or("no Dimensions")? {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.len() > 30 {
                return Err("more than 30 dimensions".into());
            }
            for key in keys {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                doc.get(key)
                    .and_then(Value::as_str)
                    .ok_or(format!("dimension {key} has no string value"))?;
            }
        }
        let metrics = directive["Metrics"].as_array().ok_or("no Metrics")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err(format!("{} metrics", metrics.len()));
        }
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric without Name")?;
            metric["Unit"].as_str().ok_or(format!("{name}: no Unit"))?;
            let resolution = metric["StorageResolution"].as_u64();
            if !matches!(resolution, Some(1 | 60)) {
                return Err(format!("{name}: StorageResolution {resolution:?}"));
            }
            let value = doc.get(name).ok_or(format!("{name} has no value"))?;
            let ok = match value {
                Value::Number(_) => true,
                Value::Array(values) => values.len() <= 100 && values.iter().all(Value::is_number),
                Value::Object(dist) => {
                    let values = dist.get("Values").and_then(Value::as_array);
                    let counts = dist.get("Counts").and_then(Value::as_array);
                    matches!((values, counts), (Some(v), Some(c)) if v.len() == c.len() && v.len() <= 100)
                }
                _ => false,
            };
            if !ok {
                return Err(format!("{name}: bad value {value}"));
            }
        }
    }
    Ok(())
}

#[test]
fn emf_documents_follow_the_specification() {
    let args = [
        "--namespace",
        "Emf/Test",
        "-s",
        "web",
        "--period",
        "1",
        "--output",
        "emf",
        "--scope",
        "host",
        "--dimension",
        "Env=prod",
    ];
    let mut agent = Agent::spawn(&args, &[]);
    let mut docs = Vec::new();
    while docs.len() < 2 {
        let line = agent
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("an EMF line");
        docs.push(serde_json::from_str::<Value>(&line).expect("a JSON document"));
    }
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    for doc in &docs {
        check_emf(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["ServiceName", "Env"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"],
            1
        );
        assert_eq!(doc["_aws"]["Timestamp"].as_u64().unwrap() % 1000, 0);
    }
    assert!(docs.iter().any(|d| d.get("CPUUtilization").is_some()));
}

#[test]
fn the_emf_checker_catches_what_the_specification_forbids() {
    let good = serde_json::json!({
        "_aws": {"Timestamp": 1000, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["ServiceName"]],
                 "Metrics": [{"Name": "CPUUtilization", "Unit": "Percent", "StorageResolution": 60}]}]},
        "ServiceName": "web", "CPUUtilization": {"Values": [1.0], "Counts": [2.0]}
    });
    assert!(check_emf(&good).is_ok());
    for broken in [
        r#"{"ServiceName": "web"}"#,
        r#"{"_aws": {"Timestamp": 1.5, "CloudWatchMetrics": []}}"#,
        r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["Env"]], "Metrics": [{"Name": "M", "Unit": "Percent", "StorageResolution": 60}]}]}, "M": 1}"#,
        r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M", "Unit": "Percent", "StorageResolution": 60}]}]}}"#,
        r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M", "Unit": "Percent", "StorageResolution": 5}]}]}, "M": 1}"#,
        r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M", "Unit": "Percent", "StorageResolution": 1}]}]}, "M": {"Values": [1], "Counts": []}}"#,
    ] {
        let doc: Value = serde_json::from_str(broken).unwrap();
        assert!(check_emf(&doc).is_err(), "{broken}");
    }
}

/// Datums the server accepted, after the agent ran until its first window was flushed.
fn datums_sent(server: &TestServer, extra: &[&str]) -> Vec<Value> {
    let base = ["--namespace", "Out/Test", "-s", "web", "--scope", "host"];
    let mut env = server.agent_env();
    env.push(("RUST_LOG", "debug".to_owned()));
    let mut agent = Agent::spawn(&[&base[..], extra].concat(), &env);
    agent.wait_for_log(&["sample at", "cpu Some("], Duration::from_secs(10));
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(3)).success());
    server
        .accepted_puts()
        .iter()
        .flat_map(|p| p["MetricData"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn period_under_60_is_high_resolution_and_60_is_standard() {
    let server = TestServer::start();
    let fast = datums_sent(&server, &["--period", "5"]);
    assert!(
        !fast.is_empty() && fast.iter().all(|d| d["StorageResolution"] == 1),
        "{fast:?}"
    );
    let server = TestServer::start();
    let standard = datums_sent(&server, &["--period", "60"]);
    assert!(!standard.is_empty());
    assert!(
        standard
            .iter()
            .all(|d| d.get("StorageResolution").is_none_or(|r| r == 60)),
        "{standard:?}"
    );
}

#[test]
fn extra_dimensions_arrive_on_every_datum() {
    let server = TestServer::start();
    let sent = datums_sent(
        &server,
        &[
            "--period",
            "60",
            "--dimension",
            "Env=prod",
            "--dimension",
            "Team=core",
        ],
    );
    assert!(!sent.is_empty());
    for d in &sent {
        assert_eq!(
            d["Dimensions"],
            serde_json::json!([{"Name": "ServiceName", "Value": "web"}, {"Name": "Env", "Value": "prod"}, {"Name": "Team", "Value": "core"}])
        );
    }
}

#[test]
fn bad_dimensions_exit_2() {
    for bad in ["Env", "=x", "ServiceName=x", ":a=b"] {
        let out = agent_command(
            &["--namespace", "N", "-s", "w", "-d", "--dimension", bad],
            &[],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let env = [("CWMA_DIMENSIONS", "A=1,A=2".to_owned())];
    let out = agent_command(&["--namespace", "N", "-s", "w", "-d"], &env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// An IMDSv2 stand-in: `PUT /latest/api/token` hands out a token; metadata GETs need it.
struct Imds {
    endpoint: String,
    tokens_issued: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
}

fn start_imds() -> Imds {
    const TOKEN: &str = "AQAEAtesttoken==";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tokens_issued, rejected) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (issued, denied) = (Arc::clone(&tokens_issued), Arc::clone(&rejected));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (issued, denied) = (Arc::clone(&issued), Arc::clone(&denied));
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let Some(request) = read_message(&mut reader) else {
                        return;
                    };
                    let token = request.header("x-aws-ec2-metadata-token");
                    let (method, path) = (request.method(), request.target());
                    let mut extra = "";
                    let (status, body) = match (method, path) {
                        ("PUT", "/latest/api/token") => {
                            issued.fetch_add(1, Ordering::SeqCst);
                            extra = "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n";
                            (200, TOKEN)
                        }
                        _ if token != Some(TOKEN) => {
                            denied.fetch_add(1, Ordering::SeqCst);
                            (401, "")
                        }
                        ("GET", "/latest/meta-data/instance-id") => (200, "i-0123456789abcdef0"),
                        ("GET", "/latest/meta-data/instance-type") => (200, "m7g.large"),
                        ("GET", "/latest/meta-data/tags/instance/aws:autoscaling:groupName") => {
                            (200, "web-asg")
                        }
                        _ => (404, ""),
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Imds {
        endpoint,
        tokens_issued,
        rejected,
    }
}

fn ec2_agent(endpoint: &str) -> Agent {
    let env = [
        ("AWS_EC2_METADATA_DISABLED", "false".to_owned()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let args = [
        "--namespace",
        "N",
        "-s",
        "web",
        "--period",
        "1",
        "-d",
        "--scope",
        "host",
        "--ec2-dimensions",
    ];
    Agent::spawn(&args, &env)
}

#[test]
fn ec2_dimensions_come_from_imdsv2_with_a_token() {
    let imds = start_imds();
    // A request without a token is refused, as IMDSv2 requires.
    let mut plain =
        std::net::TcpStream::connect(imds.endpoint.trim_start_matches("http://")).unwrap();
    plain
        .write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    BufReader::new(plain).read_line(&mut status).unwrap();
    assert!(status.contains(" 401 "), "{status}");
    let refused_before = imds.rejected.load(Ordering::SeqCst);
    let mut agent = ec2_agent(&imds.endpoint);
    let line = agent.first_line_then_stop();
    let request: Value = serde_json::from_str(&line).unwrap();
    for d in request["MetricData"].as_array().unwrap() {
        assert_eq!(
            d["Dimensions"],
            serde_json::json!([
                {"Name": "ServiceName", "Value": "web"},
                {"Name": "InstanceId", "Value": "i-0123456789abcdef0"},
                {"Name": "InstanceType", "Value": "m7g.large"},
                {"Name": "AutoScalingGroupName", "Value": "web-asg"},
            ])
        );
    }
    assert!(
        imds.tokens_issued.load(Ordering::SeqCst) >= 1,
        "the token handshake was used"
    );
    assert_eq!(
        imds.rejected.load(Ordering::SeqCst),
        refused_before,
        "the agent's requests carried the token"
    );
}

#[test]
fn without_instance_metadata_the_agent_starts_within_2_s_and_warns() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let started = Instant::now();
    let mut agent = ec2_agent(&endpoint);
    agent.wait_for_log(&["WARN", "--ec2-dimensions"], Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    agent.first_line_then_stop();
}
