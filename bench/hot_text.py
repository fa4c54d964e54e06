#!/usr/bin/env python3
"""Writes link/hot-text.ld: the functions the agent runs, placed together at link time.

Why: the agent's resident memory is mostly its own code. The kernel maps code in by
64 KiB around each page fault (fault-around), and the ~500 functions a run executes
(~340 KiB) are scattered over the 3.6 MB of text, so a dry-run touched 37 of its 64 KiB
blocks: 2.1 MB resident for 340 KiB of code. Placed together they fit in ~8 blocks.

How: unstripped release builds (glibc and static musl) run under `valgrind
--tool=callgrind` in each way a user runs it (dry-run, publishing to the test server,
EMF, the cgroup scope, every metric, --compat 0.1, wrapper mode, `check`), all at once, a
few seconds each at --period 1 and stopped by SIGTERM, so start-up, samples, windows,
output and the flush all run. The functions of the binary named in any profile are
written as input-section patterns of a linker script that build.rs hands to the linker:
an output section `.text.hot` inserted before `.init` (see "Placement" below), filled in
the reverse order of the runs below (what only `check` runs first, ..., what publishing
adds, then dry-run's functions and the C start-up code), so the most common paths share
the fewest blocks.

The patterns leave out what changes from one compiler or build to the next: the crate
hash of legacy symbols (`17h<16 hex>E`), the crate disambiguators of v0 symbols
(`Cs<base62>_`) and LTO's numbered local copies (`.123`). A generic's pattern therefore
takes all its instances, and a build with another rustc still finds its functions. The
crate's own names keep only the last two names of their path, also inside generic
instances (see `portable`), so a module moved elsewhere keeps its place in the list. A
function the list does not name is still linked, in `.text`; only its place differs, and
no build fails for it.

Regenerate after changes that add or rename much of what runs; `--check` (run by
./scripts/test on the `cargo install` build) fails for a real regression: no order, libm
loaded, or a dry-run's code resident in more than CODE_LIMIT_KIB (a few renamed functions
stay well under it):

    export CARGO_PROFILE_RELEASE_STRIP=false
    cargo build --release
    cargo zigbuild --release --target x86_64-unknown-linux-musl
    python3 bench/hot_text.py target/release/cloudwatch_metrics_agent \
        target/x86_64-unknown-linux-musl/release/cloudwatch_metrics_agent
    cargo build --release && python3 bench/hot_text.py --check target/release/cloudwatch_metrics_agent
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import footprint
from footprint import ROOT

OUT = os.path.join(ROOT, "link/hot-text.ld")
COMMON = ["--namespace", "HotText", "--service", "hot-text", "--period", "1"]

# (name, arguments), by priority: dry-run first (what bench/compare.py measures and users
# preview), publishing next (what runs for days), then the rest.
RUNS = [
    ("dry-run", ["--dry-run", "--scope", "host", *COMMON]),
    ("dry-run to /dev/null", ["--dry-run", "--scope", "host", *COMMON]),
    ("publishing", ["--scope", "host", "--send-delay", "0", *COMMON]),
    ("emf", ["--output", "emf", "--scope", "host", *COMMON]),
    ("cgroup", ["--dry-run", "--scope", "cgroup", *COMMON]),
    ("all metrics", ["--dry-run", "--scope", "host", "--metrics",
                     "cpu,memory,throttling,oom,pressure", "--aggregation", "median-max",
                     *COMMON]),
    ("compat 0.1", ["--dry-run", "--scope", "host", "--compat", "0.1", *COMMON]),
    ("wrapper", ["--dry-run", "--scope", "host", *COMMON, "--", "sleep", "60"]),
    ("check", ["check", "--scope", "host", "--namespace", "HotText", "--service", "h"]),
    ("check dry-run", ["check", "--dry-run", "--scope", "host", "--namespace", "HotText",
                       "--service", "h"]),
]
CHECKS = ("check", "check dry-run")  # these end by themselves
TO_DEV_NULL = ("dry-run to /dev/null",)  # as bench/compare.py runs it; the rest into pipes
# LLVM puts a function in `.text.<symbol>`, or in `.text.unlikely.<symbol>` when it is
# marked cold (std's `Once::call`, `RawVec::finish_grow`...), which start-up runs too.
SECTION_PREFIXES = (".text.", ".text.unlikely.")


# A dry-run's resident code, with the list fresh: ~0.7 MiB (glibc build); without it or
# with a stale one, 1.3-2.1 MiB. Between the two, with room for another compiler's inlining.
CODE_LIMIT_KIB = 1024


# Placement. Why build.rs inserts the section before .init, in reverse order: Linux 6.18
# keeps a file's page cache in large folios (up to 1 MiB were seen here: how the file was
# written or read ahead decides) and maps the whole folio on a fault when it fits, so one
# touched page can bring in up to 1 MiB. Everything start-up touches in the executable
# segment must therefore sit together: .init and .plt (before .text with GNU ld, after it
# with lld: "before .init" is next to them with both) and crt1.o's _start, then the most
# common runs' functions. A static musl link by zig has no .init: there, before .text.


def pattern(symbol):
    """The symbol's input-section pattern, without what differs between builds."""
    symbol = re.sub(r"17h[0-9a-f]{16}E$", "17h*E", symbol)
    symbol = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", symbol)
    return portable(re.sub(r"\.\d+$", "*", symbol))


