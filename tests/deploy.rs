//! The deployment files under `deploy/` parse, grant no more than the agent needs, and
//! are what the README and docs/ show.

mod common;

use std::path::{Path, PathBuf};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use common::metadata::{MetadataServer, Reply};
use serde_json::{Value, json};

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn iam_policy_allows_only_put_metric_data_in_one_namespace() {
    let policy = json("deploy/iam-policy.json");
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Action"], "cloudwatch:PutMetricData");
    assert!(s["Condition"]["StringEquals"]["cloudwatch:namespace"].is_string());
}

#[test]
fn ecs_sidecar_is_non_essential_starts_after_the_app_and_has_time_to_flush() {
    let task = json("deploy/ecs-task-definition.json");
    let containers = task["containerDefinitions"].as_array().unwrap();
    let agent = containers.iter().find(|c| c["name"] == "metrics").unwrap();
    assert_eq!(agent["essential"], false);
    assert_eq!(agent["dependsOn"][0]["containerName"], "app");
    assert!(
        agent["stopTimeout"].as_u64().unwrap() > 5,
        "longer than the flush timeout"
    );
    // Restarted on failure, not after a clean exit; nothing written; its log group created
    // where it does not exist (check_deploy.py checks these in depth, and the stack's too).
    assert_eq!(agent["restartPolicy"]["enabled"], true);
    assert_eq!(agent["restartPolicy"]["ignoredExitCodes"], json!([0]));
    assert_eq!(agent["readonlyRootFilesystem"], true);
    assert_eq!(
        agent["logConfiguration"]["options"]["awslogs-create-group"],
        "true"
    );
    let env = |name: &str| {
        agent["environment"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    let policy = json("deploy/iam-policy.json");
    let allowed = &policy["Statement"][0]["Condition"]["StringEquals"]["cloudwatch:namespace"];
    assert_eq!(
        env("CWMA_NAMESPACE").as_ref(),
        Some(allowed),
        "the policy allows its namespace"
    );
    assert!(env("CWMA_SERVICE").is_some());
}

/// Each deploy file, and the pages that show it whole: a file edited without its page (or
/// the other way round) fails here.
#[test]
fn the_docs_show_the_deploy_files_as_they_are() {
    for (path, pages) in [
        ("deploy/ecs-task-definition.json", &["docs/ecs.md"][..]),
        ("deploy/iam-policy.json", &["README.md", "docs/ecs.md"]),
        ("deploy/execution-role-policy.json", &["docs/ecs.md"]),
        (UNIT, &["docs/systemd.md"]),
        (APP_UNIT, &["docs/systemd.md"]),
        (ENV_FILE, &["docs/systemd.md"]),
    ] {
        for page in pages {
            assert!(
                read(page).contains(&read(path)),
                "{page}'s copy of {path} is out of date"
            );
        }
    }
}

/// `Key=Value` lines of a systemd unit, with their section; comments dropped.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            settings.push((section.clone(), key.to_owned(), value.to_owned()));
        } else {
            panic!("not a unit file line: {line:?}");
        }
    }
    settings
}

const UNIT: &str = "deploy/cloudwatch_metrics_agent.service";
/// The unit of an application run under the agent (wrapper mode).
const APP_UNIT: &str = "deploy/app-with-metrics.service";

/// The values of `key` in the `[Service]` section.
fn service_values<'a>(settings: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}
const ENV_FILE: &str = "deploy/cloudwatch_metrics_agent.env";

#[test]
fn systemd_unit_runs_unprivileged_in_a_read_only_system() {
    let settings = unit_settings(&read(UNIT));
    let service = |key: &str| service_values(&settings, key);
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ProtectHome", "yes"),
        ("PrivateDevices", "yes"),
        ("ExecStart", "/usr/local/bin/cloudwatch_metrics_agent"),
        ("EnvironmentFile", "/etc/cloudwatch_metrics_agent.env"),
        ("KillSignal", "SIGTERM"),
        ("RestartPreventExitStatus", "2"),
    ] {
        assert_eq!(service(key), [value], "{key}");
    }
    let stop: u64 = service("TimeoutStopSec")[0].parse().unwrap();
    assert!(stop > 5, "systemd waits longer than the 5 s flush timeout");
    // /proc/stat and /proc/meminfo are not per-process files: ProcSubset=pid hides them.
    assert!(service("ProcSubset").is_empty());
    assert!(
        service("Environment").contains(&"CWMA_SCOPE=host"),
        "a service's own cgroup holds only the agent: the host is what to measure"
    );
}

