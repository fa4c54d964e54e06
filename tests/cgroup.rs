//! The cgroup scope through the binary: on fixture trees of cgroup v1 and v2, and for
//! real on this machine's cgroup v1 controllers when run as root.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cgroup::{Killed, TestGroup};
use common::{Agent, line_reader};
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cgroup")
        .join(name)
        .display()
        .to_string()
}

const DRY_RUN: [&str; 7] = [
    "--namespace",
    "Cg/Test",
    "-s",
    "job",
    "--period",
    "1",
    "--dry-run",
];

/// The datums of `metric` in one dry-run line.
fn datums(line: &str, metric: &str) -> Vec<Value> {
    let request: Value = serde_json::from_str(line).unwrap();
    request["MetricData"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["MetricName"] == metric)
        .cloned()
        .collect()
}

/// Values of `metric` in one dry-run line.
fn values(line: &str, metric: &str) -> Vec<f64> {
    datums(line, metric)
        .iter()
        .flat_map(|d| d["Values"].as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn auto_picks_the_cgroup_with_limits_and_reports_memory_against_its_limit() {
    let env = [
        ("CWMA_ROOT", fixture("v2-namespaced")),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut agent = Agent::spawn(&DRY_RUN, &env);
    let line = agent.first_line_then_stop();
    assert_eq!(values(&line, "MemoryUtilization"), [50.0]);
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("scope: cgroup (auto: the cgroup has limits): cgroup v2"),
        "{log}"
    );
    assert!(log.contains("CPU limit 0.5 CPUs (CFS quota)"), "{log}");
}

#[test]
fn oom_kills_and_pressure_come_from_the_cgroups_own_files_on_v2() {
    let env = [("CWMA_ROOT", fixture("v2-namespaced"))];
    let metrics = ["--scope", "cgroup", "--metrics", "memory,oom,pressure"];
    let mut agent = Agent::spawn(&[&DRY_RUN[..], &metrics].concat(), &env);
    let line = agent.first_line_then_stop();
    // The fixture's counters do not move: no kill, no stall since the start.
    let oom = datums(&line, "OOMKills");
    assert_eq!(oom.len(), 1, "{line}");
    assert_eq!(
        (oom[0]["Value"].as_f64(), oom[0]["Unit"].as_str()),
        (Some(0.0), Some("Count"))
    );
    for metric in ["CPUPressure", "MemoryPressure", "IOPressure"] {
        assert_eq!(values(&line, metric), [0.0], "{metric}: {line}");
        assert_eq!(datums(&line, metric)[0]["Unit"], "Percent");
    }
}

/// A dry run on fixture `tree` with `--scope cgroup --metrics metrics` exits 2 with one
/// line naming `--metrics group` and saying `why`; the fixture's environment is returned
/// for the same metrics under `auto`.
fn named_refuses(tree: &str, metrics: &str, group: &str, why: &str) -> [(&'static str, String); 2] {
    let env = [
        ("CWMA_ROOT", fixture(tree)),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let named = [&DRY_RUN[..], &["--scope", "cgroup", "--metrics", metrics]].concat();
    let out = common::agent_command(&named, &env).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.trim().lines().count() == 1
            && stderr.contains(&format!("--metrics {group}"))
            && stderr.contains(why),
        "{stderr}"
    );
    env
}

#[test]
fn pressure_in_cgroup_v1_exits_2_when_the_scope_is_named_and_is_left_out_under_auto() {
    let env = named_refuses(
        "v1-quota",
        "cpu,oom,pressure",
        "pressure",
        "PSI needs cgroup v2",
    );
    let auto = [&DRY_RUN[..], &["--metrics", "cpu,oom,pressure"]].concat();
    let mut agent = Agent::spawn(&auto, &env);
    let line = agent.first_line_then_stop();
    assert_eq!(
        datums(&line, "OOMKills")[0]["Value"],
        0.0,
        "v1 memory.oom_control"
    );
    assert!(datums(&line, "CPUPressure").is_empty(), "{line}");
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("CPUPressure cannot be measured in the cgroup scope here, not sent"),
        "{log}"
    );
}

#[test]
fn storage_without_io_stat_exits_2_when_the_scope_is_named_and_is_left_out_under_auto() {
    // A cgroup v2 group whose io controller is off: no io.stat.
    let env = named_refuses(
        "v2-namespaced",
        "cpu,storage",
        "storage",
        "io.stat is missing",
    );
    let auto = [&DRY_RUN[..], &["--metrics", "cpu,memory,storage"]].concat();
    let mut agent = Agent::spawn(&auto, &env);
    let line = agent.first_line_then_stop();
    assert!(!datums(&line, "MemoryUtilization").is_empty(), "{line}");
    assert!(datums(&line, "StorageReadBytes").is_empty(), "{line}");
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("StorageReadBytes cannot be measured in the cgroup scope here, not sent"),
        "{log}"
    );
}

#[test]
fn auto_picks_the_host_without_container_or_limits() {
    let env = [
        ("CWMA_ROOT", fixture("v1-apart-unlimited")),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut agent = Agent::spawn(&DRY_RUN, &env);
    agent.first_line_then_stop();
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("scope: host") && log.contains("no cgroup limits"),
        "{log}"
    );
}

#[test]
fn auto_picks_the_cgroup_in_a_container_even_without_limits() {
    // The unlimited v1 tree, as seen from inside a Docker container.
    let tree = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fixture("v1-apart-unlimited")))
        .arg(tree.path())
        .status()
        .unwrap();
    assert!(copied.success());
    fs::write(tree.path().join(".dockerenv"), "").unwrap();
    let env = [
        ("CWMA_ROOT", tree.path().display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut agent = Agent::spawn(&DRY_RUN, &env);
    let line = agent.first_line_then_stop();
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("scope: cgroup (auto: running in a container)"),
        "{log}"
    );
    assert_eq!(
        values(&line, "MemoryUtilization"),
        [10.0],
        "the cgroup's working set of host memory"
    );
}

