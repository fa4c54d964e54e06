//! Nothing the agent writes can freeze it: stdout (and stderr) that nobody reads, and a
//! stdout whose reader is gone, for EMF, dry-run and wrapper mode. Each test is bounded
//! in time; the blocked pipes are real pipes whose one page is already full.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent_command, full_pipe, line_reader, wait_until};

const FLUSH_TIMEOUT: &str = "1";

/// The agent at period 1 in the host scope with `output` and `extra` arguments.
fn args<'a>(output: &'a [&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let base = [
        "--namespace",
        "Stdout/Test",
        "-s",
        "web",
        "--period",
        "1",
        "--scope",
        "host",
        "--flush-timeout",
        FLUSH_TIMEOUT,
    ];
    [&base[..], output, extra].concat()
}

/// Waits at most `timeout` for `child` to exit.
fn exit_within(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    wait_until(timeout, "the agent to exit", || child.try_wait().unwrap())
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// With stdout full and unread: samples go on (seen at debug level on stderr), SIGTERM is
/// handled, and the agent exits 1 within the flush timeout plus a second, saying how
/// many of its `unit` were not written.
fn blocked_stdout_never_stops_the_agent(output: &[&str], unit: &str) {
    let (_reader, writer) = full_pipe();
    let mut child = agent_command(&args(output, &[]), &[("RUST_LOG", "debug".into())])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = line_reader(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let next = |what: &str, seen: &mut Vec<String>| loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {what:?} on stderr; log:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains(what) {
            return line;
        }
    };
    // Documents pile up behind the full pipe...
    next("waiting to be written", &mut seen);
    // ...and sampling goes on regardless.
    for _ in 0..3 {
        next("sample at", &mut seen);
    }
    let backlog = next("waiting to be written", &mut seen);
    assert!(
        !backlog.contains("stdout: 1 "),
        "a growing backlog: {backlog}"
    );
    kill(&child, "TERM");
    let sent = Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(4));
    let took = sent.elapsed();
    let rest: Vec<String> = log.try_iter().collect();
    seen.extend(rest);
    let log = seen.join("\n");
    assert!(
        took < Duration::from_secs(2),
        "exit {took:?} after SIGTERM: over --flush-timeout 1 s + 1 s\n{log}"
    );
    assert_eq!(status.code(), Some(1), "{log}");
    let lost = log
        .lines()
        .find(|l| l.contains("were not written to stdout"))
        .unwrap_or_else(|| panic!("says what was not written:\n{log}"));
    assert!(lost.starts_with("error: ") && lost.contains(unit), "{lost}");
    let n: u64 = lost.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n >= 2, "{lost}");
}

#[test]
fn emf_with_a_stdout_nobody_reads_keeps_sampling_and_exits_within_the_flush_timeout() {
    blocked_stdout_never_stops_the_agent(&["--output", "emf"], "documents");
}

#[test]
fn dry_run_with_a_stdout_nobody_reads_keeps_sampling_and_exits_within_the_flush_timeout() {
    blocked_stdout_never_stops_the_agent(&["--dry-run"], "lines");
}

#[test]
fn stdout_and_stderr_both_unread_still_let_sigterm_end_the_agent() {
    // What a log driver that stopped reading does to a container: both streams stall.
    let (_out_reader, out) = full_pipe();
    let (_err_reader, err) = full_pipe();
    let mut child = agent_command(
        &args(&["--output", "emf"], &[]),
        &[("RUST_LOG", "debug".into())],
    )
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err)
    .spawn()
    .unwrap();
    // The agent is up and its writers are stuck once /proc shows it sampling: its
    // timerfd is there, and a few seconds pass with both pipes full.
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "the agent to sample", || {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).ok()?;
        let timer = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("timerfd"))
        });
        (timer && started.elapsed() > Duration::from_secs(3)).then_some(())
    });
    kill(&child, "TERM");
    let sent = Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(5));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?} after SIGTERM",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(1), "documents were left unwritten");
}

