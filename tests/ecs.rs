//! The ecs-task scope: the agent binary against a stand-in task metadata endpoint v4
//! serving documents in the documented Fargate and EC2 layouts (`tests/fixtures/ecs/`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use common::metadata::{MetadataServer, Reply};
use common::{Agent, TestServer};
use serde_json::Value;

const APP: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111";
const SIDECAR: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-2222222222";
const EC2_PAUSE: &str = "c69461b2c836cc3f0e3e5deb07b1f16e25f6009da2a48bb0adc7dd580befaf55";
const EC2_APP: &str = "3c6b0c8d5f2e4e8a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a";
const EC2_WORKER: &str = "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c";

fn fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ecs")
        .join(path);
    std::fs::read_to_string(path).unwrap()
}

/// The stats fixture `n` seconds later, each container having used `vcpus` of CPU in
/// every one of those seconds; containers listed in `restarted` start over from zero.
/// Docker's previous reading (`precpu_stats` at `preread`) is the one a second before.
fn stats_at(fixture_text: &str, n: usize, vcpus: &[(&str, f64)], restarted: &[&str]) -> String {
    let mut doc: Value = serde_json::from_str(fixture_text).unwrap();
    for (id, stats) in doc.as_object_mut().unwrap() {
        let read = DateTime::from_str(stats["read"].as_str().unwrap(), Format::DateTime).unwrap();
        let at = |k: i64| {
            let t = DateTime::from_secs_and_nanos(read.secs() + k, read.subsec_nanos());
            Value::from(t.fmt(Format::DateTime).unwrap())
        };
        stats["read"] = at(n as i64);
        stats["preread"] = at(n as i64 - 1);
        let rate = vcpus.iter().find(|(c, _)| c == id).map_or(0.0, |(_, v)| *v);
        let start = if restarted.contains(&id.as_str()) {
            1_000_000
        } else {
            stats["cpu_stats"]["cpu_usage"]["total_usage"]
                .as_u64()
                .unwrap()
        };
        let used = |k: f64| Value::from((start as f64 + k * rate * 1e9).max(1.0) as u64);
        stats["cpu_stats"]["cpu_usage"]["total_usage"] = used(n as f64);
        stats["precpu_stats"]["cpu_usage"]["total_usage"] = used(n as f64 - 1.0);
    }
    doc.to_string()
}

/// Reads dry-run lines until `count` values of each metric were seen.
fn collect_values(agent: &Agent, count: usize) -> (Vec<Value>, Vec<f64>, Vec<f64>) {
    let (mut lines, mut cpu, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    while cpu.len() < count || memory.len() < count {
        let line = agent
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("a dry-run line");
        let request: Value = serde_json::from_str(&line).unwrap();
        for d in request["MetricData"].as_array().unwrap() {
            let target = if d["MetricName"] == "CPUUtilization" {
                &mut cpu
            } else {
                &mut memory
            };
            for (v, c) in d["Values"]
                .as_array()
                .unwrap()
                .iter()
                .zip(d["Counts"].as_array().unwrap())
            {
                for _ in 0..c.as_f64().unwrap() as usize {
                    target.push(v.as_f64().unwrap());
                }
            }
        }
        lines.push(request);
    }
    (lines, cpu, memory)
}

fn agent_env(server: &MetadataServer, log: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ECS_CONTAINER_METADATA_URI_V4", server.uri.clone()),
        ("RUST_LOG", log.to_owned()),
    ]
}

const DRY_RUN: [&str; 7] = [
    "--namespace",
    "ECS/Test",
    "-s",
    "web",
    "--period",
    "1",
    "--dry-run",
];