#[test]
fn scope_cgroup_without_a_cgroup_filesystem_exits_2() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-2cpu");
    let env = [("CWMA_ROOT", root.display().to_string())];
    let out = common::agent_command(&[&DRY_RUN[..], &["--scope", "cgroup"]].concat(), &env)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--scope cgroup") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn real_cgroup_v1_quota_and_limit_are_measured() {
    const TEST: &str = "real_cgroup_v1_quota_and_limit_are_measured";
    if !common::cgroup::is_root() {
        return common::skip(TEST, "creating cgroups needs root");
    }
    let group = match TestGroup::create(&format!("cwma-test-{}", std::process::id())) {
        Ok(group) => group,
        Err(why) => return common::skip(TEST, &why),
    };
    group.set("cpu", "cpu.cfs_period_us", "100000");
    group.set("cpu", "cpu.cfs_quota_us", "50000");
    group.set(
        "memory",
        "memory.limit_in_bytes",
        &(256u64 << 20).to_string(),
    );

    // 128 MiB written (so resident), then a busy loop that wants a whole CPU.
    let load = "python3 -c 'b = b\"x\" * (128 << 20)\nwhile True: pass'";
    let _load = Killed(
        group
            .shell(load)
            .stdin(Stdio::null())
            .spawn()
            .expect("sh and python3 run"),
    );
    let agent_cmd = format!(
        "{} {} --scope cgroup --metrics cpu,memory,throttling",
        env!("CARGO_BIN_EXE_cloudwatch_metrics_agent"),
        DRY_RUN.join(" ")
    );
    let mut agent = group.shell(&agent_cmd);
    agent
        .env_clear()
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut agent = Killed(agent.spawn().expect("the agent starts"));
    let lines = line_reader(agent.0.stdout.take().unwrap());
    let log = line_reader(agent.0.stderr.take().unwrap());

    let (mut cpu, mut memory, mut throttled) = (Vec::new(), Vec::new(), Vec::new());
    while cpu.len() < 8 {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                panic!(
                    "no dry-run line; log: {:?}",
                    log.try_iter().collect::<Vec<_>>()
                )
            });
        cpu.extend(values(&line, "CPUUtilization"));
        memory.extend(values(&line, "MemoryUtilization"));
        throttled.extend(values(&line, "CPUThrottledPercent"));
    }
    let log: Vec<String> = log.try_iter().collect();
    println!(
        "real cgroup v1, 0.5 CPU and 256 MiB: CPU {cpu:?}, memory {memory:?}, throttled {throttled:?}"
    );
    // The first seconds include python allocating; judge the settled ones.
    let settled = &cpu[cpu.len() - 4..];
    assert!(
        settled.iter().all(|c| (90.0..=110.0).contains(c)),
        "CPU {cpu:?}, log {log:?}"
    );
    let last_memory = memory[memory.len() - 1];
    assert!(
        (40.0..=60.0).contains(&last_memory),
        "memory {memory:?}, log {log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("CPU limit 0.5 CPUs (CFS quota)")),
        "{log:?}"
    );
}
