#!/usr/bin/env python3
"""Runs a command with pidfd_open(2) failing with ENOSYS, as it does on kernels before
5.3 and under seccomp profiles older than the call: tokio then waits for the children it
spawns (the AWS SDK's credential_process) by SIGCHLD, racing any other reaper in the
process. The wrapper tests use it to show the agent's reaper never wins that race.

Usage: without_pidfd.py COMMAND [ARGS...]   (Linux x86_64 or aarch64)
"""

import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38
NR_PIDFD_OPEN = 434  # the same in every architecture's table since Linux 5.3
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
# classic BPF over struct seccomp_data { int nr; __u32 arch; ... }
BPF_LD_W_ABS, BPF_JMP_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06


def insn(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


PROGRAM = [
    insn(BPF_LD_W_ABS, 4),  # arch
    insn(BPF_JMP_JEQ_K, AUDIT_ARCH, jt=1),
    insn(BPF_RET_K, SECCOMP_RET_ALLOW),
    insn(BPF_LD_W_ABS, 0),  # nr
    insn(BPF_JMP_JEQ_K, NR_PIDFD_OPEN, jf=1),
    insn(BPF_RET_K, SECCOMP_RET_ERRNO | ENOSYS),
    insn(BPF_RET_K, SECCOMP_RET_ALLOW),
]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    code = ctypes.create_string_buffer(b"".join(PROGRAM))
    prog = SockFprog(len(PROGRAM), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    for args in ((PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                 (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)):
        if libc.prctl(*[ctypes.c_ulong(a) for a in args]) != 0:
            sys.exit(f"prctl{args[:2]}: {os.strerror(ctypes.get_errno())}")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
