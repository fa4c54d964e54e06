#!/usr/bin/env python3
"""Checks that deploy/cloudformation/sidecar.yaml agrees with the other deploy files and
with what the agent publishes.

    check_deploy.py consistency TEMPLATE IAM_POLICY TASK_DEFINITION DASHBOARD EXECUTION_POLICY
        The template, rendered with docs/cloudformation.md's example values, grants what
        IAM_POLICY grants (and nothing for EMF), its agent container has the settings of
        TASK_DEFINITION's, and its dashboard body (KernelMetrics true, DetailedMetrics
        false, EcsDimensions false) is DASHBOARD. In both, the agent container has a
        read-only root file system and a restart policy that restarts it on failure but
        not after a clean exit (exit code 0 ignored), with a restartAttemptPeriod ECS
        takes (60 to 1800 s). Every awslogs container of TASK_DEFINITION creates its log
        group (awslogs-create-group "true": nothing else creates it), which
        EXECUTION_POLICY allows (logs:CreateLogGroup on that group); the template's log to
        the log group it creates, without awslogs-create-group (its execution role has no
        logs:CreateLogGroup). The log group is kept (DeletionPolicy and
        UpdateReplacePolicy Retain) unless RetainLogGroup is false, through the
        AWS::LanguageExtensions transform that CloudFormation needs for an intrinsic
        function there. Both roles trust ecs-tasks.amazonaws.com for this account
        (aws:SourceAccount) and its ECS resources in this region (aws:SourceArn) only.
        The tasks alarm compares the agent's MemoryUtilization SampleCount with AWS/ECS's
        CPUUtilization SampleCount of the template's service, over a period AWS/ECS has
        data for (60 s, or Period when longer), for every Period; its dashboard widget
        graphs the same two. With KernelMetrics, DetailedMetrics and EcsDimensions each
        true or false, the body is JSON and its widgets fit the grid without overlapping;
        with KernelMetrics or DetailedMetrics false, it shows none of that parameter's
        metrics (nor sets CWMA_METRICS, for DetailedMetrics); the agent's
        CWMA_ECS_DIMENSIONS is EcsDimensions, and the ClusterName and
        TaskDefinitionFamily the dashboard and alarms ask for are the service's cluster
        and the task definition's family.
    check_deploy.py metrics TEMPLATE [DASHBOARD] [NAME=VALUE ...] < dry-run lines
        Every metric the dashboard (DASHBOARD, or without it the template's own body) and
        the template's alarms (metric math ones too) name (namespace, name and dimensions)
        is in the agent's dry-run lines on stdin, but for those in an AWS/ namespace,
        which must be the AWS/ECS service metrics of the template's own service; every
        SEARCH expression finds at least one of them (and, when it searches by
        ContainerName, one of each container of the template's task definition); every
        id a metric math expression uses is one of its widget (or alarm); every statistic
        and period is one CloudWatch takes. The template is rendered with the example
        values and the NAME=VALUE parameters.
    check_deploy.py namespaces TEMPLATE AGENT
        The template's Namespace AllowedPattern takes exactly the namespaces the agent
        (the binary AGENT, run as `AGENT check --dry-run --scope host --namespace NS`)
        takes, over a list of edge cases: exit 0 where the pattern matches, 2 where not.
    check_deploy.py mutations TEMPLATE IAM_POLICY TASK_DEFINITION DASHBOARD EXECUTION_POLICY
        The consistency check, run on copies of the files each changed in one way it must
        catch (no awslogs-create-group in the task definition, no restart policy, ...):
        prints "caught" or "MISSED" for each, and fails unless every one is caught.
    check_deploy.py environment TEMPLATE [NAME=VALUE ...]
        Prints the agent container's environment, rendered with the example values and
        the NAME=VALUE parameters, as one JSON object.

Prints one line per finding and "ok: ..." on success; exits 1 on any finding, 2 on bad
usage. The template is read with cfn-lint's own CloudFormation YAML loader, and its
intrinsic functions (Ref, Fn::Sub, Fn::Join, Fn::If, Fn::Equals, Fn::Not) are evaluated
for the parameters below.
"""

import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile

from cfnlint.decode import cfn_yaml