/// `systemd-analyze`, or `None` (a skip, which fails under `CI=true`) where this
/// machine has none.
fn systemd_analyze(test: &str) -> Option<&'static Path> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if analyze.exists() {
        return Some(analyze);
    }
    common::skip(
        test,
        "no systemd-analyze on this machine (Debian's package systemd)",
    );
    None
}

/// `systemd-analyze verify` of `unit` written as `name` in `dir`: its path, once systemd
/// loaded it without a word about it.
fn verify_unit(analyze: &Path, dir: &Path, name: &str, unit: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    let verify = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !stderr.contains(&*path.to_string_lossy()),
        "systemd-analyze verify {name}: {stderr}"
    );
    path
}

/// systemd itself loads the unit (with paths into this checkout) and rates its exposure.
#[test]
fn systemd_accepts_the_unit() {
    let Some(analyze) = systemd_analyze("systemd_accepts_the_unit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = read(UNIT)
        .replace(
            "/usr/local/bin/cloudwatch_metrics_agent",
            env!("CARGO_BIN_EXE_cloudwatch_metrics_agent"),
        )
        .replace(
            "/etc/cloudwatch_metrics_agent.env",
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(ENV_FILE)
                .to_string_lossy(),
        );
    let path = verify_unit(
        analyze,
        dir.path(),
        "cloudwatch_metrics_agent.service",
        &unit,
    );
    let security = std::process::Command::new(analyze)
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for"))
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd exposure level: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} (0 safest, 10 unsafe)");
}

/// The wrapper unit is the application's: its limits, no hardening that breaks a JIT
/// runtime, a stop that reaches the agent first with time for the flush; its agent
/// settings are ones the binary takes, and systemd loads it.
#[test]
fn the_wrapper_unit_has_an_applications_limits_and_settings_the_agent_takes() {
    let settings = unit_settings(&read(APP_UNIT));
    let service = |key: &str| service_values(&settings, key);
    let exec = service("ExecStart");
    let (agent, command) = exec[0]
        .split_once(" -- ")
        .expect("the agent, then -- and the application");
    assert_eq!(agent, "/usr/local/bin/cloudwatch_metrics_agent");
    for absent in [
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
        "DynamicUser",
        "RestartPreventExitStatus",
    ] {
        assert!(
            service(absent).is_empty(),
            "{absent} is the agent-only unit's"
        );
    }
    assert_eq!(service("KillMode"), ["mixed"], "SIGTERM to the agent alone");
    let stop: u64 = service("TimeoutStopSec")[0].parse().unwrap();
    assert!(
        stop >= 30,
        "the application's shutdown, then the 5 s flush: {stop}"
    );
    let tasks: u64 = service("TasksMax")[0].parse().unwrap();
    assert!(tasks >= 256, "an application's threads: {tasks}");
    assert!(service("MemoryMax")[0] != "64M");
    let mut env: Vec<(&str, String)> = service("Environment")
        .iter()
        .map(|e| e.split_once('=').unwrap())
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    assert!(
        env.contains(&("CWMA_SCOPE", "cgroup".to_owned())),
        "{env:?}"
    );
    // The unit's cgroup, with a CPU quota and a memory limit: the v1 fixture's.
    env.push((
        "CWMA_ROOT",
        repo("tests/fixtures/cgroup/v1-quota").display().to_string(),
    ));
    let args: Vec<&str> = ["check", "--dry-run", "--"]
        .into_iter()
        .chain(command.split(' '))
        .collect();
    let out = common::agent_command(&args, &env).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CPUThrottledPercent"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let Some(analyze) = systemd_analyze("the_wrapper_unit_has_an_applications_limits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = read(APP_UNIT)
        .replace(
            "/usr/local/bin/cloudwatch_metrics_agent",
            env!("CARGO_BIN_EXE_cloudwatch_metrics_agent"),
        )
        .replace(command, "/bin/sleep 1");
    verify_unit(analyze, dir.path(), "app.service", &unit);
}

