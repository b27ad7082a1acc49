"""What this machine cannot have, whatever stackmon does: the reason a query's series are
rightly absent here (a container with a private network, an overlay root, a seccomp
filter on the clock calls, a kernel without cpufreq). The e2e tests skip such queries with
the reason; on a plain VM none of these apply and every query runs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from pathlib import Path

from exporter.collectors.host.settings import HostSettings
from exporter.collectors.host.timex import _Timex, libc_adjtimex


@functools.cache
def clock_refused() -> str | None:
    """Why adjtimex(2) fails here (e.g. systemd-nspawn's seccomp filter), or None."""
    call = libc_adjtimex()
    if call is None:
        return "the C library has no adjtimex"
    if call(ctypes.byref(_Timex())) < 0:
        return f"adjtimex(2) is refused here ({os.strerror(ctypes.get_errno())})"
    return None


@functools.cache
def root_fstype() -> str:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == "/":
            fstype = parts[2]  # the last mount on / wins
    return fstype


def root_excluded() -> str | None:
    """Why / has no filesystem series here: its type is excluded by default (overlay, as
    in a container), as node_exporter excludes it."""
    pattern = HostSettings().filesystem_fs_types_exclude
    if pattern and re.search(pattern, root_fstype()):
        return f"/ is {root_fstype()}, a type the filesystem collector excludes by default"
    return None


def only_loopback() -> str | None:
    if not [d for d in os.listdir("/sys/class/net") if d != "lo"]:
        return "this network namespace has no interface but lo"
    return None


def no_cpufreq() -> str | None:
    if not Path("/sys/devices/system/cpu/cpu0/cpufreq").exists():
        return "this machine's kernel exposes no cpufreq"
    return None


def absent_here(expr: str) -> str | None:
    """Why ``expr``'s series cannot exist on this machine, or None."""
    checks = (("node_timex_", clock_refused), ('mountpoint="/"', root_excluded),
              ('device!="lo"', only_loopback), ("node_cpu_scaling_frequency", no_cpufreq))
    for needle, check in checks:
        if needle in expr:
            reason = check()
            if reason:
                return f"{needle}…: {reason}"
    return None