OURS = "_ZN24cloudwatch_metrics_agent"
# `{{closure}}`, legacy-mangled: inside a path, and as a length-prefixed name of its own.
CLOSURE = "$u7b$$u7b$closure$u7d$$u7d$"
CLOSURE_NAME = f"{len(CLOSURE) + 1}_{CLOSURE}"
# A path of ours inside another symbol (`drop_in_place<cloudwatch_metrics_agent::a::B>`,
# `<cloudwatch_metrics_agent::a::B as Display>::fmt`), legacy-mangled with `..` for `::`.
INNER = re.compile(rf"cloudwatch_metrics_agent((?:\.\.(?:\w+|{re.escape(CLOSURE)}))+)")


def last_two(names, closure):
    """The last two names that are not closures, and the closures after them."""
    closures = 0
    while closures < len(names) and names[-1 - closures] == closure:
        closures += 1
    return names[-(closures + 2):]


def inner_path(m):
    """An INNER match, keeping the last two names (the length before it is now `*`)."""
    path = m.group(1)[2:].split("..")
    return "cloudwatch_metrics_agent..*" + "..".join(last_two(path, CLOSURE))


def components(mangled):
    """A legacy-mangled path's length-prefixed names, or None when it is not one."""
    names = []
    while mangled:
        m = re.match(r"(\d+)", mangled)
        if not m:
            return None
        end = len(m.group(1)) + int(m.group(1))
        names.append(mangled[:end])
        mangled = mangled[end:]
    return names


def portable(pat):
    """The crate's own names keep only the last two names of their path (the module or
    type and the function or type, and any closures in it), in a function's own path and
    inside generic instances and trait impls (whose length prefix then becomes `*`):
    moving a module elsewhere, as a refactoring does, leaves its functions in the list.
    Measured with every function moved one module deeper: see docs/footprint.md."""
    if not (pat.startswith("_ZN") and pat.endswith("17h*E")):
        return pat
    names = components(pat[len("_ZN"):-len("17h*E")])
    if names is None:
        return pat
    if pat.startswith(OURS):
        return OURS + "*" + "".join(last_two(names[1:], CLOSURE_NAME)) + "17h*E"
    out = []
    for name in names:
        body = name.lstrip("0123456789")
        out.append("*" + INNER.sub(inner_path, body) if INNER.search(body) else name)
    return "_ZN" + "".join(out) + "17h*E"


