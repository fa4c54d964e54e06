//! `cloudwatch_metrics_agent check`: the preflight against the test server, and each
//! failure it must name (no region, no credentials, AccessDenied, unreachable endpoint).

mod common;

use std::process::ExitStatus;
use std::time::Duration;

use common::metadata::{MetadataServer, Reply};
use common::proxy::{Fault, FaultProxy};
use common::{Agent, TestServer, agent_command};

const NAMESPACE: &str = "Test/Check";

/// Runs `check` with `args` to its end: exit status and stdout, stderr lines.
fn check(args: &[&str], env: &[(&str, String)]) -> (ExitStatus, Vec<String>, Vec<String>) {
    let args = [
        &["check", "--namespace", NAMESPACE, "--service", "web"],
        args,
    ]
    .concat();
    let mut agent = Agent::spawn(&args, env);
    let status = agent.wait(Duration::from_secs(30));
    let stdout = agent.stdout.iter().collect();
    let stderr = agent.stderr.iter().collect();
    (status, stdout, stderr)
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{}", lines.join("\n")))
}

#[tokio::test(flavor = "current_thread")]
async fn check_names_its_sources_sends_one_sample_and_never_prints_secrets() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(("AWS_SESSION_TOKEN", "test-session-token".to_owned()));
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cgroup/v2-namespaced"
    );
    let (status, out, err) = check(&["--scope", "cgroup", "--root", root], &env);
    assert_eq!(status.code(), Some(0), "{out:#?} {err:#?}");
    assert_eq!(
        line(&out, "ok    region:"),
        "ok    region: us-east-1 (from AWS_REGION)"
    );
    assert!(line(&out, "ok    endpoint:").contains(&server.endpoint));
    assert!(
        line(&out, "ok    credentials:").contains("environment variables"),
        "{out:#?}"
    );
    // The sample is read in the scope asked for: the fixture's 128 of 256 MiB.
    let sample = line(&out, "ok    sample:");
    assert!(
        sample.contains("cgroup v2") && sample.contains("MemoryUtilization 50.0 %"),
        "{sample}"
    );
    assert_eq!(out.last().map(String::as_str), Some("check passed"));
    // What this configuration costs: a request a minute, two metrics.
    let cost = line(&out, "ok    cost:");
    assert!(
        cost.contains("about $1.04 a month: 43,800 PutMetricData requests ($0.44)")
            && cost.contains("2 custom metrics ($0.60")
            && cost.contains("1,000 such agents: $438.60")
            && cost.contains("list prices")
            && cost.contains("read 2026-12-02"),
        "{cost}"
    );
    for secret in ["AKIDTEST", "test-secret", "test-session-token"] {
        assert!(
            !out.iter().chain(&err).any(|l| l.contains(secret)),
            "{secret} printed"
        );
    }

    let puts = server.accepted_puts();
    assert_eq!(puts.len(), 1, "one request: {puts:#?}");
    let listed = server.listed(NAMESPACE).await;
    let mut names: Vec<&str> = listed.iter().filter_map(|m| m.metric_name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["CPUUtilization", "MemoryUtilization"]);
}

#[test]
fn without_a_region_check_says_so_and_exits_2_as_a_run_does() {
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let (status, out, _) = check(&["--scope", "host"], &env);
    let run = agent_command(
        &[
            "--namespace",
            NAMESPACE,
            "--service",
            "web",
            "--scope",
            "host",
        ],
        &env,
    )
    .output()
    .unwrap();
    assert_eq!(run.status.code(), Some(2), "a run refuses to start");
    assert_eq!(
        status.code(),
        run.status.code(),
        "check agrees with the run"
    );
    let fail = line(&out, "FAIL");
    assert!(
        fail.starts_with("FAIL  region: no AWS region") && fail.contains("AWS_REGION"),
        "{fail}"
    );
    assert!(!out.iter().any(|l| l.contains("check passed")));
}

#[test]
fn without_credentials_check_lists_what_it_tried_on_one_line_and_sends_nothing() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    let (status, out, _) = check(&["--scope", "host"], &env);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        out.len(),
        5,
        "config, region, endpoint, proxy, then the failure: {out:#?}"
    );
    let fail = &out[4];
    assert!(
        fail.starts_with("FAIL  credentials: none found")
            && fail.contains("Environment")
            && fail.contains("Ec2InstanceMetadata")
            && fail.contains("AWS_PROFILE"),
        "{fail}"
    );
    assert_eq!(server.call_count(), 0);
}

