#!/usr/bin/env python3
"""What the CloudFormation stack's dashboard shows, drawn from real agent output.

Runs the agent in dry-run (host scope, --period 10) for three minutes while a known load
changes every 30 s: 0, 1, 2, 1, 3 and 0 bursty busy workers (each busy for a random
0.1-0.9 s, then idle for 0.1-0.6 s, so the samples of one window spread; each holding 8 %
of the machine's memory). For every
window it computes p50, p90, p99 and the maximum of the CPU and memory distributions the
agent would have sent, as CloudWatch computes percentiles from Values/Counts (nearest
rank), and draws them like the dashboard's two percentile widgets. The picture is
docs/dashboard.png; the numbers are printed.

    cargo zigbuild --release --target x86_64-unknown-linux-musl    # docs/footprint.md
    python3 bench/dashboard_preview.py          # about 3.5 minutes

matplotlib (pinned below) is installed into the project's .venv when missing.
"""

import json
import math
import os
import subprocess
import sys
import time

from compare import DEFAULT_BINARY, resolve_binary
from footprint import ROOT

PERIOD = 10
PHASE_SECONDS = 30
WORKERS = [0, 1, 2, 1, 3, 0]
MATPLOTLIB = "matplotlib==3.11.2"
OUT = os.path.join(ROOT, "docs/dashboard.png")
BURSTY = (
    "import random, sys, time\n"
    "held = bytearray(int(sys.argv[1]))\n"
    "for i in range(0, len(held), 4096):\n"
    "    held[i] = 1\n"
    "while True:\n"
    "    end = time.monotonic() + random.uniform(0.1, 0.9)\n"
    "    while time.monotonic() < end:\n"
    "        pass\n"
    "    time.sleep(random.uniform(0.1, 0.6))\n"
)


def venv_python():
    python = os.path.join(ROOT, ".venv/bin/python")
    if not os.path.exists(python):
        sys.exit("no .venv: run ./scripts/test once (it creates it)")
    probe = subprocess.run([python, "-c", "import matplotlib"], capture_output=True)
    if probe.returncode != 0:
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", MATPLOTLIB])
    return python


def percentile(pairs, p):
    """Nearest rank over (value, count) pairs in ascending order of value."""
    total = sum(n for _, n in pairs)
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value, n in pairs:
        seen += n
        if seen >= rank:
            return value
    return pairs[-1][0]


def windows(lines):
    """{metric: [(window start, p50, p90, p99, max)]} from dry-run lines."""
    out = {}
    for line in lines:
        request = json.loads(line)
        for d in request["MetricData"]:
            pairs = sorted(zip(d["Values"], d["Counts"]))
            stats = [percentile(pairs, p) for p in (50, 90, 99)] + [pairs[-1][0]]
            out.setdefault(d["MetricName"], []).append((d["Timestamp"], *stats))
    return out


def run(binary):
    agent = subprocess.Popen(
        [binary, "--dry-run", "--scope", "host", "--period", str(PERIOD),
         "--namespace", "Preview", "--service", "preview"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={"PATH": os.environ.get("PATH", ""), "AWS_EC2_METADATA_DISABLED": "true"})
    # Start on a window boundary, so each phase is three whole windows.
    time.sleep(PERIOD - time.time() % PERIOD)
    started = time.time()
    phases = []
    # Each worker holds 8 % of the machine's memory, so memory follows the load too.
    with open("/proc/meminfo") as f:
        total_kib = int(next(l for l in f if l.startswith("MemTotal:")).split()[1])
    held = total_kib * 1024 * 8 // 100
    for n in WORKERS:
        workers = [subprocess.Popen([sys.executable, "-c", BURSTY, str(held)]) for _ in range(n)]
        phases.append((time.time() - started, n))
        print(f"{time.time() - started:5.0f} s: {n} busy workers", flush=True)
        time.sleep(PHASE_SECONDS)
        for w in workers:
            w.kill()
            w.wait()
    time.sleep(2)  # the last window closes at the next sample
    agent.terminate()
    out, _ = agent.communicate(timeout=10)
    return started, phases, [l for l in out.splitlines() if l.strip()]


def main():
    binary = resolve_binary(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BINARY)
    python = venv_python()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    started, phases, lines = run(binary)
    data = windows(lines)
    rows = {}
    for metric, series in data.items():
        for ts, p50, p90, p99, mx in series:
            rows.setdefault(ts, {})[metric] = (p50, p90, p99, mx)
    print("window (UTC)          | CPU p50 p90 p99 max      | memory p50 p90 p99 max")
    for ts in sorted(rows):
        cpu = rows[ts].get("CPUUtilization", ("-",) * 4)
        mem = rows[ts].get("MemoryUtilization", ("-",) * 4)
        print(f"{ts} | {' '.join(f'{v:>5}' for v in cpu)} | {' '.join(f'{v:>5}' for v in mem)}")
    plot = {"started": started, "period": PERIOD, "phases": phases, "data": data, "out": OUT}
    subprocess.run([python, "-c", PLOT], input=json.dumps(plot), text=True, check=True)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")


# Runs in the venv's Python, which has matplotlib.
PLOT = r"""
import json, sys
from datetime import datetime, timezone
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

p = json.load(sys.stdin)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharex=True)
for ax, metric in zip(axes, ["CPUUtilization", "MemoryUtilization"]):
    series = p["data"].get(metric, [])
    t0 = p["started"]
    x = [datetime.strptime(s[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() - t0
         for s in series]
    for i, (label, style) in enumerate([("p50", "-"), ("p90", "-"), ("p99", "-"), ("max", "--")]):
        ax.step(x, [s[i + 1] for s in series], where="post", linestyle=style, label=label)
    for start, n in p["phases"]:
        ax.axvline(start, color="0.85", linewidth=0.8, zorder=0)
        if metric == "CPUUtilization":
            ax.text(start + 1, 96, f"{n} busy", fontsize=7, color="0.45", va="top")
    ax.set_title(f"{metric} across tasks: p50, p90, p99, max", fontsize=10)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_xlabel(f"seconds (windows of {p['period']} s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
fig.suptitle("What the dashboard's percentile widgets show: the agent's own windows under a known load "
             "(bench/dashboard_preview.py)", fontsize=9)
fig.tight_layout()
fig.savefig(p["out"], dpi=100)
"""


if __name__ == "__main__":
    main()
