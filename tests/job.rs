//! Job metrics (`--metrics …,job`): a wrapped command's run, how it ended and what it
//! used, published once in the final window, checked against what the test measured.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::cgroup::{TestGroup, is_root};
use common::{Agent, TestServer, agent_command, launched_agent};
use serde_json::Value;

const NAMESPACE: &str = "Test/Job";
const JOB_METRICS: [&str; 5] = [
    "JobDuration",
    "JobFailed",
    "JobStopped",
    "JobPeakMemory",
    "JobCPUTime",
];

/// Publishing arguments for `service`, host scope, period 1, job metrics on.
fn job_args<'a>(service: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let options = [
        "--namespace",
        NAMESPACE,
        "-s",
        service,
        "--period",
        "1",
        "--scope",
        "host",
        "--metrics",
        "cpu,memory,job",
        "--",
    ];
    [&options[..], command].concat()
}

/// Every datum the server accepted for `service`: name, timestamp, value, unit.
fn datums_of(server: &TestServer, service: &str) -> Vec<Value> {
    server
        .accepted_puts()
        .iter()
        .flat_map(|p| p["MetricData"].as_array().unwrap().clone())
        .filter(|d| {
            d["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|dim| dim["Name"] == "ServiceName" && dim["Value"] == service)
        })
        .collect()
}

/// The job metrics among `datums`, each checked to be there once at most and in the
/// last window (the latest timestamp of all), with its unit.
fn job_values(datums: &[Value]) -> BTreeMap<String, f64> {
    let last = datums
        .iter()
        .map(|d| d["Timestamp"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let mut values = BTreeMap::new();
    for d in datums {
        let name = d["MetricName"].as_str().unwrap();
        if !JOB_METRICS.contains(&name) {
            continue;
        }
        assert_eq!(
            d["Timestamp"].as_f64(),
            Some(last),
            "in the final window: {d}"
        );
        let unit = match name {
            "JobDuration" | "JobCPUTime" => "Seconds",
            "JobPeakMemory" => "Bytes",
            _ => "Count",
        };
        assert_eq!(d["Unit"], unit, "{d}");
        let value = d["Value"]
            .as_f64()
            .unwrap_or_else(|| panic!("one value: {d}"));
        assert!(
            values.insert(name.to_owned(), value).is_none(),
            "{name} published once: {datums:#?}"
        );
    }
    values
}

/// `sh -c` that notes the time at its start and just before it ends (or kills itself)
/// in `times`, running `body` in between, then runs `end`.
fn timed(times: &Path, body: &str, end: &str) -> String {
    let t = times.display();
    format!("date +%s.%N > {t}; {body}; date +%s.%N >> {t}; {end}")
}

/// The seconds between the two times `timed` wrote.
fn measured(times: &Path) -> f64 {
    let text = std::fs::read_to_string(times).unwrap();
    let t: Vec<f64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    t[1] - t[0]
}

/// Runs the agent to its end: its status and stderr.
fn run_agent(args: &[&str], env: &[(&str, String)]) -> (ExitStatus, String) {
    let out = agent_command(args, env).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn each_run_publishes_how_it_ended_and_how_long_it_took_once_in_its_final_window() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(("RUST_LOG", "info".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    // (service, body, end, status, JobFailed)
    let cases = [
        ("ok", "sleep 0.5", "exit 0", 0, 0.0),
        ("three", "sleep 0.5", "exit 3", 3, 1.0),
        ("killed", "sleep 0.3", "kill -9 $$", 137, 1.0),
        ("short", "sleep 0.1", "exit 0", 0, 0.0),
        ("periods", "sleep 2.5", "exit 0", 0, 0.0),
    ];
    for (service, body, end, status, failed) in cases {
        let times = dir.path().join(service);
        let script = timed(&times, body, end);
        let (got, log) = run_agent(&job_args(service, &["sh", "-c", &script]), &env);
        assert_eq!(got.code(), Some(status), "{service}: {log}");
        let said = if status == 137 {
            "the command was killed by SIGKILL (status 137) after ".to_owned()
        } else {
            format!("the command exited with status {status} after ")
        };
        assert_eq!(
            log.matches(&said).count(),
            1,
            "{service}: its status said once: {log}"
        );
        let datums = datums_of(&server, service);
        let values = job_values(&datums);
        assert_eq!(
            values.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "JobCPUTime",
                "JobDuration",
                "JobFailed",
                "JobPeakMemory",
                "JobStopped"
            ],
            "{service}"
        );
        assert_eq!(values["JobFailed"], failed, "{service}");
        assert_eq!(values["JobStopped"], 0.0, "{service}");
        // From spawn to exit: a little more than the command's own span (a shell's
        // start and end), never less.
        let span = measured(&times);
        let duration = values["JobDuration"];
        assert!(
            duration >= span - 0.001 && duration <= span + 0.2,
            "{service}: JobDuration {duration} for a run the command timed at {span}"
        );
        assert!(values["JobPeakMemory"] > 0.0, "{service}");
        // The samples so far go with it: one per second, the first at the start.
        let memory = datums
            .iter()
            .filter(|d| d["MetricName"] == "MemoryUtilization");
        if service == "periods" {
            assert!(memory.count() >= 2, "{service}: samples of each window");
        }
    }
    // Read back through the API: one run, one failure, summed over the hour.
    let failed = server
        .statistics_around_now(NAMESPACE, "JobFailed", "three")
        .await;
    assert_eq!(failed.sample_count(), Some(1.0));
    assert_eq!(failed.maximum(), Some(1.0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_run_the_agent_stopped_is_stopped_not_failed() {
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(("RUST_LOG", "info".to_owned()));
    let started = Instant::now();
    let mut agent = Agent::spawn(&job_args("stopped", &["sleep", "30"]), &env);
    agent.wait_for_log(&["started sleep as pid"], Duration::from_secs(10));
    let running = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(10));
    let whole = started.elapsed();
    assert_eq!(status.code(), Some(143));
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("the command was killed by SIGTERM (status 143) after ")
            && log.contains("stopped by the signal the agent passed on"),
        "{log}"
    );
    let values = job_values(&datums_of(&server, "stopped"));
    assert_eq!(values.get("JobStopped"), Some(&1.0));
    assert_eq!(
        values.get("JobFailed"),
        None,
        "neither failed nor succeeded"
    );
    let duration = values["JobDuration"];
    assert!(
        duration >= 0.3 && duration <= (whole - running).as_secs_f64(),
        "JobDuration {duration}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_stop_sent_to_the_agent_and_the_command_together_is_still_a_stop() {
    // systemd's default KillMode and Ctrl-C in a terminal signal every process of the
    // unit or group at once: the command may be gone before the agent has taken in its
    // own SIGTERM. Each run is its own process group here (setsid), signalled whole.
    let server = TestServer::start();
    let mut env = server.agent_env();
    env.push(("RUST_LOG", "info".to_owned()));
    for (i, signal) in ["TERM", "INT", "TERM", "INT", "TERM"].iter().enumerate() {
        let service = format!("together-{i}");
        let mut agent = Agent::spawn_via(&["setsid"], &job_args(&service, &["sleep", "30"]), &env);
        agent.wait_for_log(&["started sleep as pid"], Duration::from_secs(10));
        let group = format!("-{}", agent.pid());
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()
            .unwrap();
        assert!(status.success());
        let status = agent.wait(Duration::from_secs(10));
        assert!(matches!(status.code(), Some(130 | 143)), "{status:?}");
        let values = job_values(&datums_of(&server, &service));
        assert_eq!(
            (values.get("JobStopped"), values.get("JobFailed")),
            (Some(&1.0), None),
            "SIG{signal} to the whole group, run {i}: {:?}",
            agent.rest_of_log()
        );
    }
}

/// A command that allocates and touches `mib` MiB, holds it briefly and exits.
fn allocating(mib: u32) -> Vec<String> {
    let python = common::python().display().to_string();
    let code = format!("import time; b = b'x' * ({mib} << 20); time.sleep(0.2)");
    vec![python, "-c".into(), code]
}

/// The job metrics in the dry-run requests of `stdout`.
fn dry_run_job_values(stdout: &str) -> BTreeMap<String, f64> {
    let datums: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .flat_map(|r| r["MetricData"].as_array().unwrap().clone())
        .map(|mut d| {
            // Dry-run timestamps are RFC 3339; order them as the server's numbers.
            let t = d["Timestamp"].as_str().unwrap().to_owned();
            d["Timestamp"] =
                Value::from(t.replace(['-', ':', 'T', 'Z'], "").parse::<f64>().unwrap());
            d
        })
        .collect();
    job_values(&datums)
}

#[test]
fn peak_memory_is_the_cgroups_own_record_and_the_processes_peak_on_a_host() {
    const TEST: &str = "job_peak_memory";
    const MIB: u32 = 200;
    let command = allocating(MIB);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let dry_run = |scope: &'static str| {
        [
            &[
                "--namespace",
                NAMESPACE,
                "-s",
                "peak",
                "--period",
                "60",
                "--dry-run",
                "--scope",
                scope,
                "--metrics",
                "cpu,memory,job",
                "--",
            ][..],
            &command,
        ]
        .concat()
    };
    // Host scope: the largest resident set of the command's processes (ru_maxrss).
    let out = agent_command(&dry_run("host"), &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let peak = dry_run_job_values(&String::from_utf8(out.stdout).unwrap())["JobPeakMemory"];
    let allocated = f64::from(MIB << 20);
    assert!(
        peak >= allocated && peak <= allocated + f64::from(64 << 20),
        "ru_maxrss {peak} for {allocated} bytes allocated"
    );

    if !is_root() {
        common::skip(TEST, "creating cgroups needs root");
        return;
    }
    let group = match TestGroup::create(&format!("cwma-job-{}", std::process::id())) {
        Ok(group) => group,
        Err(why) => {
            common::skip(TEST, &why);
            return;
        }
    };
    let launcher = group.launcher();
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let out = launched_agent(&launcher, &dry_run("cgroup"), &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let peak = dry_run_job_values(&String::from_utf8(out.stdout).unwrap())["JobPeakMemory"];
    let recorded: f64 =
        std::fs::read_to_string(group.dir("memory").join("memory.max_usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    eprintln!("{TEST}: JobPeakMemory {peak}, max_usage_in_bytes {recorded}");
    // The agent read it when the command ended; its own flush may add a page or two.
    assert!(
        peak >= allocated && peak <= recorded && recorded - peak <= f64::from(2 << 20),
        "JobPeakMemory {peak}, the group's max_usage_in_bytes {recorded}"
    );
}

#[test]
fn cpu_time_is_what_a_busy_loop_used_and_emf_carries_the_job_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let used = dir.path().join("used");
    // Busy for a second of its own CPU time, then say how much the process used in all.
    let code = format!(
        "import time\nwhile time.process_time() < 1.0: pass\nopen({:?}, 'w').write(str(time.process_time()))",
        used.display().to_string()
    );
    let python = common::python().display().to_string();
    let args = [
        "--namespace",
        NAMESPACE,
        "-s",
        "busy",
        "--period",
        "60",
        "--output",
        "emf",
        "--scope",
        "host",
        "--metrics",
        "cpu,job",
        "--",
        &python,
        "-c",
        &code,
    ];
    let out = agent_command(&args, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let documents: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an EMF document"))
        .collect();
    let with_job: Vec<&Value> = documents
        .iter()
        .filter(|d| d.get("JobCPUTime").is_some())
        .collect();
    assert_eq!(with_job.len(), 1, "once: {stdout}");
    let document = with_job[0];
    assert!(
        std::ptr::eq(document, documents.last().unwrap()),
        "in the final window"
    );
    let cpu = document["JobCPUTime"].as_f64().unwrap();
    let measured: f64 = std::fs::read_to_string(&used).unwrap().parse().unwrap();
    assert!(
        (cpu - measured).abs() <= 0.05,
        "JobCPUTime {cpu}, the process measured {measured}"
    );
    let units: BTreeMap<String, String> = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_owned(),
                m["Unit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(units["JobCPUTime"], "Seconds");
    assert_eq!(units["JobPeakMemory"], "Bytes");
    assert_eq!(units["JobFailed"], "Count");
    assert_eq!(document["JobFailed"], 0.0);
}

#[test]
fn batch_dimensions_come_from_the_variables_aws_batch_sets() {
    let env = [
        ("CWMA_BATCH_DIMENSIONS", "true".to_owned()),
        ("AWS_BATCH_JQ_NAME", "nightly".to_owned()),
        ("AWS_BATCH_CE_NAME", "spot-ce".to_owned()),
    ];
    let args = [
        "--namespace",
        NAMESPACE,
        "-s",
        "batch",
        "--dry-run",
        "--scope",
        "host",
        "--metrics",
        "job",
        "--",
        "true",
    ];
    let out = agent_command(&args, &env).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let request: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dimensions = &request["MetricData"][0]["Dimensions"];
    assert_eq!(
        dimensions,
        &serde_json::json!([
            {"Name": "ServiceName", "Value": "batch"},
            {"Name": "JobQueue", "Value": "nightly"},
            {"Name": "ComputeEnvironment", "Value": "spot-ce"}
        ])
    );
    let (status, log) = run_agent(&args, &env[..1]);
    assert_eq!(status.code(), Some(2));
    assert!(
        log.starts_with("error: invalid CWMA_BATCH_DIMENSIONS")
            && log.contains("AWS_BATCH_JQ_NAME"),
        "{log}"
    );
    let bad = [
        env[0].clone(),
        ("AWS_BATCH_JQ_NAME", "a\u{1b}b".to_owned()),
        env[2].clone(),
    ];
    let (status, log) = run_agent(&args, &bad);
    assert_eq!(status.code(), Some(2));
    assert!(log.starts_with("error: invalid AWS_BATCH_JQ_NAME"), "{log}");
}

#[test]
fn a_run_that_ends_before_the_ecs_endpoint_ever_answers_is_said_to_be_lost() {
    // Nothing listens there: the command starts after the 5 s wait, ends at once, and
    // there is no task to publish its run for.
    let uri = format!("http://127.0.0.1:{}/v4/task", common::CLOSED_PORT);
    let env = [("ECS_CONTAINER_METADATA_URI_V4", uri)];
    let args = [
        "--namespace",
        NAMESPACE,
        "-s",
        "lost",
        "--dry-run",
        "--scope",
        "ecs-task",
        "--metrics",
        "cpu,job",
        "--",
        "true",
    ];
    let out = agent_command(&args, &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the command's status: {stderr}");
    assert!(out.stdout.is_empty(), "nothing published");
    assert!(
        stderr.contains("[ERROR")
            && stderr.contains("the job metrics of this run are not published"),
        "said at the default level: {stderr}"
    );
}

#[test]
fn peak_memory_in_a_cgroup_v2_scope_is_its_memory_peak() {
    // The fixture's group: 200 MiB in use now, 224 MiB at its peak (memory.peak).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup/v2-namespaced");
    let env = [
        ("CWMA_ROOT", root.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let args = [
        "--namespace",
        NAMESPACE,
        "-s",
        "v2",
        "--dry-run",
        "--scope",
        "cgroup",
        "--metrics",
        "memory,job",
        "--",
        "true",
    ];
    let out = agent_command(&args, &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let values = dry_run_job_values(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(values["JobPeakMemory"], 234_881_024.0);
    assert!(
        stderr.contains("peak memory 224.0 MiB (memory.peak)"),
        "the source named: {stderr}"
    );
}
