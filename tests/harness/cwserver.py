#!/usr/bin/env python3
"""CloudWatch test server: moto behind a Smithy RPC v2 CBOR -> awsJson1_0 bridge.

Why: aws-sdk-cloudwatch (Rust, >= 1.100) only speaks RPC v2 CBOR, moto 5.2.5
only speaks AWS Query and awsJson1_0 for CloudWatch.

How moto's JSON protocol for CloudWatch is reached (moto 5.2.5, read from its
source):
  * Routing (moto_server/werkzeug_app.py): a signed request is routed by the
    service in the SigV4 credential scope of `Authorization`
    (".../<region>/monitoring/aws4_request" -> cloudwatch) and the region comes
    from the same scope, so Authorization/X-Amz-Date are passed on unchanged.
    moto does not verify signatures, and the URL path must be "/".
  * Dispatch (core/responses.py `_get_action`): no `Action` query parameter,
    so the action is the part after the "." of `X-Amz-Target`
    ("GraniteServiceVersion20100801.PutMetricData").
  * Protocol (core/request.py `determine_request_protocol`): a Content-Type of
    `application/x-amz-json-1.0` selects the "json" parser/serializer; botocore's
    cloudwatch model lists ["smithy-rpc-v2-cbor", "json", "query"]. Input
    timestamps may be epoch-second numbers; NaN/Infinity go as the strings
    "NaN"/"Infinity"/"-Infinity" (moto does float(value)). Output timestamps
    come back as epoch seconds, errors as {"__type": "<prefix>#Code",
    "Message": ...} plus `x-amzn-query-error: Code;Sender` (the model is
    awsQueryCompatible; the Rust SDK takes its error code from that header).
  * boto3 itself prefers "json" over CBOR for cloudwatch, so tests can read
    moto directly with boto3.

Usage: python cwserver.py  -> prints one JSON line {"endpoint", "moto"} on
stdout once both servers answer, serves until stdin hits EOF or SIGTERM/SIGINT,
then exits 0. The parent must hand over a pipe as stdin (Stdio::piped() in
Rust) and keep it open: its closing, or the parent's death, stops the server.
/dev/null as stdin means an immediate exit. Any path other than
/service/<svc>/operation/<op> (e.g. POST /moto-api/reset) goes to moto as is,
Strict like CloudWatch, not like moto: every PutMetricData is checked first
against the CloudWatch model in botocore (types, required members, string
lengths and patterns, list sizes, enums such as Unit) and against the rules of
the PutMetricData and MetricDatum API reference that the model does not encode
(see put_metric_data_rules); a violation gets CloudWatch's own answer, HTTP
400 with InvalidParameterValue / MissingParameter / InvalidParameterCombination,
in CBOR, and never reaches moto.
With `--journal FILE`, every translated call is appended to FILE as one JSON
line {"op", "status", "input", "at"} (input as sent to moto, timestamps in epoch
seconds; "at" when the request arrived, epoch seconds), so tests can assert on
exactly what the agent put on the wire, and when.
With `--budget TPS[,BURST]`, PutMetricData shares one account-wide budget, a
token bucket of TPS requests a second holding at most BURST (default TPS / 10,
a tenth of a second's worth); a request over it gets CloudWatch's throttling
answer (HTTP 400, Throttling, "Rate exceeded", as in the AWS knowledge-center
article "400 ThrottlingException for PutMetricData") and is journaled with
status 400 and error "Throttling".
"""

import base64
import datetime as dt
import decimal
import gzip
import http.client
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Before the slow moto import, so a test aborting our startup gets a clean exit.
STOP = threading.Event()
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *_: STOP.set())

import botocore.session  # noqa: E402
import cbor2  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from moto.cloudwatch import models as cloudwatch_models  # noqa: E402

SERVICE_MODEL = botocore.session.get_session().get_service_model("cloudwatch")


_EXACT = threading.local()


