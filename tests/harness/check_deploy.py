#!/usr/bin/env python3
"""Checks that deploy/cloudformation/sidecar.yaml agrees with the other deploy files and
with what the agent publishes.

    check_deploy.py consistency TEMPLATE IAM_POLICY TASK_DEFINITION DASHBOARD
        The template, rendered with docs/cloudformation.md's example values, grants what
        IAM_POLICY grants (and nothing for EMF), its agent container has the settings of
        TASK_DEFINITION's, and its dashboard body (KernelMetrics true, DetailedMetrics
        false) is DASHBOARD. With KernelMetrics and DetailedMetrics each true or false,
        the body is JSON and its widgets fit the grid without overlapping; with either
        false, it shows none of that parameter's metrics (nor sets CWMA_METRICS, for
        DetailedMetrics).
    check_deploy.py metrics TEMPLATE [DASHBOARD] [NAME=VALUE ...] < dry-run lines
        Every metric the dashboard (DASHBOARD, or without it the template's own body) and
        the template's alarms name (namespace, name and dimensions) is in the agent's
        dry-run lines on stdin; every SEARCH expression finds at least one of them (and,
        when it searches by ContainerName, one of each container of the template's task
        definition); every statistic and period is one CloudWatch takes. The template is
        rendered with the example values and the NAME=VALUE parameters.
    check_deploy.py environment TEMPLATE [NAME=VALUE ...]
        Prints the agent container's environment, rendered with the example values and
        the NAME=VALUE parameters, as one JSON object.

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
                        "(rendered with docs/cloudformation.md's example, KernelMetrics true, "
                        "DetailedMetrics false)")
    for kernel in ("true", "false"):
        for detailed in ("true", "false"):
            params = {"KernelMetrics": kernel, "DetailedMetrics": detailed}
            findings += parameter_findings(template_path, params)
    return findings


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
    if params.get("DetailedMetrics") == "false":
        if names & DETAILED:
            findings.append(f"DetailedMetrics false still shows {sorted(names & DETAILED)}")
        if "CWMA_METRICS" in agent_environment(t):
            findings.append("DetailedMetrics false still sets CWMA_METRICS")
    elif "CWMA_METRICS" not in agent_environment(t):
        findings.append(f"with {where} the agent container has no CWMA_METRICS")
    return findings


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
        print(f"ok: {len(wanted)} metrics named and {searches} searches, all published by "
              "the agent")
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
    if len(argv) == 5 and argv[0] == "consistency":
        findings = consistency(*argv[1:])
        if not findings:
            print("ok: the template agrees with the IAM policy, the task definition "
                  "and the dashboard")
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
