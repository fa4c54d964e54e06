//! The ecs-task scope against a stand-in that refreshes the task's stats at ECS's pace:
//! every 10 s, as Fargate and Managed Instances do, and every second, as EC2 does. The
//! documents are AWS's published Fargate example (`tests/fixtures/ecs/published/`), with
//! `read` moving on by the pace at each refresh and each container's CPU counter at a
//! known 0.1 vCPU. The agent must read `/task/stats` once a refresh, count each value for
//! the seconds it stands for, and say the pace.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use common::Agent;
use common::metadata::{MetadataServer, Reply};
use serde_json::Value;

const NS: i64 = 1_000_000_000;
/// Each container's CPU use: two at 0.1 vCPU of the task's 0.25 is 80 %.
const CPU_NS_PER_S: i64 = 100_000_000;
/// The example's two containers' working set, (6504448 − total_inactive_file 3088384)
/// bytes each, of the task's 512 MiB: 1.27 %.
const MEMORY_PERCENT: f64 = 1.3;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ecs/published")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// An RFC 3339 time `ns` after `text`.
fn later(text: &str, ns: i64) -> Value {
    let at = DateTime::from_str(text, Format::DateTime).unwrap();
    let nanos =
        i128::from(at.secs()) * i128::from(NS) + i128::from(at.subsec_nanos()) + i128::from(ns);
    let t = DateTime::from_secs_and_nanos(
        (nanos / i128::from(NS)) as i64,
        (nanos % i128::from(NS)) as u32,
    );
    Value::from(t.fmt(Format::DateTime).unwrap())
}

/// The endpoint, refreshing the stats every `every_secs`, and when each poll of
/// `/task/stats` and each read of `/task` came.
struct Refreshing {
    server: MetadataServer,
    polls: Arc<Mutex<Vec<Instant>>>,
    task_reads: Arc<Mutex<Vec<Instant>>>,
    every_secs: i64,
}

impl Refreshing {
    /// The example's stats entry under each of the task's containers (the published
    /// pair comes from two tasks; tests/fixtures/ecs/README.md). The first refresh is
    /// half a second after the agent's first poll, the next `every_secs` later, and so
    /// on: the agent's polls, a second apart, come half a second after a refresh.
    fn start(every_secs: i64) -> Refreshing {
        Refreshing::start_until(every_secs, i64::MAX)
    }

