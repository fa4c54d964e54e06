#!/usr/bin/env python3
"""Checks that deploy/cloudformation/sidecar.yaml agrees with the other deploy files and
with what the agent publishes.

    check_deploy.py consistency TEMPLATE IAM_POLICY TASK_DEFINITION DASHBOARD
        The template, rendered with docs/cloudformation.md's example values, grants what
        IAM_POLICY grants (and nothing for EMF), its agent container has the settings of
        TASK_DEFINITION's, and its dashboard body (KernelMetrics true) is DASHBOARD.
    check_deploy.py metrics TEMPLATE DASHBOARD < dry-run lines
        Every metric DASHBOARD and the template's alarms name (namespace, name and
        dimensions) is in the agent's dry-run lines on stdin, and every statistic and
        period is one CloudWatch takes.

Prints one line per finding and "ok: ..." on success; exits 1 on any finding, 2 on bad
usage. The template is read with cfn-lint's own CloudFormation YAML loader, and its
intrinsic functions (Ref, Fn::Sub, Fn::Join, Fn::If, Fn::Equals, Fn::Not) are evaluated
for the parameters below.
"""

import json
import re
import sys

from cfnlint.decode import cfn_yaml

# docs/cloudformation.md's example: deploy/ecs-task-definition.json and deploy/iam-policy.json use them.
EXAMPLE = {
    "AppImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/web-api:1.4.2",
    "AgentImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/cloudwatch_metrics_agent:0.2.0",
    "Namespace": "MyCompany/WebApi",
    "ServiceName": "web-api",
    "Period": "60",
    "Output": "cloudwatch",
    "KernelMetrics": "true",
    "AlarmTopicArn": "",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "111122223333",
}
NO_VALUE = object()
STAT = re.compile(r"^(p\d{1,2}(\.\d+)?|p100|Maximum|Minimum|Average|Sum|SampleCount)$")


class Template:
    def __init__(self, path, params):
        self.doc = cfn_yaml.load(path)
        self.params = {}
        for name, spec in self.doc.get("Parameters", {}).items():
            if "Default" in spec:
                self.params[name] = str(spec["Default"])
        self.params.update(params)
        self.conditions = {}
        for name, spec in self.doc.get("Conditions", {}).items():
            self.conditions[name] = self.resolve(spec)

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            return self.params[name]
        resource = self.doc["Resources"].get(name)
        if resource is None:
            raise KeyError(f"Ref to unknown {name}")
        if resource["Type"] == "AWS::Logs::LogGroup":
            return self.resolve(resource["Properties"]["LogGroupName"])
        return f"<{name}>"

    def sub(self, text):
        def one(m):
            name = m.group(1)
            if "." in name:
                return f"<{name}>"
            return str(self.ref(name))
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref":
                    return self.ref(arg)
                if key == "Fn::Sub":
                    return self.sub(arg if isinstance(arg, str) else arg[0])
                if key == "Fn::Join":
                    parts = [self.resolve(p) for p in arg[1]]
                    return arg[0].join(str(p) for p in parts if p is not NO_VALUE)
                if key == "Fn::If":
                    chosen = arg[1] if self.conditions[arg[0]] else arg[2]
                    return self.resolve(chosen)
                if key == "Fn::Equals":
                    return self.resolve(arg[0]) == self.resolve(arg[1])
                if key == "Fn::Not":
                    return not self.resolve(arg[0])
                if key == "Fn::GetAtt":
                    return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
            out = {}
            for k, v in node.items():
                v = self.resolve(v)
                if v is not NO_VALUE:
                    out[k] = v
            return out
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        return node

    def resource(self, name):
        resource = self.doc["Resources"][name]
        condition = resource.get("Condition")
        if condition and not self.conditions[condition]:
            return None
        return self.resolve(resource.get("Properties", {}))

    def of_type(self, kind):
        for name, resource in self.doc["Resources"].items():
            if resource["Type"] == kind:
                props = self.resource(name)
                if props is not None:
                    yield name, props


def camel(node):
    """PascalCase keys (CloudFormation) to camelCase (the ECS API's JSON)."""
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: camel(v) for k, v in node.items()}
    if isinstance(node, list):
        return [camel(v) for v in node]
    return node


