//! What utilization hides, measured for real on this machine and published to the test
//! server through the SDK: OOM kills in a cgroup v1 memory group with a 64 MiB limit (as
//! root), wrapper mode naming an OOM kill, and host CPU pressure under three busy loops
//! on two CPUs checked against `/proc/pressure/cpu`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cgroup::{Killed, TestGroup, is_root};
use common::{Agent, TestServer, unix_now, wait_until};

const MIB: u64 = 1 << 20;

/// One test at a time: an allocator or a busy loop of one would show in another's
/// pressure and timings.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
/// Writes 200 MiB (so it is resident, not just reserved).
const ALLOCATOR: &str = "python3 -c 'b = b\"x\" * (200 << 20)'";

/// Accepted datums of `metric` in the journal: window start → (value sum, sample count).
fn published(server: &TestServer, metric: &str) -> BTreeMap<u64, (f64, f64)> {
    let mut windows = BTreeMap::new();
    for call in server.journal() {
        if call["op"] != "PutMetricData" || call["status"] != 200 {
            continue;
        }
        for d in call["input"]["MetricData"].as_array().unwrap() {
            if d["MetricName"] != metric {
                continue;
            }
            let start = d["Timestamp"].as_f64().unwrap() as u64;
            let entry = windows.entry(start).or_insert((0.0, 0.0));
            if let Some(value) = d["Value"].as_f64() {
                *entry = (entry.0 + value, entry.1 + 1.0);
            } else {
                let values = d["Values"].as_array().unwrap();
                let counts = d["Counts"].as_array().unwrap();
                for (v, n) in values.iter().zip(counts) {
                    let (v, n) = (v.as_f64().unwrap(), n.as_f64().unwrap());
                    *entry = (entry.0 + v * n, entry.1 + n);
                }
            }
        }
    }
    windows
}

/// A 64 MiB cgroup v1 group, or why there is none (then the test is skipped, which
/// fails it under CI=true).
fn limited_group(test: &str) -> Option<TestGroup> {
    if !is_root() {
        common::skip(test, "creating cgroups needs root");
        return None;
    }
    let name = format!("cwma-{test}-{}", std::process::id());
    match TestGroup::create(&name[..name.len().min(60)]) {
        Ok(group) => {
            group.set("memory", "memory.limit_in_bytes", &(64 * MIB).to_string());
            Some(group)
        }
        Err(why) => {
            common::skip(test, &why);
            None
        }
    }
}

fn oom_kills_of(group: &TestGroup) -> u64 {
    let text = fs::read_to_string(group.dir("memory").join("memory.oom_control")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .expect("this kernel has oom_kill in memory.oom_control")
        .trim()
        .parse()
        .unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn an_oom_kill_in_the_cgroup_is_published_in_its_window_and_0_in_the_others() {
    let _serial = serial();
    const TEST: &str = "oom_kill_in_window";
    let Some(group) = limited_group(TEST) else {
        return;
    };
    let server = TestServer::start();
    let launcher = group.launcher();
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let args = [
        "--namespace",
        "Test/Oom",
        "--service",
        "oom",
        "--scope",
        "cgroup",
        "--metrics",
        "cpu,memory,oom",
        "--period",
        "2",
        "--send-delay",
        "0",
    ];
    let mut agent = Agent::spawn_via(&launcher, &args, &server.agent_env());
    wait_until(Duration::from_secs(20), "two quiet windows", || {
        (published(&server, "OOMKills").len() >= 2).then_some(())
    });

    let before = oom_kills_of(&group);
    let started = now_secs();
    let status = group
        .shell(ALLOCATOR)
        .stdin(Stdio::null())
        .status()
        .expect("sh and python3 run");
    let ended = now_secs();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the allocator is OOM-killed in 64 MiB: {status:?}"
    );
    let kills = oom_kills_of(&group) - before;
    assert!(kills >= 1, "the kernel counted the kill");

    // Two more windows after the kill, then stop.
    let after = ended as u64 + 5;
    wait_until(Duration::from_secs(20), "windows after the kill", || {
        published(&server, "OOMKills")
            .keys()
            .any(|start| *start >= after)
            .then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(10)).success());

    let windows = published(&server, "OOMKills");
    println!("OOMKills per window: {windows:?}; kill between {started:.2} and {ended:.2}");
    let with_kills: Vec<(&u64, &(f64, f64))> =
        windows.iter().filter(|(_, (sum, _))| *sum > 0.0).collect();
    assert_eq!(
        with_kills.len(),
        1,
        "one window holds the kill: {windows:?}"
    );
    let (start, (sum, datums)) = with_kills[0];
    assert_eq!(*sum, kills as f64, "the kernel's count: {windows:?}");
    assert_eq!(*datums, 1.0, "one value per window");
    // The kill happened while the allocator ran; its window overlaps that time (the
    // agent's sample after the kill may fall a second later, in the next window).
    assert!(
        (*start as f64) < ended + 1.0 && (*start + 2) as f64 > started,
        "window {start} for a kill between {started:.2} and {ended:.2}"
    );
    assert!(
        windows.len() >= 5,
        "quiet windows are sent as 0: {windows:?}"
    );
}

#[test]
fn wrapper_mode_names_an_oom_kill_publishes_it_and_exits_137() {
    let _serial = serial();
    const TEST: &str = "wrapper_oom";
    let Some(group) = limited_group(TEST) else {
        return;
    };
    let server = TestServer::start();
    let launcher = group.launcher();
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let wrapped = |command: &str| -> (Option<i32>, Vec<String>) {
        let args = [
            "--namespace",
            "Test/Oom",
            "--service",
            "wrapped",
            "--scope",
            "cgroup",
            "--metrics",
            "cpu,memory,oom",
            "--",
            "sh",
            "-c",
            command,
        ];
        let mut agent = Agent::spawn_via(&launcher, &args, &server.agent_env());
        let status = agent.wait(Duration::from_secs(30));
        let log: Vec<String> = agent.stderr.try_iter().collect();
        (status.code(), log)
    };

    // Samples first, then an allocation past the limit.
    let (code, log) = wrapped(&format!("sleep 2; exec {ALLOCATOR}"));
    assert_eq!(code, Some(137), "{log:#?}");
    let named: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("killed by the kernel's OOM killer"))
        .collect();
    assert_eq!(named.len(), 1, "{log:#?}");
    println!("{}", named[0]);
    assert!(
        named[0].contains("ERROR")
            && named[0].contains("1 OOM kill ")
            && named[0].contains("memory limit 64 MiB")
            && named[0].contains("(memory.max_usage_in_bytes)"),
        "{named:?}"
    );
    let windows = published(&server, "OOMKills");
    let total: f64 = windows.values().map(|(sum, _)| sum).sum();
    assert_eq!(total, 1.0, "the kill is published: {windows:?}");

    // A SIGKILL that is not the OOM killer's is not called one.
    let (code, log) = wrapped("sleep 2; kill -9 $$");
    assert_eq!(code, Some(137), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("OOM killer")), "{log:#?}");
}

