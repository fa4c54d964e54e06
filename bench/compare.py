#!/usr/bin/env python3
"""This agent beside the original agent 0.1.8 and a C cost floor, in the same run.

Why side by side: the machine is shared and noisy, so numbers taken at different times do
not compare. The programs of a mode run concurrently, for the same --seconds, and so see
the same noise: in dry-run this agent, the original and the floor (bench/floor.c: only the
two /proc reads a second); publishing, this agent and the original, both to one test
server (bench/footprint.py starts it), under different namespaces. The floor has nothing
to publish, so it has no publishing row.

Measures (bench/footprint.py): CPU time user+sys from wait4; steady-state CPU per
sample from the threads' schedstat run time between the end of start-up and the end;
Pss from smaps_rollup; VmHWM and Threads from
/proc/PID/status just before SIGTERM, SIGTERM-to-exit time; plus the stripped binary size.
Then ratios against the original and the floor, with the targets: taken within each run
(its programs shared its noise), then the median over --repeat runs. Each program's exit
status is reported, never judged: the original takes up to ~1.8 s to exit (it finishes a
900 ms sleep twice). It also samples every 900 ms + its work, not every second, so it
takes ~10 % more samples than this agent and the floor in the same time.

The original is built once into the scratch dir with `cargo install` (~5 min). Not
`--locked`: its Cargo.lock pins aws-config 1.1.1, which predates AWS_ENDPOINT_URL support
(1.1.9), so a locked build would ignore the test server and publish to AWS itself. What
`cargo install` resolves today honours it; the aws-config version found in the binary is
printed, and publishing mode skips the original unless that version is >= 1.1.9.

ECS rows (`--mode ecs`, or `all`): this agent twice side by side in `--scope ecs-task`
dry-run, against one stand-in task metadata endpoint v4 in this process
(bench/ecs_standin.py: AWS's Fargate example replayed, counters moving at known rates),
`ecs cpu,memory` (`--metrics cpu,memory`) and `ecs all groups` (`--ecs-metrics`, every
metric group). The same measures, the ratios all groups / cpu,memory against a target
of 1.25, and the memory growth (VmRSS, RssAnon, Pss) from the end of start-up to the end.
A row whose agent exits at once (a binary that refuses those --metrics) is reported as
failed with its exit status and first stderr line. This mode builds nothing.
`--ecs-baseline BINARY` runs the cpu,memory row with another build (the previous release),
so that the new groups are measured against "today's" agent in the same run.
`--ecs-refresh 10` has the stand-in refresh the stats every 10 s, as Fargate and Managed
Instances do (default 1, as EC2).

    python3 bench/compare.py                 # both modes, 40 s each, period 5
    python3 bench/compare.py --repeat 3 --json results.json
    python3 bench/compare.py --mode ecs      # the ECS rows only (--mode all: every mode)
    python3 bench/compare.py NEW --mode ecs --ecs-baseline OLD
    python3 bench/compare.py NEW --mode ecs --ecs-baseline OLD --ecs-metrics cpu,memory \
        --ecs-refresh 10     # one build against another on a Fargate-paced endpoint
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import ecs_standin
import footprint
from footprint import ROOT

DEFAULT_BINARY = "target/x86_64-unknown-linux-musl/release/cloudwatch_metrics_agent"
BUILD_HINT = ("build it first (docs/footprint.md): "
              "cargo zigbuild --release --target x86_64-unknown-linux-musl")
ORIGINAL_VERSION = "0.1.8"
DEFAULT_SCRATCH = "~/.cache/cloudwatch_metrics_agent/bench"
MEASURES = ("cpu_ms", "steady_us_per_s", "vmhwm_kb", "pss_kb", "threads", "sigterm_to_exit_ms")
# What the floor also has (it publishes nothing and has one thread), so a ratio to it means
# something; the rest are compared with the original only.
AGAINST_FLOOR = ("cpu_ms", "vmhwm_kb", "steady_us_per_s", "pss_kb")
NAMES = {"this": "this agent", "original": f"original {ORIGINAL_VERSION}", "floor": "C floor"}
# The ECS rows: this agent in --scope ecs-task, CPU and memory only, and every metric group
# (--ecs-metrics); each reads its own base URL of one stand-in endpoint (bench/ecs_standin.py).
ECS_NAMES = {"cpu-memory": "ecs cpu,memory", "all-groups": "ecs all groups"}
DEFAULT_ECS_METRICS = "cpu,memory,absolute,containers,network,storage,ephemeral-storage,restarts"
# all groups / cpu,memory: what every group may cost over CPU and memory alone.
ECS_TARGETS = {"steady_us_per_s": 1.25, "vmhwm_kb": 1.25, "pss_kb": 1.25}
# Memory read at the end of start-up and at the end (kB), to see growth per sample.
GROWTH = {"vmrss_kb": "VmRSS", "rssanon_kb": "RssAnon", "pss_kb": "Pss"}
ECS_MEASURES = MEASURES + tuple(f"{k}_growth" for k in GROWTH) + ("growth_seconds",)


# ---------------------------------------------------------------- the three programs
def resolve_binary(path):
    """A path as given, else relative to the repository, so the script runs from anywhere."""
    for candidate in (path, os.path.join(ROOT, path)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    sys.exit(f"no binary at {path}: {BUILD_HINT}")


def build_floor(scratch):
    """Compiles bench/floor.c, statically with musl like the agent when musl-gcc is there."""
    src = os.path.join(ROOT, "bench/floor.c")
    out = os.path.join(scratch, "floor")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out
    for cmd in (["musl-gcc", "-static", "-O2"], ["cc", "-O2"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "-o", out, src]).returncode == 0:
            return out
    sys.exit("cannot compile bench/floor.c: install musl-tools or a C compiler")


def build_original(scratch):
    """The original agent from crates.io, built once (see the module docstring: no --locked)."""
    binary = os.path.join(scratch, "original/bin/cloudwatch_metrics_agent")
    if os.path.exists(binary):
        return binary
    if not shutil.which("cargo"):
        sys.exit("cargo is needed to build the original agent")
    log = os.path.join(scratch, "original-build.log")
    print(f"building the original agent {ORIGINAL_VERSION} (about 5 min; log: {log})",
          file=sys.stderr)
    cmd = ["cargo", "install", "--root", os.path.join(scratch, "original"),
           "cloudwatch_metrics_agent", "--version", ORIGINAL_VERSION,
           "--target-dir", os.path.join(scratch, "original-target")]
    with open(log, "w") as out:
        if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"building the original agent failed: see {log}")
    return binary


def aws_config_version(binary):
    """The aws-config crate version compiled into a binary (from its panic-location paths)."""
    with open(binary, "rb") as f:
        found = re.search(rb"aws-config-(\d+)\.(\d+)\.(\d+)", f.read())
    return tuple(int(x) for x in found.groups()) if found else None


def stripped_mb(binary, out):
    """Size of a stripped copy; stripping an already stripped binary changes nothing."""
    subprocess.run(["strip", "-o", out, binary], check=True)
    return round(os.path.getsize(out) / 1e6, 2)


def programs(opts, scratch):
    """name -> (binary, {mode: args}); a mode missing from the dict has no counterpart."""
    period = str(opts.period)
    this = ["--namespace", "Bench", "--service", "bench", "--period", period,
            "--scope", opts.scope]
    original = ["--namespace", "BenchOriginal", "--service-name", "bench", "--period", period]
    return {
        "this": (resolve_binary(opts.binary),
                 {"dry-run": this + ["--dry-run"], "publishing": this}),
        "original": (build_original(scratch),
                     {"dry-run": original + ["--dryrun"], "publishing": original}),
        "floor": (build_floor(scratch), {"dry-run": []}),
    }


def ecs_programs(opts):
    """The ECS rows: this agent twice, as programs() gives them (name -> (binary, {mode:
    args})), in dry-run, so that nothing but the endpoint is read and nothing is sent."""
    args = ["--namespace", "Bench", "--service", "bench", "--period", str(opts.period),
            "--scope", "ecs-task", "--dry-run", "--metrics"]
    binary = resolve_binary(opts.binary)
    # --ecs-baseline: the cpu,memory row from another build (the previous release), so
    # that "today's ECS scope" and the new groups share one run's noise.
    baseline = resolve_binary(opts.ecs_baseline) if opts.ecs_baseline else binary
    return {"cpu-memory": (baseline, {"ecs": args + ["cpu,memory"]}),
            "all-groups": (binary, {"ecs": args + [opts.ecs_metrics]})}


def clean_env(scratch):
    """PATH and nothing of the caller's AWS setup: no IMDS, no config or credential files."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.path.join(scratch, "no-such-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "no-such-aws-credentials")}


