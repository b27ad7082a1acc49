"""The exporter's own process metrics: prometheus_client's (same names, HELP and order),
plus the one the Go exporters' process collector has and it lacks.

They are read here with plain system calls: prometheus_client's collector would load its
whole package (and ``ssl``) into a host-only exporter (bench/RESULTS.md, "Memory").

``process_virtual_memory_max_bytes`` is the soft address-space limit (``ulimit -v``,
RLIMIT_AS) from ``/proc/self/limits``, read as prometheus/procfs reads it: "unlimited"
is 2^64 - 1, which node_exporter and postgres_exporter print as 1.8446744073709552e+19.
Node Exporter Full's "Exporter Processes Memory" panel plots it beside
``process_virtual_memory_bytes``.  Sample output::

    process_virtual_memory_bytes 1.2e+08
    process_resident_memory_bytes 2.3e+07
    process_start_time_seconds 1.79e+09
    process_cpu_seconds_total 1.5
    process_open_fds 9.0
    process_max_fds 1024.0
    process_virtual_memory_max_bytes 1.8446744073709552e+19
"""

from __future__ import annotations

import os
import re
import resource

from exporter.metrics import CounterMetricFamily, GaugeMetricFamily, Metric

UNLIMITED = float(2**64 - 1)  # procfs's value for "unlimited"
# "Max address space         unlimited            unlimited            bytes"
ADDRESS_SPACE = re.compile(r"^Max address space\s{2,}(\w+)\s+\w+", re.M)


def address_space_limit(limits_text: str) -> float | None:
    """The soft limit of the ``Max address space`` row, or None without one."""
    found = ADDRESS_SPACE.search(limits_text)
    if found is None:
        return None
    soft = found.group(1)
    if soft == "unlimited":
        return UNLIMITED
    return float(int(soft)) if soft.isdigit() else None


M_ARENA_MAX = -8  # glibc's malloc.h
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most ``arenas`` glibc malloc arenas, as ``MALLOC_ARENA_MAX`` would (unless that
    is set: then it is the user's choice).  glibc gives each thread that allocates an arena
    of its own; with the HTTP server's thread per connection, eight concurrent scrapers
    left the all-in-one exporter 2.5 MB larger (bench/RESULTS.md, "Memory").  Python holds
    the GIL for its allocations, so the threads hardly ever wait for an arena.  False
    where there is no glibc (musl has no mallopt)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


class ProcessMetrics:
    """``collect()`` returns this process's families; empty without a readable /proc."""

    def __init__(self, proc: str = "/proc") -> None:
        self._limits = os.path.join(proc, "self", "limits")
        self._stat = os.path.join(proc, "self", "stat")
        self._fd = os.path.join(proc, "self", "fd")
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = float(resource.getpagesize())
        self._btime = 0.0
        try:
            with open(os.path.join(proc, "stat"), "rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> list[Metric]:
        return self._client() + self._address_space()

    def _address_space(self) -> list[Metric]:
        try:
            with open(self._limits) as f:
                limit = address_space_limit(f.read())
        except OSError:
            limit = None  # as the Go collector: no limits file, no series
        if limit is None:
            return []
        return [GaugeMetricFamily("process_virtual_memory_max_bytes",
                                  "Maximum amount of virtual memory available in bytes.",
                                  value=limit)]

    def _client(self) -> list[Metric]:
        """What prometheus_client's ProcessCollector gives."""
        if not self._btime:
            return []
        result: list[Metric] = []
        try:
            fd = os.open(self._stat, os.O_RDONLY | os.O_CLOEXEC)
            try:
                parts = os.read(fd, 4096).split(b")")[-1].split()
            finally:
                os.close(fd)
            result += [
                GaugeMetricFamily("process_virtual_memory_bytes",
                                  "Virtual memory size in bytes.", value=float(parts[20])),
                GaugeMetricFamily("process_resident_memory_bytes",
                                  "Resident memory size in bytes.",
                                  value=float(parts[21]) * self._pagesize),
                GaugeMetricFamily("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.",
                                  value=float(parts[19]) / self._ticks + self._btime),
                CounterMetricFamily("process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds.",
                                    value=(float(parts[11]) + float(parts[12])) / self._ticks),
            ]
        except OSError:
            pass
        try:
            open_fds = len(os.listdir(self._fd))
        except OSError:
            return result
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        result.append(GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                        value=float(open_fds)))
        if soft != resource.RLIM_INFINITY:
            result.append(GaugeMetricFamily("process_max_fds",
                                            "Maximum number of open file descriptors.",
                                            value=float(soft)))
        return result