/// `total=` of the `some` line of `/proc/pressure/cpu`, and when it was read.
fn cpu_pressure_total() -> (f64, u64) {
    let text = fs::read_to_string("/proc/pressure/cpu").unwrap();
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
        .unwrap()
        .parse()
        .unwrap();
    (now_secs(), total)
}

#[test]
fn host_cpu_pressure_rises_with_three_busy_loops_on_two_cpus_as_the_kernel_counts() {
    let _serial = serial();
    const TEST: &str = "host_cpu_pressure";
    const PERIOD: u64 = 2;
    if !std::path::Path::new("/proc/pressure/cpu").exists() {
        return common::skip(TEST, "this kernel has no /proc/pressure (PSI)");
    }
    if Command::new("taskset").arg("-V").output().is_err() {
        return common::skip(TEST, "taskset (util-linux) is needed to pin the loops");
    }
    let server = TestServer::start();
    let args = [
        "--namespace",
        "Test/Pressure",
        "--service",
        "host",
        "--scope",
        "host",
        "--metrics",
        "cpu,pressure",
        "--period",
        "2",
        "--send-delay",
        "0",
    ];
    let mut agent = Agent::spawn(&args, &server.agent_env());
    // Two whole windows before the load: the idle value.
    let first = unix_now() / PERIOD * PERIOD + PERIOD;
    wait_until(Duration::from_secs(20), "idle windows", || {
        published(&server, "CPUPressure")
            .keys()
            .any(|s| *s >= first + PERIOD)
            .then_some(())
    });
    let loops: Vec<Killed> = (0..3)
        .map(|_| {
            Killed(
                Command::new("taskset")
                    .args(["-c", "0,1", "sh", "-c", "while :; do :; done"])
                    .spawn()
                    .expect("taskset and sh run"),
            )
        })
        .collect();
    // The first whole window after the loads start has samples of the time before them.
    let loaded = unix_now() / PERIOD * PERIOD + 2 * PERIOD;
    // The kernel's counters at the bounds of three loaded windows.
    let mut bounds = Vec::new();
    for i in 0..4 {
        let bound = (loaded + i * PERIOD) as f64;
        wait_until(Duration::from_secs(10), "a window bound", || {
            (now_secs() >= bound).then_some(())
        });
        bounds.push((loaded + i * PERIOD, cpu_pressure_total()));
    }
    wait_until(Duration::from_secs(20), "the loaded windows", || {
        published(&server, "CPUPressure")
            .keys()
            .any(|s| *s >= loaded + 3 * PERIOD)
            .then_some(())
    });
    drop(loops);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(10)).success());

    let windows = published(&server, "CPUPressure");
    let mean = |start: u64| {
        let (sum, n) = windows[&start];
        sum / n
    };
    let idle = (mean(first) + mean(first + PERIOD)) / 2.0;
    println!("CPUPressure per window (sum, samples): {windows:?}; idle mean {idle:.1} %");
    for pair in bounds.windows(2) {
        let (start, (t0, total0)) = pair[0];
        let (_, (t1, total1)) = pair[1];
        let kernel = (total1 - total0) as f64 / ((t1 - t0) * 1e6) * 100.0;
        let agent = mean(start);
        println!("window {start}: agent {agent:.1} %, kernel {kernel:.1} %");
        assert!(
            (agent - kernel).abs() <= 15.0,
            "window {start}: the agent says {agent:.1} %, the kernel's counters {kernel:.1} %"
        );
        assert!(
            agent > idle + 30.0 && agent > 50.0,
            "window {start}: {agent:.1} % under load, {idle:.1} % idle"
        );
    }
}
