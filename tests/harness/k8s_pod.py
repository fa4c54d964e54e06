"""The pod of a Kubernetes Deployment manifest, as JSON for tests/kubernetes.rs.

Usage: k8s_pod.py MANIFEST DEPLOYMENT CONTAINER

Prints {"init": [{name, image, command, args, mounts}], "container": {command, args,
env, mounts}, "volumes": [...], "service_account": ...} for CONTAINER of DEPLOYMENT,
read with PyYAML's safe loader (every document of the file). Values are as written: the
test resolves the downward API and $(VAR) references the way the kubelet does.
"""

import json
import sys

import yaml


def mounts(container):
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def main():
    path, deployment, name = sys.argv[1:4]
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    found = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment]
    if len(found) != 1:
        sys.exit(f"{path}: {len(found)} Deployments named {deployment}")
    spec = found[0]["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == name)
    print(json.dumps({
        "init": [
            {
                "name": c["name"],
                "image": c["image"],
                "command": c.get("command", []),
                "args": c.get("args", []),
                "mounts": mounts(c),
            }
            for c in spec.get("initContainers", [])
        ],
        "container": {
            "command": container.get("command", []),
            "args": container.get("args", []),
            "env": container.get("env", []),
            "mounts": mounts(container),
        },
        "volumes": spec.get("volumes", []),
        "service_account": spec.get("serviceAccountName"),
        "kinds": [d["kind"] for d in docs],
    }))


if __name__ == "__main__":
    main()