# ---------------------------------------------------------------- one run of a mode
def memory_kb(pid):
    """VmRSS and RssAnon (/proc/PID/status) and Pss, in kB; None for a process gone."""
    fields = footprint.status_fields(pid, "VmRSS", "RssAnon")
    out = {key: int(fields[field].split()[0]) if field in fields else None
           for key, field in GROWTH.items() if field != "Pss"}
    out["pss_kb"] = footprint.pss_kb(pid)
    return out


def first_line(path):
    """The first non-empty line of a program's stderr, for a row that failed."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip()
    return "(nothing on stderr)"


def run_mode(progs, mode, seconds, env, scratch, envs=None, growth=False, may_fail=False):
    """Starts every program that has this mode, lets them run, stops them all at once.
    envs: name -> environment, for programs that need one of their own. growth: also read
    each program's memory at the end of start-up and at the end. may_fail: a program that
    died early is a failed row (exit status and first stderr line), not a fatal error."""
    names = [n for n, (_, modes) in progs.items() if mode in modes]
    procs, logs = [], {}
    for name in names:
        binary, modes = progs[name]
        logs[name] = open(os.path.join(scratch, f"{name}-{mode}.stderr"), "w")
        procs.append(footprint.start(binary, modes[mode], (envs or {}).get(name, env),
                                     stderr=logs[name]))
    # Steady state: CPU between the end of start-up (a quarter of the run, at most 10 s)
    # and the end, per second, that is per sample (the floor and this agent sample once
    # a second; the original every ~0.9 s, so its figure is per ~1.1 samples).
    warmup = min(10.0, seconds / 4)
    time.sleep(warmup)  # the measurement window's start-up part
    first = [(time.monotonic(), footprint.cpu_ns(p.pid)) for p in procs]
    early = [memory_kb(p.pid) for p in procs] if growth else None
    time.sleep(seconds - warmup)  # the rest of the window
    late = [memory_kb(p.pid) for p in procs] if growth else None
    last = [(time.monotonic(), footprint.cpu_ns(p.pid)) for p in procs]
    results = dict(zip(names, footprint.stop_all(procs)))
    for name, (t0, c0), (t1, c1) in zip(names, first, last):
        steady = None if None in (c0, c1) else (c1 - c0) / 1000 / (t1 - t0)
        results[name]["steady_us_per_s"] = steady
    if growth:
        for name, m0, m1, (t0, _), (t1, _) in zip(names, early, late, first, last):
            for key in GROWTH:
                results[name][f"{key}_growth"] = (None if None in (m0[key], m1[key])
                                                  else m1[key] - m0[key])
            results[name]["growth_seconds"] = round(t1 - t0, 2)
    for name, log in logs.items():
        log.close()
        if results[name]["vmhwm_kb"] is None:
            if not may_fail:
                sys.exit(f"{NAMES[name]} died early ({mode}): see {log.name}")
            # Gone before the end: nothing it measured stands, only how it ended.
            status = results[name]["exit"]
            results[name] = dict.fromkeys(results[name], None)
            results[name].update(exit=status, failed=first_line(log.name))
    return results


def journal_counts(path):
    """Namespace -> {requests, datums, windows} accepted, from cwserver's --journal (one JSON
    line per call: op, status, input). Windows are distinct timestamps: this agent may
    batch two windows into one request."""
    counts = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if entry["op"] == "PutMetricData" and 200 <= entry["status"] < 300:
                    data = entry["input"]["MetricData"]
                    c = counts.setdefault(entry["input"]["Namespace"],
                                          {"requests": 0, "datums": 0, "windows": set()})
                    c["requests"] += 1
                    c["datums"] += len(data)
                    c["windows"].update(d.get("Timestamp") for d in data)
    for c in counts.values():
        c["windows"] = len(c["windows"])
    return counts


def run_publishing(progs, seconds, env, scratch):
    journal = os.path.join(scratch, "journal.jsonl")
    if os.path.exists(journal):
        os.remove(journal)
    server, endpoint = footprint.start_server(journal)
    try:
        pub_env = dict(env, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench")
        results = run_mode(progs, "publishing", seconds, pub_env, scratch)
    finally:
        server.stdin.close()
        server.wait()
    counts = journal_counts(journal)
    none = {"requests": 0, "datums": 0, "windows": 0}
    received = {name: counts.get(ns, none) for name, ns in
                (("this", "Bench"), ("original", "BenchOriginal")) if name in results}
    return results, received


def run_ecs(progs, seconds, env, scratch, refresh_s):
    """The ECS rows side by side, each agent on its own base URL of one stand-in endpoint
    refreshed every `refresh_s`; also what the endpoint served each (how often each
    polled)."""
    with ecs_standin.Standin(refresh_s) as standin:
        envs = {name: dict(env, ECS_CONTAINER_METADATA_URI_V4=standin.url(name))
                for name in progs}
        results = run_mode(progs, "ecs", seconds, env, scratch, envs=envs, growth=True,
                           may_fail=True)
        served = {name: standin.counts(name) for name in progs}
    return results, served


# ---------------------------------------------------------------- report
def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_kb(kb):
    return f"{kb:.0f} kB" if kb < 1000 else f"{kb / 1000:.1f} MB"


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.3g}×" if r < 10 else f"{r:.0f}×"


def verdict(value, limit):
    if value is None:
        return "n/a"
    return "**yes**" if value <= limit else "**no**"


def report(runs, medians, statuses, sizes, opts, meta):
    modes = ["dry-run", "publishing"]
    print(f"\n### Footprint: {opts.seconds:g} s at `--period {opts.period}`, "
          f"`--scope {opts.scope}`, median of {opts.repeat} run(s)\n")
    print("| program | mode | CPU | steady CPU per sample | VmHWM | Pss | threads "
          "| binary (stripped) | SIGTERM → exit | exit status |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in modes:
        for name in NAMES:
            r = medians.get(mode, {}).get(name)
            size = fmt_kb(sizes[name] * 1000)
            if r is None:
                print(f"| {NAMES[name]} | {mode} | n/a | n/a | n/a | n/a | n/a | {size} "
                      "| n/a | n/a |")
                continue
            status = ", ".join(str(s) for s in sorted(set(statuses[mode][name])))
            steady = r.get("steady_us_per_s")
            steady = "n/a" if steady is None else f"{steady:.0f} µs"
            pss = "n/a" if r.get("pss_kb") is None else fmt_kb(r["pss_kb"])
            print(f"| {NAMES[name]} | {mode} | {r['cpu_ms']:.1f} ms | {steady} | "
                  f"{fmt_kb(r['vmhwm_kb'])} | {pss} | {r['threads']:g} | {size} | "
                  f"{r['sigterm_to_exit_ms']:.0f} ms | {status} |")

    def get(mode, name, key):
        return medians.get(mode, {}).get(name, {}).get(key)

    def paired(mode, key, other):
        """Median over runs of the run's own ratio: both saw the same noise in that run."""
        pairs = [ratio(run[mode]["this"][key], run[mode][other][key]) for run in runs
                 if mode in run and other in run[mode]]
        return statistics.median(pairs) if pairs and None not in pairs else None

    rows = [  # measure, mode, key, target vs original, target vs floor, label
        ("CPU", "dry-run", "cpu_ms", None, 1.5, "≤ 1.5× floor (≈ 0.3× original)"),
        ("CPU", "publishing", "cpu_ms", 0.4, None, "≤ 0.4× original"),
        ("steady CPU per sample", "dry-run", "steady_us_per_s", None, 1.2, "≤ 1.2× floor"),
        ("steady CPU per sample", "publishing", "steady_us_per_s", None, None, "—"),
        ("Pss", "dry-run", "pss_kb", None, None, "—"),
        ("VmHWM", "dry-run", "vmhwm_kb", 0.5, None, "≤ 0.5× original"),
        ("VmHWM", "publishing", "vmhwm_kb", 0.7, None, "≤ 0.7× original"),
        ("threads", "dry-run", "threads", None, None, "—"),
        ("threads", "publishing", "threads", None, None, "—"),
        ("stripped binary", "—", None, 0.5, None, "≤ 0.5× original"),
        ("SIGTERM → exit", "dry-run", "sigterm_to_exit_ms", None, None, "≤ 100 ms"),
        ("SIGTERM → exit", "publishing", "sigterm_to_exit_ms", None, None, "—"),
    ]
    ratios = []
    print(f"\nRatios: per run, then the median of the {opts.repeat} run(s).\n")
    print("| measure | mode | this / original | this / floor | target | met |")
    print("|---|---|---|---|---|---|")
    for measure, mode, key, vs_orig, vs_floor, label in rows:
        if key is None:
            r_orig, r_floor = ratio(sizes["this"], sizes["original"]), None
        else:
            r_orig = paired(mode, key, "original")
            r_floor = paired(mode, key, "floor") if key in AGAINST_FLOOR else None
        if vs_floor is not None:
            met = verdict(r_floor, vs_floor)
        elif vs_orig is not None:
            met = verdict(r_orig, vs_orig)
        elif key == "sigterm_to_exit_ms" and mode == "dry-run":
            met = verdict(get(mode, "this", key), 100)
        else:
            met = ""
        floor_cell = fmt_ratio(r_floor) if key in AGAINST_FLOOR and mode == "dry-run" else "n/a"
        print(f"| {measure} | {mode} | {fmt_ratio(r_orig)} | {floor_cell} | {label} | {met} |")
        ratios.append({"measure": measure, "mode": mode, "this_over_original": r_orig,
                       "this_over_floor": r_floor, "target": label,
                       "met": met.strip("*") or None})

    print(f"\nMachine: {os.cpu_count()} CPUs, Linux {platform.release()}; programs of a mode "
          "ran concurrently. The original samples every ~0.9 s (about 10 % more samples).")
    print(f"Original: aws-config {meta['original_aws_config']} inside; "
          f"{meta['original_publishing_note']}")
    for i, received in enumerate(meta["received"], 1):
        parts = [f"{NAMES[n]} {c['requests']} requests, {c['datums']} datums, "
                 f"{c['windows']} windows" for n, c in received.items()]
        print(f"Run {i}, publishing: accepted by the test server: " + "; ".join(parts)
              + f" (expected ≈ {opts.seconds / opts.period + 1:.0f} windows each)")
    return ratios


