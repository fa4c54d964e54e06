#!/usr/bin/env python3
"""Checks EMF documents (one JSON object per line on stdin) against the JSON schema of
the EMF specification (emf/schema.json) and the limits the specification states besides
it: at most 100 metrics per directive, dimension keys that are root members with string
values, at most 100 values per array, StorageResolution 1 or 60, an event of at most
256 KiB. A value that is a histogram, as AWS's own exporter (OpenTelemetry awsemf)
writes one, must carry Values, Counts, Max, Min, Count and Sum that agree.

Usage: validate_emf.py < documents   -> "N documents valid", exit 0; else errors, exit 1
"""

import json
import math
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_METRICS = 100
MAX_VALUES = 100
MAX_EVENT_BYTES = 262_144 - 26  # the awslogs driver splits longer lines
HISTOGRAM_KEYS = {"Values", "Counts", "Max", "Min", "Count", "Sum"}

with open(os.path.join(HERE, "emf", "schema.json")) as f:
    SCHEMA = json.load(f)
# The published schema names no draft; its "$id": "#/properties/…" are draft-07's style,
# which the current draft's metaschema no longer takes.
jsonschema.Draft7Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def value_errors(name, value):
    if number(value):
        return []
    if isinstance(value, list):
        if len(value) > MAX_VALUES or not all(number(v) for v in value):
            return [f"{name}: an array of at most {MAX_VALUES} numbers, not {value!r:.80}"]
        return []
    if isinstance(value, dict):
        if set(value) != HISTOGRAM_KEYS:
            return [f"{name}: a histogram has exactly {sorted(HISTOGRAM_KEYS)}"]
        values, counts = value["Values"], value["Counts"]
        if not (isinstance(values, list) and isinstance(counts, list)
                and len(values) == len(counts) and 0 < len(values) <= MAX_VALUES
                and all(number(v) for v in values + counts)):
            return [f"{name}: Values and Counts of the same length, 1 to {MAX_VALUES}"]
        errors = []
        if value["Count"] != sum(counts):
            errors.append(f"{name}: Count {value['Count']} is not the sum of Counts")
        if not math.isclose(value["Sum"], sum(v * c for v, c in zip(values, counts)),
                            rel_tol=1e-9, abs_tol=1e-6):
            errors.append(f"{name}: Sum {value['Sum']} is not Σ Values × Counts")
        if value["Max"] != max(values) or value["Min"] != min(values):
            errors.append(f"{name}: Max/Min are not those of Values")
        return errors
    return [f"{name}: not a number, an array or a histogram"]


def errors(line):
    if len(line.encode()) > MAX_EVENT_BYTES:
        return [f"{len(line.encode())} bytes: over the {MAX_EVENT_BYTES}-byte event limit"]
    try:
        doc = json.loads(line)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    problems = [f"schema: {e.message} at {list(e.absolute_path)}"
                for e in VALIDATOR.iter_errors(doc)]
    if problems:
        return problems
    found = []
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        metrics = directive["Metrics"]
        if len(metrics) > MAX_METRICS:
            found.append(f"{len(metrics)} metrics in a directive; at most {MAX_METRICS}")
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                if not isinstance(doc.get(key), str):
                    found.append(f"dimension {key} has no string value at the root")
        for metric in metrics:
            if metric.get("StorageResolution", 60) not in (1, 60):
                found.append(f"{metric['Name']}: StorageResolution 1 or 60")
            if metric["Name"] not in doc:
                found.append(f"{metric['Name']} has no value at the root")
            else:
                found += value_errors(metric["Name"], doc[metric["Name"]])
    return found


def main():
    lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    failed = 0
    for number_, line in enumerate(lines, 1):
        for error in errors(line):
            failed += 1
            print(f"document {number_}: {error}")
    if not lines:
        print("no documents")
        return 1
    if failed:
        return 1
    print(f"{len(lines)} documents valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
