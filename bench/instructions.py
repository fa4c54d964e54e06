#!/usr/bin/env python3
"""Instructions per sample, counted by callgrind: stable on a noisy machine, unlike CPU time.

Each of the three programs of bench/compare.py (this agent, the original 0.1.8, the C
floor) runs in dry-run under `valgrind --tool=callgrind` once per --durations entry, all
at once (they sleep almost all the time, so two cores suffice). A run's total instruction
count Ir (the `totals:` line of its callgrind.out) is startup + samples + shutdown, so

    Ir per sample = (Ir_long - Ir_short) / (samples_long - samples_short)
    fixed cost    = Ir_short - Ir per sample * (samples_short - 1)

the fixed cost being startup, the first sample and shutdown (with the final window's
output). Samples are counted exactly, not from elapsed time: `--trace-syscalls=yes` logs
every syscall (with the path of an open), and every program reads /proc/stat from its
start once per sample: open + read (the floor, the original), or pread at offset 0 on a
descriptor kept open (this agent). The original also reads it once or twice at startup,
which lands in its fixed cost; /proc/meminfo reads are counted as a cross-check.
Callgrind is slow, so the script checks that samples still fit in their second: a 1-Hz
program that overran would skip ticks (more than the ±1 a final sample on SIGTERM can
make), and the CPU time of each run (wait4) gives what one sample costs under callgrind.

The original's fixed cost varies from run to run by ~150 k instructions: at startup it
reads every process and thread in /proc, so it depends on what else runs and on how many
of its own threads exist by then (a race: 2 more tasks cost ~150 k). Spread over 20 samples that is ~10 % of its per-sample count,
hence the long default runs (6, 26 and 46 s).

All runs start together, at the same offset into a period, so a longer run differs from a
shorter one by exactly (difference in seconds / period) window outputs: Ir per sample
includes 1/period of the per-window aggregation and output. What remains uncertain is
the runs' own variation (hash seeds, timer wheel paths, digits of the numbers read); with
three durations the two segment estimates, short-mid and mid-long, show its size.
Callgrind counts user-space instructions only: the kernel's work of generating /proc/stat
and of each syscall is not in these numbers (it is in compare.py's CPU time).

    python3 bench/instructions.py                       # 6, 26 and 46 s runs
    python3 bench/instructions.py --durations 6 26 --json ir.json
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import compare

SYSCALL = re.compile(r"SYSCALL\[\d+,(\d+)\]\(\d+\) (.*)")
RESULT = re.compile(r"--> .*Success\(0x([0-9a-f]+)\)")


def callgrind_totals(path):
    """Total Ir of a callgrind.out file (`totals:`, else `summary:`)."""
    found = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("totals", "summary"):
                found[key] = int(value.split()[0])
    return found.get("totals", found.get("summary"))


def count_reads(log, path):
    """How many times the program began reading `path` from its start, from valgrind's
    --trace-syscalls log: an open followed by read(), or a pread64 at offset 0 (this agent
    keeps its /proc files open and preads them), or a read after lseek(fd, 0, SEEK_SET).
    Once per sample for all three programs."""
    fds = {}  # fd of `path` -> at its start
    pending = {}  # thread -> its unfinished open of `path`
    reads = 0
    with open(log, errors="replace") as f:
        for line in f:
            m = SYSCALL.match(line)
            if not m:
                continue
            tid, call = m.groups()
            done = RESULT.search(call)
            if call.startswith("..."):  # an [async] call finishing
                if tid in pending and done:
                    fds[int(done.group(1), 16)] = True
                pending.pop(tid, None)
                continue
            name = call.split(" ", 1)[0]
            if name in ("sys_open", "sys_openat") and f"({path})" in call:
                if done:
                    fds[int(done.group(1), 16)] = True
                elif call.rstrip().endswith("..."):
                    pending[tid] = True
                continue
            args = call[call.find("(") + 1:call.find(")")].split(",")
            fd = int(args[0]) if args[0].strip().lstrip("-").isdigit() else None
            if fd not in fds:
                continue
            if name == "sys_read" and fds[fd]:
                reads += 1
                fds[fd] = False
            elif name == "sys_pread64" and int(args[3]) == 0:
                reads += 1
            elif name == "sys_lseek" and int(args[1]) == 0 and int(args[2]) == 0:
                fds[fd] = True
            elif name == "sys_close":
                del fds[fd]
    return reads


def run_all(progs, durations, period, env, scratch):
    """Runs every (program, duration) under callgrind, all started together at an offset
    into a period that puts every stop mid-window (a stop near a boundary could fall on
    either side of it)."""
    offset = (period / 2 - durations[0]) % period
    now = time.time()
    start = now - now % period + offset
    if start < now + 0.5:
        start += period
    time.sleep(start - time.time())  # waits for a wall-clock offset, not a condition
    procs = {}
    for name, (binary, modes) in progs.items():
        for d in durations:
            base = os.path.join(scratch, f"callgrind-{name}-{d:g}s")
            cmd = ["valgrind", "--tool=callgrind", "--trace-syscalls=yes",
                   f"--callgrind-out-file={base}.out", f"--log-file={base}.log",
                   binary, *modes["dry-run"]]
            procs[name, d] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL), base)
    started = time.monotonic()
    for d in sorted(set(durations)):
        time.sleep(max(0, started + d - time.monotonic()))  # the run's length
        for (name, dur), (proc, _) in procs.items():
            if dur == d:
                proc.send_signal(signal.SIGTERM)
    runs = {}
    deadline = time.monotonic() + 60
    for (name, d), (proc, base) in procs.items():
        status, cpu_s = reap(proc, deadline)
        runs[name, d] = {"exit": status, "cpu_s": cpu_s, "ir": callgrind_totals(base + ".out"),
                         "samples": count_reads(base + ".log", "/proc/stat"),
                         "meminfo_reads": count_reads(base + ".log", "/proc/meminfo")}
    return runs


def reap(proc, deadline):
    """(exit status, CPU seconds) of a run, killed if it outlives the deadline."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.1)  # polling for the exit, bounded by the deadline