#[test]
fn fargate_task_using_0_4_of_0_5_vcpu_and_300_of_1024_mib_reports_80_and_29_3_percent() {
    let (task, stats) = (fixture("fargate/task.json"), fixture("fargate/stats.json"));
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats_at(&stats, n, &[(APP, 0.25), (SIDECAR, 0.15)], &[])),
    });
    let mut agent = Agent::spawn(
        &[&DRY_RUN[..], &["--ecs-dimensions"]].concat(),
        &agent_env(&server, "info"),
    );
    let (lines, cpu, memory) = collect_values(&agent, 3);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());

    assert!(cpu.iter().all(|v| *v == 80.0), "CPU {cpu:?}");
    assert!(memory.iter().all(|v| *v == 29.3), "memory {memory:?}");
    for request in &lines {
        for d in request["MetricData"].as_array().unwrap() {
            assert_eq!(
                d["Dimensions"],
                serde_json::json!([
                    {"Name": "ServiceName", "Value": "web"},
                    {"Name": "ClusterName", "Value": "prod"},
                    {"Name": "TaskDefinitionFamily", "Value": "web-api"},
                ])
            );
        }
    }
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("scope: ecs-task"),
        "auto picks ecs-task and says so:\n{log}"
    );
    assert!(log.contains("0.5 vCPU (the task's CPU limit)"), "{log}");
    assert_eq!(
        server.requests("/task"),
        1,
        "the task document is read once"
    );
}

#[test]
fn aws_published_managed_instances_documents_report_0_1_percent_cpu_and_1_1_percent_memory() {
    // Verbatim (tests/fixtures/ecs/published/README.md): cgroup v2 stats, memory `limit`
    // u64::MAX, Docker's previous reading 10 s before `read`.
    let task = fixture("published/managed-instances-cgroupv2-task.json");
    let stats = fixture("published/managed-instances-cgroupv2-task-stats.json");
    let server = MetadataServer::start(move |path, _| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats.clone()),
    });
    let mut agent = Agent::spawn(&DRY_RUN, &agent_env(&server, "info"));
    let (_, cpu, memory) = collect_values(&agent, 1);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    // CPU (670462000 − 663809000) ns in 9.998537590 s of the task's 1 vCPU: 0.0665 %,
    // published to 0.1. The same document again has not moved on: no further value.
    assert_eq!(cpu, [0.1]);
    // (83562496 − inactive_file 48271360) bytes of the task's 3072 MiB: 1.096 %, also
    // once (before, the same document's memory was counted again every second).
    assert_eq!(memory, [1.1]);
    let log = agent.rest_of_log().join("\n");
    assert!(log.contains("1 vCPU (the task's CPU limit)"), "{log}");
}

#[test]
fn ec2_task_without_size_uses_container_limits_and_ignores_the_pause_container() {
    let (task, stats) = (fixture("ec2/task.json"), fixture("ec2/stats.json"));
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats_at(
            &stats,
            n,
            &[(EC2_APP, 0.3), (EC2_WORKER, 0.15), (EC2_PAUSE, 1.0)],
            &[],
        )),
    });
    let mut agent = Agent::spawn(&DRY_RUN, &agent_env(&server, "info"));
    let (lines, cpu, memory) = collect_values(&agent, 3);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());

    // (0.3 + 0.15) of 768 + 256 CPU units = 0.75 vCPU → 60 %.
    assert!(cpu.iter().all(|v| *v == 60.0), "CPU {cpu:?}");
    // (600 − 88 + 100 − 10) MiB of 768 + 256 MiB → 58.8 %.
    assert!(memory.iter().all(|v| *v == 58.8), "memory {memory:?}");
    assert_eq!(
        lines[0]["MetricData"][0]["Dimensions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("the sum of the containers' CPU units"),
        "{log}"
    );
}

