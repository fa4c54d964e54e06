"""Runs the agent in wrapper mode with --signal-group on a real pseudo-terminal, as an
interactive shell would: the command reads the terminal, then SIGTERM must end it.

Usage: pty_signal_group.py sigterm|exit AGENT [AGENT ARGS...]. The agent wraps a shell
that reads a line and echoes it, then reads again. With `sigterm` the agent then gets
SIGTERM; with `exit` the second line is typed once the agent has logged a window (give it
--period 1 and RUST_LOG=cloudwatch_metrics_agent::publisher=info: then it has data to
flush), the command ends by itself, and the terminal's foreground group is watched while
the agent flushes (give it a flush that takes a while). Prints one JSON line: whether the command got the line, whose the
terminal was while it ran and after, and the agent's exit status. Exits 0 when it ran to
the end (the Rust test judges the result)."""

import json
import os
import pty
import select
import signal
import sys
import time


def read_until(fd, needle, deadline):
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if needle in seen:
                return True, seen
    return False, seen


def main():
    mode = sys.argv[1]
    agent = sys.argv[2:]
    command = ["sh", "-c", 'echo ready; read line; echo "got $line"; read again; echo done']
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(agent[0], agent + ["--"] + command)
    result = {}
    ok, seen = read_until(fd, b"ready", time.monotonic() + 10)
    result["ready"] = ok
    os.write(fd, b"hello\n")
    ok, more = read_until(fd, b"got hello", time.monotonic() + 5)
    result["got_line"] = ok
    # The agent is the session leader: its group is its pid.
    result["foreground_while_running_is_agent"] = os.tcgetpgrp(fd) == pid
    if mode == "sigterm":
        os.kill(pid, signal.SIGTERM)
    else:
        ok, tail = read_until(fd, b"MemoryUtilization n=", time.monotonic() + 10)
        more += tail
        result["window_logged"] = ok
        os.write(fd, b"again\n")
        ok, tail = read_until(fd, b"done", time.monotonic() + 5)
        more += tail
        result["command_done"] = ok
        back = False
        watch_until = time.monotonic() + 2
        while time.monotonic() < watch_until and not back:
            try:
                back = os.tcgetpgrp(fd) == pid
            except OSError:
                break
            time.sleep(0.02)
        result["terminal_back"] = back
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        read_until(fd, b"\0", time.monotonic() + 0.1)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    result["status"] = status
    result["output"] = (seen + more).decode(errors="replace")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