#[test]
fn access_denied_is_named_with_the_permission_to_grant() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Deny);
    let env = server.agent_env_via(&proxy.url());
    let (status, out, _) = check(&["--scope", "host"], &env);
    assert_eq!(status.code(), Some(1));
    let fail = line(&out, "FAIL");
    assert!(
        fail.starts_with("FAIL  send: not allowed")
            && fail.contains("AccessDenied")
            && fail.contains("cloudwatch:PutMetricData")
            && fail.contains(NAMESPACE),
        "{fail}"
    );
    assert_eq!(proxy.faulted_requests(), 1, "one request, no retries");
}

#[test]
fn an_unreachable_endpoint_is_named() {
    // Nothing listens there: every attempt fails to connect.
    let port = common::CLOSED_PORT;
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
    ];
    let (status, out, _) = check(&["--scope", "host", "--request-timeout", "3"], &env);
    assert_eq!(status.code(), Some(1));
    let fail = line(&out, "FAIL");
    assert!(
        fail.starts_with("FAIL  send:")
            && fail.contains("could not be reached")
            && fail.contains("Connection refused"),
        "{fail}"
    );
}

#[test]
fn dry_run_check_needs_no_aws_and_prints_the_request_instead() {
    let (status, out, _) = check(&["--dry-run", "--scope", "host"], &[]);
    assert_eq!(status.code(), Some(0), "{out:#?}");
    assert!(line(&out, "ok    aws:").contains("not needed"));
    let request = line(&out, "{");
    let request: serde_json::Value = serde_json::from_str(request).unwrap();
    assert_eq!(request["Namespace"], NAMESPACE);
    assert!(line(&out, "ok    send:").contains("not sent"));
    let cost = line(&out, "ok    cost:");
    assert!(
        cost.contains("none for a dry run; sent with --output cloudwatch, about $")
            && cost.contains(" 43,800 PutMetricData requests"),
        "{cost}"
    );

    // EMF output: the sample is printed as an EMF document instead, and costs log data.
    let (status, out, _) = check(
        &["--output", "emf", "--scope", "host", "--period", "10"],
        &[],
    );
    assert_eq!(status.code(), Some(0), "{out:#?}");
    let doc: serde_json::Value = serde_json::from_str(line(&out, "{")).unwrap();
    assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
    let cost = line(&out, "ok    cost:");
    assert!(
        cost.contains("MB of EMF logs ingested") && !cost.contains("requests"),
        "{cost}"
    );
}

#[test]
fn check_shows_oom_kills_and_pressure_when_asked_for() {
    let args = [
        "--dry-run",
        "--scope",
        "host",
        "--metrics",
        "cpu,memory,oom,pressure",
    ];
    let (status, out, _) = check(&args, &[]);
    assert_eq!(status.code(), Some(0), "{out:#?}");
    let sample = line(&out, "ok    sample:");
    for shown in [
        "CPUUtilization ",
        "MemoryUtilization ",
        "OOMKills 0 in the last second",
        "CPUPressure ",
        "MemoryPressure ",
        "IOPressure ",
    ] {
        assert!(sample.contains(shown), "{shown}: {sample}");
    }
    assert!(!sample.contains("not measured"), "{sample}");
    // The request sends them too, and the cost counts their metrics.
    let request = line(&out, "{");
    assert!(request.contains("\"OOMKills\"") && request.contains("\"Unit\":\"Count\""));
    assert!(
        line(&out, "ok    cost:").contains(" 6 custom metrics"),
        "{out:#?}"
    );
    // Without them, the sample line is what it was.
    let (_, out, _) = check(&["--dry-run", "--scope", "host"], &[]);
    assert!(
        !line(&out, "ok    sample:").contains("Pressure"),
        "{out:#?}"
    );
}

#[test]
fn check_costs_send_every_as_fewer_requests() {
    let (status, out, _) = check(
        &[
            "--dry-run",
            "--scope",
            "host",
            "--period",
            "10",
            "--send-every",
            "6",
        ],
        &[],
    );
    assert_eq!(status.code(), Some(0), "{out:#?}");
    // 262,800 windows of 10 s a month, six to a request.
    let cost = line(&out, "ok    cost:");
    assert!(
        cost.contains(" 43,800 PutMetricData requests ($0.44)"),
        "{cost}"
    );
}

