//! Broken and hostile inputs: endpoints that answer too much, nonsense or nothing; error
//! pages that echo credentials; settings that cannot work. Each test is bounded in time;
//! memory is read from `/proc/PID/status` while the agent runs.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::http::{read_message, write_filler};
use common::metadata::{MetadataServer, Reply};
use common::proxy::{Fault, FaultProxy};
use common::{Agent, TestServer, agent_command, vm_hwm_kib, wait_until};

/// Peak memory allowed to an agent fed with hundreds of megabytes: its own few MB, and
/// the capped answer.
const MAX_PEAK_KIB: u64 = 40 << 10;

fn fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ecs")
        .join(path);
    std::fs::read_to_string(path).unwrap()
}

const DRY_RUN: [&str; 7] = [
    "--namespace",
    "Hostile/Test",
    "-s",
    "web",
    "--period",
    "1",
    "--dry-run",
];

/// `RUST_LOG` set to `log`, or not set at all (the default level) for "".
fn log_env(log: &str) -> Vec<(&'static str, String)> {
    if log.is_empty() {
        Vec::new()
    } else {
        vec![("RUST_LOG", log.to_owned())]
    }
}

fn ecs_env(server: &MetadataServer, log: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("ECS_CONTAINER_METADATA_URI_V4", server.uri.clone())];
    env.extend(log_env(log));
    env
}

/// The agent in the ECS scope of a task whose `/task/stats` answers with `stats`.
fn ecs_agent(
    stats: impl Fn(usize) -> Reply + Send + Sync + 'static,
    log: &str,
) -> (Agent, MetadataServer) {
    let task = fixture("fargate/task.json");
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => stats(n),
    });
    let agent = Agent::spawn(&DRY_RUN, &ecs_env(&server, log));
    (agent, server)
}

#[test]
fn a_200_mb_metadata_answer_fails_the_sample_and_costs_no_memory() {
    let (mut agent, _server) = ecs_agent(|_| Reply::Huge(200 << 20), "warn");
    let line = agent.wait_for_log(&["/task/stats"], Duration::from_secs(10));
    assert!(line.contains("response larger than 1 MiB"), "{line}");
    let peak = vm_hwm_kib(agent.pid());
    assert!(peak < MAX_PEAK_KIB, "peak {peak} KiB");
}

#[test]
fn an_endless_metadata_answer_is_cut_at_the_cap() {
    let (mut agent, _server) = ecs_agent(|_| Reply::Endless, "warn");
    let line = agent.wait_for_log(&["/task/stats"], Duration::from_secs(10));
    assert!(
        line.contains("response larger than 1 MiB") || line.contains("no answer within"),
        "{line}"
    );
    let peak = vm_hwm_kib(agent.pid());
    assert!(peak < MAX_PEAK_KIB, "peak {peak} KiB");
}

#[test]
fn a_huge_string_in_the_metadata_is_not_logged_whole() {
    // Within the cap, but of the wrong type: serde's error quotes the string, whose
    // escapes decode to terminal control sequences.
    let huge = format!("{{\"x\": \"{}\"}}", "\\u001b[31m".repeat(100_000));
    let (mut agent, _server) = ecs_agent(move |_| Reply::Json(huge.clone()), "debug");
    let line = agent.wait_for_log(&["/task/stats", "bad JSON"], Duration::from_secs(10));
    assert!(line.len() < 1_000, "{} bytes", line.len());
    assert!(!line.contains('\u{1b}'), "control characters escaped");
    assert!(line.contains("more bytes)"), "{line}");
    agent.signal("TERM");
    agent.wait(Duration::from_secs(3));
    let log = agent.rest_of_log();
    let total: usize = log.iter().map(String::len).sum();
    assert!(total < 100_000, "{total} bytes of log");
}

#[test]
fn a_container_the_task_never_lists_rereads_the_task_at_most_once_a_minute() {
    let stats = fixture("fargate/stats.json");
    let mut doc: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let app = doc["8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111"].clone();
    doc["0000000000000000000000000000000000-unknown"] = app;
    let stats = doc.to_string();
    let (mut agent, server) = ecs_agent(move |_| Reply::Json(stats.clone()), "info");
    wait_until(Duration::from_secs(10), "five polls of the stats", || {
        (server.requests("/task/stats") >= 5).then_some(())
    });
    agent.signal("TERM");
    agent.wait(Duration::from_secs(3));
    assert_eq!(server.requests("/task"), 2, "at start, then once");
    let said = agent
        .rest_of_log()
        .iter()
        .filter(|l| l.contains("a container appeared"))
        .count();
    assert_eq!(said, 1, "said once");
}