/// The example env file, as systemd reads it: `KEY=VALUE` lines.
fn env_file() -> Vec<(String, String)> {
    read(ENV_FILE)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn env_file_names_only_real_settings_and_the_agent_accepts_them() {
    use clap::CommandFactory;
    let command = cloudwatch_metrics_agent::cli::Opts::command();
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let env = env_file();
    for (key, _) in &env {
        assert!(
            !key.starts_with("CWMA_") || known.contains(key),
            "{key} is not a variable the agent reads"
        );
    }
    // The unit's own Environment= comes first; the file may override it.
    let mut vars = vec![("CWMA_SCOPE".to_owned(), "host".to_owned())];
    vars.extend(env);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cloudwatch_metrics_agent"))
        .args(["check", "--dry-run"])
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(vars)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("sample: host") && stdout.contains(r#""Namespace":"MyCompany/Hosts""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"Name":"Environment","Value":"production"}"#),
        "{stdout}"
    );
}

#[test]
fn container_image_is_the_static_binary_alone_run_as_nobody() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    let final_stage = &instructions[last_from..];
    assert_eq!(final_stage[0], "FROM scratch");
    let copies: Vec<&&str> = final_stage
        .iter()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 2, "the binary and the CA bundle: {copies:?}");
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with(" /cloudwatch_metrics_agent"))
    );
    assert!(copies.iter().any(|c| c.contains("ca-certificates.crt")));
    let user = final_stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0, "not root");
    assert_eq!(
        final_stage.last(),
        Some(&r#"ENTRYPOINT ["/cloudwatch_metrics_agent"]"#)
    );
    assert!(
        dockerfile.contains("cargo zigbuild --release --locked --target \"$(cat /rust-target)\"")
    );
    // The build stage has what the build reads: without build.rs and link/ the image's
    // binary would link without its function order (~1 MB more resident memory).
    let copied: Vec<&str> = instructions[..last_from]
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| l.split_whitespace().rev().skip(1))
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "link", "src"] {
        assert!(copied.contains(&needed), "{needed} copied in: {copied:?}");
    }
    assert_eq!(
        architectures_outside_the_mapping(&dockerfile),
        Vec::<String>::new()
    );
}

/// Lines of `dockerfile` (comments aside) that name an architecture outside the one
/// `case "$TARGETARCH"` mapping from Docker's platform to Rust's target.
fn architectures_outside_the_mapping(dockerfile: &str) -> Vec<String> {
    const NAMES: [&str; 6] = ["x86_64", "amd64", "aarch64", "arm64", "x86-64", "armv8"];
    let mut in_mapping = false;
    let mut found = Vec::new();
    for line in dockerfile.lines() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        if code.contains("case \"$TARGETARCH\" in") {
            in_mapping = true;
        }
        if !in_mapping && NAMES.iter().any(|name| code.contains(name)) {
            found.push(line.to_owned());
        }
        if in_mapping && code.starts_with("esac") {
            in_mapping = false;
        }
    }
    found
}

