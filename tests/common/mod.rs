//! Shared by the integration tests: the agent binary in a hermetic environment, the
//! CloudWatch-compatible test server (moto behind the CBOR bridge, `tests/harness/`),
//! and bounded waits.
#![allow(dead_code)] // each test file uses its own part of this module

pub mod cgroup;
pub mod http;
pub mod metadata;
pub mod proxy;
pub mod tinyproxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use serde_json::Value;

pub const REGION: &str = "us-east-1";

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after
/// `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// For a test that needs what this machine lacks (root, a cgroup v1 hierarchy, `unshare`,
/// a system tool): under `CI=true` a failure naming the reason, since CI must run every
/// test; elsewhere the reason is printed and recorded, and `scripts/test` lists what was
/// skipped at the end of its run. The test returns right after.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run here, and CI=true requires it: {reason}");
    }
    println!("skipped: {reason}");
    let list = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    let line = format!("{test}: {reason}\n");
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&list)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = appended {
        println!("(cannot record it in {}: {e})", list.display());
    }
}

/// A pipe whose buffer is already full: whatever is written to the returned writer
/// blocks until the reader reads. It holds one page, so a test fills it in one write.
pub fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let size = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    std::io::Write::write_all(&mut writer, &vec![b'#'; size as usize]).unwrap();
    (reader, writer)
}

/// Peak resident memory of a live process, in KiB (`VmHWM` in `/proc/PID/status`).
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs `command` (a harness script that prints one JSON line as its report) to its
/// end; fails the test unless it succeeded, with what it printed.
pub fn json_report(command: &mut Command) -> Value {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

/// The dimensions of the first datum of the first request a dry run or `check --dry-run`
/// printed on `stdout`, as (name, value) pairs in order.
pub fn printed_dimensions(stdout: &str) -> Vec<(String, String)> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a printed request");
    let request: Value = serde_json::from_str(line).unwrap();
    request["MetricData"][0]["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Name"].as_str().unwrap().to_owned(),
                d["Value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs `tests/harness/SCRIPT ARGS…` with the harness's Python and `stdin` on its
/// standard input: whether it succeeded, and what it printed on stdout.
pub fn run_harness(script: &str, args: &[&Path], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/harness")
        .join(script);
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The Python of the test harness's venv (`CWMA_TEST_PYTHON`, else `.venv/bin/python`).
pub fn python() -> PathBuf {
    let python = std::env::var_os("CWMA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        python.exists(),
        "test server venv missing at {}: run ./scripts/test, which creates it",
        python.display()
    );
    python
}

/// The test server: moto behind the CBOR↔JSON bridge, on free 127.0.0.1 ports, for as
/// long as this value lives.
pub struct TestServer {
    child: Child,
    /// Held open: the server exits when its stdin closes, so it never outlives the test.
    _stdin: ChildStdin,
    /// The bridge's URL, what the agent and the SDK talk to.
    pub endpoint: String,
    /// Every call the bridge translated, one JSON line each.
    journal: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server; panics with what to do when it cannot.
    pub fn start() -> TestServer {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/cwserver.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg("--journal")
            .arg(&journal)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the test server with {}: {e}",
                    python.display()
                )
            });
        let stdin = child.stdin.take().unwrap();
        let lines = line_reader(child.stdout.take().unwrap());
        let ready = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let status = child.try_wait().ok().flatten();
                panic!("test server did not start within 60 s (exit status {status:?})")
            });
        let ready: Value = serde_json::from_str(&ready).expect("server prints a JSON line");
        TestServer {
            child,
            _stdin: stdin,
            endpoint: ready["endpoint"].as_str().unwrap().to_owned(),
            journal,
            _dir: dir,
        }
    }

    /// Inputs of the PutMetricData calls the server accepted, oldest first.
    pub fn accepted_puts(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.journal).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("journal line is JSON"))
            .filter(|call| call["op"] == "PutMetricData" && call["status"] == 200)
            .map(|call| call["input"].clone())
            .collect()
    }

    /// Every call the server journaled, oldest first: `op`, `status`, `input`, `at`
    /// (arrival, epoch seconds), and `error` for the calls it refused.
    pub fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("journal line is JSON"))
            .collect()
    }

    /// Every call the server received, whatever it was.
    pub fn call_count(&self) -> usize {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// An SDK client for reading the data back through the real API.
    pub fn client(&self) -> aws_sdk_cloudwatch::Client {
        self.client_in(REGION)
    }

    /// The one datapoint of `SampleCount`, `Minimum` and `Maximum` that
    /// `GetMetricStatistics` returns for `metric` of `ServiceName=service` in
    /// `namespace`, over the two hours around now (one period, so all of a test's data).
    pub async fn statistics_around_now(
        &self,
        namespace: &str,
        metric: &str,
        service: &str,
    ) -> aws_sdk_cloudwatch::types::Datapoint {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, Statistic};
        let now = unix_now() as i64;
        let stats = self
            .client()
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name(metric)
            .dimensions(
                Dimension::builder()
                    .name("ServiceName")
                    .value(service)
                    .build(),
            )
            .start_time(DateTime::from_secs(now - 3600))
            .end_time(DateTime::from_secs(now + 3600))
            .period(7200)
            .statistics(Statistic::SampleCount)
            .statistics(Statistic::Minimum)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .unwrap();
        let points = stats.datapoints();
        assert_eq!(points.len(), 1, "{metric}: {points:?}");
        points[0].clone()
    }

    /// The same in another region: moto keeps each region's metrics apart.
    pub fn client_in(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                "AKIDTEST",
                "test-secret",
                None,
                None,
                "test",
            ))
            .http_client(http)
            .build();
        aws_sdk_cloudwatch::Client::from_conf(config)
    }

    /// The metrics the server lists in `namespace`, read through the real API.
    pub async fn listed(&self, namespace: &str) -> Vec<aws_sdk_cloudwatch::types::Metric> {
        let listed = self
            .client()
            .list_metrics()
            .namespace(namespace)
            .send()
            .await;
        listed.expect("ListMetrics answers").metrics().to_vec()
    }

    /// Environment for an agent that publishes here with fake credentials.
    pub fn agent_env(&self) -> Vec<(&'static str, String)> {
        self.agent_env_via(&self.endpoint)
    }

    /// `agent_env`, but reaching the server through `endpoint` (a fault proxy).
    pub fn agent_env_via(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ]
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local port nothing listens on: a connection to it is refused at once. Not a port
/// that was free a moment ago: with test binaries running side by side, another test's
/// server can take that one and leave the connection waiting (it did, in CI).
pub const CLOSED_PORT: u16 = 1;

