"""Run a command under a real seccomp filter that refuses adjtimex(2) and clock_adjtime(2)
with EPERM, as systemd does for ``ProtectClock=yes`` with ``SystemCallErrorNumber=EPERM``
(glibc's adjtimex() calls clock_adjtime)::

    python -m tests.helpers.seccomp -- python -m exporter check

The filter is a classic BPF program installed with prctl(PR_SET_SECCOMP) after
PR_SET_NO_NEW_PRIVS, then the command is exec'ed: it and its children keep the filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
# offsetof(struct seccomp_data, nr) and (…, arch)
NR_OFFSET, ARCH_OFFSET = 0, 4
# machine -> (AUDIT_ARCH_*, adjtimex, clock_adjtime) from the kernel's syscall tables
ARCHES = {"x86_64": (0xC000003E, 159, 305), "aarch64": (0xC00000B7, 171, 266)}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None) -> bytes:
    """EPERM for adjtimex and clock_adjtime of this architecture, allow the rest."""
    arch, adjtimex, clock_adjtime = ARCHES[machine or platform.machine()]
    return b"".join([
        _insn(BPF_LD_W_ABS, ARCH_OFFSET),
        _insn(BPF_JEQ_K, arch, jt=1),  # another ABI (32-bit calls): not ours to filter
        _insn(BPF_RET_K, SECCOMP_RET_ALLOW),
        _insn(BPF_LD_W_ABS, NR_OFFSET),
        _insn(BPF_JEQ_K, adjtimex, jt=2),
        _insn(BPF_JEQ_K, clock_adjtime, jt=1),
        _insn(BPF_RET_K, SECCOMP_RET_ALLOW),
        _insn(BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM),
    ])


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    program = ctypes.create_string_buffer(filter_program(), len(filter_program()))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(program, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def prefix() -> list[str]:
    """Put before a command to run it under the filter."""
    return [sys.executable, "-m", "tests.helpers.seccomp", "--"]


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    install()
    os.execvp(args[0], args)
