#!/usr/bin/env python3
"""A stand-in ECS task metadata endpoint v4 that replays a captured Fargate task.

Serves `GET <base>/task` and `GET <base>/task/stats` for any base `/v4/<id>`, built from
AWS's published Fargate example (`tests/fixtures/ecs/published/fargate-task.json` and
`fargate-task-stats.json`, see tests/fixtures/ecs/README.md). The example's stats are
keyed by a container the task does not list: each stats entry is put under a `DockerId`
of the task's containers, as `joined()` in src/sample/ecs/published.rs does, and with
one stats entry for two containers both get a copy (its `id` and `name` set to theirs).

`/task` is the example with `"EphemeralStorageMetrics": {"Utilized": 2298, "Reserved":
21694}` and `"RestartCount": 0` on every container. `/task/stats` is refreshed every
`refresh` seconds (1, as on EC2; `--refresh 10`, as on Fargate and Managed Instances):
`read` is the time of the latest refresh (RFC 3339, nanoseconds, UTC), `preread` one
refresh earlier, and the counters advance at constant rates (per container, the constants
below) from the example's values: CPU time (`precpu_stats` is `cpu_stats` a refresh
behind), network bytes and packets, block I/O bytes and operations. Memory stays as
captured.

Keep-alive HTTP/1.1 with Content-Length, as the agent keeps one connection. Requests are
counted per base id (`counts()`), so that a caller can check each agent sampled.

    python3 bench/ecs_standin.py [--refresh SECS]   # prints the base URL, serves until
                                                    # stdin closes
"""

import argparse
import collections
import copy
import http.server
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests/fixtures/ecs/published")
TASK_FIXTURE = os.path.join(FIXTURES, "fargate-task.json")
STATS_FIXTURE = os.path.join(FIXTURES, "fargate-task-stats.json")

EPHEMERAL_STORAGE = {"Utilized": 2298, "Reserved": 21694}
# Per container, per second. Two containers at 0.1 vCPU of the task's 0.25 limit: 80 %.
CPU_NS_PER_S = 100_000_000            # 0.1 vCPU
RX_BYTES_PER_S = 100_000
TX_BYTES_PER_S = 50_000
RX_PACKETS_PER_S = 100
TX_PACKETS_PER_S = 50
READ_BYTES_PER_S = 4096
WRITE_BYTES_PER_S = 8192
READ_OPS_PER_S = 1
WRITE_OPS_PER_S = 2
USER_SHARE = 0.8                      # of the CPU time, the rest kernel
# The counters are those of a task that has run this long when the stand-in starts, so
# that `precpu_stats` (a refresh behind) never goes below the example's values.
HEAD_START_NS = 60 * 1_000_000_000
NS = 1_000_000_000