    /// `start`, but the stats stop being refreshed after `refreshes`.
    fn start_until(every_secs: i64, refreshes: i64) -> Refreshing {
        let last = refreshes;
        let task = fixture("fargate-task.json");
        let containers: Vec<(String, String)> =
            serde_json::from_str::<Value>(&task).unwrap()["Containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let text = |key: &str| c[key].as_str().unwrap().to_owned();
                    (text("DockerId"), text("Name"))
                })
                .collect();
        let stats: Value = serde_json::from_str(&fixture("fargate-task-stats.json")).unwrap();
        let entry = stats.as_object().unwrap().values().next().unwrap().clone();
        let polls = Arc::new(Mutex::new(Vec::new()));
        let task_reads = Arc::new(Mutex::new(Vec::new()));
        let (seen, read) = (Arc::clone(&polls), Arc::clone(&task_reads));
        let server = MetadataServer::start(move |path, _| match path {
            "/task" => {
                read.lock().unwrap().push(Instant::now());
                Reply::Json(task.clone())
            }
            _ => {
                let now = Instant::now();
                let mut polls = seen.lock().unwrap();
                let origin = *polls.first().unwrap_or(&now);
                polls.push(now);
                let since = now.duration_since(origin).as_secs_f64();
                let every = every_secs as f64;
                let refreshes = (((since + every - 0.5) / every).floor() as i64).min(last);
                Reply::Json(document(
                    &entry,
                    &containers,
                    refreshes * every_secs,
                    every_secs,
                ))
            }
        });
        Refreshing {
            server,
            polls,
            task_reads,
            every_secs,
        }
    }

    /// The agent's environment: the endpoint, and `RUST_LOG` if given.
    fn env(&self, log: Option<&str>) -> Vec<(&'static str, String)> {
        let mut env = vec![("ECS_CONTAINER_METADATA_URI_V4", self.server.uri.clone())];
        env.extend(log.map(|log| ("RUST_LOG", log.to_owned())));
        env
    }

    /// The agent in dry-run at `period` against the endpoint.
    fn agent(&self, period: u64, log: Option<&str>) -> Agent {
        self.agent_with(period, log, "cpu,memory")
    }

    /// `agent`, with these `--metrics`.
    fn agent_with(&self, period: u64, log: Option<&str>, metrics: &str) -> Agent {
        let period = period.to_string();
        Agent::spawn(
            &[
                "--namespace",
                "ECS/Pace",
                "-s",
                "web",
                "--period",
                &period,
                "--metrics",
                metrics,
                "--dry-run",
            ],
            &self.env(log),
        )
    }

    /// The reads of `/task` that came at no poll of the stats (within 0.3 s of one).
    fn task_reads_alone(&self) -> usize {
        let polls = self.polls.lock().unwrap();
        let near = |a: Instant, b: Instant| {
            a.saturating_duration_since(b)
                .max(b.saturating_duration_since(a))
                < Duration::from_millis(300)
        };
        let reads = self.task_reads.lock().unwrap();
        reads
            .iter()
            .filter(|read| !polls.iter().any(|poll| near(**read, *poll)))
            .count()
    }

    /// Polls from `skip` after the first to now, and the refreshes in that time.
    fn polls_and_refreshes_after(&self, skip: Duration) -> (usize, f64) {
        let polls = self.polls.lock().unwrap();
        let from = polls[0] + skip;
        let after = polls.iter().filter(|at| **at >= from).count();
        let refreshes = Instant::now().duration_since(from).as_secs_f64() / self.every_secs as f64;
        (after, refreshes)
    }
}