# docs/cloudformation.md's example: deploy/ecs-task-definition.json and deploy/iam-policy.json use them.
EXAMPLE = {
    "AppImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/web-api:1.4.2",
    "AgentImage": "111122223333.dkr.ecr.us-east-1.amazonaws.com/cloudwatch_metrics_agent:0.2.0",
    "Cluster": "production",
    "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
    "SecurityGroups": ["sg-0123abcd"],
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
# SEARCH('{Namespace,Dimension,...} Name="value" ...', 'Statistic'[, period]): the form
# the dashboard uses, which this check understands (a schema and exact-match terms).
SEARCH = re.compile(r"SEARCH\('([^']*)',\s*'([^']*)'(?:,\s*(\d+))?\)")
SCHEMA = re.compile(r"^\s*\{([^}]*)\}(.*)$")
TERM = re.compile(r'([A-Za-z]\w*)="([^"]*)"|(\S+)')
# The metrics DetailedMetrics adds, to be absent without it.
DETAILED = {"CpuUtilized", "CpuReserved", "MemoryUtilized", "MemoryReserved",
            "NetworkRxBytes", "NetworkTxBytes", "StorageReadBytes", "StorageWriteBytes",
            "EphemeralStorageUtilized", "EphemeralStorageReserved",
            "EphemeralStorageUtilization"}


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

    def sub(self, text, variables=None):
        variables = variables or {}

        def one(m):
            literal, name = m.group(1), m.group(2)
            if literal:
                return "${" + name + "}"  # ${!Literal} is the text ${Literal}
            if name in variables:
                return str(variables[name])
            if "." in name:
                return f"<{name}>"
            return str(self.ref(name))
        return re.sub(r"\$\{(!)?([^}]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref":
                    return self.ref(arg)
                if key == "Fn::Sub":
                    if isinstance(arg, str):
                        return self.sub(arg)
                    variables = {k: self.resolve(v) for k, v in arg[1].items()}
                    return self.sub(arg[0], variables)
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
                if key == "Fn::Or":
                    return any(self.resolve(a) for a in arg)
                if key == "Fn::And":
                    return all(self.resolve(a) for a in arg)
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

    def attribute(self, name, key):
        """A resource attribute outside Properties (DeletionPolicy, ...), resolved."""
        return self.resolve(self.doc["Resources"][name].get(key))

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


# What "restart on failure, not after a clean exit, without hammering" is in an ECS
# container restart policy: ECS takes a restartAttemptPeriod of 60 to 1800 s.
RESTART_PERIOD = (60, 1800)
# The AWS/ECS service metrics the tasks alarm may compare with.
ECS_SERVICE_METRICS = {"CPUUtilization", "MemoryUtilization"}


def load_json(path):
    with open(path) as f:
        return json.load(f)


def consistency(template_path, policy_path, task_path, dashboard_path, execution_path):
    findings = []
    policy = load_json(policy_path)
    task = load_json(task_path)
    dashboard = load_json(dashboard_path)
    execution = load_json(execution_path)

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
    findings += trust_findings(t, roles)

    # The agent container: every setting of the example's, the same (but for
    # awslogs-create-group: the example has no stack to create its log group).
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
        if key == "logConfiguration":
            a, b = without_create_group(a), without_create_group(b)
        if a != b:
            findings.append(f"agent container {key}: template {json.dumps(a)}, "
                            f"{task_path} {json.dumps(b)}")
    if numbers_as_text(task_def.get("Cpu")) != task.get("cpu") or \
            numbers_as_text(task_def.get("Memory")) != task.get("memory"):
        findings.append("task cpu/memory differ from the example's")
    findings += [f"the template's agent container: {f}" for f in agent_findings(agent)]
    findings += [f"{task_path}'s agent container: {f}" for f in agent_findings(example)]

    # Logs: the example creates its group (and may), the template logs to its own.
    findings += example_log_findings(task, task_path, execution, execution_path)
    findings += template_log_findings(t, task_def)
    findings += retention_findings(template_path)

    # The dashboard: the standalone body is the template's, rendered.
    (_, board), = t.of_type("AWS::CloudWatch::Dashboard")
    try:
        body = json.loads(board["DashboardBody"])
    except ValueError as e:
        findings.append(f"the template's dashboard body is not JSON: {e}")
        body = None
    if body is not None and body != dashboard:
        findings.append(f"{dashboard_path} is not the template's dashboard body "
                        "(rendered with docs/cloudformation.md's example, KernelMetrics true, "
                        "DetailedMetrics false, EcsDimensions false)")
    for kernel in ("true", "false"):
        for detailed in ("true", "false"):
            for ecs in ("true", "false"):
                params = {"KernelMetrics": kernel, "DetailedMetrics": detailed,
                          "EcsDimensions": ecs}
                findings += parameter_findings(template_path, params)
    for period in ("10", "30", "60", "300"):
        for ecs in ("true", "false"):
            findings += tasks_alarm_findings(
                template_path, {"Period": period, "EcsDimensions": ecs})
    return findings


def without_create_group(log_configuration):
    if not isinstance(log_configuration, dict):
        return log_configuration
    options = dict(log_configuration.get("options") or {})
    options.pop("awslogs-create-group", None)
    return {**log_configuration, "options": options}


def agent_findings(agent):
    """A read-only root file system, and a restart policy that restarts the agent when
    it fails, not when it exits cleanly, at most once a restartAttemptPeriod."""
    findings = []
    if agent.get("readonlyRootFilesystem") is not True:
        findings.append("no readonlyRootFilesystem true (the agent writes no file)")
    restart = agent.get("restartPolicy")
    if not isinstance(restart, dict) or restart.get("enabled") is not True:
        findings.append(f"no restart policy enabled ({json.dumps(restart)}): an agent that "
                        "exits is gone until the task is replaced")
        return findings
    ignored = restart.get("ignoredExitCodes")
    if ignored is None or [int(c) for c in ignored] != [0]:
        findings.append(f"restart policy ignoredExitCodes {json.dumps(ignored)}: [0], so "
                        "that a clean exit (SIGTERM) is not restarted and a failure is")
    period = restart.get("restartAttemptPeriod")
    try:
        period = int(period)
    except (TypeError, ValueError):
        findings.append(f"restart policy restartAttemptPeriod {period!r}: set it, from "
                        f"{RESTART_PERIOD[0]} to {RESTART_PERIOD[1]} s")
        return findings
    if not RESTART_PERIOD[0] <= period <= RESTART_PERIOD[1]:
        findings.append(f"restart policy restartAttemptPeriod {period}: ECS takes "
                        f"{RESTART_PERIOD[0]} to {RESTART_PERIOD[1]} s")
    return findings


def awslogs(container, key="logConfiguration", driver="logDriver", options="options"):
    """A container's awslogs options, or None when it logs otherwise."""
    config = container.get(key) or {}
    if config.get(driver) != "awslogs":
        return None
    return config.get(options) or {}


def example_log_findings(task, task_path, execution, execution_path):
    """Nothing creates the example's log groups but the awslogs driver: each awslogs
    container asks it to, and the execution role may."""
    findings = []
    account = task.get("executionRoleArn", "").split(":")[4:5]
    partition = task.get("executionRoleArn", "").split(":")[1:2]
    for container in task["containerDefinitions"]:
        options = awslogs(container)
        if options is None:
            continue
        name = container["name"]
        group = options.get("awslogs-group")
        if str(options.get("awslogs-create-group")).lower() != "true":
            findings.append(f"{task_path}: container {name!r} logs to {group!r} without "
                            "\"awslogs-create-group\": \"true\": the task fails to start "
                            "where that group does not exist")
            continue
        arn = (f"arn:{(partition or ['aws'])[0]}:logs:{options.get('awslogs-region')}:"
               f"{(account or ['?'])[0]}:log-group:{group}")
        if not allows(execution, "logs:CreateLogGroup", arn):
            findings.append(f"{execution_path} does not allow logs:CreateLogGroup on "
                            f"{arn}, which container {name!r}'s awslogs-create-group needs")
    return findings


def allows(policy, action, resource):
    """Whether an Allow statement of the policy (no Deny considered: there are none in
    ours) names the action and the resource, IAM wildcards taken as such."""
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and \
                any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False


def template_log_findings(t, task_def):
    """The template's containers log to a log group the stack creates, so none needs
    awslogs-create-group (which would need logs:CreateLogGroup, which the execution role
    does not have: the managed policy grants only streams and events)."""
    findings = []
    groups = {name for name, r in t.doc["Resources"].items()
              if r["Type"] == "AWS::Logs::LogGroup"}
    (name, _), = t.of_type("AWS::ECS::TaskDefinition")
    raw = t.doc["Resources"][name]["Properties"]["ContainerDefinitions"]
    for container in raw:
        options = awslogs(container, "LogConfiguration", "LogDriver", "Options")
        if options is None:
            continue
        group = options.get("awslogs-group")
        if not (isinstance(group, dict) and group.get("Ref") in groups):
            findings.append(f"the template's container {container['Name']!r} logs to "
                            f"{json.dumps(group)}, not to a log group the stack creates")
        if "awslogs-create-group" in options:
            findings.append(f"the template's container {container['Name']!r} sets "
                            "awslogs-create-group: the stack creates its log group, and "
                            "the execution role has no logs:CreateLogGroup")
    return findings


def retention_findings(template_path):
    """The log group is kept when the stack goes or replaces it, unless RetainLogGroup is
    false; an intrinsic function there needs the AWS::LanguageExtensions transform."""
    findings = []
    for retain, expected in (("true", "Retain"), ("false", "Delete")):
        t = Template(template_path, {**EXAMPLE, "RetainLogGroup": retain})
        for name, resource in t.doc["Resources"].items():
            if resource["Type"] != "AWS::Logs::LogGroup":
                continue
            for key in ("DeletionPolicy", "UpdateReplacePolicy"):
                value = t.attribute(name, key)
                if value != expected:
                    findings.append(f"with RetainLogGroup {retain} the log group {name}'s "
                                    f"{key} is {value!r}, not {expected}")
                if isinstance(resource.get(key), dict) and \
                        "AWS::LanguageExtensions" not in transforms(t.doc):
                    findings.append(f"{name}'s {key} is an intrinsic function without the "
                                    "AWS::LanguageExtensions transform, which "
                                    "CloudFormation needs for one there")
    return findings


def transforms(doc):
    value = doc.get("Transform", [])
    return [value] if isinstance(value, str) else list(value)


def trust_findings(t, roles):
    """Each role ECS tasks assume trusts them for this account, and this region's ECS
    resources of this account, only."""
    findings = []
    account, region, partition = (EXAMPLE["AWS::AccountId"], EXAMPLE["AWS::Region"],
                                  EXAMPLE["AWS::Partition"])
    source_arn = f"arn:{partition}:ecs:{region}:{account}:*"
    for name, role in sorted(roles.items()):
        for statement in role["AssumeRolePolicyDocument"]["Statement"]:
            principal = statement.get("Principal", {}).get("Service")
            if principal != "ecs-tasks.amazonaws.com":
                continue
            condition = statement.get("Condition", {})
            if condition.get("StringEquals", {}).get("aws:SourceAccount") != account:
                findings.append(f"the {name} trust policy has no aws:SourceAccount "
                                f"StringEquals {account} condition")
            if condition.get("ArnLike", {}).get("aws:SourceArn") != source_arn:
                findings.append(f"the {name} trust policy has no aws:SourceArn ArnLike "
                                f"{source_arn} condition")
    return findings


def the_service(t):
    """The ECS service's cluster and name: the AWS/ECS service metrics' dimensions."""
    (_, service), = t.of_type("AWS::ECS::Service")
    return {"ClusterName": service["Cluster"], "ServiceName": service["ServiceName"]}


def alarm_metric_stats(alarm):
    """(id, namespace, metric name, {dimension: value}, stat, period) of each metric of a
    metric math alarm."""
    for query in alarm.get("Metrics", []):
        stat = query.get("MetricStat")
        if stat is None:
            continue
        metric = stat["Metric"]
        dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
        yield (query["Id"], metric["Namespace"], metric["MetricName"], dims, stat["Stat"],
               int(stat["Period"]))


def tasks_alarm_findings(template_path, params):
    """The tasks alarm compares tasks reporting (the agent's SampleCount) with tasks
    running (AWS/ECS's SampleCount) over a period AWS/ECS has data for; its widget graphs
    both."""
    t = Template(template_path, {**EXAMPLE, **params})
    where = ", ".join(f"{k} {v}" for k, v in params.items())
    namespace = t.params["Namespace"]
    service = the_service(t)
    wanted_period = max(60, int(t.params["Period"]))
    found = []
    for name, alarm in t.of_type("AWS::CloudWatch::Alarm"):
        stats = list(alarm_metric_stats(alarm))
        ours = [s for s in stats if s[1] == namespace and s[2] == "MemoryUtilization"
                and s[4] == "SampleCount"]
        theirs = [s for s in stats if s[1] == "AWS/ECS" and s[4] == "SampleCount"]
        if not ours or not theirs:
            continue
        found.append(name)
        if theirs[0][3] != service or theirs[0][2] not in ECS_SERVICE_METRICS:
            findings = [f"with {where}: alarm {name} compares with AWS/ECS "
                        f"{theirs[0][2]} {theirs[0][3]}, not the service {service}'s "
                        f"CPUUtilization or MemoryUtilization"]
            return findings
        findings = []
        periods = {s[5] for s in stats}
        if periods != {wanted_period}:
            findings.append(f"with {where}: alarm {name} periods {sorted(periods)}: "
                            f"{wanted_period} (AWS/ECS has one data point a task a minute)")
        returned = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
        if len(returned) != 1 or "Expression" not in returned[0]:
            findings.append(f"with {where}: alarm {name} returns {len(returned)} series, "
                            "not one metric math expression")
        else:
            used = expression_ids(returned[0]["Expression"])
            ids = {q["Id"] for q in alarm["Metrics"]}
            if not {ours[0][0], theirs[0][0]} <= used or not used <= ids:
                findings.append(f"with {where}: alarm {name}'s expression "
                                f"{returned[0]['Expression']!r} uses {sorted(used)} of "
                                f"{sorted(ids)}")
        threshold = float(alarm.get("Threshold", 0))
        if not (alarm.get("ComparisonOperator") == "GreaterThanOrEqualToThreshold"
                and 0 < threshold <= 1):
            findings.append(f"with {where}: alarm {name} fires on "
                            f"{alarm.get('ComparisonOperator')} {threshold}: one task "
                            "missing (a threshold from 0 to 1 task, GreaterThanOrEqual)")
        if not findings:
            findings += tasks_widget_findings(t, where, ours[0][3], service, wanted_period)
        return findings
    return [f"with {where}: no alarm compares the agent's MemoryUtilization SampleCount "
            "with AWS/ECS's SampleCount of the service (tasks running without reporting)"]


def tasks_widget_findings(t, where, dims, service, period):
    (_, board), = t.of_type("AWS::CloudWatch::Dashboard")
    body = json.loads(board["DashboardBody"])
    for widget in body.get("widgets", []):
        props = widget.get("properties", {})
        lines = {}
        for names, options, w in metrics_of({"widgets": [widget]}):
            pairs = dict(zip(names[2::2], names[3::2]))
            if options.get("stat") == "SampleCount":
                lines[(names[0], names[1])] = (pairs, options.get("period", props.get("period")))
        ours = lines.get((t.params["Namespace"], "MemoryUtilization"))
        theirs = [v for (ns, _), v in lines.items() if ns == "AWS/ECS"]
        if ours and theirs:
            findings = []
            if ours[0] != dims or theirs[0][0] != service:
                findings.append(f"with {where}: the tasks widget graphs {ours[0]} and "
                                f"{theirs[0][0]}, the alarm {dims} and {service}")
            if {int(ours[1]), int(theirs[0][1])} != {period}:
                findings.append(f"with {where}: the tasks widget's period is not the "
                                f"alarm's {period} s")
            return findings
    return [f"with {where}: no dashboard widget graphs the tasks alarm's two SampleCounts"]


def expression_ids(expression):
    """The metric ids a metric math expression uses: lowercase-initial names outside
    quotes (functions are upper case)."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", expression)
    return set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", bare))


def parameter_findings(template_path, params):
    """The dashboard body with these parameters is JSON, laid out on the grid, and
    shows (and the agent sends) only what the parameters turn on."""
    t = Template(template_path, {**EXAMPLE, **params})
    where = ", ".join(f"{k} {v}" for k, v in params.items())
    (_, board), = t.of_type("AWS::CloudWatch::Dashboard")
    try:
        body = json.loads(board["DashboardBody"])
    except ValueError as e:
        return [f"the dashboard body with {where} is not JSON: {e}"]
    findings = [f"with {where}: {f}" for f in layout(body)]
    names = named_metrics(body)
    if params.get("KernelMetrics") == "false" and \
            names & {"OOMKills", "CPUPressure", "CPUThrottledPercent"}:
        findings.append(f"KernelMetrics false still shows {sorted(names)}")
    environment = agent_environment(t)
    if params.get("DetailedMetrics") == "false":
        if names & DETAILED:
            findings.append(f"DetailedMetrics false still shows {sorted(names & DETAILED)}")
        if "CWMA_METRICS" in environment:
            findings.append("DetailedMetrics false still sets CWMA_METRICS")
    elif "CWMA_METRICS" not in environment:
        findings.append(f"with {where} the agent container has no CWMA_METRICS")
    ecs = params.get("EcsDimensions", t.params.get("EcsDimensions"))
    if environment.get("CWMA_ECS_DIMENSIONS", "false") != ecs:
        findings.append(f"with {where} the agent's CWMA_ECS_DIMENSIONS is "
                        f"{environment.get('CWMA_ECS_DIMENSIONS')!r}")
    findings += [f"with {where}: {f}" for f in ecs_dimension_findings(t, body)]
    return findings


def ecs_dimension_findings(t, body):
    """A ClusterName or TaskDefinitionFamily asked of the agent's metrics is the
    service's cluster or the task definition's family (what the agent reads in /task)."""
    (_, task_def), = t.of_type("AWS::ECS::TaskDefinition")
    expected = {"ClusterName": the_service(t)["ClusterName"],
                "TaskDefinitionFamily": task_def["Family"]}
    asked = []
    for names, _, _ in metrics_of(body):
        if not names[0].startswith("AWS/"):
            asked += list(zip(names[2::2], names[3::2]))
    for _, parsed, _, _ in searches_of(body):
        if isinstance(parsed, tuple):
            asked += list(parsed[2].items())
    for name, alarm in t.of_type("AWS::CloudWatch::Alarm"):
        asked += [(d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])]
        asked += [kv for s in alarm_metric_stats(alarm) if not s[1].startswith("AWS/")
                  for kv in s[3].items()]
    return sorted({f"{k} {v!r} is not the service's {expected[k]!r}"
                   for k, v in asked if k in expected and v != expected[k]})


def layout(dashboard):
    """Widgets outside the 24-column grid, or on top of one another."""
    findings, boxes = [], []
    for widget in dashboard.get("widgets", []):
        title = widget.get("properties", {}).get("title")
        try:
            x, y, w, h = (int(widget[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            findings.append(f"widget {title!r} has no x, y, width and height")
            continue
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > 24:
            findings.append(f"widget {title!r} is outside the grid: x {x}, width {w}")
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                findings.append(f"widgets {other!r} and {title!r} overlap")
        boxes.append((title, (x, y, w, h)))
    return findings


def agent_environment(template):
    """The agent container's environment, name to value."""
    (_, task_def), = template.of_type("AWS::ECS::TaskDefinition")
    agent = next(c for c in task_def["ContainerDefinitions"] if c["Name"] == "metrics")
    return {e["Name"]: e["Value"] for e in agent.get("Environment", [])}


def container_names(template):
    (_, task_def), = template.of_type("AWS::ECS::TaskDefinition")
    return sorted(c["Name"] for c in task_def["ContainerDefinitions"])


def metrics_of(dashboard):
    """(metric tuple, options) of every metric line of every widget."""
    for widget in dashboard.get("widgets", []):
        for line in widget.get("properties", {}).get("metrics", []):
            options = line[-1] if line and isinstance(line[-1], dict) else {}
            names = [x for x in line if not isinstance(x, dict)]
            if names:
                yield tuple(names), options, widget


def expressions_of(dashboard):
    """(expression, options, widget) of every metric math line of every widget."""
    for widget in dashboard.get("widgets", []):
        for line in widget.get("properties", {}).get("metrics", []):
            options = line[-1] if line and isinstance(line[-1], dict) else {}
            if "expression" in options:
                yield options["expression"], options, widget


def parse_search(query):
    """(namespace, dimension names, {term: value}) of a SEARCH's query, or None when it
    is not a schema followed by Name="value" terms."""
    m = SCHEMA.match(query)
    if not m:
        return None
    schema = [s.strip().strip('"') for s in m.group(1).split(",")]
    terms = {}
    for term in TERM.finditer(m.group(2)):
        if term.group(3) is not None:
            return None
        terms[term.group(1)] = term.group(2)
    return schema[0], frozenset(schema[1:]), terms


def searches_of(dashboard):
    """(widget title, parsed query or the unparsed text, statistic, period) of every
    SEARCH in the dashboard's expressions."""
    for expression, _, widget in expressions_of(dashboard):
        title = widget["properties"].get("title")
        found = SEARCH.findall(expression)
        if len(found) != expression.count("SEARCH("):
            yield title, expression, None, None
        for query, stat, period in found:
            parsed = parse_search(query)
            yield title, parsed or query, stat, int(period) if period else None


def named_metrics(dashboard):
    """Every metric name the dashboard shows, those its SEARCH expressions look for too."""
    names = {m[1] for m, _, _ in metrics_of(dashboard)}
    for _, parsed, _, _ in searches_of(dashboard):
        if isinstance(parsed, tuple) and "MetricName" in parsed[2]:
            names.add(parsed[2]["MetricName"])
    return names


def describe(parsed):
    namespace, dims, terms = parsed
    schema = ",".join([namespace] + sorted(dims))
    return "{" + schema + "} " + " ".join(f'{k}="{v}"' for k, v in terms.items())


def search_matches(sent, parsed):
    """The published metrics a SEARCH finds: the schema's namespace and exactly its
    dimensions, and every term's exact value."""
    namespace, dims, terms = parsed
    found = []
    for metric in sent:
        ns, name, pairs = metric
        values = dict(pairs)
        if ns != namespace or set(values) != dims:
            continue
        values["MetricName"] = name
        if all(values.get(k) == v for k, v in terms.items()):
            found.append(metric)
    return found


def valid_period(period):
    return period in (1, 5, 10, 30) or (period > 0 and period % 60 == 0)


def published(lines):
    seen = set()
    for line in lines:
        request = json.loads(line)
        for d in request["MetricData"]:
            dims = tuple(sorted((x["Name"], x["Value"]) for x in d.get("Dimensions", [])))
            seen.add((request["Namespace"], d["MetricName"], dims))
    return seen


def check_metrics(template_path, dashboard_path, params, lines):
    findings = []
    sent = published(lines)
    if not sent:
        return ["no dry-run lines on stdin"]
    t = Template(template_path, {**EXAMPLE, **params})
    if dashboard_path is None:
        (_, board), = t.of_type("AWS::CloudWatch::Dashboard")
        dashboard = json.loads(board["DashboardBody"])
    else:
        with open(dashboard_path) as f:
            dashboard = json.load(f)
    wanted, theirs = [], []
    service = the_service(t)
    for names, options, widget in metrics_of(dashboard):
        props = widget["properties"]
        if "expression" in options:
            continue
        ns, name, rest = names[0], names[1], names[2:]
        dims = tuple(sorted(zip(rest[0::2], rest[1::2])))
        where = f"dashboard widget {props.get('title')!r}"
        (theirs if ns.startswith("AWS/") else wanted).append((where, (ns, name, dims)))
        stat = options.get("stat", props.get("stat", "Average"))
        if not STAT.match(stat):
            findings.append(f"{props.get('title')!r}: {stat!r} is not a CloudWatch statistic")
        period = options.get("period", props.get("period", 300))
        if not valid_period(period):
            findings.append(f"{props.get('title')!r}: a period of {period} s")
    searches = 0
    containers = container_names(t)
    for title, parsed, stat, period in searches_of(dashboard):
        searches += 1
        if not isinstance(parsed, tuple):
            findings.append(f"{title!r}: cannot read the SEARCH in {parsed!r} (this check "
                            "takes '{Namespace,Dimension,...} Name=\"value\" ...')")
            continue
        if not STAT.match(stat):
            findings.append(f"{title!r}: {stat!r} is not a CloudWatch statistic")
        if period is not None and not valid_period(period):
            findings.append(f"{title!r}: a period of {period} s")
        found = search_matches(sent, parsed)
        search = f"{title!r}: SEARCH {describe(parsed)}"
        if not found:
            findings.append(f"{search} finds none of the metrics the agent publishes "
                            f"({sorted(sent)})")
        elif "ContainerName" in parsed[1]:
            shown = {dict(m[2])["ContainerName"] for m in found}
            missing = [c for c in containers if c not in shown]
            if missing:
                findings.append(f"{search} finds no metric of the template's containers "
                                f"{missing} (it finds {sorted(shown)})")
    for widget in dashboard.get("widgets", []):
        findings += id_findings(f"widget {widget['properties'].get('title')!r}",
                                widget["properties"].get("metrics", []))
    for name, alarm in t.of_type("AWS::CloudWatch::Alarm"):
        if "Metrics" in alarm:
            for id_, ns, metric, dims, stat, period in alarm_metric_stats(alarm):
                pairs = tuple(sorted(dims.items()))
                (theirs if ns.startswith("AWS/") else wanted).append(
                    (f"alarm {name} ({id_})", (ns, metric, pairs)))
                if not STAT.match(stat):
                    findings.append(f"alarm {name}: {stat!r} is not a CloudWatch statistic")
                if not valid_period(period):
                    findings.append(f"alarm {name}: a period of {period} s")
            lines = [[{"expression": q["Expression"], "id": q["Id"]}] if "Expression" in q
                     else [{"id": q["Id"]}] for q in alarm["Metrics"]]
            findings += id_findings(f"alarm {name}", lines)
            continue
        dims = tuple(sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])))
        wanted.append((f"alarm {name}", (alarm["Namespace"], alarm["MetricName"], dims)))
        stat = alarm.get("ExtendedStatistic", alarm.get("Statistic"))
        if not stat or not STAT.match(stat):
            findings.append(f"alarm {name}: {stat!r} is not a CloudWatch statistic")
    for where, (ns, metric, dims) in theirs:
        if ns != "AWS/ECS" or metric not in ECS_SERVICE_METRICS or dict(dims) != service:
            findings.append(f"{where} names {(ns, metric, dims)}, which is not an AWS/ECS "
                            f"service metric of the template's service {service}")
    for where, metric in wanted:
        if metric not in sent:
            findings.append(f"{where} names {metric}, which the agent does not publish "
                            f"(it publishes {sorted(sent)})")
    if not findings:
        print(f"ok: {len(wanted)} metrics named and {searches} searches, all published by "
              f"the agent, and {len(theirs)} AWS/ECS metrics of the service")
    return findings