#[test]
fn endpoint_faults_skip_samples_with_a_warning_and_never_publish_a_bogus_value() {
    let (task, stats) = (fixture("fargate/task.json"), fixture("fargate/stats.json"));
    let server = MetadataServer::start(move |path, n| {
        let rates = [(APP, 0.25), (SIDECAR, 0.15)];
        match (path, n) {
            ("/task", _) => Reply::Json(task.clone()),
            (_, 2) => Reply::Status(500),
            (_, 3) => Reply::Hang(Duration::from_secs(2)),
            (_, 4) => Reply::Truncated(stats_at(&stats, n, &rates, &[])),
            // The app container restarts here and keeps running from then on.
            (_, n) if n >= 6 => Reply::Json(stats_at(&stats, n, &rates, &[APP])),
            (_, n) => Reply::Json(stats_at(&stats, n, &rates, &[])),
        }
    });
    let mut agent = Agent::spawn(&DRY_RUN, &agent_env(&server, "debug"));
    let (_, cpu, memory) = collect_values(&agent, 5);
    agent.signal("TERM");
    assert!(
        agent.wait(Duration::from_secs(2)).success(),
        "still running, exits cleanly"
    );

    // Before the restart 80 %; at the restart the app counts 0 (only the sidecar's 0.15
    // of 0.5 vCPU: 30 %); after it 80 % again. Nothing else, no zero.
    assert!(cpu.iter().all(|v| *v == 80.0 || *v == 30.0), "CPU {cpu:?}");
    assert_eq!(cpu.iter().filter(|v| **v == 30.0).count(), 1, "CPU {cpu:?}");
    assert!(memory.iter().all(|v| *v == 29.3), "memory {memory:?}");
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("WARN") && log.contains("/task/stats: answered HTTP 500 (text/plain): error"),
        "{log}"
    );
    // Three failures in a row: one warning, the rest at debug level (rate-limited).
    let warnings = log
        .lines()
        .filter(|l| l.starts_with("[WARN") && l.contains("/task/stats"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    assert!(
        log.contains("/task/stats: no answer within 500ms"),
        "the 500 ms timeout: {log}"
    );
    assert!(log.contains("/task/stats: bad JSON"), "{log}");
}

#[test]
fn a_container_it_has_not_seen_makes_it_read_the_task_again() {
    let full_task = fixture("fargate/task.json");
    let mut first: Value = serde_json::from_str(&full_task).unwrap();
    first["Containers"].as_array_mut().unwrap().truncate(1);
    let first = first.to_string();
    let stats = fixture("fargate/stats.json");
    let server = Arc::new(MetadataServer::start(move |path, n| match (path, n) {
        ("/task", 0) => Reply::Json(first.clone()),
        ("/task", _) => Reply::Json(full_task.clone()),
        _ => Reply::Json(stats_at(&stats, n, &[(APP, 0.25), (SIDECAR, 0.15)], &[])),
    }));
    let mut agent = Agent::spawn(&DRY_RUN, &agent_env(&server, "info"));
    let (_, cpu, _) = collect_values(&agent, 3);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    assert_eq!(server.requests("/task"), 2);
    assert!(
        cpu.iter().all(|v| *v == 80.0),
        "both containers counted: {cpu:?}"
    );
}

#[test]
fn an_endpoint_that_never_answers_keeps_the_agent_waiting_until_sigterm() {
    let server = MetadataServer::start(|_, _| Reply::Status(503));
    let mut agent = Agent::spawn(&DRY_RUN, &agent_env(&server, "warn"));
    agent.wait_for_log(
        &["cannot read the ECS task metadata", "HTTP 503"],
        Duration::from_secs(10),
    );
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    assert!(
        agent.stdout.try_recv().is_err(),
        "nothing published without task limits"
    );
}

#[test]
fn scope_ecs_task_outside_ecs_or_ecs_dimensions_on_the_host_exit_2() {
    for (args, needle) in [
        (vec!["--scope", "ecs-task"], "ECS_CONTAINER_METADATA_URI_V4"),
        (vec!["--ecs-dimensions"], "--ecs-dimensions"),
        (
            vec!["--scope", "host", "--ecs-dimensions"],
            "--ecs-dimensions",
        ),
        (vec!["--scope", "everything"], "everything"),
    ] {
        let out = common::agent_command(&[&DRY_RUN[..], &args].concat(), &[])
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.trim().lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
    let env = [(
        "ECS_CONTAINER_METADATA_URI_V4",
        "169.254.170.2/v4/x".to_owned(),
    )];
    let out = common::agent_command(&DRY_RUN, &env).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn scope_host_ignores_the_metadata_endpoint() {
    let server = MetadataServer::start(|_, _| Reply::Status(500));
    let mut agent = Agent::spawn(
        &[&DRY_RUN[..], &["--scope", "host"]].concat(),
        &agent_env(&server, "info"),
    );
    agent.first_line_then_stop();
    assert_eq!(server.requests("/task") + server.requests("/task/stats"), 0);
}

#[test]
fn an_empty_cluster_name_leaves_out_that_dimension_with_a_warning() {
    let mut task: Value = serde_json::from_str(&fixture("fargate/task.json")).unwrap();
    task["Cluster"] = Value::from("");
    let (task, stats) = (task.to_string(), fixture("fargate/stats.json"));
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats_at(&stats, n, &[(APP, 0.25), (SIDECAR, 0.15)], &[])),
    });
    let mut agent = Agent::spawn(
        &[&DRY_RUN[..], &["--ecs-dimensions"]].concat(),
        &agent_env(&server, "warn"),
    );
    let (lines, _, memory) = collect_values(&agent, 2);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
    assert!(
        memory.iter().all(|v| *v == 29.3),
        "still measured: {memory:?}"
    );
    for request in &lines {
        for d in request["MetricData"].as_array().unwrap() {
            assert_eq!(
                d["Dimensions"],
                serde_json::json!([
                    {"Name": "ServiceName", "Value": "web"},
                    {"Name": "TaskDefinitionFamily", "Value": "web-api"},
                ]),
                "no empty value, which CloudWatch refuses"
            );
        }
    }
    let log = agent.rest_of_log();
    let warnings: Vec<&String> = log.iter().filter(|l| l.contains("ClusterName")).collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("must not be empty"),
        "{warnings:?}"
    );
}