def rfc3339(epoch_ns):
    """2026-12-04T13:00:00.123456789Z."""
    secs, nanos = divmod(epoch_ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def load_task():
    with open(TASK_FIXTURE) as f:
        task = json.load(f)
    task["EphemeralStorageMetrics"] = dict(EPHEMERAL_STORAGE)
    for container in task["Containers"]:
        container["RestartCount"] = 0
    return task


def load_stats(task):
    """DockerId -> the example's stats entry, re-keyed to the task's containers: the i-th
    entry to the i-th container, the last entry to the containers past the entries."""
    with open(STATS_FIXTURE) as f:
        entries = list(json.load(f).values())
    joined = {}
    for i, container in enumerate(task["Containers"]):
        entry = copy.deepcopy(entries[min(i, len(entries) - 1)])
        entry["id"] = container["DockerId"]
        entry["name"] = container["Name"]
        joined[container["DockerId"]] = entry
    return joined


class Replay:
    """The documents, and each request's stats at the time it is served."""

    def __init__(self, refresh_s=1):
        self.refresh_ns = int(refresh_s * NS)
        self.task = load_task()
        self.task_body = json.dumps(self.task).encode()
        self.base_stats = load_stats(self.task)
        self.origin_ns = time.time_ns() - HEAD_START_NS

    def stats_body(self, now_ns=None):
        now_ns = time.time_ns() if now_ns is None else now_ns
        # The latest refresh: the stats change only every `refresh_ns`.
        read_ns = now_ns - (now_ns - self.origin_ns) % self.refresh_ns
        doc = {}
        for docker_id, base in self.base_stats.items():
            entry = copy.deepcopy(base)
            entry["read"] = rfc3339(read_ns)
            entry["preread"] = rfc3339(read_ns - self.refresh_ns)
            # Docker's reading a refresh before: the same counters, that much less grown.
            entry["precpu_stats"] = copy.deepcopy(entry["cpu_stats"])
            advance_cpu(entry["cpu_stats"], read_ns - self.origin_ns)
            advance_cpu(entry["precpu_stats"], read_ns - self.refresh_ns - self.origin_ns)
            advance_io(entry, read_ns - self.origin_ns)
            doc[docker_id] = entry
        return json.dumps(doc).encode()


def grown(value, per_s, elapsed_ns):
    return value + per_s * elapsed_ns // NS


def advance_cpu(cpu, elapsed_ns):
    """CPU time at CPU_NS_PER_S, spread over the online CPUs' percpu_usage, split between
    user and kernel mode; the host's system_cpu_usage at one second per online CPU."""
    online = cpu.get("online_cpus") or 1
    used = CPU_NS_PER_S * elapsed_ns // NS
    usage = cpu["cpu_usage"]
    usage["total_usage"] += used
    percpu = usage.get("percpu_usage")
    if percpu:
        share, rest = divmod(used, min(online, len(percpu)))
        for i in range(min(online, len(percpu))):
            percpu[i] += share + (rest if i == 0 else 0)
    user = int(used * USER_SHARE)
    usage["usage_in_usermode"] = usage.get("usage_in_usermode", 0) + user
    usage["usage_in_kernelmode"] = usage.get("usage_in_kernelmode", 0) + used - user
    if "system_cpu_usage" in cpu:
        cpu["system_cpu_usage"] += online * elapsed_ns


def advance_io(entry, elapsed_ns):
    for counters in entry.get("networks", {}).values():
        counters["rx_bytes"] = grown(counters["rx_bytes"], RX_BYTES_PER_S, elapsed_ns)
        counters["tx_bytes"] = grown(counters["tx_bytes"], TX_BYTES_PER_S, elapsed_ns)
        counters["rx_packets"] = grown(counters["rx_packets"], RX_PACKETS_PER_S, elapsed_ns)
        counters["tx_packets"] = grown(counters["tx_packets"], TX_PACKETS_PER_S, elapsed_ns)
    if "network_rate_stats" in entry:
        entry["network_rate_stats"] = {"rx_bytes_per_sec": float(RX_BYTES_PER_S),
                                       "tx_bytes_per_sec": float(TX_BYTES_PER_S)}
    blkio = entry.get("blkio_stats", {})
    for key, read_rate, write_rate in (
            ("io_service_bytes_recursive", READ_BYTES_PER_S, WRITE_BYTES_PER_S),
            ("io_serviced_recursive", READ_OPS_PER_S, WRITE_OPS_PER_S)):
        ops = {}
        for item in blkio.get(key) or []:
            rate = {"Read": read_rate, "Write": write_rate}.get(item["op"])
            if rate is not None:
                item["value"] = grown(item["value"], rate, elapsed_ns)
            ops[item["op"]] = item
        # Sync + Async and Total stay Read + Write, as in the example (Async stays).
        if "Read" in ops and "Write" in ops:
            both = ops["Read"]["value"] + ops["Write"]["value"]
            if "Total" in ops:
                ops["Total"]["value"] = both
            if "Sync" in ops:
                ops["Sync"]["value"] = both - ops.get("Async", {"value": 0})["value"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    # Headers and body are two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK of the headers (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self):
        server = self.server
        parts = self.path.split("?", 1)[0].split("/", 3)  # "", "v4", id, the rest
        base_id = parts[2] if len(parts) > 2 and parts[:2] == ["", "v4"] else ""
        rest = "/" + parts[3] if base_id and len(parts) == 4 else ""
        with server.lock:
            server.requests[base_id][rest if base_id else self.path] += 1
        if not base_id:
            self.answer(404, b"not found\n", "text/plain")
        elif rest == "/task":
            self.answer(200, server.replay.task_body)
        elif rest == "/task/stats":
            self.answer(200, server.replay.stats_body())
        else:
            self.answer(404, b"not found\n", "text/plain")

    def answer(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Standin:
    """The endpoint on 127.0.0.1 (a free port), served from a daemon thread."""

    def __init__(self, refresh_s=1):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.replay = Replay(refresh_s)
        self.server.lock = threading.Lock()
        self.server.requests = collections.defaultdict(collections.Counter)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, base_id="abc"):
        """What ECS puts in ECS_CONTAINER_METADATA_URI_V4."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v4/{base_id}"

    def counts(self, base_id="abc"):
        """Path after the base -> requests served, for one base id."""
        with self.server.lock:
            return dict(self.server.requests.get(base_id, {}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refresh", type=float, default=1,
                    help="seconds between refreshes of /task/stats (10 on Fargate)")
    opts = ap.parse_args()
    with Standin(opts.refresh) as standin:
        print(json.dumps({"url": standin.url()}), flush=True)
        sys.stdin.read()  # serves until stdin closes
        print(json.dumps({"requests": standin.counts()}), flush=True)


if __name__ == "__main__":
    main()
