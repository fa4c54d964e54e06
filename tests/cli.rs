//! The binary's command line: every bad value exits 2 with one line naming it, help and
//! version, and a dry run on a fixture `/proc` tree.

mod common;

use std::path::Path;

use clap::ValueEnum;
use cloudwatch_metrics_agent::cli::MetricArg;
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
    // The variable the user set, not a flag never typed.
    assert!(stderr.contains("CWMA_PERIOD \"0\""), "{stderr}");
    assert!(!stderr.contains("--period"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Typed as a flag, the flag is named.
    let (code, _, stderr) = run(&["-n", "N", "-s", "w", "--period", "0"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--period \"0\""), "{stderr}");
}

/// Environment files and Kubernetes manifests spell booleans every way.
#[test]
fn boolean_variables_take_1_0_yes_no_on_off_in_any_case() {
    fn base<'a>(variable: &'a str, value: &str) -> Vec<(&'a str, String)> {
        vec![
            ("CWMA_NAMESPACE", "N".to_owned()),
            ("CWMA_SERVICE", "web".to_owned()),
            ("CWMA_SCOPE", "host".to_owned()),
            ("CWMA_ROOT", fixture("proc-2cpu")),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            (variable, value.to_owned()),
        ]
    }
    // On: `check` previews instead of sending (it would need AWS otherwise).
    for value in ["1", "yes", "TRUE", "On", "y"] {
        let (code, stdout, stderr) = run(&["check"], &base("CWMA_DRY_RUN", value));
        assert_eq!(code, Some(0), "CWMA_DRY_RUN={value}: {stdout}{stderr}");
        assert!(stdout.contains("not sent (dry run)"), "{value}: {stdout}");
    }
    // Off: a real run is asked for, which needs a region.
    for value in ["0", "no", "FALSE", "off", "n"] {
        let (code, stdout, stderr) = run(&["check"], &base("CWMA_DRY_RUN", value));
        assert!(
            stdout.contains("region") && !stdout.contains("dry run"),
            "CWMA_DRY_RUN={value}: {code:?} {stdout}{stderr}"
        );
    }
    for variable in [
        "CWMA_EC2_DIMENSIONS",
        "CWMA_ECS_DIMENSIONS",
        "CWMA_SIGNAL_GROUP",
    ] {
        let mut env = base(variable, "0");
        env.push(("CWMA_DRY_RUN", "1".to_owned()));
        let (code, stdout, stderr) = run(&["check"], &env);
        assert_eq!(code, Some(0), "{variable}=0: {stdout}{stderr}");
    }
    let (code, _, stderr) = run(&["check"], &base("CWMA_DRY_RUN", "maybe"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("CWMA_DRY_RUN")
            && stderr.contains("'maybe'")
            && stderr.contains("yes or no"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The send settings pace PutMetricData; a fleet-wide value must not stop an EMF or a
/// dry-run agent (as docs/delivery.md says).
#[test]
fn send_settings_are_ignored_by_emf_and_dry_run() {
    for output in ["emf", "dry-run"] {
        let env = [
            ("CWMA_SEND_EVERY", "5".to_owned()),
            ("CWMA_SEND_DELAY", "30".to_owned()),
        ];
        let args = ["--period", "5", "--output", output];
        let (code, stdout, stderr) = check_on_fixture(&args, &env);
        assert_eq!(code, Some(0), "{output}: {stdout}{stderr}");
    }
    // Sent to CloudWatch they still count, and are checked.
    let (code, _, stderr) = run(
        &["-n", "N", "-s", "w", "--period", "5"],
        &[("CWMA_SEND_DELAY", "30".to_owned())],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("CWMA_SEND_DELAY \"30\""), "{stderr}");
}

/// CloudWatch allows commas in dimension values: one `--dimension` is one pair; only the
/// variable holds a list, with `\,` for a comma.
#[test]
fn a_dimension_flag_keeps_its_commas_and_the_variable_escapes_them() {
    let dimensions = |args: &[&str], env: &[(&str, String)]| -> Vec<(String, String)> {
        let (code, stdout, stderr) = check_on_fixture(&[&["--dry-run"][..], args].concat(), env);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        common::printed_dimensions(&stdout)
    };
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        dimensions(
            &["--dimension", "Owners=alice,bob", "--dimension", "Env=prod"],
            &[]
        ),
        [
            pair("ServiceName", "w"),
            pair("Owners", "alice,bob"),
            pair("Env", "prod")
        ]
    );
    let env = [("CWMA_DIMENSIONS", "Owners=alice\\,bob, Env=prod".to_owned())];
    assert_eq!(
        dimensions(&[], &env),
        [
            pair("ServiceName", "w"),
            pair("Owners", "alice,bob"),
            pair("Env", "prod")
        ]
    );
}

/// In an EMF document dimensions, metrics and `_aws` are members of one object.
#[test]
fn emf_refuses_dimension_names_that_would_overwrite_a_member() {
    for (args, env, named) in [
        (
            vec!["--dimension", "_aws=x"],
            vec![],
            "--dimension \"_aws\"",
        ),
        (
            vec!["--dimension", "CPUUtilization=x"],
            vec![],
            "--dimension \"CPUUtilization\"",
        ),
        (
            vec![
                "--aggregation",
                "median-max",
                "--dimension",
                "MaxMemoryUtilization=x",
            ],
            vec![],
            "\"MaxMemoryUtilization\"",
        ),
        (
            vec![],
            vec![("CWMA_DIMENSIONS", "Env=prod,_aws=x".to_owned())],
            "CWMA_DIMENSIONS \"_aws\"",
        ),
    ] {
        for mode in [
            &["-n", "N", "-s", "w", "--output", "emf"][..],
            &["check", "-n", "N", "-s", "w", "--output", "emf"],
        ] {
            let (code, _, stderr) = run(&[mode, &args[..]].concat(), &env);
            assert_eq!(code, Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(named) && stderr.contains("EMF"), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
    // Sent with PutMetricData the same names are only dimensions.
    let (code, stdout, stderr) = check_on_fixture(&["--dry-run", "--dimension", "_aws=x"], &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// A buffer smaller than one send cycle lost data while CloudWatch was healthy.
#[test]
fn a_buffer_below_one_send_cycle_is_refused_with_the_minimum() {
    for (args, minimum) in [
        (vec!["--buffer-size", "1"], "6"),
        (
            vec!["--period", "1", "--send-every", "5", "--buffer-size", "4"],
            "44",
        ),
    ] {
        let (code, _, stderr) = run(&[&["-n", "N", "-s", "w"][..], &args[..]].concat(), &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--buffer-size") && stderr.contains(&format!("at least {minimum}")),
            "{stderr}"
        );
    }
    // EMF and dry-run keep no retry queue: the setting does not apply.
    let (code, stdout, stderr) = check_on_fixture(&["--dry-run", "--buffer-size", "1"], &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// `check` in the host scope of the 2-CPU fixture tree with `args` and `env` (no
/// instance metadata): status, stdout, stderr.
fn check_on_fixture(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let root = fixture("proc-2cpu");
    let base = [
        "check", "-n", "N", "-s", "w", "--scope", "host", "--root", &root,
    ];
    let mut env = env.to_vec();
    env.push(("AWS_EC2_METADATA_DISABLED", "true".to_owned()));
    run(&[&base[..], args].concat(), &env)
}

/// A fixture tree under `tests/fixtures`.
fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
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
    // Every name `--metrics` takes is listed in its description.
    let metrics = stdout
        .split("--metrics <LIST>")
        .nth(1)
        .and_then(|rest| rest.split("\n  -").next())
        .expect("--metrics is described");
    for metric in MetricArg::value_variants() {
        let name = metric.to_possible_value().unwrap().get_name().to_owned();
        assert!(
            metrics.contains(&name),
            "--metrics help lacks {name}: {metrics}"
        );
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