def id_findings(where, lines):
    """Every id a metric math expression of these metric lines uses is one of theirs."""
    ids = {line[-1]["id"] for line in lines
           if line and isinstance(line[-1], dict) and "id" in line[-1]}
    findings = []
    for line in lines:
        options = line[-1] if line and isinstance(line[-1], dict) else {}
        if "expression" in options:
            unknown = expression_ids(options["expression"]) - ids
            if unknown:
                findings.append(f"{where}: {options['expression']!r} uses "
                                f"{sorted(unknown)}, which no metric of it has as id")
    return findings


# Namespaces at the edges of the agent's rules (src/config.rs, check_namespace).
NAMESPACES = ["MyCompany/WebApi", "My/Co:#_-. 1", "AWS/ECS", "AWS/", "AWS", "AWSx/y",
              "aws/x", "Aws/x", " AWS/x", "", " ", "   ", "a b", " a", "x*y", "x\ty",
              "caf\u00e9", "x\ny", "a" * 255, "a" * 256, "/", "#:"]


def namespace_findings(template_path, agent):
    t = Template(template_path, EXAMPLE)
    pattern = t.doc["Parameters"]["Namespace"].get("AllowedPattern")
    if pattern is None:
        return ["the Namespace parameter has no AllowedPattern"]
    findings = []
    for namespace in NAMESPACES:
        allowed = re.fullmatch(pattern, namespace) is not None
        run = subprocess.run(
            [agent, "check", "--dry-run", "--scope", "host", "--namespace", namespace,
             "--service", "web-api"],
            env={"PATH": os.environ.get("PATH", ""), "AWS_EC2_METADATA_DISABLED": "true"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if run.returncode not in (0, 2):
            findings.append(f"the agent exits {run.returncode} on --namespace "
                            f"{namespace!r}: {run.stderr.decode(errors='replace')[:300]}")
        elif allowed != (run.returncode == 0):
            said = run.stderr.decode(errors="replace").strip().splitlines()[-1:]
            findings.append(f"Namespace {namespace!r}: the template's pattern "
                            f"{'takes' if allowed else 'refuses'} it, the agent "
                            f"{'takes' if run.returncode == 0 else 'refuses'} it {said}")
    if not findings:
        print(f"ok: the Namespace pattern and the agent agree on {len(NAMESPACES)} "
              "namespaces")
    return findings


# Changes to the deploy files the consistency check must catch: (what, file index as in
# the consistency arguments after TEMPLATE, text, replacement).
MUTATIONS = [
    ("the task definition without awslogs-create-group", 2,
     '"awslogs-create-group": "true",', ""),
    ("the task definition's agent without readonlyRootFilesystem", 2,
     '"readonlyRootFilesystem": true', '"readonlyRootFilesystem": false'),
    ("the task definition's agent restarted after a clean exit", 2,
     '"ignoredExitCodes": [0]', '"ignoredExitCodes": []'),
    ("the task definition's agent restarted every 10 s", 2,
     '"restartAttemptPeriod": 300', '"restartAttemptPeriod": 10'),
    ("the task definition's agent without a restart policy", 2,
     '"enabled": true', '"enabled": false'),
    ("an execution role policy without logs:CreateLogGroup", 4,
     '"logs:CreateLogGroup"', '"logs:CreateLogStream"'),
    ("the template's agent without a restart policy", 0,
     "            Enabled: true\n", "            Enabled: false\n"),
    ("the template's agent with a writable root", 0,
     "ReadonlyRootFilesystem: true", "ReadonlyRootFilesystem: false"),
    ("the template's log group deleted with the stack", 0,
     "DeletionPolicy: !If [RetainsLogGroup, Retain, Delete]",
     "DeletionPolicy: !If [RetainsLogGroup, Delete, Delete]"),
    ("the template without the AWS::LanguageExtensions transform", 0,
     "Transform: AWS::LanguageExtensions\n", ""),
    ("the template's execution role trusted by any account", 0,
     "                aws:SourceAccount: !Ref AWS::AccountId\n      # Pulling",
     "                aws:SourceAccount: \"*\"\n      # Pulling"),
    ("the template's tasks alarm on a 10 s period", 0,
     "            Period: !If [SubMinutePeriod, 60, !Ref Period]\n            Stat: SampleCount\n        - Id: ecs",
     "            Period: !If [SubMinutePeriod, 10, !Ref Period]\n            Stat: SampleCount\n        - Id: ecs"),
    ("the template's tasks alarm on another service", 0,
     "                - { Name: ClusterName, Value: !Ref Cluster }\n                - { Name: ServiceName, Value: !Ref ServiceName }",
     "                - { Name: ClusterName, Value: !Ref Cluster }\n                - { Name: ServiceName, Value: other }"),
    ("the template's agent without CWMA_ECS_DIMENSIONS", 0,
     "            - Name: CWMA_ECS_DIMENSIONS\n              Value: !Ref EcsDimensions\n", ""),
    ("the template asking for another cluster's ClusterName", 0,
     '"ClusterName","${Cluster}","TaskDefinitionFamily"', '"ClusterName","prod","TaskDefinitionFamily"'),
]


def mutation_findings(paths):
    """Each mutation applied alone to a copy must make the consistency check fail."""
    findings = []
    with tempfile.TemporaryDirectory() as dir:
        for what, index, text, replacement in MUTATIONS:
            with open(paths[index]) as f:
                original = f.read()
            if text not in original:
                findings.append(f"{what}: {text!r} is not in {paths[index]}")
                continue
            copy = os.path.join(dir, "mutated-" + os.path.basename(paths[index]))
            with open(copy, "w") as f:
                f.write(original.replace(text, replacement, 1))
            mutated = list(paths)
            mutated[index] = copy
            caught = consistency(*mutated)
            print(f"{'caught' if caught else 'MISSED'}: {what}"
                  + (f" ({caught[0]})" if caught else ""))
            if not caught:
                findings.append(f"{what} passes the consistency check")
    return findings


def parameters(args):
    """NAME=VALUE arguments as a dict, or None when one is not of that form."""
    params = {}
    for arg in args:
        name, eq, value = arg.partition("=")
        if not eq or not re.match(r"^[A-Za-z][A-Za-z0-9]*$", name):
            return None
        params[name] = value
    return params


def main(argv):
    if len(argv) == 6 and argv[0] == "consistency":
        findings = consistency(*argv[1:])
        if not findings:
            print("ok: the template agrees with the IAM policy, the task definition, "
                  "the dashboard and the execution role policy")
    elif len(argv) == 6 and argv[0] == "mutations":
        findings = mutation_findings(argv[1:])
        if not findings:
            print(f"ok: the consistency check catches all {len(MUTATIONS)} mutations")
    elif len(argv) == 3 and argv[0] == "namespaces":
        findings = namespace_findings(*argv[1:])
    elif len(argv) >= 2 and argv[0] == "metrics":
        rest = argv[2:]
        dashboard = None
        if rest and parameters(rest[:1]) is None:
            dashboard, rest = rest[0], rest[1:]
        params = parameters(rest)
        if params is None:
            print(__doc__, file=sys.stderr)
            return 2
        lines = [l for l in sys.stdin if l.strip()]
        findings = check_metrics(argv[1], dashboard, params, lines)
    elif len(argv) >= 2 and argv[0] == "environment" and parameters(argv[2:]) is not None:
        t = Template(argv[1], {**EXAMPLE, **parameters(argv[2:])})
        print(json.dumps(agent_environment(t)))
        return 0
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
