//! `deploy/kubernetes/`: the manifests pass a maintained schema validator, the agent's
//! environment in them is one the real binary accepts (`check --dry-run`), and the
//! binary copies itself into a directory as the init container does, the copy runnable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::agent_command;
use serde_json::Value;

const MANIFEST: &str = "deploy/kubernetes/deployment.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A program the test venv installs beside its Python (./scripts/test).
fn venv_tool(name: &str) -> PathBuf {
    common::python().with_file_name(name)
}

/// `kubernetes-validate --strict` on `path` for Kubernetes `version`: passed, and what
/// it printed.
fn validate(path: &Path, version: &str) -> (bool, String) {
    let tool = venv_tool("kubernetes-validate");
    let out = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", version])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (./scripts/test installs it)", tool.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_manifests_pass_the_kubernetes_schema_of_every_supported_version() {
    // The oldest Kubernetes version EKS supports in standard support, and the newest
    // the validator knows.
    for version in ["1.31.0", "1.37.0"] {
        let (ok, report) = validate(&repo(MANIFEST), version);
        assert!(ok, "{version}: {report}");
        assert!(report.contains("deployment/web-api"), "{report}");
    }
    // The validator is strict: a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(repo(MANIFEST)).unwrap();
    std::fs::write(&broken, text.replace("initContainers:", "initContainer:")).unwrap();
    let (ok, report) = validate(&broken, "1.37.0");
    assert!(!ok, "a misspelt field passed: {report}");
}

/// The Deployment's pod, read by the harness's YAML loader.
fn pod() -> Value {
    let out = Command::new(common::python())
        .arg(repo("tests/harness/k8s_pod.py"))
        .arg(repo(MANIFEST))
        .args(["web-api", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The container's environment as the kubelet gives it: the downward API's fields (for
/// a made-up pod) and `$(VAR)` references to variables defined before.
fn resolved_env(env: &[Value]) -> Vec<(String, String)> {
    let mut resolved: Vec<(String, String)> = Vec::new();
    for var in env {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => "web-api-7d4b9c6f5-x2x5k".to_owned(),
            Some("metadata.namespace") => "default".to_owned(),
            Some("spec.nodeName") => "fargate-ip-10-0-1-23.ec2.internal".to_owned(),
            Some(other) => panic!("a field the test does not know: {other}"),
            None => {
                let mut value = var["value"].as_str().unwrap().to_owned();
                for (earlier, v) in &resolved {
                    value = value.replace(&format!("$({earlier})"), v);
                }
                assert!(
                    !value.contains("$("),
                    "{name}: an undefined reference: {value}"
                );
                value
            }
        };
        resolved.push((name, value));
    }
    resolved
}

#[test]
fn the_app_containers_agent_settings_pass_check_with_the_pods_dimensions() {
    let pod = pod();
    let container = &pod["container"];
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The agent first, from the shared volume, then `--` and the application.
    let (agent, args) = command.split_first().unwrap();
    let agent = Path::new(agent);
    assert_eq!(
        agent.file_name().and_then(|n| n.to_str()),
        Some("cloudwatch_metrics_agent")
    );
    let init = &pod["init"][0];
    let copied_to = init["args"][1].as_str().unwrap();
    assert_eq!(init["args"][0], "copy-to");
    assert_eq!(
        agent.parent(),
        Some(Path::new(copied_to)),
        "started from the copy"
    );
    let volume = container["mounts"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, path)| path.as_str() == Some(copied_to))
        .map(|(name, _)| name.clone())
        .expect("the app container mounts the copy's directory");
    assert_eq!(
        init["mounts"][&volume], copied_to,
        "the init container writes there"
    );
    assert!(args.contains(&"--"), "wrapper mode: {command:?}");
    assert_eq!(pod["service_account"], "web-api");
    assert!(
        pod["kinds"]
            .as_array()
            .unwrap()
            .contains(&"ServiceAccount".into())
    );

    // The pod's environment, given to the real binary with `check --dry-run`, in a
    // container's own cgroup v2 (a cgroup namespace: the fixture's).
    let mut env: Vec<(&str, String)> = Vec::new();
    let resolved = resolved_env(container["env"].as_array().unwrap());
    for (name, value) in &resolved {
        env.push((name.as_str(), value.clone()));
    }
    env.push((
        "CWMA_ROOT",
        repo("tests/fixtures/cgroup/v2-namespaced")
            .display()
            .to_string(),
    ));
    let check_args = [&["check", "--dry-run"][..], args].concat();
    let out = agent_command(&check_args, &env).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok    sample: cgroup (asked for): cgroup v2 at"),
        "{stdout}"
    );
    let dimensions = common::printed_dimensions(&stdout);
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        dimensions,
        [
            pair("ServiceName", "web-api"),
            pair("Namespace", "default"),
            pair("PodName", "web-api-7d4b9c6f5-x2x5k"),
            pair("NodeName", "fargate-ip-10-0-1-23.ec2.internal"),
        ]
    );
    // One set of metrics per pod, and check says so in its price.
    let cost = stdout
        .lines()
        .find(|l| l.starts_with("ok    cost:"))
        .unwrap();
    assert!(cost.contains("PodName"), "{cost}");
}

#[test]
fn copy_to_puts_a_runnable_copy_of_the_binary_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent_command(&["copy-to", dir.path().to_str().unwrap()], &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let copy = dir.path().join("cloudwatch_metrics_agent");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("copied to {}", copy.display())
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["cloudwatch_metrics_agent"],
        "nothing else left there"
    );
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("cloudwatch_metrics_agent {}", env!("CARGO_PKG_VERSION"))
    );
    // The copy runs the agent itself: a wrapped command's status comes back.
    let status = Command::new(&copy)
        .args([
            "-n",
            "K8s",
            "-s",
            "copy",
            "--dry-run",
            "--scope",
            "host",
            "--",
        ])
        .args(["sh", "-c", "exit 7"])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(7));

    // Not a directory: one line naming it, status 2; a missing operand, too.
    for args in [
        &["copy-to", "/nonexistent/cwma"][..],
        &["copy-to", "/etc/hostname"],
        &["copy-to"],
        &["copy-to", "a", "b"],
    ] {
        let out = agent_command(args, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_roles_trust_exactly_the_manifests_service_account() {
    let manifest = std::fs::read_to_string(repo(MANIFEST)).unwrap();
    let pod = pod();
    let account = pod["service_account"].as_str().unwrap();
    assert!(manifest.contains(&format!("name: {account}\n  namespace: default")));
    // IRSA: the cluster's OIDC provider, for this one service account, to STS.
    let irsa = json("deploy/kubernetes/trust-policy-irsa.json");
    let statement = &irsa["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let provider = statement["Principal"]["Federated"].as_str().unwrap();
    let issuer = provider.split_once(":oidc-provider/").unwrap().1;
    let equals = statement["Condition"]["StringEquals"].as_object().unwrap();
    assert_eq!(
        equals[&format!("{issuer}:sub")],
        format!("system:serviceaccount:default:{account}")
    );
    assert_eq!(equals[&format!("{issuer}:aud")], "sts.amazonaws.com");
    // The annotation names a role of the same account.
    let role_account = provider.split(':').nth(4).unwrap();
    assert!(
        manifest.contains(&format!("arn:aws:iam::{role_account}:role/")),
        "the service account's role is in the OIDC provider's account"
    );
    // Pod Identity: the EKS pods service, with the session tags it sets.
    let pod_identity = json("deploy/kubernetes/trust-policy-pod-identity.json");
    let statement = &pod_identity["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "pods.eks.amazonaws.com");
    assert_eq!(
        statement["Action"],
        serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
    );
}