#[test]
fn a_metadata_endpoint_answering_nonsense_is_an_error_at_the_default_level_within_35_s() {
    let (mut agent, _server) = ecs_agent(|_| Reply::Json("[1, 2, 3]".into()), "");
    let started = Instant::now();
    let line = agent.wait_for_log(
        &["ERROR", "no sample could be taken"],
        Duration::from_secs(40),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "not before 30 s"
    );
    assert!(
        line.contains("(since 20") && line.contains("bad JSON"),
        "{line}"
    );
}

/// The agent publishing through `proxy` with fake credentials that look real, so that
/// redaction has something to find.
fn publishing_agent(server: &TestServer, proxy: &FaultProxy, log: &str) -> Agent {
    let mut env = server.agent_env_via(&proxy.url());
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    env.extend([
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_SESSION_TOKEN", session_token()),
    ]);
    env.extend(log_env(log));
    let args = [
        "--namespace",
        "Hostile/Test",
        "-s",
        "web",
        "--period",
        "1",
        "--scope",
        "host",
        "--request-timeout",
        "2",
        "--retry-max-backoff",
        "1",
    ];
    Agent::spawn(&args, &env)
}

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn session_token() -> String {
    format!("IQoJb3JpZ2luX2VjE{}", "Az9+/".repeat(40))
}

#[test]
fn an_error_page_that_echoes_the_request_never_puts_credentials_in_the_log() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Echo);
    let mut agent = publishing_agent(&server, &proxy, "debug");
    agent.wait_for_log(
        &["sending", "failed", "answered HTTP 400"],
        Duration::from_secs(15),
    );
    agent.signal("TERM");
    agent.wait(Duration::from_secs(8));
    let log = agent.rest_of_log().join("\n");
    assert!(proxy.faulted_requests() >= 1);
    assert!(
        log.contains("<redacted>"),
        "the echo was logged, redacted:\n{log}"
    );
    for secret in [ACCESS_KEY, SECRET_KEY, &session_token()[..40]] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("Signature=") && !l.contains("Signature=<redacted>")),
        "{log}"
    );
}

#[test]
fn a_200_mb_cloudwatch_answer_fails_the_request_and_costs_no_memory() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Huge(200 << 20));
    let mut agent = publishing_agent(&server, &proxy, "warn");
    let line = agent.wait_for_log(&["sending", "failed"], Duration::from_secs(15));
    assert!(line.contains("response larger than 64 KiB"), "{line}");
    let peak = vm_hwm_kib(agent.pid());
    assert!(peak < MAX_PEAK_KIB, "peak {peak} KiB");
}

#[test]
fn cloudwatch_failing_for_long_is_an_error_at_the_default_level_within_35_s() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(Fault::Status(500));
    let started = Instant::now();
    let mut agent = publishing_agent(&server, &proxy, "");
    let line = agent.wait_for_log(
        &["ERROR", "nothing has been delivered to CloudWatch for"],
        Duration::from_secs(40),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "not before 30 s"
    );
    assert!(
        line.contains("answered HTTP 500 (text/plain)") && line.contains("(since 20"),
        "says what fails and since when: {line}"
    );
    let earlier: Vec<&String> = agent.log.iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        earlier.len(),
        1,
        "nothing else at the default level: {earlier:#?}"
    );
}