def report_ecs(ecs_runs, opts):
    """The ECS rows, the ratios all groups / cpu,memory and the memory growth."""
    def row_runs(name):
        return [run["results"][name] for run in ecs_runs]

    def cell(value, fmt):
        return "n/a" if value is None else fmt(value)

    medians = {name: {k: median_of(r.get(k) for r in row_runs(name)) for k in ECS_MEASURES}
               for name in ECS_NAMES}
    metrics = {"cpu-memory": "cpu,memory", "all-groups": opts.ecs_metrics}
    if opts.ecs_baseline:
        print(f"\nThe cpu,memory row is {opts.ecs_baseline}, the all-groups row "
              f"{opts.binary or DEFAULT_BINARY}.")
    print(f"\n### ECS task scope: {opts.seconds:g} s at `--period {opts.period}`, "
          f"`--scope ecs-task`, dry-run, against a stand-in task metadata endpoint "
          f"(AWS's Fargate example replayed, stats refreshed every {opts.ecs_refresh:g} s), "
          f"median of {opts.repeat} run(s)\n")
    print("| row | --metrics | CPU | steady CPU per sample | VmHWM | Pss | threads "
          "| SIGTERM → exit | exit status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label in ECS_NAMES.items():
        r = medians[name]
        status = ", ".join(str(s) for s in sorted({x["exit"] for x in row_runs(name)}))
        failures = sorted({x["failed"] for x in row_runs(name) if x.get("failed")})
        if failures:
            status += " (failed: " + "; ".join(failures).replace("|", "\\|") + ")"
        print(f"| {label} | {metrics[name]} | {cell(r['cpu_ms'], '{:.1f} ms'.format)} | "
              f"{cell(r['steady_us_per_s'], '{:.0f} µs'.format)} | "
              f"{cell(r['vmhwm_kb'], fmt_kb)} | {cell(r['pss_kb'], fmt_kb)} | "
              f"{cell(r['threads'], '{:g}'.format)} | "
              f"{cell(r['sigterm_to_exit_ms'], '{:.0f} ms'.format)} | {status} |")

    ratios = []
    print(f"\nRatios all groups / cpu,memory: per run, then the median of the {opts.repeat} "
          "run(s).\n")
    print("| measure | all groups / cpu,memory | target | met |")
    print("|---|---|---|---|")
    for measure, key in (("steady CPU per sample", "steady_us_per_s"), ("VmHWM", "vmhwm_kb"),
                         ("Pss", "pss_kb"), ("CPU", "cpu_ms")):
        pairs = [ratio(run["results"]["all-groups"][key], run["results"]["cpu-memory"][key])
                 for run in ecs_runs]
        r = statistics.median(pairs) if pairs and None not in pairs else None
        limit = ECS_TARGETS.get(key)
        label = "—" if limit is None else f"≤ {limit:g}×"
        met = "" if limit is None else verdict(r, limit)
        print(f"| {measure} | {fmt_ratio(r)} | {label} | {met} |")
        ratios.append({"measure": measure, "all_groups_over_cpu_memory": r, "target": label,
                       "met": met.strip("*") or None})

    seconds = median_of(r.get("growth_seconds") for name in ECS_NAMES for r in row_runs(name))
    span = "n/a" if seconds is None else f"{seconds:.0f} s, ~{seconds:.0f} samples"
    print(f"\nMemory growth from the end of start-up to the end ({span}), median of the runs; "
          "the issue asks for no allocation growth per sample. RssAnon is heap and stack, in "
          "whole pages; Pss also moves when other processes start or stop sharing pages.\n")
    print("| row | " + " | ".join(GROWTH.values()) + " |")
    print("|---|" + "---|" * len(GROWTH))
    for name, label in ECS_NAMES.items():
        print(f"| {label} | " + " | ".join(cell(medians[name][f"{k}_growth"], "{:+.0f} kB".format)
                                           for k in GROWTH) + " |")

    print(f"\nMachine: {os.cpu_count()} CPUs, Linux {platform.release()}; the rows ran "
          "concurrently, each on its own base URL of one stand-in endpoint (a thread of this "
          f"script; {ecs_standin.CPU_NS_PER_S / 1e9:g} vCPU per container).")
    for i, run in enumerate(ecs_runs, 1):
        parts = []
        for name, label in ECS_NAMES.items():
            served = run["served"][name]
            paths = ", ".join(f"{n} {p}" for p, n in sorted(served.items())) or "nothing"
            parts.append(f"{label} {paths}")
        print(f"Run {i}, stand-in endpoint served: " + "; ".join(parts)
              + f" ({opts.seconds / opts.ecs_refresh:.0f} refreshes in {opts.seconds:.0f} s)")
    return medians, ratios


def median_of(values):
    """The median of the values measured; None when none was."""
    measured = [v for v in values if v is not None]
    return statistics.median(measured) if measured else None


def median_results(runs):
    """mode -> name -> measure -> median over the runs."""
    out = {}
    for mode in runs[0]:
        out[mode] = {name: {k: median_of(run[mode][name].get(k) for run in runs)
                            for k in MEASURES}
                     for name in runs[0][mode]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="?", default=DEFAULT_BINARY, help="this agent")
    ap.add_argument("--seconds", type=float, default=40, help="run length per mode")
    ap.add_argument("--period", type=int, default=5)
    ap.add_argument("--scope", choices=("host", "auto"), default="host",
                    help="this agent's scope; host reads exactly what the floor reads "
                         "(the ECS rows are always ecs-task)")
    ap.add_argument("--repeat", type=int, default=1, help="runs to take the median of")
    ap.add_argument("--mode", choices=("both", "dry-run", "publishing", "ecs", "all"),
                    default="both", help="both: dry-run and publishing; all: those and ecs")
    ap.add_argument("--ecs-metrics", default=DEFAULT_ECS_METRICS,
                    help="--metrics of the 'ecs all groups' row")
    ap.add_argument("--ecs-refresh", type=float, default=1, metavar="SECS",
                    help="seconds between the stand-in's refreshes of /task/stats "
                         "(1 as on EC2, 10 as on Fargate)")
    ap.add_argument("--ecs-baseline", metavar="BINARY",
                    help="run the 'ecs cpu,memory' row with this build instead (e.g. the "
                         "previous release), side by side with the new one")
    ap.add_argument("--scratch", default=DEFAULT_SCRATCH,
                    help="where the original agent and the floor are built")
    ap.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    opts = ap.parse_args()

    scratch = os.path.expanduser(opts.scratch)
    os.makedirs(scratch, exist_ok=True)
    modes = {"both": ["dry-run", "publishing"],
             "all": ["dry-run", "publishing", "ecs"]}.get(opts.mode, [opts.mode])
    # The original and the floor only for the modes that have them: `--mode ecs` builds
    # nothing.
    classic = [m for m in modes if m != "ecs"]
    progs = None
    if classic:
        progs = programs(opts, scratch)
        sizes = {name: stripped_mb(binary, os.path.join(scratch, f"{name}.stripped"))
                 for name, (binary, _) in progs.items()}
        version = aws_config_version(progs["original"][0])
        meta = {"original_aws_config": ".".join(map(str, version)) if version else "unknown",
                "received": [], "binaries": {n: b for n, (b, _) in progs.items()}}
        if version is not None and version >= (1, 1, 9):
            meta["original_publishing_note"] = "it honours AWS_ENDPOINT_URL."
        else:
            del progs["original"][1]["publishing"]
            meta["original_publishing_note"] = ("it may ignore AWS_ENDPOINT_URL (needs "
                                                "aws-config >= 1.1.9), so it is left out of "
                                                "publishing mode.")
    if "publishing" in modes and not os.path.exists(os.path.join(ROOT, ".venv/bin/python")):
        print("no .venv (run ./scripts/test once to create it): publishing mode skipped",
              file=sys.stderr)
        modes.remove("publishing")
        classic.remove("publishing")
    ecs_progs = ecs_programs(opts) if "ecs" in modes else None

    env = clean_env(scratch)
    runs, ecs_runs = [], []
    for i in range(opts.repeat):
        run = {}
        for mode in modes:
            print(f"run {i + 1}/{opts.repeat}: {mode}, {opts.seconds:g} s", file=sys.stderr,
                  flush=True)
            if mode == "dry-run":
                run[mode] = run_mode(progs, mode, opts.seconds, env, scratch)
            elif mode == "ecs":
                results, served = run_ecs(ecs_progs, opts.seconds, env, scratch,
                                          opts.ecs_refresh)
                ecs_runs.append({"results": results, "served": served})
                for name, r in results.items():
                    if r.get("failed"):
                        print(f"{ECS_NAMES[name]} failed (exit {r['exit']}): {r['failed']}",
                              file=sys.stderr)
            else:
                run[mode], received = run_publishing(progs, opts.seconds, env, scratch)
                meta["received"].append(received)
                for name, c in received.items():
                    if c["requests"] == 0:
                        print(f"WARNING: no PutMetricData from {NAMES[name]} reached the "
                              f"test server: see {scratch}/{name}-publishing.stderr",
                              file=sys.stderr)
        runs.append(run)

    out = {"options": vars(opts)}
    if progs is not None:
        medians = median_results(runs)
        statuses = {mode: {name: [run[mode][name]["exit"] for run in runs]
                           for name in runs[0][mode]}
                    for mode in classic}
        ratios = report(runs, medians, statuses, sizes, opts, meta)
        out.update(meta=meta, stripped_mb=sizes, runs=runs, median=medians, ratios=ratios)
    if ecs_runs:
        ecs_medians, ecs_ratios = report_ecs(ecs_runs, opts)
        out["ecs"] = {"binary": ecs_progs["cpu-memory"][0], "runs": ecs_runs,
                      "median": ecs_medians, "ratios": ecs_ratios}
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