def functions(binary):
    """Names of the binary's functions (its symbol table: the build must be unstripped)."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True)
    names = {p[2] for p in (line.split() for line in out.stdout.splitlines())
             if len(p) == 3 and p[1] in "tTwW"}
    if not names:
        sys.exit(f"{binary} has no symbol table: build with CARGO_PROFILE_RELEASE_STRIP=false")
    return names


def executed(profile):
    """Every function name a callgrind profile defines (fn=, cfn=: `(id) name`)."""
    names = set()
    with open(profile) as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m:
                names.add(m.group(1))
    return names


def profile_all(binary, seconds, scratch):
    server, endpoint = footprint.start_server()
    if server is None:
        sys.exit("no .venv: run ./scripts/test once (it creates the test server's venv)")
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="hot-text", AWS_SECRET_ACCESS_KEY="hot-text",
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("RUST_LOG", None)
    procs = []
    for i, (name, args) in enumerate(RUNS):
        out = os.path.join(scratch, f"callgrind.{i}")
        cmd = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
               binary, *args]
        # Stdout a pipe, as under a container runtime or a shell (a file or /dev/null is
        # written inline, a pipe by a thread: both paths must be in the list).
        null = name in TO_DEV_NULL
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if null else subprocess.PIPE)
        if not null:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
        procs.append((name, out, proc))
    time.sleep(seconds)  # the profiled run's length, not a wait for a condition
    for name, _, proc in procs:
        if name not in CHECKS:
            proc.terminate()
    for name, _, proc in procs:
        proc.wait()
    server.stdin.close()
    server.wait()
    return [(name, out) for name, out, _ in procs]


def resident_code_kib(binary):
    """KiB of the binary's executable mapping resident after a dry-run's first windows
    (/proc/PID/smaps), read while it runs; two lines of output mean two windows done."""
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_REGION="us-east-1")
    env.pop("RUST_LOG", None)
    proc = subprocess.Popen([binary, *RUNS[0][1]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(2):
            if not proc.stdout.readline():  # bounded: --period 1 writes a line a second
                sys.exit(f"{binary} ended before its second window")
        kib, mapping = 0, None
        with open(f"/proc/{proc.pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if not line[0].isupper():  # a mapping's header: range perms offset ... path
                    ours = len(fields) > 5 and fields[5] == os.path.realpath(binary)
                    mapping = fields[1] if ours else None
                elif fields[0] == "Rss:" and mapping == "r-xp":
                    kib += int(fields[1])
        return kib
    finally:
        proc.kill()
        proc.wait()


def check(binary):
    """The build uses the list, the list is fresh, and glibc's libm is not loaded."""
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True).stdout
    if ".text.hot" not in sections:
        sys.exit(f"{binary} has no .text.hot section: build.rs did not pass link/hot-text.ld")
    needed = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
    libs = re.findall(r"Shared library: \[([^\]]+)\]", needed)
    if any(lib.startswith("libm.") for lib in libs):
        sys.exit(f"{binary} loads libm (NEEDED: {', '.join(libs)}): see src/no_libm.rs")
    kib = resident_code_kib(binary)
    print(f"{binary}: .text.hot present; libraries: {', '.join(libs) or 'none (static)'}; "
          f"a dry-run's resident code: {kib} KiB (limit {CODE_LIMIT_KIB})")
    if kib > CODE_LIMIT_KIB:
        sys.exit("the dry-run runs code outside .text.hot: regenerate link/hot-text.ld "
                 "(see bench/hot_text.py)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="+",
                    help="unstripped release builds (with --check: any builds)")
    ap.add_argument("--seconds", type=float, default=8, help="length of each profiled run")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true",
                    help="only check a build against the list (see the module docstring)")
    args = ap.parse_args()
    if args.check:
        for binary in args.binary:
            check(binary)
        return
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    # Per run, the patterns of every binary's profile (the glibc and musl builds run some
    # different functions: std's platform layer, and musl's own C, which is in the binary).
    found = {name: set() for name, _ in RUNS}
    for binary in args.binary:
        own = functions(binary)
        with tempfile.TemporaryDirectory() as scratch:
            for name, path in profile_all(binary, args.seconds, scratch):
                found[name] |= {pattern(s) for s in executed(path) & own}
    groups, seen = [], set()
    for name, _ in RUNS:
        pats = sorted(found[name] - seen)
        seen.update(pats)
        groups.append((name, pats))
        print(f"{name}: {len(pats)} more patterns", file=sys.stderr)
    lines = [
        "/* Generated by bench/hot_text.py (read it for why and how); do not edit.",
        f"   Profiled with {rustc}. build.rs passes it to the linker. */",
        "SECTIONS {",
        "  .text.hot : {",
    ]
    # The most common runs' functions last, next to .init, .plt and the C start-up code
    # (start-up touches those too): see "Placement".
    for name, pats in reversed(groups):
        if pats:
            lines.append(f"    /* {name} */")
            sections = (f"{prefix}{p}" for p in pats for prefix in SECTION_PREFIXES)
            lines.append("    *(" + "\n      ".join(sections) + ")")
    lines += ["    /* the C start-up code (_start) */",
              "    *crt1.o(.text) *crti.o(.text) *crtbegin*.o(.text)",
              "  }", "}", "/* build.rs adds where: see Placement in bench/hot_text.py */", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}: {len(seen)} patterns", file=sys.stderr)


if __name__ == "__main__":
    main()