#[test]
fn the_image_builds_for_the_platform_asked_for() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("FROM --platform=$BUILDPLATFORM "));
    assert!(dockerfile.contains("ARG TARGETARCH"));
    let mapping: Vec<&str> = dockerfile
        .lines()
        .skip_while(|l| !l.contains("case \"$TARGETARCH\" in"))
        .take_while(|l| !l.trim_start().starts_with("esac"))
        .collect();
    for (docker, rust) in [
        ("amd64)", "x86_64-unknown-linux-musl"),
        ("arm64)", "aarch64-unknown-linux-musl"),
    ] {
        assert!(
            mapping
                .iter()
                .any(|l| l.contains(docker) && l.contains(rust)),
            "{docker} → {rust} in {mapping:#?}"
        );
    }
    assert!(
        mapping
            .iter()
            .any(|l| l.trim_start().starts_with("*)") && l.contains("exit 1"))
    );
    // A hard-coded target anywhere else is caught.
    for hard_coded in [
        "RUN rustup target add x86_64-unknown-linux-musl",
        "COPY --from=build /src/target/aarch64-unknown-linux-musl/release/cloudwatch_metrics_agent /a",
        "ENV CC_x86_64_unknown_linux_musl=musl-gcc",
    ] {
        let changed =
            dockerfile.replacen("WORKDIR /src", &format!("{hard_coded}\nWORKDIR /src"), 1);
        assert_eq!(
            architectures_outside_the_mapping(&changed),
            [hard_coded],
            "{hard_coded}"
        );
    }
}

/// Runs the harness's `cfn-lint` (installed in the test venv by ./scripts/test) on
/// `template`, its informational rules included (I3011: a stateful resource without
/// DeletionPolicy and UpdateReplacePolicy, ...), with `args` after it: success, and what
/// it printed.
fn cfn_lint(template: &Path, args: &[&Path]) -> (bool, String) {
    let python = common::python();
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
        ])
        .arg(template)
        .args(["--include-checks", "I"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.trim().is_empty(), text)
}

const TEMPLATE: &str = "deploy/cloudformation/sidecar.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A cfn-lint parameter file in `dir`: docs/cloudformation.md's example values, and
/// `overrides`.
fn parameter_file(dir: &Path, overrides: &[(&str, &str)]) -> PathBuf {
    let mut parameters = vec![
        (
            "AppImage",
            json!("111122223333.dkr.ecr.us-east-1.amazonaws.com/web-api:1.4.2"),
        ),
        (
            "AgentImage",
            json!("111122223333.dkr.ecr.us-east-1.amazonaws.com/cloudwatch_metrics_agent:0.2.0"),
        ),
        ("Cluster", json!("production")),
        ("Subnets", json!(["subnet-0a1b2c3d", "subnet-4e5f6a7b"])),
        ("SecurityGroups", json!(["sg-0123abcd"])),
        ("Namespace", json!("MyCompany/WebApi")),
        ("ServiceName", json!("web-api")),
        ("Period", json!("60")),
    ];
    parameters.extend(overrides.iter().map(|(k, v)| (*k, json!(v))));
    let file: Vec<Value> = parameters
        .into_iter()
        .map(|(key, value)| json!({"ParameterKey": key, "ParameterValue": value}))
        .collect();
    let name = overrides
        .iter()
        .map(|(k, v)| format!("{k}-{v}"))
        .collect::<Vec<_>>()
        .join("-");
    let path = dir.join(format!("parameters-{name}.json"));
    std::fs::write(&path, Value::from(file).to_string()).unwrap();
    path
}

