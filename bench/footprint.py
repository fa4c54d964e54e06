#!/usr/bin/env python3
"""Measures the agent's footprint: CPU time, peak RSS, threads, SIGTERM-to-exit time.

Runs the given binary for --seconds at --period, in dry-run and (when the test server's
venv exists) publishing to the local CloudWatch-compatible test server, and prints one
row per mode. Peak memory is VmHWM from /proc/PID/status read just before SIGTERM
(ru_maxrss of a child forked from a large parent reports the parent's high-water mark);
CPU time is the child's rusage from wait4.

    cargo build --release
    python3 bench/footprint.py target/release/cloudwatch_metrics_agent --seconds 40
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_fields(pid, *names):
    """The named fields of /proc/PID/status; those of a process that already died are missing."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in names:
                    fields[key] = value.strip()
    except FileNotFoundError:
        pass
    return fields


def cpu_ns(pid):
    """Nanoseconds on a CPU so far, of every thread of `pid` (the first field of each
    /proc/PID/task/TID/schedstat): finer than the 10 ms ticks of /proc/PID/stat."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that just ended
    except FileNotFoundError:
        return None
    return total


def pss_kb(pid):
    """Proportional set size (/proc/PID/smaps_rollup): resident pages, shared ones divided
    among the processes that map them. None for a process gone (a zombie's answers ESRCH)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def start(binary, args, env, stderr=subprocess.DEVNULL):
    return subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=stderr)


def stop_all(procs):
    """Reads VmHWM and Threads of every process, then SIGTERMs them all at once and reaps
    each in its own thread: a slow exit neither delays the others' signal (which would add
    to their CPU time) nor their measured exit time."""
    fields = [status_fields(p.pid, "VmHWM", "Threads") for p in procs]
    pss = [pss_kb(p.pid) for p in procs]
    results = [None] * len(procs)

    def reap(i, proc, sent):
        _, status, usage = os.wait4(proc.pid, 0)
        exit_s = time.monotonic() - sent
        proc.returncode = os.waitstatus_to_exitcode(status)
        results[i] = {
            "cpu_ms": round((usage.ru_utime + usage.ru_stime) * 1000, 1),
            "vmhwm_kb": int(fields[i]["VmHWM"].split()[0]) if "VmHWM" in fields[i] else None,
            "threads": int(fields[i]["Threads"]) if "Threads" in fields[i] else None,
            "pss_kb": pss[i],
            "sigterm_to_exit_ms": round(exit_s * 1000, 1),
            "exit": proc.returncode,
        }

    reapers = []
    for i, proc in enumerate(procs):
        os.kill(proc.pid, signal.SIGTERM)
        reapers.append(threading.Thread(target=reap, args=(i, proc, time.monotonic())))
        reapers[-1].start()
    for reaper in reapers:
        reaper.join()
    return results


def measure(binary, args, env, seconds):
    proc = start(binary, args, env)
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    return stop_all([proc])[0]


def start_server(journal=None):
    """The test server, or (None, None) without the venv. It exits when its stdin closes."""
    python = os.path.join(ROOT, ".venv/bin/python")
    if not os.path.exists(python):
        return None, None
    extra = ["--journal", journal] if journal else []
    server = subprocess.Popen([python, os.path.join(ROOT, "tests/harness/cwserver.py"), *extra],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    endpoint = json.loads(server.stdout.readline())["endpoint"]
    return server, endpoint


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--period", default="5")
    opts = ap.parse_args()

    base = ["--namespace", "Bench", "--service", "bench", "--period", opts.period]
    env = {"PATH": os.environ.get("PATH", ""), "AWS_EC2_METADATA_DISABLED": "true"}
    size = os.path.getsize(opts.binary)
    print(f"binary: {opts.binary} ({size / 1e6:.1f} MB)")
    rows = [("dry-run", measure(opts.binary, base + ["--dry-run"], env, opts.seconds))]

    server, endpoint = start_server()
    if server:
        pub_env = dict(env, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench")
        rows.append(("publishing", measure(opts.binary, base, pub_env, opts.seconds)))
        server.stdin.close()
        server.wait()
    else:
        print("no .venv: run ./scripts/test once to measure publishing too", file=sys.stderr)

    print(f"{'mode':<11} {'cpu ms':>7} {'VmHWM MB':>9} {'threads':>7} {'exit ms':>8} {'status':>6}")
    for mode, r in rows:
        print(f"{mode:<11} {r['cpu_ms']:>7} {r['vmhwm_kb'] / 1000:>9.1f} {r['threads']:>7} "
              f"{r['sigterm_to_exit_ms']:>8} {r['exit']:>6}")


if __name__ == "__main__":
    main()
