//! The deployment files under `deploy/` parse, grant no more than the agent needs, and
//! are what the README shows.

use std::path::Path;

use serde_json::Value;

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

#[test]
fn readme_shows_the_deploy_files_as_they_are() {
    let readme = read("README.md");
    for path in ["deploy/ecs-task-definition.json", "deploy/iam-policy.json"] {
        assert!(
            readme.contains(&read(path)),
            "README's copy of {path} is out of date"
        );
    }
}