#[test]
fn check_takes_a_command_without_running_it_and_refuses_bad_input_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let (status, out, err) = check(
        &["--dry-run", "--scope", "host", "--", "sh", "-c", &touch],
        &[],
    );
    assert_eq!(status.code(), Some(0), "{out:#?} {err:#?}");
    assert!(!ran.exists(), "check never runs the command");
    assert!(out.iter().all(|l| !l.starts_with("ok    job:")), "{out:#?}");

    let (status, _, err) = check(&["--dry-run", "--metrics", "cpu,job"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(
        err.len() == 1 && err[0].contains("--metrics \"job\"") && err[0].contains("-- CMD"),
        "{err:#?}"
    );
    let (status, _, err) = check(&["--dry-run", "--period", "0"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(err.len() == 1 && err[0].contains("--period"), "{err:#?}");
}

#[test]
fn check_shows_and_prices_the_job_metrics_of_true_and_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let args = [
        "--dry-run",
        "--scope",
        "host",
        "--metrics",
        "cpu,memory,job",
        "--",
        "sh",
        "-c",
        &touch,
    ];
    let (status, out, err) = check(&args, &[]);
    assert_eq!(status.code(), Some(0), "{out:#?} {err:#?}");
    assert!(!ran.exists(), "`true` runs, not the command");
    let job = line(&out, "ok    job:");
    for shown in [
        "JobFailed 0,",
        "JobStopped 0,",
        "JobPeakMemory ",
        " MiB,",
        "JobCPUTime 0.0",
        "sh itself is not run",
    ] {
        assert!(job.contains(shown), "{shown:?} in {job}");
    }
    // `true` exits at once.
    let duration: f64 = job
        .split("JobDuration ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("{job}"));
    assert!(duration < 0.5, "{job}");
    // The printed request carries them, as a run's final window would.
    let request = out
        .iter()
        .find(|l| l.starts_with('{'))
        .expect("the request");
    let request: serde_json::Value = serde_json::from_str(request).unwrap();
    let names: Vec<&str> = request["MetricData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["MetricName"].as_str().unwrap())
        .collect();
    for name in [
        "JobDuration",
        "JobFailed",
        "JobStopped",
        "JobPeakMemory",
        "JobCPUTime",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let metrics = line(&out, "ok    metrics:");
    assert!(
        metrics.contains(
            "job 5 (billed only for the hours a run ends in: $0.06 a month for one run a day)"
        ) && metrics.contains("5 custom metrics, $1.50 a month"),
        "{metrics}"
    );
}

#[test]
fn check_keeps_the_job_metrics_of_true_out_of_cloudwatch() {
    let server = TestServer::start();
    // `job` alone: the request still tries the permission, with CPU and memory.
    let args = ["--scope", "host", "--metrics", "job", "--", "sleep", "60"];
    let (status, out, err) = check(&args, &server.agent_env());
    assert_eq!(status.code(), Some(0), "{out:#?} {err:#?}");
    let job = line(&out, "ok    job:");
    assert!(
        job.ends_with("; left out of the request, where they would count as a run of the job"),
        "{job}"
    );
    let puts = server.accepted_puts();
    assert_eq!(puts.len(), 1, "the check's one request");
    let names: Vec<&str> = puts[0]["MetricData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["MetricName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CPUUtilization", "MemoryUtilization"]);
}

#[test]
fn help_tells_of_check_and_check_help_describes_it() {
    let output = |args: &[&str]| {
        let out = common::agent_command(args, &[]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let help = output(&["--help"]);
    assert!(help.contains("cloudwatch_metrics_agent check"), "{help}");
    let check_help = output(&["check", "--help"]);
    assert!(
        check_help.contains("Preflight")
            && check_help.contains("Usage: cloudwatch_metrics_agent check [OPTIONS]")
            && check_help.contains("--namespace")
            && check_help.contains("a command after -- without running it"),
        "{check_help}"
    );
}

/// Pressure on cgroup v1 under `auto`: not fatal, but the user named it, so a run says
/// so at the default level and `check` shows a warn line (and still passes).
#[test]
fn a_named_metric_auto_cannot_measure_is_a_warn_in_check_and_an_error_in_a_run() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cgroup/v1-quota"
    );
    let env = [("AWS_EC2_METADATA_DISABLED", "true".to_owned())];
    let args = [
        "--dry-run",
        "--root",
        root,
        "--metrics",
        "cpu,memory,pressure",
    ];
    let (status, out, _) = check(&args, &env);
    assert_eq!(status.code(), Some(0), "{out:#?}");
    let warns: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("warn  sample:"))
        .collect();
    assert_eq!(warns.len(), 3, "{out:#?}");
    assert!(
        warns[0].contains("CPUPressure") && warns[0].contains("cgroup v1"),
        "{warns:#?}"
    );
    assert!(!out.iter().any(|l| l.starts_with("FAIL")), "{out:#?}");
    // The run, without RUST_LOG: the default level shows it.
    let mut agent = Agent::spawn(
        &[
            &[
                "--namespace",
                NAMESPACE,
                "--service",
                "web",
                "--period",
                "1",
            ][..],
            &args,
        ]
        .concat(),
        &env,
    );
    let line = agent.wait_for_log(&["CPUPressure cannot be measured"], Duration::from_secs(10));
    assert!(line.contains("ERROR"), "{line}");
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
}

/// `AWS_ENDPOINT_URL_CLOUDWATCH` wins over `AWS_ENDPOINT_URL` in the SDK: check names the
/// endpoint the request really goes to.
#[test]
fn check_names_the_service_specific_endpoint_it_uses() {
    let server = TestServer::start();
    let dead = common::CLOSED_PORT;
    let mut env = server.agent_env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead}")));
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", server.endpoint.clone()));
    let (status, out, _) = check(&["--scope", "host"], &env);
    assert_eq!(status.code(), Some(0), "{out:#?}");
    assert_eq!(
        line(&out, "ok    endpoint:"),
        format!(
            "ok    endpoint: {} (from AWS_ENDPOINT_URL_CLOUDWATCH or the profile's services section)",
            server.endpoint
        )
    );
    assert_eq!(server.accepted_puts().len(), 1);
}

/// The `check` example of docs/check.md is what the binary prints today: the same steps in
/// the same order, and for the same settings the same config and cost lines.
#[test]
fn docs_check_example_matches_the_binary() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/check.md")).unwrap();
    let example: Vec<&str> = page
        .split("$ cloudwatch_metrics_agent check --namespace MyCompany/WebApi --service web-api\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/check.md shows a check run")
        .lines()
        .collect();
    let server = TestServer::start();
    let mut agent = Agent::spawn(
        &[
            "check",
            "--namespace",
            "MyCompany/WebApi",
            "--service",
            "web-api",
            "--scope",
            "host",
        ],
        &server.agent_env(),
    );
    assert!(agent.wait(Duration::from_secs(30)).success());
    let out: Vec<String> = agent.stdout.iter().collect();
    let step = |l: &str| l.split(':').next().unwrap_or("").to_owned();
    assert_eq!(
        example.iter().map(|l| step(l)).collect::<Vec<_>>(),
        out.iter().map(|l| step(l)).collect::<Vec<_>>(),
        "docs/check.md:\n{example:#?}\nbinary:\n{out:#?}"
    );
    for same in ["ok    config:", "ok    cost:"] {
        assert_eq!(
            line(&out, same),
            *example.iter().find(|l| l.starts_with(same)).unwrap()
        );
    }
}

#[test]
fn check_shows_and_prices_the_task_groups_per_container_and_per_task() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecs");
    let (task, stats) = (
        std::fs::read_to_string(root.join("fargate/task.json")).unwrap(),
        std::fs::read_to_string(root.join("fargate/stats.json")).unwrap(),
    );
    let server = MetadataServer::start(move |path, _| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(stats.clone()),
    });
    let env = [("ECS_CONTAINER_METADATA_URI_V4", server.uri.clone())];
    let groups = "cpu,memory,absolute,containers,network,ephemeral-storage,restarts";
    let (status, out, _) = check(&["--dry-run", "--metrics", groups], &env);
    assert_eq!(status.code(), Some(0), "{out:#?}");
    let sample = line(&out, "ok    sample:");
    // The fixture's task: 0.5 vCPU (512 units), 300 of 1024 MiB, two containers, and
    // Fargate's 261 of 20496 MiB of ephemeral storage.
    for shown in [
        "CpuReserved 512.0 CPU units",
        "MemoryUtilized 300.0 MiB",
        "MemoryReserved 1024.0 MiB",
        "EphemeralStorageReserved 20.02 GiB",
        "RestartCount 0 in the last second",
        "ContainerName app: ",
        "ContainerName metrics: ",
    ] {
        assert!(sample.contains(shown), "{shown}: {sample}");
    }
    // What each group adds: the two containers' metrics counted per container.
    let metrics = line(&out, "ok    metrics:");
    assert!(
        metrics.contains(
            "absolute 4, containers 2 × 2 containers = 4, network 2, ephemeral-storage 3, \
             restarts 1: 14 custom metrics, $4.20 a month"
        ),
        "{metrics}"
    );
    assert!(
        line(&out, "ok    cost:").contains(" 16 custom metrics"),
        "{out:#?}"
    );
    // With a TaskId, every task has its own: said in both lines.
    let (_, out, _) = check(
        &["--dry-run", "--metrics", groups, "--task-id-dimension"],
        &env,
    );
    let metrics = line(&out, "ok    metrics:");
    assert!(
        metrics.contains("for each agent (TaskId (--task-id-dimension) differs per task)"),
        "{metrics}"
    );
    assert!(
        line(&out, "ok    cost:").contains("each agent's own: TaskId"),
        "{out:#?}"
    );
}