def numbers_as_text(node):
    """CloudFormation takes numbers and their text alike; compare them as text."""
    if isinstance(node, dict):
        return {k: numbers_as_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [numbers_as_text(v) for v in node]
    if isinstance(node, bool):
        return node
    if isinstance(node, (int, float)):
        return str(node)
    return node


def consistency(template_path, policy_path, task_path, dashboard_path):
    findings = []
    with open(policy_path) as f:
        policy = json.load(f)
    with open(task_path) as f:
        task = json.load(f)
    with open(dashboard_path) as f:
        dashboard = json.load(f)

    # The IAM policy: the same statement for PutMetricData, none for EMF.
    t = Template(template_path, EXAMPLE)
    roles = dict(t.of_type("AWS::IAM::Role"))
    statements = [s for p in roles["TaskRole"].get("Policies", [])
                  for s in p["PolicyDocument"]["Statement"]]
    if statements != policy["Statement"]:
        findings.append(f"the task role grants {json.dumps(statements)}, "
                        f"{policy_path} grants {json.dumps(policy['Statement'])}")
    emf = Template(template_path, {**EXAMPLE, "Output": "emf"})
    if dict(emf.of_type("AWS::IAM::Role"))["TaskRole"].get("Policies"):
        findings.append("with Output emf the task role still has a policy")

    # The agent container: every setting of the example's, the same.
    (_, task_def), = t.of_type("AWS::ECS::TaskDefinition")
    ours = {c["Name"]: camel(c) for c in task_def["ContainerDefinitions"]}
    theirs = {c["name"]: c for c in task["containerDefinitions"]}
    for name in ("app", "metrics"):
        if name not in ours or name not in theirs:
            findings.append(f"container {name!r} missing from one of them")
    agent, example = ours.get("metrics", {}), theirs.get("metrics", {})
    for key in sorted(set(agent) | set(example)):
        a, b = numbers_as_text(agent.get(key)), numbers_as_text(example.get(key))
        if key == "environment":
            a = {e["name"]: e["value"] for e in a or []}
            b = {e["name"]: e["value"] for e in b or []}
        if a != b:
            findings.append(f"agent container {key}: template {json.dumps(a)}, "
                            f"{task_path} {json.dumps(b)}")
    if numbers_as_text(task_def.get("Cpu")) != task.get("cpu") or \
            numbers_as_text(task_def.get("Memory")) != task.get("memory"):
        findings.append("task cpu/memory differ from the example's")

    # The dashboard: the standalone body is the template's, rendered.
    (_, board), = t.of_type("AWS::CloudWatch::Dashboard")
    try:
        body = json.loads(board["DashboardBody"])
    except ValueError as e:
        findings.append(f"the template's dashboard body is not JSON: {e}")
        body = None
    if body is not None and body != dashboard:
        findings.append(f"{dashboard_path} is not the template's dashboard body "
                        "(rendered with docs/cloudformation.md's example, KernelMetrics true)")
    core = Template(template_path, {**EXAMPLE, "KernelMetrics": "false"})
    (_, board), = core.of_type("AWS::CloudWatch::Dashboard")
    try:
        names = {m[1] for m, _, _ in metrics_of(json.loads(board["DashboardBody"]))}
        if names & {"OOMKills", "CPUPressure", "CPUThrottledPercent"}:
            findings.append(f"KernelMetrics false still shows {sorted(names)}")
    except ValueError as e:
        findings.append(f"the dashboard body without KernelMetrics is not JSON: {e}")
    return findings


def metrics_of(dashboard):
    """(metric tuple, options) of every metric line of every widget."""
    for widget in dashboard.get("widgets", []):
        for line in widget.get("properties", {}).get("metrics", []):
            options = line[-1] if line and isinstance(line[-1], dict) else {}
            names = [x for x in line if not isinstance(x, dict)]
            if names:
                yield tuple(names), options, widget


def published(lines):
    seen = set()
    for line in lines:
        request = json.loads(line)
        for d in request["MetricData"]:
            dims = tuple(sorted((x["Name"], x["Value"]) for x in d.get("Dimensions", [])))
            seen.add((request["Namespace"], d["MetricName"], dims))
    return seen


def check_metrics(template_path, dashboard_path, lines):
    findings = []
    sent = published(lines)
    if not sent:
        return ["no dry-run lines on stdin"]
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    wanted = []
    for names, options, widget in metrics_of(dashboard):
        props = widget["properties"]
        if "expression" in options:
            continue
        ns, name, rest = names[0], names[1], names[2:]
        dims = tuple(sorted(zip(rest[0::2], rest[1::2])))
        wanted.append((f"dashboard widget {props.get('title')!r}", (ns, name, dims)))
        stat = options.get("stat", props.get("stat", "Average"))
        if not STAT.match(stat):
            findings.append(f"{props.get('title')!r}: {stat!r} is not a CloudWatch statistic")
        period = options.get("period", props.get("period", 300))
        if period not in (1, 5, 10, 30) and period % 60:
            findings.append(f"{props.get('title')!r}: a period of {period} s")
    t = Template(template_path, EXAMPLE)
    for name, alarm in t.of_type("AWS::CloudWatch::Alarm"):
        dims = tuple(sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])))
        wanted.append((f"alarm {name}", (alarm["Namespace"], alarm["MetricName"], dims)))
        stat = alarm.get("ExtendedStatistic", alarm.get("Statistic"))
        if not stat or not STAT.match(stat):
            findings.append(f"alarm {name}: {stat!r} is not a CloudWatch statistic")
    for where, metric in wanted:
        if metric not in sent:
            findings.append(f"{where} names {metric}, which the agent does not publish "
                            f"(it publishes {sorted(sent)})")
    if not findings:
        print(f"ok: {len(wanted)} metrics named, all published by the agent")
    return findings


def main(argv):
    if len(argv) == 5 and argv[0] == "consistency":
        findings = consistency(*argv[1:])
        if not findings:
            print("ok: the template agrees with the IAM policy, the task definition "
                  "and the dashboard")
    elif len(argv) == 3 and argv[0] == "metrics":
        findings = check_metrics(argv[1], argv[2], [l for l in sys.stdin if l.strip()])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