/// `check` through `proxy` set to `fault`: its FAIL line.
fn check_fails_with(fault: Fault) -> String {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.set(fault);
    let args = [
        "check",
        "--namespace",
        "Hostile/Test",
        "-s",
        "web",
        "--scope",
        "host",
        "--request-timeout",
        "2",
    ];
    let out = agent_command(&args, &server.agent_env_via(&proxy.url()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned()
}

#[test]
fn check_says_what_came_back_a_status_a_page_or_nothing() {
    let fail = check_fails_with(Fault::Status(500));
    assert_eq!(
        fail,
        "FAIL  send: CloudWatch answered HTTP 500 (text/plain), not a CloudWatch answer: \
         service unavailable"
    );
    let page = "<?xml version=\"1.0\"?><Error><Code>Forbidden</Code></Error>";
    let fail = check_fails_with(Fault::Answer(403, "text/xml", page));
    assert!(
        fail.starts_with("FAIL  send: not allowed: answered HTTP 403 (text/xml)")
            && fail.contains("<Code>Forbidden</Code>"),
        "{fail}"
    );
    let fail = check_fails_with(Fault::Hang);
    assert!(
        fail.contains("CloudWatch did not answer within 2 s"),
        "{fail}"
    );
}

/// An IMDSv2 stand-in whose token answer is `bytes` long.
fn huge_imds(bytes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                while read_message(&mut reader).is_some() {
                    let head = format!(
                        "HTTP/1.1 500 Error\r\nContent-Type: text/plain\r\nContent-Length: {bytes}\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || !write_filler(&mut stream, bytes, b'e')
                    {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

#[test]
fn a_50_mb_instance_metadata_error_is_one_short_warning() {
    let endpoint = huge_imds(50 << 20);
    let env = [
        ("AWS_EC2_METADATA_DISABLED", "false".to_owned()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let args = [&DRY_RUN[..], &["--scope", "host", "--ec2-dimensions"]].concat();
    let mut agent = Agent::spawn(&args, &env);
    let line = agent.wait_for_log(&["--ec2-dimensions"], Duration::from_secs(10));
    assert!(line.len() < 1_000, "{} bytes", line.len());
    assert!(line.contains("response larger than 64 KiB"), "{line}");
    let peak = vm_hwm_kib(agent.pid());
    assert!(peak < MAX_PEAK_KIB, "peak {peak} KiB");
    agent.first_line_then_stop();
}

#[test]
fn a_broken_metadata_url_from_ecs_exits_2_without_showing_a_password() {
    for uri in [
        "http://",
        "http://[::1",
        "http://169.254.170.2/v4/abc ",
        "169.254.170.2/v4/abc",
        "http://user:hunter2@/v4",
    ] {
        // Under `auto` too: ECS set it, so the setup is broken.
        let env = [("ECS_CONTAINER_METADATA_URI_V4", uri.to_owned())];
        let out = agent_command(&DRY_RUN, &env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{uri:?}: {stderr}");
        assert!(
            stderr.contains("ECS_CONTAINER_METADATA_URI_V4") && stderr.trim().lines().count() == 1,
            "{uri:?}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn control_characters_in_settings_exit_2_and_lists_from_the_environment_are_trimmed() {
    // A CR from an env file written on Windows, an ANSI escape in a dimension.
    for (name, value) in [
        ("CWMA_SERVICE", "web\r"),
        ("CWMA_DIMENSIONS", "Env=prod\u{1b}[31m"),
    ] {
        let mut env = vec![("CWMA_SERVICE", "web".to_owned())];
        env.push((name, value.to_owned()));
        let args = ["--namespace", "Hostile/Test", "--dry-run"];
        let out = agent_command(&args, &env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            !stderr.contains('\r') && !stderr.contains('\u{1b}'),
            "{stderr:?}"
        );
    }
    let env = [
        ("CWMA_DIMENSIONS", "A=1, B=2".to_owned()),
        ("CWMA_METRICS", "cpu, memory".to_owned()),
    ];
    let mut agent = Agent::spawn(&[&DRY_RUN[..], &["--scope", "host"]].concat(), &env);
    let line = agent.first_line_then_stop();
    assert!(line.contains(r#"{"Name":"B","Value":"2"}"#), "{line}");
}

#[test]
fn durations_below_a_millisecond_exit_2() {
    for flag in [
        "--flush-timeout",
        "--request-timeout",
        "--retry-max-backoff",
    ] {
        let out = agent_command(&[&DRY_RUN[..], &[flag, "1e-300"]].concat(), &[])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
    }
}

#[test]
fn a_metadata_endpoint_that_never_answers_the_task_is_an_error_at_the_default_level() {
    let server = MetadataServer::start(|_, _| Reply::Status(503));
    let mut agent = Agent::spawn(&DRY_RUN, &ecs_env(&server, ""));
    let line = agent.wait_for_log(
        &["ERROR", "no sample could be taken"],
        Duration::from_secs(40),
    );
    assert!(
        line.contains("ECS task metadata cannot be read") && line.contains("answered HTTP 503"),
        "{line}"
    );
}