/// The example's stats `secs` seconds later, Docker's previous reading `every` before.
fn document(entry: &Value, containers: &[(String, String)], secs: i64, every: i64) -> String {
    let mut doc = serde_json::Map::new();
    for (id, name) in containers {
        let mut stats = entry.clone();
        let read = stats["read"].as_str().unwrap().to_owned();
        stats["id"] = Value::from(id.as_str());
        stats["name"] = Value::from(name.as_str());
        stats["read"] = later(&read, secs * NS);
        stats["preread"] = later(&read, (secs - every) * NS);
        let base = stats["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_i64()
            .unwrap();
        let used = base + secs * CPU_NS_PER_S;
        stats["cpu_stats"]["cpu_usage"]["total_usage"] = Value::from(used);
        stats["precpu_stats"]["cpu_usage"]["total_usage"] =
            Value::from(used - every * CPU_NS_PER_S);
        doc.insert(id.clone(), stats);
    }
    Value::Object(doc).to_string()
}

/// The window's start, in seconds since the epoch, of a dry-run line.
fn timestamp(line: &str) -> i64 {
    let request: Value = serde_json::from_str(line).unwrap();
    let text = request["MetricData"][0]["Timestamp"].as_str().unwrap();
    DateTime::from_str(text, Format::DateTime).unwrap().secs()
}

/// One window of a dry run: per metric, its values' count and mean.
#[derive(Debug)]
struct Counted {
    cpu: (f64, f64),
    memory: (f64, f64),
}

fn counted(line: &str) -> Counted {
    let request: Value = serde_json::from_str(line).unwrap();
    let of = |name: &str| {
        let datum = request["MetricData"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["MetricName"] == name)
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        let pairs: Vec<(f64, f64)> = datum["Values"]
            .as_array()
            .unwrap()
            .iter()
            .zip(datum["Counts"].as_array().unwrap())
            .map(|(v, c)| (v.as_f64().unwrap(), c.as_f64().unwrap()))
            .collect();
        let count: f64 = pairs.iter().map(|(_, c)| c).sum();
        let mean = pairs.iter().map(|(v, c)| v * c).sum::<f64>() / count;
        (count, mean)
    };
    Counted {
        cpu: of("CPUUtilization"),
        memory: of("MemoryUtilization"),
    }
}

/// Times the agent's sampling thread (its main thread) gave up the CPU to wait: one or
/// two each time it wakes.
fn wakeups(agent: &Agent) -> u64 {
    let pid = agent.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// The agent in dry-run at `period`; its first `full` whole windows (after the partial
/// one it starts in), and how often its sampling thread woke in each; then SIGTERM.
fn windows(source: &Refreshing, period: u64, full: usize, log: &str) -> (Vec<Counted>, Agent) {
    let (windows, _, agent) = windows_and_wakeups(source, period, full, log, "cpu,memory");
    (windows, agent)
}

fn windows_and_wakeups(
    source: &Refreshing,
    period: u64,
    full: usize,
    log: &str,
    metrics: &str,
) -> (Vec<Counted>, Vec<u64>, Agent) {
    let mut agent = source.agent_with(period, Some(log), metrics);
    let wait = Duration::from_secs(2 * period + 15);
    let (mut lines, mut woke) = (Vec::new(), Vec::new());
    let mut before = 0;
    while lines.len() < full + 1 {
        let line = agent
            .stdout
            .recv_timeout(wait)
            .unwrap_or_else(|_| panic!("a window within {wait:?}; log:\n{:?}", agent.log));
        let now = wakeups(&agent);
        lines.push(counted(&line));
        woke.push(now - before);
        before = now;
    }
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
    lines.remove(0);
    woke.remove(0);
    (lines, woke, agent)
}

/// Each full window counts about `period` values of CPU and of memory (a refresh found a
/// tick late may move one document's 10 into the next window), `period` on average
/// over the windows, at the stand-in's means.
fn assert_counts_add_up_to_the_period(windows: &[Counted], period: u64, pace: i64) {
    let period = period as f64;
    let slack = pace as f64;
    for w in windows {
        for (what, (count, mean), want) in
            [("CPU", w.cpu, 80.0), ("memory", w.memory, MEMORY_PERCENT)]
        {
            assert!(
                (count - period).abs() <= slack,
                "{what} counted {count} in a {period}-s window: {windows:?}"
            );
            assert!(
                (mean - want).abs() < 1e-9,
                "{what} mean {mean}, not {want}: {windows:?}"
            );
        }
    }
    for (what, total) in [
        ("CPU", windows.iter().map(|w| w.cpu.0).sum::<f64>()),
        ("memory", windows.iter().map(|w| w.memory.0).sum::<f64>()),
    ] {
        let want = period * windows.len() as f64;
        assert!(
            (total - want).abs() <= slack,
            "{what} counted {total} in {} windows of {period} s: {windows:?}",
            windows.len()
        );
    }
}

#[test]
fn stats_refreshed_every_10_s_are_read_once_a_refresh_and_each_value_counts_10_at_period_20() {
    let source = Refreshing::start(10);
    let (windows, mut agent) = windows(&source, 20, 2, "info");
    assert_counts_add_up_to_the_period(&windows, 20, 10);
    // After start-up (a poll every second until a refresh is caught within one).
    let (polls, refreshes) = source.polls_and_refreshes_after(Duration::from_secs(5));
    assert!(
        polls as f64 <= 1.2 * refreshes.ceil() && polls as f64 >= refreshes.floor() - 1.0,
        "{polls} polls for {refreshes:.1} refreshes"
    );
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("ECS refreshes task stats every 10 s here"),
        "the pace is said at start-up:\n{log}"
    );
    assert!(!log.contains("is shorter than"), "{log}");
}

#[test]
fn stats_refreshed_every_10_s_count_60_values_of_each_metric_at_period_60() {
    let source = Refreshing::start(10);
    // With ephemeral storage, whose `/task` is read every 10 s.
    let metrics = "cpu,memory,ephemeral-storage";
    let (windows, woke, _) = windows_and_wakeups(&source, 60, 1, "error", metrics);
    assert_counts_add_up_to_the_period(&windows, 60, 10);
    // `/task` is read with the stats, costing no wakeup of its own: alone only at start.
    assert!(source.task_reads.lock().unwrap().len() >= 6);
    assert_eq!(source.task_reads_alone(), 1, "only the read at start-up");
    // The ticks between refreshes are slept through: about two waits for each of the
    // six polls and one for the tick that closes the window, where a wakeup every
    // second would be 60 or more.
    assert!(
        woke[0] < 30,
        "the sampling thread woke {} times in a minute",
        woke[0]
    );
    let (polls, refreshes) = source.polls_and_refreshes_after(Duration::from_secs(5));
    assert!(
        polls as f64 <= 1.2 * refreshes.ceil(),
        "{polls} polls for {refreshes:.1} refreshes"
    );
}

#[test]
fn stats_refreshed_every_second_are_read_every_second_and_count_one_each() {
    let source = Refreshing::start(1);
    let (windows, mut agent) = windows(&source, 20, 2, "info");
    assert_counts_add_up_to_the_period(&windows, 20, 1);
    let (polls, seconds) = source.polls_and_refreshes_after(Duration::ZERO);
    assert!(
        (polls as f64 - seconds).abs() <= 0.1 * seconds + 2.0,
        "{polls} polls in {seconds:.1} s"
    );
    let log = agent.rest_of_log().join("\n");
    assert!(
        log.contains("ECS refreshes task stats every second here"),
        "{log}"
    );
}

#[test]
fn a_period_shorter_than_the_pace_is_warned_of_at_the_default_level_and_by_check() {
    let source = Refreshing::start(10);
    // No RUST_LOG: the default level.
    let mut agent = source.agent(2, None);
    let warning = agent.wait_for_log(
        &["--period 2 is shorter than the 10 s"],
        Duration::from_secs(10),
    );
    assert!(
        warning.contains("4 of every 5 windows will have no CPU or memory"),
        "{warning}"
    );
    assert!(
        warning.contains("choose --period 10 or a multiple of it"),
        "{warning}"
    );
    // What it says happens: after start-up, one window in five has a refresh's values
    // (counted 10), the others none (a dry run prints no empty window).
    let mut refreshes = Vec::new();
    while refreshes.len() < 2 {
        let line = agent
            .stdout
            .recv_timeout(Duration::from_secs(15))
            .expect("a window");
        if counted(&line).cpu.0 == 10.0 {
            refreshes.push(timestamp(&line));
        } else {
            assert!(refreshes.is_empty(), "CPU between refreshes: {line}");
        }
    }
    assert_eq!(refreshes[1] - refreshes[0], 10, "{refreshes:?}");
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
    let log = agent.rest_of_log();
    assert_eq!(
        log.iter().filter(|l| l.contains("is shorter than")).count(),
        1,
        "said once: {log:#?}"
    );

    for (period, warned) in [("2", true), ("20", false)] {
        let mut check = Agent::spawn(
            &[
                "check",
                "--namespace",
                "ECS/Pace",
                "-s",
                "web",
                "--period",
                period,
                "--dry-run",
            ],
            &source.env(None),
        );
        assert!(check.wait(Duration::from_secs(30)).success());
        let out: Vec<String> = check.stdout.iter().collect();
        let said = out
            .iter()
            .any(|l| l.starts_with("ok    sample: ECS refreshes task stats every 10 s here"));
        assert!(said, "{out:#?}");
        let warning = out
            .iter()
            .any(|l| l.starts_with(&format!("warn  sample: --period {period} is shorter than")));
        assert_eq!(warning, warned, "{out:#?}");
        // check prints it; its log does not say it again.
        let stderr: Vec<String> = check.stderr.iter().collect();
        assert!(
            !stderr.iter().any(|l| l.contains("is shorter than")),
            "{stderr:#?}"
        );
    }
}

#[test]
fn stats_that_stop_being_refreshed_are_said_at_the_default_level() {
    // Refreshed twice, then never again: nothing is measured from then on, and after
    // three refreshes' time that lasts, it is said (and again at most every 10 minutes).
    let source = Refreshing::start_until(10, 2);
    let mut agent = source.agent(10, None);
    let line = agent.wait_for_log(
        &[
            "no sample could be taken",
            "ECS has not refreshed the task's stats for",
        ],
        Duration::from_secs(150),
    );
    assert!(line.contains("/task/stats"), "{line}");
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
}
