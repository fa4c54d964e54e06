//! The binary's command line: every bad value exits 2 with one line naming it, help and
//! version, and a dry run on a fixture `/proc` tree.

mod common;

use std::path::Path;

use common::{Agent, agent_command};
use serde_json::Value;

fn run(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let out = agent_command(args, env).output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn every_bad_value_exits_2_with_one_line_naming_it() {
    let long_ns = "n".repeat(256);
    let long_service = "s".repeat(1025);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--service", "web"], "--namespace"),
        (vec!["--namespace", "N"], "--service"),
        (vec!["--namespace", "", "-s", "web"], "empty or blank"),
        (vec!["--namespace", "  ", "-s", "web"], "empty or blank"),
        (vec!["--namespace", &long_ns, "-s", "web"], "255"),
        (vec!["--namespace", "bad!ns", "-s", "web"], "bad!ns"),
        (vec!["--namespace", "AWS/EC2", "-s", "web"], "AWS/EC2"),
        (vec!["--namespace", "N", "-s", " "], "empty or blank"),
        (vec!["--namespace", "N", "-s", &long_service], "1024"),
        (
            vec!["--namespace", "N", "-s", "w", "--period", "0"],
            "\"0\"",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--period", "-5"],
            "\"-5\"",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--period", "abc"],
            "\"abc\"",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--period", "86401"],
            "\"86401\"",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--aggregation", "mean"],
            "'mean'",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--flush-timeout", "0"],
            "--flush-timeout",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--endpoint-url", "localhost"],
            "localhost",
        ),
        (
            vec!["--namespace", "N", "-s", "w", "--no-such-flag"],
            "--no-such-flag",
        ),
    ];
    for (args, needle) in cases {
        let (code, stdout, stderr) = run(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should name {needle:?}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_values_from_the_environment_exit_2_too() {
    let env = [
        ("CWMA_NAMESPACE", "N".to_owned()),
        ("CWMA_SERVICE", "web".to_owned()),
        ("CWMA_PERIOD", "0".to_owned()),
    ];
    let (code, _, stderr) = run(&[], &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--period \"0\""), "{stderr}");
}

#[test]
fn help_describes_every_flag_with_its_environment_variable() {
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for needle in [
        "--namespace",
        "CWMA_NAMESPACE",
        "--service",
        "--service-name",
        "CWMA_SERVICE",
        "--period",
        "CWMA_PERIOD",
        "--dry-run",
        "--dryrun",
        "CWMA_DRY_RUN",
        "--region",
        "--endpoint-url",
        "--aggregation",
        "median-max",
        "--flush-timeout",
        "--scope",
        "CWMA_SCOPE",
        "--metrics",
        "--ecs-dimensions",
        "--buffer-size",
        "--retry-max-backoff",
        "--request-timeout",
        "--output",
        "CWMA_OUTPUT",
        "--storage-resolution",
        "--dimension",
        "CWMA_DIMENSIONS",
        "--ec2-dimensions",
        "--signal-group",
        "--compat",
        "CWMA_COMPAT",
        "--send-delay",
        "CWMA_SEND_DELAY",
        "--send-every",
        "CWMA_SEND_EVERY",
        "--version",
    ] {
        assert!(stdout.contains(needle), "--help lacks {needle}:\n{stdout}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let (code, stdout, _) = run(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        format!("cloudwatch_metrics_agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn dry_run_on_a_fixture_tree_reports_the_fixture_memory_and_no_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-2cpu");
    let env = [
        ("CWMA_ROOT", root.display().to_string()),
        ("CWMA_DRY_RUN", "true".to_owned()),
    ];
    let mut agent = Agent::spawn(&["--namespace", "N", "-s", "web", "--period", "1"], &env);
    let line = agent.first_line_then_stop();
    // Without RUST_LOG only errors are logged, and there are none.
    assert_eq!(agent.rest_of_log(), Vec::<String>::new());
    let request: Value = serde_json::from_str(&line).unwrap();
    let data = request["MetricData"].as_array().unwrap();
    // The fixture's counters never move, so there is no CPU delta to report.
    assert_eq!(data.len(), 1, "{line}");
    assert_eq!(data[0]["MetricName"], "MemoryUtilization");
    assert_eq!(data[0]["Values"], serde_json::json!([25.0]));
}

#[test]
fn median_max_dry_run_sends_value_and_max_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-2cpu");
    let env = [("CWMA_ROOT", root.display().to_string())];
    let args = [
        "--namespace",
        "N",
        "-s",
        "web",
        "--period",
        "1",
        "-d",
        "--aggregation",
        "median-max",
    ];
    let mut agent = Agent::spawn(&args, &env);
    let line = agent.first_line_then_stop();
    let request: Value = serde_json::from_str(&line).unwrap();
    let got: Vec<(String, f64)> = request["MetricData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["MetricName"].as_str().unwrap().to_owned(),
                d["Value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("MemoryUtilization".to_owned(), 25.0),
            ("MaxMemoryUtilization".to_owned(), 25.0)
        ]
    );
}
