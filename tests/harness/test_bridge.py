#!/usr/bin/env python3
"""Self-check of cwserver.py: speaks RPC v2 CBOR to the bridge exactly as
aws-sdk-cloudwatch does (SigV4-signed POST /service/<svc>/operation/<op>),
and reads moto directly with boto3 (which uses awsJson1_0) to prove the data
landed. Run: .venv/bin/python tests/harness/test_bridge.py
Ends with "N passed, N failed"; exit code 1 on any failure."""

import datetime as dt
import gzip
import http.client
import json
import math
import os
import subprocess
import sys
import time
import traceback
from urllib.parse import urlsplit

import boto3
import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
SVC = "GraniteServiceVersion20100801"
REGION = "us-east-1"
CREDS = Credentials("testing", "testing")
NS = "Harness/SelfCheck"
# Align to a minute so both datums fall in one 60 s statistics bucket.
TS = int(time.time()) // 60 * 60 - 120
DIMS = [{"Name": "Host", "Value": "h1"}]


class Bridge:
    """One keep-alive connection, like the SDK's pooled client."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        parts = urlsplit(endpoint)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def call(self, op, params, *, gzip_body=False, canonical=False, raw=None):
        body = raw if raw is not None else (
            cbor2.dumps(params, canonical=canonical) if params is not None else b"")
        headers = {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor",
                   "Accept": "application/cbor"}
        if gzip_body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        url = f"{self.endpoint}/service/{SVC}/operation/{op}"
        req = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(CREDS, "monitoring", REGION).add_auth(req)
        self.conn.request("POST", urlsplit(url).path, body=body, headers=dict(req.headers))
        resp = self.conn.getresponse()
        data = resp.read()
        # Keep tag 1 visible instead of letting cbor2 turn it into a datetime.
        decoded = cbor2.loads(data, semantic_decoders={1: lambda v, _imm: ("tag1", v)})
        return resp.status, resp, decoded, data


def start_server(*args):
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "cwserver.py"), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # cwserver prints only once both servers answer
    assert line, f"cwserver exited early with {proc.wait(timeout=10)}"
    return proc, json.loads(line)


def tag1(value):
    return ("tag1", float(value))


def check_put_metric_data(b, cw):
    data = [
        {"MetricName": "hist", "Values": [1.5, 2.5], "Counts": [2.0, 1.0],
         "Timestamp": cbor2.CBORTag(1, TS), "Dimensions": DIMS, "Unit": "Percent",
         "StorageResolution": 1},
        {"MetricName": "single", "Value": 42.25, "Timestamp": cbor2.CBORTag(1, TS + 0.5),
         "Dimensions": DIMS, "Unit": "Percent", "StorageResolution": 60},
    ]
    # canonical=True writes 1.5/2.5/42.25 as float16/float32, as the SDK may.
    status, resp, out, _ = b.call("PutMetricData", {"Namespace": NS, "MetricData": data},
                                  canonical=True)
    assert status == 200, (status, out)
    assert resp.getheader("smithy-protocol") == "rpc-v2-cbor"
    assert resp.getheader("Content-Type") == "application/cbor"
    assert out == {}, out

    names = {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]}
    assert names == {"hist", "single"}, names
    stats = cw.get_metric_statistics(
        Namespace=NS, MetricName="hist", Dimensions=DIMS, Period=60,
        StartTime=dt.datetime.fromtimestamp(TS - 600, dt.timezone.utc),
        EndTime=dt.datetime.fromtimestamp(TS + 600, dt.timezone.utc),
        Statistics=["Sum", "SampleCount"])["Datapoints"]
    assert len(stats) == 1 and stats[0]["Sum"] == 5.5 and stats[0]["SampleCount"] == 3, stats
    assert stats[0]["Unit"] == "Percent", stats


def check_list_metrics(b, cw):
    status, _, out, _ = b.call("ListMetrics", {"Namespace": NS, "MetricName": "single"})
    assert status == 200, (status, out)
    assert out["Metrics"] == [{"Namespace": NS, "MetricName": "single", "Dimensions": DIMS}], out
    # An operation called with no input at all has an empty body.
    status, _, out, _ = b.call("ListMetrics", None)
    assert status == 200 and len(out["Metrics"]) >= 2, (status, out)


def check_get_metric_statistics(b, cw):
    params = {"Namespace": NS, "MetricName": "single", "Dimensions": DIMS, "Period": 60,
              "StartTime": cbor2.CBORTag(1, TS - 600), "EndTime": cbor2.CBORTag(1, TS + 600.0),
              "Statistics": ["Average", "Sum", "SampleCount"]}
    status, _, out, raw = b.call("GetMetricStatistics", params)
    assert status == 200, (status, out)
    assert out["Label"] == "single", out
    [point] = out["Datapoints"]
    # Same instant as boto3 sees straight from moto, as tag 1 + float64.
    direct = cw.get_metric_statistics(
        **{**params, "StartTime": TS - 600, "EndTime": TS + 600})["Datapoints"][0]
    assert point["Timestamp"] == tag1(direct["Timestamp"].timestamp()), (point, direct)
    assert b"\xc1\xfb" in raw, raw.hex()  # tag 1 followed by a float64
    assert point["Average"] == 42.25 and point["SampleCount"] == 1.0, point
    assert all(isinstance(point[k], float) for k in ("Average", "Sum", "SampleCount")), point
    assert point["Unit"] == "Percent", point


def check_errors(b, cw):
    bad = {"Namespace": NS, "MetricData": [
        {"MetricName": "bad", "Values": [1.0, 2.0], "Counts": [1.0]}]}
    status, resp, out, _ = b.call("PutMetricData", bad)
    assert status == 400, (status, out)
    assert resp.getheader("smithy-protocol") == "rpc-v2-cbor"
    # moto names the error shape; the awsQueryCompatible header carries the
    # query-style code that the Rust SDK matches on ("InvalidParameterValue").
    assert out["__type"].split("#")[-1] == "InvalidParameterValueException", out
    assert "same size" in out["message"], out
    assert resp.getheader("x-amzn-query-error") == "InvalidParameterValue;Sender"

    nan = {"Namespace": NS, "MetricData": [{"MetricName": "bad", "Value": math.nan}]}
    status, resp, out, _ = b.call("PutMetricData", nan)
    assert status == 400 and out["__type"].endswith("#InvalidParameterValueException"), out
    assert resp.getheader("x-amzn-query-error") == "InvalidParameterValue;Sender"
    assert "NaN" in out["message"], out

    status, _, out, _ = b.call("NoSuchOperation", {})
    assert status == 404 and out["__type"] == "UnknownOperationException", (status, out)
    status, _, out, _ = b.call("ListMetrics", None, raw=b"\xff\x00garbage")
    assert status == 400 and out["__type"] == "SerializationException", (status, out)
    names = {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]}
    assert "bad" not in names, names


def datum(**overrides):
    """A datum CloudWatch takes; `overrides` break it (None removes a member)."""
    d = {"MetricName": "rule", "Values": [1.0, 2.0], "Counts": [1.0, 1.0],
         "Timestamp": cbor2.CBORTag(1, time.time()), "Dimensions": DIMS,
         "Unit": "Percent", "StorageResolution": 60}
    d.update(overrides)
    return {k: v for k, v in d.items() if v is not None}


def check_cloudwatch_rules(b, cw):
    """Each rule of the model and of the PutMetricData / MetricDatum API reference, with
    a request that breaks it: CloudWatch's answer, and nothing stored. Then the edges
    that are still allowed."""
    now = time.time()
    many_dims = [{"Name": f"D{i}", "Value": "v"} for i in range(31)]
    big_dims = [{"Name": f"D{i}", "Value": "x" * 1000} for i in range(30)]
    cases = [
        ("1001 datums", {"MetricData": [datum() for _ in range(1001)]},
         "InvalidParameterValue", "1000"),
        ("over 1 MiB", {"MetricData": [datum(Dimensions=big_dims) for _ in range(40)]},
         "InvalidParameterValue", "bytes"),
        ("151 values", {"MetricData": [datum(Values=[float(v) for v in range(151)],
                                             Counts=[1.0] * 151)]},
         "InvalidParameterValue", "150"),
        ("counts of another size", {"MetricData": [datum(Counts=[1.0])]},
         "InvalidParameterValue", "same size"),
        ("a value past 2^360", {"MetricData": [datum(Values=[2.0 ** 361], Counts=[1.0])]},
         "InvalidParameterValue", "2^360"),
        ("NaN", {"MetricData": [datum(Values=None, Counts=None, Value=math.nan)]},
         "InvalidParameterValue", "NaN"),
        ("infinity", {"MetricData": [datum(Counts=[1.0, math.inf])]},
         "InvalidParameterValue", "inf"),
        ("31 dimensions", {"MetricData": [datum(Dimensions=many_dims)]},
         "InvalidParameterValue", "at most 30"),
        ("an empty dimension value",
         {"MetricData": [datum(Dimensions=[{"Name": "Env", "Value": ""}])]},
         "InvalidParameterValue", "at least 1"),
        ("storage resolution 5", {"MetricData": [datum(StorageResolution=5)]},
         "InvalidParameterValue", "1 and 60"),
        ("15 days old", {"MetricData": [datum(Timestamp=cbor2.CBORTag(1, now - 15 * 86400))]},
         "InvalidParameterValue", "two weeks"),
        ("3 hours ahead", {"MetricData": [datum(Timestamp=cbor2.CBORTag(1, now + 3 * 3600))]},
         "InvalidParameterValue", "two hours"),
        ("no metric name", {"MetricData": [datum(MetricName=None)]},
         "MissingParameter", "MetricName"),
        ("no namespace", {"Namespace": None, "MetricData": [datum()]},
         "MissingParameter", "Namespace"),
        ("a unit that is not one", {"MetricData": [datum(Unit="Percents")]},
         "InvalidParameterValue", "Percent"),
        ("Value with Values", {"MetricData": [datum(Value=1.0)]},
         "InvalidParameterCombination", "mutually exclusive"),
        ("a namespace starting with a colon", {"Namespace": ":ns", "MetricData": [datum()]},
         "InvalidParameterValue", "Namespace"),
    ]
    for name, params, code, needle in cases:
        params = {"Namespace": NS, **params}
        params = {k: v for k, v in params.items() if v is not None}
        status, resp, out, _ = b.call("PutMetricData", params)
        assert status == 400, (name, status, out)
        assert resp.getheader("x-amzn-query-error") == f"{code};Sender", (name, out)
        assert needle in out["message"], (name, out)
        assert out["__type"].startswith("com.amazonaws.cloudwatch#"), (name, out)
    names = {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]}
    assert "rule" not in names, names

    edges = {"Namespace": NS, "MetricData": [
        datum(Values=[float(v) for v in range(150)], Counts=[1.0] * 150,
              Dimensions=[{"Name": f"D{i}", "Value": "v"} for i in range(30)]),
        datum(Timestamp=cbor2.CBORTag(1, now - 13 * 86400), StorageResolution=1),
        datum(Timestamp=cbor2.CBORTag(1, now + 1.9 * 3600), Values=[2.0 ** 359],
              Counts=[1.0]),
        datum(Values=None, Counts=None, Value=-(2.0 ** 360)),
    ]}
    status, _, out, _ = b.call("PutMetricData", edges)
    assert status == 200, (status, out)


def check_gzip(b, cw):
    # > 10 KiB like the SDK's compression threshold: 300 datums, one metric.
    data = [{"MetricName": "gz", "Value": float(i), "Timestamp": cbor2.CBORTag(1, TS),
             "Dimensions": DIMS + [{"Name": "Padding", "Value": "x" * 20}]}
            for i in range(300)]
    status, _, out, _ = b.call("PutMetricData", {"Namespace": NS, "MetricData": data},
                               gzip_body=True)
    assert status == 200, (status, out)
    stats = cw.get_metric_statistics(
        Namespace=NS, MetricName="gz", Dimensions=data[0]["Dimensions"], Period=60,
        StartTime=TS - 600, EndTime=TS + 600, Statistics=["SampleCount", "Sum"])
    [point] = stats["Datapoints"]
    assert point["SampleCount"] == 300 and point["Sum"] == sum(range(300)), point


def check_passthrough_reset(b, cw):
    b.conn.request("POST", "/moto-api/reset", body=b"")
    resp = b.conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    assert cw.list_metrics(Namespace=NS)["Metrics"] == []


def check_budget(_b, _cw):
    """--budget 2,2: a burst of two, then CloudWatch's throttling answer until tokens come
    back at two a second; the journal says when each request arrived and which were
    throttled."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "journal.jsonl")
        proc, urls = start_server("--budget", "2,2", "--journal", journal)
        try:
            bridge = Bridge(urls["endpoint"])
            put = {"Namespace": NS, "MetricData": [datum()]}
            statuses = []
            for _ in range(5):
                status, resp, out, _ = bridge.call("PutMetricData", put)
                statuses.append(status)
                if status == 400:
                    assert resp.getheader("x-amzn-query-error") == "Throttling;Sender", out
                    assert out["__type"].endswith("#Throttling"), out
                    assert out["message"] == "Rate exceeded", out
            assert statuses[:2] == [200, 200] and 400 in statuses[2:], statuses
            time.sleep(0.6)
            assert bridge.call("PutMetricData", put)[0] == 200, "a token came back"
            with open(journal) as f:
                lines = [json.loads(line) for line in f]
            assert len(lines) == 6, lines
            assert all(abs(line["at"] - time.time()) < 30 for line in lines), lines
            throttled = [line for line in lines if line.get("error") == "Throttling"]
            assert len(throttled) == statuses.count(400), lines
        finally:
            proc.stdin.close()
            proc.wait(timeout=15)


CHECKS = [check_put_metric_data, check_list_metrics, check_get_metric_statistics,
          check_errors, check_cloudwatch_rules, check_gzip, check_passthrough_reset,
          check_budget]


def main():
    proc, urls = start_server()
    print(f"cwserver: {urls}")
    cw = boto3.client("cloudwatch", endpoint_url=urls["moto"], region_name=REGION,
                      aws_access_key_id=CREDS.access_key,
                      aws_secret_access_key=CREDS.secret_key)
    b = Bridge(urls["endpoint"])
    passed = failed = 0
    try:
        for check in CHECKS:
            try:
                check(b, cw)
                passed += 1
                print(f"ok   {check.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL {check.__name__}\n{traceback.format_exc()}")
    finally:
        # Closing stdin is how a dying parent stops the server: it must exit 0.
        proc.stdin.close()
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "still running after stdin EOF"
    if rc == 0:
        passed += 1
        print("ok   exits_0_on_stdin_eof")
    else:
        failed += 1
        print(f"FAIL exits_0_on_stdin_eof: {rc}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