def _exact_dimensions(backend_class):
    """GetMetricStatistics as CloudWatch answers it: "each unique combination of
    dimensions is a separate metric", so only datums with exactly the requested
    dimension set count. moto 5.x counts every datum that has the requested dimensions
    among others (ListMetrics' rule), which mixes a task's figure with its containers'.
    The filter is per thread (moto serves each request on its own), so a ListMetrics
    answered meanwhile sees every metric."""
    stats_of = backend_class.get_metric_statistics
    all_of = backend_class.get_all_metrics

    def get_all_metrics(self):
        every = all_of(self)
        wanted = getattr(_EXACT, "dimensions", None)
        if wanted is None:
            return every
        return [md for md in every
                if sorted((d.name, d.value) for d in md.dimensions) == wanted]

    def get_metric_statistics(self, namespace, metric_name, start_time, end_time,
                              period, stats, dimensions, unit=None):
        _EXACT.dimensions = sorted((d["Name"], d.get("Value")) for d in dimensions or [])
        try:
            return stats_of(self, namespace, metric_name, start_time, end_time,
                            period, stats, dimensions, unit)
        finally:
            _EXACT.dimensions = None

    backend_class.get_all_metrics = get_all_metrics
    backend_class.get_metric_statistics = get_metric_statistics


_exact_dimensions(cloudwatch_models.CloudWatchBackend)
RPC_PATH = re.compile(r"/service/([^/]+)/operation/([^/?#]+)$")
# Headers the bridge forwards to moto for translated calls: signing data only
# (moto derives service/region/account from it); the rest is CBOR-specific.
FORWARD_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token")
# Headers that describe one hop, never the message; the bridge sets its own.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "date", "server", "proxy-connection", "te", "trailer", "upgrade"}
MOTO_TIMEOUT = 120


class TokenBucket:
    """PutMetricData's account-wide budget (--budget): `rate` tokens a second, at
    most `burst` held; one token per request."""

    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


# The budget (--budget), or None for no limit.
BUDGET = None
# File that every translated call is appended to (--journal), or None.
JOURNAL = None
JOURNAL_LOCK = threading.Lock()