#[test]
fn in_wrapper_mode_a_silent_metadata_endpoint_holds_the_command_back_at_most_5_s() {
    // A monitor must not hold its workload hostage: the command starts anyway, and its
    // status is still the agent's.
    let server = MetadataServer::start(|_, _| Reply::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}; exit 4", marker.display());
    let started = std::time::Instant::now();
    let args = [&DRY_RUN[..], &["--", "sh", "-c", &script]].concat();
    let out = common::agent_command(&args, &agent_env(&server, "warn"))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(marker.exists(), "the command ran");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(
        stderr.contains("did not answer within 5 s: starting the command anyway"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing measured without the task's limits"
    );
}

/// The Fargate stats `n` seconds on, moving at known rates: CPU as [`stats_at`], the
/// task's one interface (both containers report it: awsvpc) receiving 100,000 and
/// sending 20,000 bytes a second, and each container's own block I/O: the app reading
/// 4096 and writing 8192 bytes a second, the sidecar reading 1024.
fn task_stats_at(stats: &str, n: usize) -> String {
    let text = stats_at(stats, n, &[(APP, 0.25), (SIDECAR, 0.15)], &[]);
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let n = n as u64;
    for (id, s) in doc.as_object_mut().unwrap() {
        let eth1 = &mut s["networks"]["eth1"];
        eth1["rx_bytes"] = Value::from(1_000_000 + 100_000 * n);
        eth1["tx_bytes"] = Value::from(500_000 + 20_000 * n);
        let (read, write) = if id == APP { (4096, 8192) } else { (1024, 0) };
        s["blkio_stats"]["io_service_bytes_recursive"] = serde_json::json!([
            {"major": 202, "minor": 26368, "op": "Read", "value": 65536 + read * n},
            {"major": 202, "minor": 26368, "op": "Write", "value": write * n},
            {"major": 202, "minor": 26368, "op": "Total", "value": 65536 + (read + write) * n},
        ]);
    }
    doc.to_string()
}

/// The Fargate task document; from its second reading on, the app container has been
/// restarted once by its restart policy and the sidecar has stopped with exit code 3.
fn task_read(task: &str, n: usize) -> String {
    let mut doc: Value = serde_json::from_str(task).unwrap();
    for c in doc["Containers"].as_array_mut().unwrap() {
        if c["Name"] == "app" {
            c["RestartCount"] = Value::from(u64::from(n > 0));
        } else if n > 0 {
            c["KnownStatus"] = Value::from("STOPPED");
            c["ExitCode"] = Value::from(3);
        }
    }
    doc.to_string()
}

/// `Minimum`, `Maximum` and `Sum` of `metric` with exactly these dimensions, read back
/// through the API over the two hours around now.
async fn read_back(
    server: &TestServer,
    metric: &str,
    dimensions: &[(&str, &str)],
) -> (f64, f64, f64) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = common::unix_now() as i64;
    let mut request = server
        .client()
        .get_metric_statistics()
        .namespace("ECS/Groups")
        .metric_name(metric)
        .start_time(DateTime::from_secs(now - 3600))
        .end_time(DateTime::from_secs(now + 3600))
        .period(7200)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .statistics(Statistic::Sum);
    for (name, value) in dimensions {
        request = request.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let stats = request.send().await.unwrap();
    let points = stats.datapoints();
    assert_eq!(points.len(), 1, "{metric} {dimensions:?}: {points:?}");
    let p = &points[0];
    (p.minimum().unwrap(), p.maximum().unwrap(), p.sum().unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn every_task_group_reads_back_from_cloudwatch_at_the_stand_ins_known_rates() {
    let (task, stats) = (fixture("fargate/task.json"), fixture("fargate/stats.json"));
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task_read(&task, n)),
        _ => Reply::Json(task_stats_at(&stats, n)),
    });
    let cloudwatch = TestServer::start();
    let mut env = cloudwatch.agent_env();
    env.extend(agent_env(&server, "info"));
    let all = "cpu,memory,absolute,containers,network,storage,ephemeral-storage,restarts";
    let mut agent = Agent::spawn(
        &[
            "--namespace",
            "ECS/Groups",
            "-s",
            "web",
            "--period",
            "2",
            "--metrics",
            all,
            "--task-id-dimension",
        ],
        &env,
    );
    // `/task` is read again every 10 s: wait for the restart it then shows, and for
    // the window that carries it to be published.
    agent.wait_for_log(
        &["was restarted by its restart policy"],
        Duration::from_secs(20),
    );
    let log = agent.wait_for_log(&["PutMetricData"], Duration::from_secs(10));
    let published = cloudwatch.accepted_puts().len();
    common::wait_until(
        Duration::from_secs(10),
        "a window after the restart",
        || (cloudwatch.accepted_puts().len() > published).then_some(()),
    );
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
    let log = log + &agent.rest_of_log().join("\n");
    assert_eq!(
        log.matches("container metrics of the task stopped with exit code 3")
            .count(),
        1,
        "said once:\n{log}"
    );

    let task = [
        ("ServiceName", "web"),
        ("TaskId", "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f"),
    ];
    let container = |name| [task[0], task[1], ("ContainerName", name)];
    // Every value was the same rate in every sample: the minimum and maximum are it.
    let constant = |(min, max, _): (f64, f64, f64), expected: f64, what: &str| {
        assert_eq!((min, max), (expected, expected), "{what}");
    };
    // (0.25 + 0.15) vCPU × 1024 of the task's 0.5 vCPU (512 units).
    constant(
        read_back(&cloudwatch, "CpuUtilized", &task).await,
        409.6,
        "task CPU",
    );
    constant(
        read_back(&cloudwatch, "CpuReserved", &task).await,
        512.0,
        "reserved",
    );
    // The fixture's working sets: app 250 MiB, sidecar 50 MiB, of 1024 MiB.
    constant(
        read_back(&cloudwatch, "MemoryUtilized", &task).await,
        300.0,
        "memory",
    );
    constant(
        read_back(&cloudwatch, "MemoryReserved", &task).await,
        1024.0,
        "limit",
    );
    constant(
        read_back(&cloudwatch, "CpuUtilized", &container("app")).await,
        256.0,
        "app",
    );
    constant(
        read_back(&cloudwatch, "CpuUtilized", &container("metrics")).await,
        153.6,
        "sidecar",
    );
    constant(
        read_back(&cloudwatch, "MemoryUtilized", &container("app")).await,
        250.0,
        "app",
    );
    constant(
        read_back(&cloudwatch, "MemoryUtilized", &container("metrics")).await,
        50.0,
        "sidecar",
    );
    // One interface, reported by both containers, counted once.
    constant(
        read_back(&cloudwatch, "NetworkRxBytes", &task).await,
        100_000.0,
        "rx",
    );
    constant(
        read_back(&cloudwatch, "NetworkTxBytes", &task).await,
        20_000.0,
        "tx",
    );
    // Each container's own I/O, added up: 4096 + 1024 read, 8192 written.
    constant(
        read_back(&cloudwatch, "StorageReadBytes", &task).await,
        5_120.0,
        "read",
    );
    constant(
        read_back(&cloudwatch, "StorageWriteBytes", &task).await,
        8_192.0,
        "write",
    );
    // The fixture's EphemeralStorageMetrics: 261 of 20496 MiB, as GiB (4 digits).
    constant(
        read_back(&cloudwatch, "EphemeralStorageUtilized", &task).await,
        0.2549,
        "used",
    );
    constant(
        read_back(&cloudwatch, "EphemeralStorageReserved", &task).await,
        20.02,
        "size",
    );
    constant(
        read_back(&cloudwatch, "EphemeralStorageUtilization", &task).await,
        1.3,
        "%",
    );
    // One restart, in one window; 0 in the others.
    let (min, max, sum) = read_back(&cloudwatch, "RestartCount", &task).await;
    assert_eq!((min, max, sum), (0.0, 1.0, 1.0), "restarts");
    // Nothing went out without the TaskId, or with a container's name on a task figure.
    for put in cloudwatch.accepted_puts() {
        for d in put["MetricData"].as_array().unwrap() {
            let names: Vec<&str> = d["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["Name"].as_str().unwrap())
                .collect();
            assert_eq!(names[..2], ["ServiceName", "TaskId"], "{d}");
        }
    }
}

#[test]
fn what_the_task_cannot_give_is_said_at_the_default_log_level() {
    // An EC2 task: no EphemeralStorageMetrics; its stats list no block I/O either; its
    // worker has stopped with exit code 3.
    let (task, stats) = (fixture("ec2/task.json"), fixture("ec2/stats.json"));
    let mut task: Value = serde_json::from_str(&task).unwrap();
    for c in task["Containers"].as_array_mut().unwrap() {
        if c["Name"] == "worker" {
            c["KnownStatus"] = Value::from("STOPPED");
            c["ExitCode"] = Value::from(3);
        }
    }
    let task = task.to_string();
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats_at(&stats, n, &[(EC2_APP, 0.1)], &[])),
    });
    // No RUST_LOG: the default level.
    let env = [("ECS_CONTAINER_METADATA_URI_V4", server.uri.clone())];
    let mut agent = Agent::spawn(
        &[
            &DRY_RUN[..],
            &["--metrics", "cpu,ephemeral-storage,storage,restarts"],
        ]
        .concat(),
        &env,
    );
    let ephemeral =
        agent.wait_for_log(&["has no EphemeralStorageMetrics"], Duration::from_secs(10));
    let stopped = agent.wait_for_log(&["container worker"], Duration::from_secs(10));
    assert!(stopped.contains("stopped with exit code 3"), "{stopped}");
    assert!(
        ephemeral.contains("EphemeralStorage metrics are not sent"),
        "{ephemeral}"
    );
    let storage = agent.wait_for_log(
        &["no container of the task has block I/O"],
        Duration::from_secs(15),
    );
    assert!(
        storage.contains("StorageReadBytes and StorageWriteBytes are not sent"),
        "{storage}"
    );
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(2)).success());
}