#[test]
fn wrapper_mode_with_blocked_stdout_forwards_sigterm_and_exits_with_the_commands_status() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'exit 3' TERM; touch {}; while :; do sleep 0.1; done",
        ready.display()
    );
    let (_reader, writer) = full_pipe();
    let command = ["--", "sh", "-c", &script];
    let mut child = agent_command(
        &args(&["--output", "emf"], &command),
        &[("RUST_LOG", "debug".into())],
    )
    .stdin(Stdio::null())
    .stdout(writer)
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = line_reader(child.stderr.take().unwrap());
    let mut log = Vec::new();
    wait_until(Duration::from_secs(10), "the command to start", || {
        ready.exists().then_some(())
    });
    // Windows pile up behind the full pipe.
    wait_until(Duration::from_secs(10), "a backlog on stdout", || {
        log.extend(lines.try_iter());
        log.iter()
            .any(|l: &String| l.contains("waiting to be written"))
            .then_some(())
    });
    kill(&child, "TERM");
    let sent = Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(5));
    let took = sent.elapsed();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        log.push(line);
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        status.code(),
        Some(3),
        "the command's status:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("forwarding SIGTERM")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("were not written to stdout")),
        "the loss is still reported:\n{}",
        log.join("\n")
    );
}

#[test]
fn dry_run_into_head_exits_0_within_2_s() {
    let mut agent = agent_command(&args(&["--dry-run"], &[]), &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = Command::new("head")
        .arg("-1")
        .stdin(agent.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(head.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("{\"Namespace\":\"Stdout/Test\""),
        "{first}"
    );
    assert!(head.wait().unwrap().success());
    let head_done = Instant::now();
    let status = exit_within(&mut agent, Duration::from_secs(5));
    assert!(
        head_done.elapsed() < Duration::from_secs(2),
        "{:?} after head exited",
        head_done.elapsed()
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "a preview cut short is not an error");
}

#[test]
fn dry_run_into_head_exits_at_once_even_with_a_long_period() {
    // Noticed from the pipe itself, not at the next write a minute later.
    let args = [
        "--namespace",
        "N",
        "-s",
        "web",
        "--scope",
        "host",
        "--dry-run",
    ];
    let mut agent = agent_command(&args, &[("RUST_LOG", "debug".into())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = line_reader(agent.stderr.take().unwrap());
    wait_until(Duration::from_secs(10), "the first sample", || {
        log.try_iter()
            .any(|l| l.contains("sample at"))
            .then_some(())
    });
    let closed = Instant::now();
    drop(agent.stdout.take());
    let status = exit_within(&mut agent, Duration::from_secs(5));
    let took = closed.elapsed();
    let rest: Vec<String> = log.try_iter().collect();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(status.code(), Some(0), "{rest:#?}");
}

#[test]
fn emf_into_a_closed_pipe_exits_1_saying_the_metrics_have_nowhere_to_go() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = agent_command(&args(&["--output", "emf"], &[]), &[])
        .stdin(Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: stdout is closed: the documents have nowhere to go"
    );
}

/// `>&-`: Rust's runtime puts /dev/null on a closed descriptor before `main`, where EMF
/// documents vanished with status 0; a dry run must not pass silently either (unlike
/// `| head`, nobody chose to stop reading).
#[test]
fn emf_and_dry_run_with_stdout_closed_at_start_exit_1_in_one_line() {
    for (output, unit) in [("emf", "documents"), ("dry-run", "lines")] {
        let started = Instant::now();
        let out = common::launched_agent(
            &["sh", "-c", "exec \"$0\" \"$@\" >&-"],
            &args(&["--output", output], &[]),
            &[],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{output}: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!("error: stdout is closed: the {unit} have nowhere to go")
        );
        assert!(started.elapsed() < Duration::from_secs(10), "at once");
    }
}

#[test]
fn wrapper_mode_with_a_closed_stdout_reports_once_and_exits_with_the_commands_status() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let command = ["--", "sh", "-c", "sleep 2; exit 5"];
    let started = Instant::now();
    let out = agent_command(&args(&["--output", "emf"], &command), &[])
        .stdin(Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited for the command"
    );
    let reports: Vec<&str> = stderr.lines().collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(
        reports[0].contains("stdout cannot be written") && reports[0].contains("keeps running"),
        "{stderr}"
    );
}

#[test]
fn docs_say_what_happens_when_stdout_is_slow_or_closed() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/outputs.md"))
            .unwrap();
    let section = page
        .split("## When stdout is slow or closed")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a docs/outputs.md section on a slow or closed stdout");
    for needle in [
        "dry-run",
        "emf",
        "wrapper",
        "--flush-timeout",
        "head",
        ">&-",
        "PIPE_BUF",
        "exec app >&2",
    ] {
        assert!(section.contains(needle), "the section covers {needle}");
    }
}
