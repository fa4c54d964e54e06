//! Wrapper mode: `cloudwatch_metrics_agent [options] -- CMD [ARGS…]`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Agent, TestServer, agent_command, launched_agent, wait_until};
use serde_json::Value;

const DRY_RUN: [&str; 8] = [
    "--namespace",
    "Wrap/Test",
    "-s",
    "job",
    "--period",
    "1",
    "--dry-run",
    "--scope",
];

/// Dry-run arguments, host scope, then `--` and the command.
fn args<'a>(extra: &[&'a str], command: &[&'a str]) -> Vec<&'a str> {
    args_in("host", extra, command)
}

/// Dry-run arguments in `scope`, then `--` and the command.
fn args_in<'a>(scope: &'a str, extra: &[&'a str], command: &[&'a str]) -> Vec<&'a str> {
    [&DRY_RUN[..], &[scope], extra, &["--"], command].concat()
}

/// Environment reading `/proc` and `/sys/fs/cgroup` from a fixture tree, logging at info.
fn fixture_env(tree: &str) -> [(&'static str, String); 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(tree);
    [
        ("CWMA_ROOT", root.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ]
}

fn published_memory_samples(stdout: &str) -> usize {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .flat_map(|r| r["MetricData"].as_array().unwrap().clone())
        .filter(|d| d["MetricName"] == "MemoryUtilization")
        .map(|d| {
            d["Counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_f64().unwrap())
                .sum::<f64>() as usize
        })
        .sum()
}

#[test]
fn the_childs_exit_status_is_the_agents_and_its_window_is_published() {
    let out = agent_command(&args(&[], &["sh", "-c", "sleep 1.2; exit 7"]), &[])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(published_memory_samples(&stdout) >= 2, "{stdout}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_childs_status_and_its_metrics_reach_the_server() {
    let server = TestServer::start();
    let args = [
        "--namespace",
        "Wrap/Test",
        "-s",
        "job",
        "--period",
        "1",
        "--scope",
        "host",
        "--",
    ];
    let out = agent_command(
        &[&args[..], &["sh", "-c", "sleep 1.2; exit 7"]].concat(),
        &server.agent_env(),
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !server.accepted_puts().is_empty(),
        "the window was published"
    );
    assert_eq!(server.listed("Wrap/Test").await.len(), 2);
}

#[test]
fn a_child_killed_by_sigterm_makes_the_agent_exit_143() {
    let out = agent_command(&args(&[], &["sh", "-c", "kill -TERM $$"]), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(143));
}

#[test]
fn sigterm_is_forwarded_and_the_agent_waits_for_the_child_then_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo cleaned > {}; exit 3' TERM; touch {}; while :; do sleep 0.1; done",
        marker.display(),
        ready.display()
    );
    let mut agent = Agent::spawn(
        &args(&[], &["sh", "-c", &script]),
        &[("RUST_LOG", "info".into())],
    );
    wait_until(Duration::from_secs(10), "the trap to be set", || {
        ready.exists().then_some(())
    });
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(3), "the child's status");
    assert!(marker.exists(), "the child got SIGTERM and cleaned up");
    let log = agent.rest_of_log().join("\n");
    assert!(log.contains("forwarding SIGTERM"), "{log}");
    let mut stdout = String::new();
    while let Ok(line) = agent.stdout.try_recv() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    assert!(
        published_memory_samples(&stdout) >= 1,
        "metrics were flushed: {stdout}"
    );
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only a running or sleeping process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_second_sigint_or_sigterm_is_forwarded_again() {
    let dir = tempfile::tempdir().unwrap();
    let (ready, count) = (dir.path().join("ready"), dir.path().join("count"));
    // Counts the signals it gets; the second one ends it with status 5.
    let script = format!(
        "n=0; trap 'n=$((n+1)); echo $n > {count}; [ $n -ge 2 ] && exit 5' TERM INT; \
         touch {ready}; while :; do sleep 0.1; done",
        count = count.display(),
        ready = ready.display()
    );
    let mut agent = Agent::spawn(&args(&[], &["sh", "-c", &script]), &[]);
    wait_until(Duration::from_secs(10), "the trap to be set", || {
        ready.exists().then_some(())
    });
    agent.signal("TERM");
    wait_until(Duration::from_secs(5), "the first signal to arrive", || {
        (std::fs::read_to_string(&count).ok()?.trim() == "1").then_some(())
    });
    agent.signal("INT");
    assert_eq!(agent.wait(Duration::from_secs(5)).code(), Some(5));
}

#[test]
fn hup_quit_usr1_usr2_and_winch_are_forwarded_too() {
    let dir = tempfile::tempdir().unwrap();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got"));
    let names = ["HUP", "QUIT", "USR1", "USR2", "WINCH"];
    let traps: String = names
        .iter()
        .map(|n| format!("trap 'echo {n} >> {}' {n}; ", got.display()))
        .collect();
    let script = format!(
        "{traps}touch {}; while :; do sleep 0.1; done",
        ready.display()
    );
    let mut agent = Agent::spawn(&args(&[], &["sh", "-c", &script]), &[]);
    wait_until(Duration::from_secs(10), "the traps to be set", || {
        ready.exists().then_some(())
    });
    for name in names {
        agent.signal(name);
        wait_until(Duration::from_secs(5), "the child to get it", || {
            std::fs::read_to_string(&got)
                .ok()?
                .lines()
                .any(|l| l == name)
                .then_some(())
        });
    }
    agent.signal("TERM");
    assert_eq!(
        agent.wait(Duration::from_secs(5)).code(),
        Some(143),
        "still running until TERM"
    );
}

/// The parent pid of a live process.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

#[test]
fn orphaned_grandchildren_are_adopted_and_reaped_by_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("orphan.pid");
    // The inner shell exits at once, orphaning its `sleep`.
    let script = format!("sh -c 'sleep 1 & echo $! > {}'; sleep 3", pidfile.display());
    let mut agent = Agent::spawn(&args(&[], &["sh", "-c", &script]), &[]);
    let orphan: u32 = wait_until(Duration::from_secs(10), "the orphan's pid", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    // A child subreaper, not the host's init, becomes its parent.
    wait_until(
        Duration::from_secs(5),
        "the agent to adopt the orphan",
        || (parent_of(orphan)? == agent.pid()).then_some(()),
    );
    // Once it exits it is reaped: no zombie is left while the agent runs.
    wait_until(Duration::from_secs(5), "the orphan to be reaped", || {
        std::fs::metadata(format!("/proc/{orphan}"))
            .is_err()
            .then_some(())
    });
    assert_eq!(agent.wait(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn auto_scope_in_wrapper_mode_measures_the_shared_container() {
    let env = fixture_env("cgroup/v2-namespaced");
    let args = args_in("auto", &[], &["sh", "-c", "sleep 1.2"]);
    let out = agent_command(&args, &env).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scope: cgroup (auto: the cgroup has limits)"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"Values\":[50.0]"),
        "memory against the limit"
    );
}

#[test]
fn signal_group_ends_the_childs_workers_too() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("worker.pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
    let mut agent = Agent::spawn(
        &args(&["--signal-group"], &["sh", "-c", &script]),
        &[("RUST_LOG", "info".into())],
    );
    let worker: u32 = wait_until(Duration::from_secs(10), "the worker's pid", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    assert!(alive(worker));
    agent.signal("TERM");
    let status = agent.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(143), "sh was ended by SIGTERM");
    wait_until(Duration::from_secs(5), "the worker to be gone", || {
        (!alive(worker)).then_some(())
    });
}

#[test]
fn a_command_that_is_not_found_exits_127_and_one_not_executable_126() {
    let out = agent_command(&args(&[], &["no-such-command-xyz"]), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("no-such-command-xyz: command not found"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = agent_command(&args(&[], &[script.to_str().unwrap()]), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
}

/// Runs the agent wrapping a command that would create a file; returns the exit status,
/// stderr, and whether the command ran.
fn wrapped_marker(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let all = [args, &["--", "sh", "-c", &script]].concat();
    let out = agent_command(&all, env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, marker.exists())
}

#[test]
fn a_scope_that_cannot_work_exits_2_before_the_command_runs() {
    // No cgroup filesystem under this root: --scope cgroup cannot work.
    let env = fixture_env("proc-2cpu");
    let args = [&DRY_RUN[..], &["cgroup"]].concat();
    let (code, stderr, ran) = wrapped_marker(&args, &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--scope cgroup cannot work here"),
        "{stderr}"
    );
    assert!(!ran, "the command must not run");
}

#[test]
fn a_missing_region_exits_2_before_the_command_runs() {
    let args = ["--namespace", "Wrap/Test", "-s", "job", "--scope", "host"];
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
    ];
    let (code, stderr, ran) = wrapped_marker(&args, &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no AWS region"), "{stderr}");
    assert!(!ran, "the command must not run");
}

#[test]
fn conflicting_dimensions_exit_2_before_the_command_runs() {
    let args = [
        &DRY_RUN[..],
        &["host", "--dimension", "InstanceId=x", "--ec2-dimensions"],
    ]
    .concat();
    let (code, stderr, ran) = wrapped_marker(&args, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("InstanceId is given twice"), "{stderr}");
    assert!(!ran, "the command must not run");
}

/// Wrapper mode publishing with credentials from a profile's `credential_process` (a
/// script that counts its runs and hands out credentials expiring in `expires_in`
/// seconds, so that the SDK runs it again at every send when that is short), around
/// `command`; `launcher` goes before the agent. Asserts that every run of the script
/// succeeded: the SDK runs it as a child of the agent and waits for its exit status,
/// which the reaper, adopting orphans all along, must leave to it.
async fn credential_process_survives_the_reaper(
    launcher: &[&str],
    expires_in: u32,
    command: &str,
    status: i32,
) -> usize {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let script = dir.path().join("credentials.sh");
    let hand_out = r#"
expires=$(date -u -d "+$EXPIRES_IN seconds" +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version": 1, "AccessKeyId": "AKIDTEST", "SecretAccessKey": "test-secret", "Expiration": "%s"}\n' "$expires"
"#;
    let counting = format!(
        "#!/bin/sh\necho run >> {}\nEXPIRES_IN={expires_in}",
        count.display()
    );
    std::fs::write(&script, counting + hand_out).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let profile = dir.path().join("config");
    std::fs::write(
        &profile,
        format!("[default]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", server.endpoint.clone()),
        ("AWS_REGION", common::REGION.to_owned()),
        ("AWS_CONFIG_FILE", profile.display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let args = [
        "--namespace",
        "Wrap/Creds",
        "-s",
        "job",
        "--period",
        "1",
        "--scope",
        "host",
        "--",
        "sh",
        "-c",
        command,
    ];
    let out = launched_agent(launcher, &args, &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{stderr}");
    assert!(
        !stderr.contains("No child process") && !stderr.contains("ERROR"),
        "every credential_process run reached the SDK:\n{stderr}"
    );
    let runs = std::fs::read_to_string(&count)
        .unwrap_or_default()
        .lines()
        .count();
    let puts = server.accepted_puts();
    assert!(
        puts.len() >= 3,
        "a window a second while the command ran: {puts:#?}"
    );
    assert!(!server.listed("Wrap/Creds").await.is_empty());
    runs
}

#[tokio::test(flavor = "current_thread")]
async fn credential_process_children_are_not_reaped_from_under_the_sdk() {
    let runs = credential_process_survives_the_reaper(&[], 3600, "sleep 3; exit 7", 7).await;
    assert_eq!(runs, 1, "credentials resolved once, then cached");
}

/// Where tokio cannot wait through a pidfd (kernels before 5.3, older seccomp profiles)
/// it waits by SIGCHLD, which the reaper gets too, and orphans exiting all along keep
/// the reaper busy: a reaper that takes any exited child wins that race now and then.
#[tokio::test(flavor = "current_thread")]
async fn credential_process_children_survive_a_busy_reaper_without_pidfd() {
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/without_pidfd.py");
    let python = common::python();
    let orphans = "for i in $(seq 60); do (sleep 0.05 &); sleep 0.1; done; exit 7";
    let launcher = [python.to_str().unwrap(), launcher.to_str().unwrap()];
    // Credentials that are always about to expire: the script runs at every send.
    let runs = credential_process_survives_the_reaper(&launcher, 5, orphans, 7).await;
    assert!(runs >= 4, "the SDK ran the script at every send: {runs}");
}

#[test]
fn signal_group_without_a_command_is_refused() {
    let out = agent_command(&[&DRY_RUN[..], &["host", "--signal-group"]].concat(), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn as_pid_1_it_reaps_orphaned_zombies() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return common::skip(
            "as_pid_1_it_reaps_orphaned_zombies",
            "unshare --pid --fork --mount-proc is not permitted here",
        );
    }
    // Three orphans that exit after their parent; then count the zombies left in the
    // namespace and exit with that count.
    let script = "for i in 1 2 3; do sh -c 'sleep 0.2 &'; done; sleep 1.5; \
                  exit $(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)";
    let agent = env!("CARGO_BIN_EXE_cloudwatch_metrics_agent");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", agent])
        .args(args(&[], &["sh", "-c", script]))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "zombies left (exit status = their count): {stderr}"
    );
    assert!(Path::new("/proc/1").exists());
}

/// Runs `tests/harness/pty_signal_group.py MODE` with the agent and `args` on a real
/// pseudo-terminal; its JSON report.
fn on_a_terminal(mode: &str, args: &[&str], env: &[(&str, String)]) -> Value {
    let agent = env!("CARGO_BIN_EXE_cloudwatch_metrics_agent");
    common::json_report(
        Command::new(common::python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/pty_signal_group.py"))
            .arg(mode)
            .arg(agent)
            .args(args)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

/// `--signal-group` on a terminal: the command's group gets the terminal (as `tini -g`
/// gives it), so a command that reads it is not stopped by SIGTTIN, and SIGTERM then
/// ends it.
#[test]
fn signal_group_hands_the_terminal_to_the_command_and_sigterm_ends_it() {
    let args = [
        "--dry-run",
        "-n",
        "N",
        "-s",
        "w",
        "--scope",
        "host",
        "--signal-group",
    ];
    let result = on_a_terminal("sigterm", &args, &[]);
    assert_eq!(result["ready"], true, "{result}");
    assert_eq!(
        result["got_line"], true,
        "the command read the terminal (not stopped by SIGTTIN): {result}"
    );
    assert_eq!(
        result["foreground_while_running_is_agent"], false,
        "the command's group had it: {result}"
    );
    assert_eq!(result["status"], 143, "SIGTERM ended the command: {result}");
}

/// When the command ends by itself the terminal goes back to the agent's group, while
/// the agent is still flushing (to an endpoint that never answers, so that takes the
/// flush timeout). The command ends only after a window was logged, so there is data to
/// flush even when a loaded machine delays the agent's first sample.
#[test]
fn signal_group_takes_the_terminal_back_when_the_command_ends() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = [
        (
            "AWS_ENDPOINT_URL",
            format!("http://{}", silent.local_addr().unwrap()),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        (
            "RUST_LOG",
            "cloudwatch_metrics_agent::publisher=info".to_owned(),
        ),
    ];
    let args = [
        "-n",
        "N",
        "-s",
        "w",
        "--scope",
        "host",
        "--period",
        "1",
        "--signal-group",
        "--flush-timeout",
        "3",
    ];
    let result = on_a_terminal("exit", &args, &env);
    assert_eq!(result["got_line"], true, "{result}");
    assert_eq!(result["window_logged"], true, "{result}");
    assert_eq!(
        result["foreground_while_running_is_agent"], false,
        "{result}"
    );
    assert_eq!(result["command_done"], true, "{result}");
    assert_eq!(result["terminal_back"], true, "{result}");
}

/// A command writing as fast as it can to the stdout it shares with the agent: every
/// dry-run line of the agent's still arrives whole (one `write(2)` each, at most
/// `PIPE_BUF` long here), so no line of either is cut by the other.
#[test]
fn documents_arrive_whole_on_a_stdout_the_command_writes_to() {
    // Ten lines a `printf` (one write of 1,160 bytes, below PIPE_BUF): the `date` each
    // round is slow on a loaded machine, and the test needs the command writing much.
    let flood = "end=$(($(date +%s) + 3)); \
                 while [ \"$(date +%s)\" -lt \"$end\" ]; do \
                 printf 'command-output-%0100d\\n' 0 0 0 0 0 0 0 0 0 0; done";
    let out = agent_command(&args(&[], &["sh", "-c", flood]), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (documents, other): (Vec<&str>, Vec<&str>) =
        stdout.lines().partition(|l| l.contains("\"Namespace\""));
    assert!(documents.len() >= 2, "the agent wrote its lines");
    for document in &documents {
        let request: Value = serde_json::from_str(document)
            .unwrap_or_else(|e| panic!("a document was cut ({e}): {document}"));
        assert!(request["MetricData"].is_array());
    }
    assert!(other.len() > 1000, "the command wrote too: {}", other.len());
    let line = format!("command-output-{:0100}", 0);
    assert!(
        other.iter().all(|l| *l == line),
        "a command line was cut: {:?}",
        other.iter().find(|l| **l != line)
    );
}