#[test]
fn the_cloudformation_template_passes_cfn_lint_without_a_warning() {
    let (ok, report) = cfn_lint(&repo(TEMPLATE), &[]);
    assert!(ok, "{report}");
    // And with the example's values, each setting of the parameters that change the
    // dashboard and the alarms, and the other settings of those that change the rest.
    // cfn-lint 1.58 rebuilds its context after applying a template's Transform without
    // the parameter files' values (Template.transform calls create_context_for_template,
    // whose parameter_sets are empty), so those runs lint the template without its
    // `Transform: AWS::LanguageExtensions` line, which only the log group's DeletionPolicy
    // and UpdateReplacePolicy need (CloudFormation takes an intrinsic function there only
    // with it; cfn-lint takes it either way, and check_deploy.py checks the transform).
    let dir = tempfile::tempdir().unwrap();
    let untransformed = without_the_transform(dir.path());
    let option = Path::new("--parameter-files");
    for detailed in ["false", "true"] {
        for kernel in ["false", "true"] {
            for ecs in ["false", "true"] {
                let overrides = [
                    ("DetailedMetrics", detailed),
                    ("KernelMetrics", kernel),
                    ("EcsDimensions", ecs),
                ];
                let parameters = parameter_file(dir.path(), &overrides);
                let (ok, report) = cfn_lint(&untransformed, &[option, &parameters]);
                assert!(ok, "{overrides:?}: {report}");
            }
        }
    }
    for overrides in [
        [("RetainLogGroup", "false"), ("Period", "10")],
        [("Output", "emf"), ("Period", "300")],
    ] {
        let parameters = parameter_file(dir.path(), &overrides);
        let (ok, report) = cfn_lint(&untransformed, &[option, &parameters]);
        assert!(ok, "{overrides:?}: {report}");
    }
    // The linter is really looking: a property ECS does not have, a wrong type, a
    // parameter value the template does not allow.
    let (ok, report) = cfn_lint(
        &untransformed,
        &[option, &parameter_file(dir.path(), &[("TaskCpu", "300")])],
    );
    assert!(!ok, "TaskCpu 300 passed cfn-lint: {report}");
    for (from, to) in [
        (
            "          StopTimeout: 10\n",
            "          StopTimeout: 10\n          StopTimeOut: 10\n",
        ),
        (
            "      DesiredCount: !Ref DesiredCount\n",
            "      DesiredCount: many\n",
        ),
    ] {
        let text = read(TEMPLATE);
        assert!(text.contains(from), "{from:?}");
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (ok, report) = cfn_lint(&broken, &[]);
        assert!(!ok, "{to:?} passed cfn-lint: {report}");
    }
}

/// The template without its `Transform: AWS::LanguageExtensions` line, in `dir`.
fn without_the_transform(dir: &Path) -> PathBuf {
    let line = "Transform: AWS::LanguageExtensions\n";
    let text = read(TEMPLATE);
    assert_eq!(text.matches(line).count(), 1, "{line:?}");
    let path = dir.join("sidecar-untransformed.yaml");
    std::fs::write(&path, text.replacen(line, "", 1)).unwrap();
    path
}

/// `check_deploy.py` with `args` (paths relative to the repository, or absolute), and
/// `stdin`: success, and what it printed.
fn check_deploy(args: &[&Path], stdin: &str) -> (bool, String) {
    common::run_harness("check_deploy.py", args, stdin)
}

#[test]
fn the_template_grants_runs_and_shows_what_the_deploy_files_say() {
    let files = [
        "deploy/iam-policy.json",
        "deploy/ecs-task-definition.json",
        "deploy/dashboard.json",
        "deploy/execution-role-policy.json",
    ];
    let template = repo(TEMPLATE);
    let consistency = |paths: [&Path; 4]| {
        let command = Path::new("consistency");
        check_deploy(
            &[command, &template, paths[0], paths[1], paths[2], paths[3]],
            "",
        )
    };
    let good = files.map(repo);
    let (ok, report) = consistency([&good[0], &good[1], &good[2], &good[3]]);
    assert!(ok, "{report}");
    // Each file changed alone is caught.
    let dir = tempfile::tempdir().unwrap();
    for (i, from, to) in [
        (0, "MyCompany/WebApi", "MyCompany/Other"),
        (1, "\"stopTimeout\": 10", "\"stopTimeout\": 3"),
        (
            1,
            "\"awslogs-stream-prefix\": \"metrics\"",
            "\"awslogs-stream-prefix\": \"agent\"",
        ),
        // Issue 32: a task definition whose log group nothing creates fails to start
        // where it does not exist.
        (1, "\"awslogs-create-group\": \"true\",", ""),
        (
            1,
            "\"readonlyRootFilesystem\": true",
            "\"readonlyRootFilesystem\": false",
        ),
        (
            1,
            "\"ignoredExitCodes\": [0]",
            "\"ignoredExitCodes\": [0, 1]",
        ),
        (2, "\"p99\"", "\"p95\""),
        (2, "\"id\": \"ecs\"", "\"id\": \"ecs2\""),
        (3, "\"logs:CreateLogGroup\"", "\"logs:CreateLogStream\""),
    ] {
        let text = read(files[i]);
        assert!(text.contains(from), "{from}");
        let broken = dir.path().join(format!("broken-{i}.json"));
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let mut paths = [
            good[0].as_path(),
            good[1].as_path(),
            good[2].as_path(),
            good[3].as_path(),
        ];
        paths[i] = &broken;
        let (ok, report) = consistency(paths);
        assert!(!ok, "{} with {to:?} passed: {report}", files[i]);
    }
    // The harness's own list of changes to the template and the files, each caught.
    let mutations = Path::new("mutations");
    let (ok, report) = check_deploy(
        &[mutations, &template, &good[0], &good[1], &good[2], &good[3]],
        "",
    );
    assert!(ok, "{report}");
    assert!(!report.contains("MISSED"), "{report}");
}

