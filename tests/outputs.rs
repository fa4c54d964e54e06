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

/// Runs `tests/harness/validate_emf.py` (the EMF specification's JSON schema and limits,
/// and AWS's exporter's histogram fields) over `docs`: its exit status and output.
fn validate_emf(docs: &[String]) -> (bool, String) {
    run_harness("validate_emf.py", docs)
}

/// Runs a harness script with `lines` on its stdin: its exit status and output.
fn run_harness(script: &str, lines: &[String]) -> (bool, String) {
    common::run_harness(script, &[], &(lines.join("\n") + "\n"))
}

/// The first `n` EMF documents of the agent run with `extra` arguments.
fn emf_documents(extra: &[&str], n: usize) -> Vec<String> {
    let base = [
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
    ];
    let mut agent = Agent::spawn(&[&base[..], extra].concat(), &[]);
    let docs = (0..n)
        .map(|_| {
            agent
                .stdout
                .recv_timeout(Duration::from_secs(10))
                .expect("an EMF line")
        })
        .collect();
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    docs
}

#[test]
fn emf_documents_follow_the_specification_and_aws_exporters_histograms() {
    let mut docs = emf_documents(&["--dimension", "Env=prod"], 2);
    docs.extend(emf_documents(&["--aggregation", "median-max"], 2));
    docs.extend(emf_documents(&["--compat", "0.1"], 2));
    docs.extend(emf_documents(&["--metrics", "cpu,memory,oom,pressure"], 2));
    let groups = ["--metrics", "cpu,memory,absolute,network,storage"];
    docs.extend(emf_documents(&groups, 2));
    docs.extend(emf_documents(
        &[&groups[..], &["--aggregation", "median-max"]].concat(),
        2,
    ));
    let (ok, report) = validate_emf(&docs);
    assert!(ok, "{report}");
    assert!(report.contains("12 documents valid"), "{report}");
    // Absolute figures in Container Insights' units, as distributions or median and max.
    let absolute: Value = serde_json::from_str(&docs[9]).unwrap();
    let units: Vec<(String, String)> = absolute["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().into(),
                m["Unit"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (name, unit) in [
        ("CpuUtilized", "None"),
        ("MemoryReserved", "Megabytes"),
        ("NetworkRxBytes", "Bytes/Second"),
        ("StorageWriteBytes", "Bytes/Second"),
    ] {
        assert!(
            units.contains(&(name.into(), unit.into())),
            "{name}: {units:?}"
        );
    }
    assert!(absolute["MemoryReserved"]["Values"][0].as_f64().unwrap() > 100.0);
    let median_max: Value = serde_json::from_str(&docs[11]).unwrap();
    assert!(median_max["MaxNetworkTxBytes"].is_number(), "{median_max}");
    let kills: Value = serde_json::from_str(&docs[7]).unwrap();
    assert_eq!(kills["OOMKills"], 0.0, "a count is one value: {kills}");
    assert!(kills["CPUPressure"].get("Values").is_some(), "{kills}");
    let doc: Value = serde_json::from_str(&docs[0]).unwrap();
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["ServiceName", "Env"]])
    );
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"],
        1
    );
    assert_eq!(doc["_aws"]["Timestamp"].as_u64().unwrap() % 1000, 0);
    let memory = &doc["MemoryUtilization"];
    for key in ["Values", "Counts", "Max", "Min", "Count", "Sum"] {
        assert!(memory.get(key).is_some(), "{key} in {memory}");
    }
}

#[test]
fn the_emf_check_refuses_what_the_specification_forbids() {
    let good = emf_documents(&[], 1).remove(0);
    assert!(validate_emf(std::slice::from_ref(&good)).0);
    for broken in [
        good.replace("\"Unit\":\"Percent\"", "\"Unit\":\"Percents\""),
        good.replace("\"ServiceName\":\"web\"", "\"ServiceName\":7"),
        good.replace("\"StorageResolution\":1", "\"StorageResolution\":5"),
        good.replace("\"Count\":", "\"Count\":1000+"),
        good.replacen("\"Timestamp\":", "\"Timestamp\":0.5+", 1),
    ] {
        assert_ne!(broken, good);
        let (ok, report) = validate_emf(std::slice::from_ref(&broken));
        assert!(!ok, "{broken} passed: {report}");
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

/// `--dry-run` lines of `extra` arguments: the first two windows'.
fn dry_run_lines(extra: &[&str]) -> Vec<String> {
    let base = [
        "--namespace",
        "Cli/Input",
        "-s",
        "web",
        "--dry-run",
        "--scope",
        "host",
        "--period",
        "1",
    ];
    let mut agent = Agent::spawn(&[&base[..], extra].concat(), &[]);
    let lines = (0..2)
        .map(|_| {
            agent
                .stdout
                .recv_timeout(Duration::from_secs(10))
                .expect("a dry-run line")
        })
        .collect();
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(3)).success());
    lines
}

/// Runs `tests/harness/validate_cli_input.py` over `lines`: its exit status and output.
fn validate_cli_input(lines: &[String]) -> (bool, String) {
    run_harness("validate_cli_input.py", lines)
}

#[test]
fn dry_run_lines_are_valid_aws_cli_input_in_every_mode() {
    let mut lines = Vec::new();
    for extra in [
        &[][..],
        &["--aggregation", "median-max"],
        &["--dimension", "Env=prod", "--dimension", "Team=core"],
        &["--storage-resolution", "60", "--metrics", "memory"],
        &["--compat", "0.1"],
        &["--metrics", "cpu,memory,oom,pressure"],
        &["--metrics", "absolute,network,storage"],
    ] {
        lines.extend(dry_run_lines(extra));
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"Unit\":\"Bytes/Second\""))
    );
    assert!(
        lines.iter().any(|l| l.contains("\"StorageResolution\":1")),
        "high resolution among them"
    );
    assert!(lines.iter().any(|l| l.contains("\"OOMKills\"")));
    let (ok, report) = validate_cli_input(&lines);
    assert!(ok, "{report}");
    assert!(report.contains("14 lines valid"), "{report}");
}

#[test]
fn the_cli_input_check_refuses_what_cloudwatch_would() {
    let good = dry_run_lines(&[]).remove(0);
    for broken in [
        good.replace("\"Unit\":\"Percent\"", "\"Unit\":\"Percents\""),
        good.replace("\"MetricName\"", "\"Metric\""),
        good.replace("\"Counts\":[", "\"Counts\":[1.0,"),
        good.replace("\"Value\":\"web\"", "\"Value\":\"\""),
    ] {
        assert_ne!(broken, good, "the line was changed");
        let (ok, report) = validate_cli_input(std::slice::from_ref(&broken));
        assert!(!ok, "{broken} passed: {report}");
    }
}