def log(msg):
    print(f"cwserver: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- conversion
def _epoch(value):
    if value.tzinfo is None:  # CBOR tag 1 is always UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def cbor_input_to_json(value):
    """Decoded CBOR input -> JSON-able value for awsJson1_0 (model-free:
    CBOR already carries the types that JSON lacks)."""
    if isinstance(value, dict):
        return {k: cbor_input_to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [cbor_input_to_json(v) for v in value]
    if isinstance(value, dt.datetime):
        return _epoch(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        # awsJson spells non-finite doubles as strings.
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, cbor2.CBORTag):
        return cbor_input_to_json(value.value)
    return value


def json_output_to_cbor(shape, value):
    """moto's JSON output -> CBOR-ready value, typed by the botocore shape
    (JSON cannot tell a timestamp or a blob from a number or a string)."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: json_output_to_cbor(members.get(k), v)
                for k, v in value.items() if v is not None}
    if kind == "list" and isinstance(value, list):
        return [json_output_to_cbor(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: json_output_to_cbor(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = _epoch(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        # Always float64 so the SDK never has to guess; never cbor2's tag 0.
        return cbor2.CBORTag(1, float(value))
    if kind in ("double", "float"):
        return float(value)  # float("NaN") / float("-Infinity") work too
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    if kind == "blob" and isinstance(value, str):
        return base64.b64decode(value)
    return value


# ---------------------------------------------------------------- CloudWatch's rules
# PutMetricData API reference: "Each PutMetricData request is limited to 1 MB in size
# for HTTP POST requests. You can send a payload compressed by gzip." (the size is of
# the uncompressed request), "You can publish up to 1000 different metrics" per call.
MAX_REQUEST_BYTES = 1 << 20
MAX_DATUMS = 1000
# MetricDatum.Values: "up to 150 unique values"; Counts: "the same number of values as
# Values"; Value: "Values must be in the range of -2^360 to 2^360 ... NaN, +Infinity,
# -Infinity are not supported."
MAX_VALUES = 150
MAX_MAGNITUDE = 2.0 ** 360
# StorageResolution: "Valid values are 1 and 60."
STORAGE_RESOLUTIONS = (1, 60)
# Timestamp: "Data points with time stamps from 24 hours ago or longer can take at
# least 48 hours to become available ... CloudWatch accepts data points up to two weeks
# old and up to two hours into the future" (Publishing metrics, user guide; the API
# answers InvalidParameterValue outside that range).
MAX_AGE_S = 14 * 24 * 3600
MAX_AHEAD_S = 2 * 3600
ERROR_CODES = {e.name: e.metadata["error"]["code"]
               for e in SERVICE_MODEL.operation_model("PutMetricData").error_shapes}


class Rejected(Exception):
    """A request CloudWatch would refuse: the error shape's name and the message."""

    def __init__(self, shape, message):
        super().__init__(message)
        self.shape = shape
        self.message = message


def invalid(message):
    return Rejected("InvalidParameterValueException", message)


def model_errors(shape, value, path):
    """The first way `value` breaks `shape` of the botocore model, as a Rejected."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            return invalid(f"{path} must be a structure")
        for name in shape.required_members:
            if value.get(name) is None:
                return Rejected("MissingRequiredParameterException",
                                f"The parameter {path}.{name} is required.")
        for name, member in value.items():
            if name not in shape.members:
                return invalid(f"{path}.{name} is not a member of {shape.name}")
            if member is not None:
                error = model_errors(shape.members[name], member, f"{path}.{name}")
                if error:
                    return error
        return None
    if kind == "list":
        if not isinstance(value, list):
            return invalid(f"{path} must be a list")
        if "min" in meta and len(value) < meta["min"]:
            return invalid(f"{path} has {len(value)} members; at least {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            return invalid(f"{path} has {len(value)} members; at most {meta['max']}")
        for i, item in enumerate(value):
            error = model_errors(shape.member, item, f"{path}.member.{i + 1}")
            if error:
                return error
        return None
    if kind == "string":
        if not isinstance(value, str):
            return invalid(f"{path} must be a string")
        if "min" in meta and len(value) < meta["min"]:
            return invalid(f"The parameter {path} must be at least {meta['min']} characters.")
        if "max" in meta and len(value) > meta["max"]:
            return invalid(f"The parameter {path} must be at most {meta['max']} characters.")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value, re.S):
            return invalid(f"The parameter {path} must match {meta['pattern']}.")
        if shape.enum and value not in shape.enum:
            return invalid(f"The parameter {path} must be one of {', '.join(shape.enum)}.")
        return None
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
            return invalid(f"{path} must be a number")
        return None
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return invalid(f"{path} must be an integer")
        if "min" in meta and value < meta["min"]:
            return invalid(f"The parameter {path} must be at least {meta['min']}.")
        return None
    if kind == "timestamp":
        if not isinstance(value, (dt.datetime, int, float)) or isinstance(value, bool):
            return invalid(f"{path} must be a timestamp")
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else invalid(f"{path} must be a boolean")
    if kind == "map":
        return None if isinstance(value, dict) else invalid(f"{path} must be a map")
    return None


def number_ok(value):
    return math.isfinite(value) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE


def put_metric_data_rules(params, body_bytes, now):
    """The first rule of the PutMetricData API reference that the request breaks, beyond
    what the model encodes, as a Rejected; None when CloudWatch would take it."""
    if body_bytes > MAX_REQUEST_BYTES:
        return invalid(f"The request is {body_bytes} bytes; the limit is {MAX_REQUEST_BYTES}.")
    data = params.get("MetricData") or []
    if len(data) > MAX_DATUMS:
        return invalid(f"The collection MetricData must not have a size greater than {MAX_DATUMS}.")
    for i, datum in enumerate(data):
        path = f"MetricData.member.{i + 1}"
        given = [k for k in ("Value", "Values", "StatisticValues") if datum.get(k) is not None]
        if len(given) > 1:
            return Rejected("InvalidParameterCombinationException",
                            f"The parameters {path}.{' and '.join(given)} are mutually exclusive.")
        values = datum.get("Values") or []
        counts = datum.get("Counts")
        if len(values) > MAX_VALUES:
            return invalid(f"The collection {path}.Values must not have a size greater "
                           f"than {MAX_VALUES}.")
        if counts is not None and len(counts) != len(values):
            return invalid(f"The parameters {path}.Values and {path}.Counts must be of "
                           f"the same size.")
        numbers = list(values) + list(counts or [])
        if datum.get("Value") is not None:
            numbers.append(datum["Value"])
        numbers += [v for v in (datum.get("StatisticValues") or {}).values()]
        for value in numbers:
            value = float(value)
            if not number_ok(value):
                shown = "NaN" if math.isnan(value) else value
                return invalid(f"The value {shown} for parameter {path} is invalid: values "
                               f"must be finite and within -2^360 to 2^360.")
        resolution = datum.get("StorageResolution")
        if resolution is not None and resolution not in STORAGE_RESOLUTIONS:
            return invalid(f"The value {resolution} for parameter {path}.StorageResolution "
                           f"is invalid: valid values are 1 and 60.")
        timestamp = datum.get("Timestamp")
        if timestamp is not None:
            at = _epoch(timestamp) if isinstance(timestamp, dt.datetime) else float(timestamp)
            if at < now - MAX_AGE_S or at > now + MAX_AHEAD_S:
                return invalid(f"The parameter {path}.Timestamp must specify a time no more "
                               f"than two weeks in the past or two hours in the future.")
    return None


def check_put_metric_data(params, body_bytes, now=None):
    """What CloudWatch would answer this PutMetricData with, or None if it takes it."""
    now = time.time() if now is None else now
    shape = SERVICE_MODEL.operation_model("PutMetricData").input_shape
    return model_errors(shape, params, "PutMetricDataInput") or \
        put_metric_data_rules(params, body_bytes, now)


def unwrap_tags(value):
    """CBOR tags the model checks do not look into: tag 1 is already a datetime."""
    if isinstance(value, dict):
        return {k: unwrap_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_tags(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return unwrap_tags(value.value)
    return value


# ---------------------------------------------------------------- bridge
class BridgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the SDK's pooled connections
    moto_port = None  # set by main()

    def log_message(self, format, *args):  # noqa: A002 - we log our own line
        pass

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _moto(self, method, path, body, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=MOTO_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        try:
            body = self._read_body()
            match = RPC_PATH.search(self.path.split("?", 1)[0])
            if match and self.command == "POST":
                op, status = self._rpc(match.group(1), match.group(2), body)
                log(f"{op} -> {status}")
            else:
                status = self._passthrough(body)
                log(f"{self.command} {self.path.split('?', 1)[0]} -> {status}")
        except (ConnectionError, TimeoutError) as exc:
            log(f"{self.command} {self.path.split('?', 1)[0]} -> failed: {type(exc).__name__}")
            self.close_connection = True
        except Exception as exc:  # a bug or moto crash must not hang the SDK
            log(f"{self.command} {self.path.split('?', 1)[0]} -> 500: {exc!r}")
            self.close_connection = True
            self._cbor_reply(500, {"__type": "InternalFailure", "message": f"bridge: {exc!r}"})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    def _passthrough(self, body):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        status, resp_headers, resp_body = self._moto(self.command, self.path, body, headers)
        self._reply(status, resp_headers, resp_body)
        return status

    def _cbor_reply(self, status, payload, extra=()):
        headers = [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor")]
        self._reply(status, headers + list(extra), cbor2.dumps(payload))
        return status

    def _rpc(self, service, op, body):
        arrived = time.time()
        if op not in SERVICE_MODEL.operation_names:
            return op, self._cbor_reply(404, {"__type": "UnknownOperationException",
                                              "message": f"unknown operation {op}"})
        try:
            if "gzip" in self.headers.get("Content-Encoding", "").lower():
                body = gzip.decompress(body)
            params = cbor2.loads(body) if body else {}
            request = cbor_input_to_json(params)
            payload = json.dumps(request).encode()
        except Exception as exc:  # malformed input is the client's fault
            return op, self._cbor_reply(400, {"__type": "SerializationException",
                                              "message": f"bad CBOR request: {exc}"})
        if op == "PutMetricData" and BUDGET is not None and not BUDGET.take():
            if JOURNAL is not None:
                line = json.dumps({"op": op, "status": 400, "input": request, "at": arrived,
                                   "error": "Throttling"}) + "\n"
                with JOURNAL_LOCK, open(JOURNAL, "a") as journal:
                    journal.write(line)
            return op, self._cbor_reply(
                400, {"__type": "com.amazonaws.cloudwatch#Throttling", "message": "Rate exceeded"},
                [("x-amzn-query-error", "Throttling;Sender")])
        if op == "PutMetricData":
            rejected = check_put_metric_data(unwrap_tags(params), len(body))
            if rejected:
                code = ERROR_CODES[rejected.shape]
                if JOURNAL is not None:
                    line = json.dumps({"op": op, "status": 400, "input": request,
                                       "at": arrived, "error": code,
                                       "message": rejected.message}) + "\n"
                    with JOURNAL_LOCK, open(JOURNAL, "a") as journal:
                        journal.write(line)
                return op, self._cbor_reply(
                    400, {"__type": f"com.amazonaws.cloudwatch#{rejected.shape}",
                          "message": rejected.message},
                    [("x-amzn-query-error", f"{code};Sender")])
        headers = {"X-Amz-Target": f"{service}.{op}",
                   "Content-Type": "application/x-amz-json-1.0"}
        for name in FORWARD_HEADERS:
            if name in self.headers:
                headers[name] = self.headers[name]
        for name, value in self.headers.items():
            if name.lower().startswith("x-moto-"):  # e.g. x-moto-account-id
                headers[name] = value
        status, moto_headers, moto_body = self._moto("POST", "/", payload, headers)
        if JOURNAL is not None:
            line = json.dumps({"op": op, "status": status, "input": request,
                               "at": arrived}) + "\n"
            with JOURNAL_LOCK, open(JOURNAL, "a") as journal:
                journal.write(line)
        keep = [(k, v) for k, v in moto_headers
                if k.lower() in ("x-amzn-requestid", "x-amzn-query-error")]
        try:
            data = json.loads(moto_body) if moto_body.strip() else {}
        except ValueError:
            data = None
        if 200 <= status < 300 and isinstance(data, dict):
            output = SERVICE_MODEL.operation_model(op).output_shape
            return op, self._cbor_reply(status, json_output_to_cbor(output, data), keep)
        if not isinstance(data, dict):  # e.g. an HTML 500 page from werkzeug
            data = {"message": moto_body.decode("utf-8", "replace")[:2000]}
        if 200 <= status < 300:
            status = 500
        code = (data.get("__type") or dict((k.lower(), v) for k, v in moto_headers)
                .get("x-amzn-errortype") or ("InternalFailure" if status >= 500 else "BadRequest"))
        error = {"__type": code, "message": str(data.get("message") or data.get("Message") or "")}
        return op, self._cbor_reply(status, error, keep)


# ---------------------------------------------------------------- launcher
def wait_answering(port, deadline):
    """Bounded poll until something answers HTTP on port (any status)."""
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/moto-api/config")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main():
    global JOURNAL, BUDGET
    args = sys.argv[1:]
    usage = "usage: cwserver.py [--journal FILE] [--budget TPS[,BURST]]"
    while args:
        if args[0] == "--journal" and len(args) >= 2:
            JOURNAL, args = args[1], args[2:]
        elif args[0] == "--budget" and len(args) >= 2:
            try:
                rate, _, burst = args[1].partition(",")
                rate = float(rate)
                BUDGET = TokenBucket(rate, float(burst) if burst else max(1.0, rate / 10))
            except ValueError:
                sys.exit(usage)
            args = args[2:]
        else:
            sys.exit(usage)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # stderr stays brief

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    moto_port = moto.get_host_and_port()[1]

    BridgeHandler.moto_port = moto_port
    bridge = ThreadingHTTPServer(("127.0.0.1", 0), BridgeHandler)
    bridge.daemon_threads = True
    threading.Thread(target=bridge.serve_forever, daemon=True).start()
    bridge_port = bridge.server_address[1]

    deadline = time.monotonic() + 30
    wait_answering(moto_port, deadline)
    wait_answering(bridge_port, deadline)  # through the bridge: both answer

    def watch_stdin():
        # The parent holds our stdin pipe; EOF means it closed it or died.
        # Raw fd reads: a BufferedReader blocked here would abort shutdown.
        try:
            while os.read(0, 4096):
                pass
        except (OSError, ValueError):
            pass
        STOP.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    print(json.dumps({"endpoint": f"http://127.0.0.1:{bridge_port}",
                      "moto": f"http://127.0.0.1:{moto_port}"}), flush=True)
    log(f"bridge on {bridge_port}, moto on {moto_port}")

    while not STOP.wait(0.5):  # timed wait keeps signal handlers responsive
        pass
    log("stopping")
    bridge.shutdown()
    bridge.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: moto's and the stdin watcher's daemon threads
    # may still be blocked and have nothing left worth cleaning up.
    os._exit(0)


if __name__ == "__main__":
    main()