/// The template's Namespace pattern refuses what the agent refuses (a namespace starting
/// with `AWS/`, a blank one, one character too many, ...), and takes what it takes.
#[test]
fn the_namespace_pattern_takes_what_the_agent_takes() {
    let agent = Path::new(env!("CARGO_BIN_EXE_cloudwatch_metrics_agent"));
    let (ok, report) = check_deploy(&[Path::new("namespaces"), &repo(TEMPLATE), agent], "");
    assert!(ok, "{report}");
}

/// Dry-run lines of the agent configured as the example task definition's agent
/// container, on a cgroup v2 fixture with every metric the dashboard can show.
fn dry_run_as_the_task_definition() -> String {
    let task = json("deploy/ecs-task-definition.json");
    let agent = task["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "metrics")
        .unwrap()
        .clone();
    let mut env: Vec<(&str, String)> = Vec::new();
    let names: Vec<String> = agent["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    for (e, name) in agent["environment"].as_array().unwrap().iter().zip(&names) {
        if name != "CWMA_OUTPUT" && name != "CWMA_PERIOD" {
            env.push((name.as_str(), e["value"].as_str().unwrap().to_owned()));
        }
    }
    let root = repo("tests/fixtures/cgroup/v2-namespaced");
    env.extend([
        ("CWMA_OUTPUT", "dry-run".to_owned()),
        ("CWMA_PERIOD", "1".to_owned()),
        ("CWMA_SCOPE", "cgroup".to_owned()),
        ("CWMA_ROOT", root.display().to_string()),
        (
            "CWMA_METRICS",
            "cpu,memory,throttling,oom,pressure".to_owned(),
        ),
    ]);
    dry_run_lines(&env, 3)
}

#[test]
fn every_metric_the_dashboard_and_alarms_name_is_one_the_agent_publishes() {
    let lines = dry_run_as_the_task_definition();
    let metrics = Path::new("metrics");
    let (template, dashboard) = (repo(TEMPLATE), repo("deploy/dashboard.json"));
    let (ok, report) = check_deploy(&[metrics, &template, &dashboard], &lines);
    assert!(ok, "{report}");
    assert!(report.contains("20 metrics named"), "{report}");
    // A name, a dimension value or a statistic the agent's data cannot answer is caught.
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("\"MemoryPressure\"", "\"MemoryPresure\""),
        ("\"web-api\"", "\"web\""),
        ("\"stat\": \"p90\"", "\"stat\": \"P90\""),
    ] {
        let broken = dir.path().join("dashboard.json");
        let text = read("deploy/dashboard.json");
        assert!(text.contains(from), "{from}");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (ok, report) = check_deploy(&[metrics, &template, &broken], &lines);
        assert!(!ok, "{to} passed: {report}");
    }
}