def analyse(runs, name, durations):
    """Ir per sample from the shortest and longest runs, the segment estimates between
    consecutive durations, and the fixed cost."""
    r = [runs[name, d] for d in durations]
    per_sample = [(b["ir"] - a["ir"]) / (b["samples"] - a["samples"])
                  if b["samples"] != a["samples"] else None for a, b in zip(r, r[1:])]
    ds = r[-1]["samples"] - r[0]["samples"]
    ips = (r[-1]["ir"] - r[0]["ir"]) / ds if ds else None
    return {
        "ir_per_sample": ips,
        "segments": per_sample,
        "fixed": r[0]["ir"] - ips * (r[0]["samples"] - 1) if ips else None,
        # CPU a sample costs under callgrind: far below 1 s means it fits in its second.
        "callgrind_ms_per_sample": (r[-1]["cpu_s"] - r[0]["cpu_s"]) / ds * 1000 if ds else None,
        "samples": [x["samples"] for x in r],
        "meminfo_reads": [x["meminfo_reads"] for x in r],
        "ir": [x["ir"] for x in r],
        "exit": [x["exit"] for x in r],
    }


def fmt_ir(n):
    if n is None:
        return "n/a"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="?", default=compare.DEFAULT_BINARY, help="this agent")
    ap.add_argument("--durations", type=float, nargs="+", default=[6, 26, 46],
                    help="run lengths in seconds, at least two")
    ap.add_argument("--period", type=int, default=5)
    ap.add_argument("--scope", choices=("host", "auto"), default="host")
    ap.add_argument("--scratch", default=compare.DEFAULT_SCRATCH)
    ap.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    opts = ap.parse_args()
    durations = sorted(opts.durations)
    if len(durations) < 2 or any(not (d - durations[0]) % opts.period == 0 for d in durations):
        sys.exit("give at least two --durations that differ by multiples of --period")
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed (apt-get install valgrind)")

    scratch = os.path.expanduser(opts.scratch)
    os.makedirs(scratch, exist_ok=True)
    progs = compare.programs(opts, scratch)
    print(f"running {len(progs) * len(durations)} callgrind runs for up to "
          f"{durations[-1]:g} s", file=sys.stderr, flush=True)
    runs = run_all(progs, durations, opts.period, compare.clean_env(scratch), scratch)
    results = {name: analyse(runs, name, durations) for name in progs}

    span = "/".join(f"{d:g}" for d in durations)
    print(f"\n### Instructions per sample (callgrind Ir), dry-run, `--period {opts.period}`, "
          f"`--scope {opts.scope}`, runs of {span} s\n")
    print(f"| program | Ir per sample | segment estimates | fixed cost (startup, first sample, "
          f"shutdown) | samples ({span} s) | Ir ({span} s) | exit status |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {compare.NAMES[name]} | {fmt_ir(r['ir_per_sample'])} | "
              f"{', '.join(fmt_ir(x) for x in r['segments'])} | {fmt_ir(r['fixed'])} | "
              f"{' / '.join(map(str, r['samples']))} | {' / '.join(map(fmt_ir, r['ir']))} | "
              f"{', '.join(map(str, sorted(set(map(str, r['exit'])))))} |")

    this, orig, floor = results["this"], results["original"], results["floor"]
    print("\n| measure | this / original | this / floor |\n|---|---|---|")
    for key, label in (("ir_per_sample", "Ir per sample"), ("fixed", "fixed cost")):
        print(f"| {label} | {compare.fmt_ratio(compare.ratio(this[key], orig[key]))} | "
              f"{compare.fmt_ratio(compare.ratio(this[key], floor[key]))} |")

    expected = durations[-1] - durations[0]
    print(f"\nSamples are reads of /proc/stat from its start (exact). Expected for {expected:g} "
          f"s more: {expected:g} ± 1 at 1 Hz (this agent takes a last sample on SIGTERM only "
          "if the previous one is 0.5 s old, which depends on its startup time under "
          "callgrind); the original samples every 0.9 s + its work.")
    for name, r in results.items():
        delta = r["samples"][-1] - r["samples"][0]
        mem = r["meminfo_reads"][-1] - r["meminfo_reads"][0]
        notes = [f"{delta} more samples"]
        if name != "original" and abs(delta - expected) > 1:
            notes.append(f"NOT {expected:g} ± 1: ticks were skipped, the run was too slow")
        if r["callgrind_ms_per_sample"] is not None:
            notes.append(f"a sample took {r['callgrind_ms_per_sample']:.1f} ms of CPU under "
                         "callgrind")
        if mem != delta:
            notes.append(f"but {mem} more /proc/meminfo reads")
        segs = [s for s in r["segments"] if s is not None]
        if len(segs) > 1 and r["ir_per_sample"]:
            spread = (max(segs) - min(segs)) / r["ir_per_sample"] * 100
            notes.append(f"segment estimates within {spread:.1f} %")
        print(f"- {compare.NAMES[name]}: " + "; ".join(notes))
    print("User-space instructions only: the kernel's cost of the /proc reads is not here.")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"options": vars(opts), "results": results,
                       "runs": {f"{n}-{d:g}s": v for (n, d), v in runs.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
