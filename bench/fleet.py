#!/usr/bin/env python3
"""A fleet of real agents sharing one account's PutMetricData budget.

N agent processes (at least 200) publish with --period 2 to the test server, whose
bridge enforces one account-wide budget as a token bucket and answers CloudWatch's own
throttling error in the protocol the SDK speaks (cwserver.py --budget). The load is
agents / (period x budget): at 90 % the fleet needs 90 % of the budget on average. For
each load and for --send-delay 0 (off) and auto (on), the fleet runs --seconds and is
stopped with SIGTERM; the server's journal says what arrived when.

Reported per run: windows lost (closed before SIGTERM, never delivered), requests per
delivered window, the fraction of requests throttled (over the run, and in its first and
last thirds: the spreading converges), delivery delay p50/p99 (arrival minus the
window's end), and the agents' total CPU time and peak memory.

The bucket holds a tenth of a second of budget. At this short period the agents' own
sampling phases (a tick a second, from each process's start) already spread the sends
over half the period; a bucket holding a whole second would hide the collision that a
60 s period shows. Real CloudWatch does not publish its bucket size.

    cargo zigbuild --release --target x86_64-unknown-linux-musl    # docs/footprint.md
    python3 bench/fleet.py                      # 200 agents, 150 s per run, 6 runs
    python3 bench/fleet.py --agents 300 --loads 90 --seconds 240
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import footprint
from compare import DEFAULT_BINARY, resolve_binary
from footprint import ROOT

PERIOD = 2
NAMESPACE = "Bench/Fleet"


def start_server(journal, budget):
    python = os.path.join(ROOT, ".venv/bin/python")
    if not os.path.exists(python):
        sys.exit("no .venv: run ./scripts/test once (it creates the test server's venv)")
    server = subprocess.Popen(
        [python, os.path.join(ROOT, "tests/harness/cwserver.py"), "--journal", journal,
         "--budget", f"{budget:.3f}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return server, json.loads(server.stdout.readline())["endpoint"]


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def run(binary, agents, load, delay, seconds):
    """One fleet run; returns its row."""
    budget = agents / (PERIOD * load)
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "journal.jsonl")
        server, endpoint = start_server(journal, budget)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": os.path.join(tmp, "none"),
               "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp, "none"),
               "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "AKIDFLEET", "AWS_SECRET_ACCESS_KEY": "fleet"}
        procs, started = [], {}
        for i in range(agents):
            name = f"agent-{i:04d}"
            started[name] = time.time()
            procs.append(footprint.start(binary, [
                "--namespace", NAMESPACE, "--service", name, "--period", str(PERIOD),
                "--scope", "host", "--send-delay", delay], env))
        began = time.time()
        time.sleep(seconds)  # the measurement window, not a wait for a condition
        stopped = time.time()
        results = footprint.stop_all(procs)
        server.stdin.close()
        server.wait()
        with open(journal) as f:
            calls = [json.loads(line) for line in f if line.strip()]

    puts = [c for c in calls if c["op"] == "PutMetricData"]
    throttled = [c for c in puts if c.get("error") == "Throttling"]
    delivered = {}  # (agent, window start) -> arrival
    for call in puts:
        if call["status"] != 200:
            continue
        for datum in call["input"]["MetricData"]:
            key = (datum["Dimensions"][0]["Value"], int(datum["Timestamp"]))
            delivered.setdefault(key, call["at"])
    # Windows every agent closed before SIGTERM, from its first whole one.
    expected = {(name, start)
                for name, t0 in started.items()
                for start in range(math.ceil(t0 / PERIOD) * PERIOD,
                                   int(stopped // PERIOD) * PERIOD - PERIOD + 1, PERIOD)}
    lost = len(expected - delivered.keys())
    delays = [at - (start + PERIOD) for (_, start), at in delivered.items()]
    third = (stopped - began) / 3

    def throttled_share(low, high):
        inside = [c for c in puts if low <= c["at"] < high]
        return sum(c.get("error") == "Throttling" for c in inside) / max(1, len(inside))

    return {
        "load": load, "delay": delay, "agents": agents, "budget": budget,
        "lost": lost, "expected": len(expected),
        "requests_per_window": len(puts) / max(1, len(delivered)),
        "throttled": len(throttled) / max(1, len(puts)),
        "throttled_first": throttled_share(began, began + third),
        "throttled_last": throttled_share(stopped - third, stopped),
        "p50": percentile(delays, 50), "p99": percentile(delays, 99),
        "cpu_s": sum(r["cpu_ms"] for r in results) / 1000,
        "rss_mb": sum(r["vmhwm_kb"] or 0 for r in results) / 1000,
        "unclean": sum(r["exit"] != 0 for r in results),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", nargs="?", default=DEFAULT_BINARY)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--loads", default="20,50,90", help="percent of the budget, comma-separated")
    ap.add_argument("--json", help="also write the rows to this file")
    opts = ap.parse_args()
    if opts.agents < 200:
        print("note: fewer than 200 agents is not what docs/delivery.md reports", file=sys.stderr)
    binary = resolve_binary(opts.binary)
    rows = []
    for load in (int(x) / 100 for x in opts.loads.split(",")):
        for delay in ("0", "auto"):
            row = run(binary, opts.agents, load, delay, opts.seconds)
            rows.append(row)
            print(f"done: load {load:.0%}, send delay {delay}", file=sys.stderr)
    print(f"{opts.agents} agents, period {PERIOD} s, {opts.seconds:.0f} s per run; "
          "budget = agents / (period x load), bucket of 0.1 s")
    print("| load | budget | send delay | windows lost | requests per window | throttled "
          "(first third → last third) | delivery delay p50 / p99 | agents' CPU | agents' "
          "peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['load']:.0%} | {r['budget']:.0f}/s | {r['delay']} | {r['lost']} of "
              f"{r['expected']} | {r['requests_per_window']:.2f} | {r['throttled']:.1%} "
              f"({r['throttled_first']:.1%} → {r['throttled_last']:.1%}) | {r['p50']:.2f} s / "
              f"{r['p99']:.2f} s | {r['cpu_s']:.1f} s | {r['rss_mb']:.0f} MB |")
        if r["unclean"]:
            print(f"  ({r['unclean']} agents exited non-zero: data left at the flush deadline)")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