/// The Fargate stats fixture `n` seconds on: each container's `read` (`preread` a
/// second before) and CPU time (0.1 vCPU) moved on, the task's interface receiving
/// 100,000 and sending 20,000 bytes a second, each container reading 4096 and writing
/// 8192, so that every rate the agent computes has a value from its second reading.
fn fargate_stats_at(fixture: &str, n: usize) -> String {
    let mut doc: Value = serde_json::from_str(fixture).unwrap();
    let n = n as u64;
    for stats in doc.as_object_mut().unwrap().values_mut() {
        let read = DateTime::from_str(stats["read"].as_str().unwrap(), Format::DateTime).unwrap();
        let at = |k: u64| {
            let t = DateTime::from_secs_and_nanos(read.secs() + k as i64, read.subsec_nanos());
            Value::from(t.fmt(Format::DateTime).unwrap())
        };
        stats["read"] = at(n + 1);
        stats["preread"] = at(n);
        let cpu = stats["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap();
        stats["cpu_stats"]["cpu_usage"]["total_usage"] = Value::from(cpu + 100_000_000 * (n + 1));
        stats["precpu_stats"]["cpu_usage"]["total_usage"] = Value::from(cpu + 100_000_000 * n);
        let eth1 = &mut stats["networks"]["eth1"];
        eth1["rx_bytes"] = Value::from(eth1["rx_bytes"].as_u64().unwrap() + 100_000 * n);
        eth1["tx_bytes"] = Value::from(eth1["tx_bytes"].as_u64().unwrap() + 20_000 * n);
        stats["blkio_stats"]["io_service_bytes_recursive"] = json!([
            {"major": 202, "minor": 26368, "op": "Read", "value": 4096 * n},
            {"major": 202, "minor": 26368, "op": "Write", "value": 8192 * n},
        ]);
    }
    doc.to_string()
}

/// Dry-run lines of the agent configured as the template's agent container with
/// `DetailedMetrics=true` (its environment rendered by `check_deploy.py`), in the
/// ecs-task scope of the Fargate fixture task: the template's containers, `app` and
/// `metrics`, with ephemeral storage.
fn dry_run_with_detailed_metrics() -> String {
    dry_run_in_the_fargate_task(&["DetailedMetrics=true"])
}

/// The fixture task's cluster (its `Cluster` ARN ends `cluster/prod`): the template's
/// `Cluster` for the agent's ECS dimensions to be the ones the alarms ask for.
const FIXTURE_CLUSTER: &str = "Cluster=prod";

/// Dry-run lines of the agent configured as the template's agent container with the
/// template parameters `parameters` (`NAME=VALUE`; its environment rendered by
/// `check_deploy.py`), in the ecs-task scope of the Fargate fixture task (family
/// `web-api`, cluster `prod`): the template's containers, `app` and `metrics`, with
/// ephemeral storage.
fn dry_run_in_the_fargate_task(parameters: &[&str]) -> String {
    let template = repo(TEMPLATE);
    let mut args: Vec<&Path> = vec![Path::new("environment"), template.as_path()];
    args.extend(parameters.iter().map(Path::new));
    let (ok, report) = check_deploy(&args, "");
    assert!(ok, "{report}");
    let environment: serde_json::Map<String, Value> =
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    if parameters.contains(&"DetailedMetrics=true") {
        assert!(environment.contains_key("CWMA_METRICS"), "{report}");
    }
    let mut env: Vec<(&str, String)> = environment
        .iter()
        .filter(|(name, _)| *name != "CWMA_OUTPUT" && *name != "CWMA_PERIOD")
        .map(|(name, value)| (name.as_str(), value.as_str().unwrap().to_owned()))
        .collect();
    let task = read("tests/fixtures/ecs/fargate/task.json");
    let stats = read("tests/fixtures/ecs/fargate/stats.json");
    let server = MetadataServer::start(move |path, n| match path {
        "/task" => Reply::Json(task.clone()),
        _ => Reply::Json(fargate_stats_at(&stats, n)),
    });
    env.extend([
        ("CWMA_OUTPUT", "dry-run".to_owned()),
        ("CWMA_PERIOD", "1".to_owned()),
        ("ECS_CONTAINER_METADATA_URI_V4", server.uri.clone()),
    ]);
    // Network and storage are rates: they start in the second window.
    dry_run_lines(&env, 4)
}

/// The first `n` dry-run lines of the agent run with `env` alone, as one text.
fn dry_run_lines(env: &[(&str, String)], n: usize) -> String {
    let mut agent = common::Agent::spawn(&[], env);
    let lines: Vec<String> = (0..n)
        .map(|_| {
            agent
                .stdout
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a dry-run line")
        })
        .collect();
    agent.signal("TERM");
    assert!(agent.wait(std::time::Duration::from_secs(3)).success());
    lines.join("\n") + "\n"
}

#[test]
fn with_detailed_metrics_every_metric_the_dashboard_names_is_one_the_agent_publishes() {
    let lines = dry_run_with_detailed_metrics();
    let metrics = Path::new("metrics");
    // The sidecar's ecs-task scope cannot send the kernel's metrics: KernelMetrics false.
    let parameters = [
        Path::new("DetailedMetrics=true"),
        Path::new("KernelMetrics=false"),
    ];
    let check =
        |template: &Path| check_deploy(&[metrics, template, parameters[0], parameters[1]], &lines);
    let (ok, report) = check(&repo(TEMPLATE));
    assert!(ok, "{report}");
    assert!(
        report.contains("23 metrics named and 2 searches"),
        "{report}"
    );
    // A name in a SEARCH or a widget, a dimension, a statistic the agent's data cannot
    // answer is caught.
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        (
            r#"MetricName=\"CpuUtilized\""#,
            r#"MetricName=\"CpuUtilised\""#,
        ),
        ("- ServiceName,ContainerName\n", "- ServiceName,Container\n"),
        (r#""NetworkTxBytes""#, r#""NetworkTXBytes""#),
        ("'Average', ${Period})", "'Avg', ${Period})"),
    ] {
        let text = read(TEMPLATE);
        assert!(text.contains(from), "{from}");
        let broken = dir.path().join("sidecar.yaml");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (ok, report) = check(&broken);
        assert!(!ok, "{to} passed: {report}");
    }
}

/// With `EcsDimensions=true` the agent (its `CWMA_ECS_DIMENSIONS` set by the template)
/// adds `ClusterName` and `TaskDefinitionFamily`, and the dashboard and the alarms ask
/// for exactly those: every metric they name is in its dry-run output, in both settings
/// of `DetailedMetrics`; and either setting of `EcsDimensions` checked against the
/// agent's output in the other fails (a metric is found only under its exact dimensions).
#[test]
fn with_ecs_dimensions_every_metric_the_dashboard_and_alarms_name_is_one_the_agent_publishes() {
    let metrics = Path::new("metrics");
    let template = repo(TEMPLATE);
    for (detailed, counts) in [
        ("DetailedMetrics=true", "23 metrics named and 2 searches"),
        ("DetailedMetrics=false", "12 metrics named and 0 searches"),
    ] {
        let with = dry_run_in_the_fargate_task(&[detailed, "EcsDimensions=true"]);
        assert!(
            with.contains(r#"{"Name":"ClusterName","Value":"prod"}"#)
                && with.contains(r#"{"Name":"TaskDefinitionFamily","Value":"web-api"}"#),
            "{with}"
        );
        let without = dry_run_in_the_fargate_task(&[detailed, "EcsDimensions=false"]);
        assert!(!without.contains("ClusterName"), "{without}");
        let check = |ecs: &str, lines: &str| {
            let parameters = [detailed, "KernelMetrics=false", ecs, FIXTURE_CLUSTER];
            let mut args: Vec<&Path> = vec![metrics, template.as_path()];
            args.extend(parameters.iter().map(Path::new));
            check_deploy(&args, lines)
        };
        let (ok, report) = check("EcsDimensions=true", &with);
        assert!(ok, "{detailed}: {report}");
        assert!(report.contains(counts), "{detailed}: {report}");
        let (ok, report) = check("EcsDimensions=false", &without);
        assert!(ok, "{detailed}: {report}");
        let (ok, report) = check("EcsDimensions=false", &with);
        assert!(!ok, "{detailed}: ServiceName alone passed: {report}");
        let (ok, report) = check("EcsDimensions=true", &without);
        assert!(!ok, "{detailed}: ECS dimensions passed: {report}");
    }
}
