//! The ecs-task scope: the agent binary against a stand-in task metadata endpoint v4
//! serving documents in the documented Fargate and EC2 layouts (`tests/fixtures/ecs/`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use common::Agent;
use common::metadata::{MetadataServer, Reply};
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
    // published to 0.1. The same document again has not moved on: no further CPU value.
    assert_eq!(cpu, [0.1]);
    // (83562496 − inactive_file 48271360) bytes of the task's 3072 MiB: 1.096 %.
    assert!(memory.iter().all(|v| *v == 1.1), "memory {memory:?}");
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