/// Lines of `reader`, read on a thread so the test can wait on them with a deadline.
pub fn line_reader(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The agent binary, running.
pub struct Agent {
    child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

/// A command for the agent binary with an environment that holds only `env`, so no
/// AWS profile, credentials or instance metadata of the machine leak in.
pub fn agent_command(args: &[&str], env: &[(&str, String)]) -> Command {
    launched_agent(&[], args, env)
}

/// `agent_command` started through `launcher`: a program and its arguments that run the
/// agent (given as the next argument) in some condition of the test's.
pub fn launched_agent(launcher: &[&str], args: &[&str], env: &[(&str, String)]) -> Command {
    let agent = env!("CARGO_BIN_EXE_cloudwatch_metrics_agent");
    let mut cmd = match launcher.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(agent);
            cmd
        }
        None => Command::new(agent),
    };
    cmd.args(args)
        .env_clear()
        .env("AWS_CONFIG_FILE", "/nonexistent/aws/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

impl Agent {
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Agent {
        Agent::spawn_via(&[], args, env)
    }

    /// `spawn` through `launcher` (see `launched_agent`).
    pub fn spawn_via(launcher: &[&str], args: &[&str], env: &[(&str, String)]) -> Agent {
        let mut child = launched_agent(launcher, args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent binary starts");
        Agent {
            stdout: line_reader(child.stdout.take().unwrap()),
            stderr: line_reader(child.stderr.take().unwrap()),
            child,
            log: Vec::new(),
        }
    }

    /// Waits for a stderr line containing all of `needles`, keeping what it reads.
    pub fn wait_for_log(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needles:?} within {timeout:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits at most `timeout` for the agent to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_until(timeout, "the agent to exit", || child.try_wait().unwrap())
    }

    /// The first stdout line (a dry-run request or an EMF document); then SIGTERM and a
    /// clean exit within 2 s.
    pub fn first_line_then_stop(&mut self) -> String {
        let line = self
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("a line on stdout");
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(2));
        assert!(status.success(), "exit {status:?}");
        line
    }

    /// Everything left on stderr after exit.
    pub fn rest_of_log(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.log.push(line);
        }
        self.log.clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
