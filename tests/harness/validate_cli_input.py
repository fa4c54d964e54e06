#!/usr/bin/env python3
"""Checks `--dry-run` lines as `aws cloudwatch put-metric-data --cli-input-json` would
take them: each line (JSON) goes through botocore's parameter validation for
PutMetricData with the CloudWatch model (unknown members, types, required members),
and then through the rules CloudWatch applies beyond the model (cwserver.py's, the same
the strict test server enforces).

Usage: validate_cli_input.py < lines   -> "N lines valid", exit 0; else each error, exit 1
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from botocore.utils import parse_timestamp  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

import cwserver  # noqa: E402  (the model and the rules; starts no server on import)


def errors(line):
    try:
        params = json.loads(line)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    shape = cwserver.SERVICE_MODEL.operation_model("PutMetricData").input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        return [report.generate_report()]
    for datum in params.get("MetricData", []):
        if isinstance(datum.get("Timestamp"), str):
            datum["Timestamp"] = parse_timestamp(datum["Timestamp"])
    body = len(line.encode())
    rejected = cwserver.check_put_metric_data(params, body)
    return [f"{rejected.shape}: {rejected.message}"] if rejected else []


def main():
    lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    failed = 0
    for number, line in enumerate(lines, 1):
        for error in errors(line):
            failed += 1
            print(f"line {number}: {error}")
    if not lines:
        print("no lines")
        return 1
    if failed:
        return 1
    print(f"{len(lines)} lines valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
