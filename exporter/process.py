"""The exporter's own process metrics: prometheus_client's, plus the one the Go exporters'
process collector has and it lacks.

``process_virtual_memory_max_bytes`` is the soft address-space limit (``ulimit -v``,
RLIMIT_AS) from ``/proc/self/limits``, read as prometheus/procfs reads it: "unlimited"
is 2^64 - 1, which node_exporter and postgres_exporter print as 1.8446744073709552e+19.
Node Exporter Full's "Exporter Processes Memory" panel plots it beside
``process_virtual_memory_bytes``.  Sample output::

    # HELP process_virtual_memory_max_bytes Maximum amount of virtual memory available in bytes.
    # TYPE process_virtual_memory_max_bytes gauge
    process_virtual_memory_max_bytes 1.8446744073709552e+19
"""

from __future__ import annotations

import os
import re

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

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


class ProcessMetrics:
    """``process_*`` of this process, as the Go exporters export them."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._client = ProcessCollector(registry=None, proc=proc)

    def collect(self) -> list[Metric]:
        out = list(self._client.collect())
        try:
            with open(os.path.join(self._proc, "self", "limits")) as f:
                limit = address_space_limit(f.read())
        except OSError:
            limit = None  # as the Go collector: no limits file, no series
        if limit is not None:
            out.append(GaugeMetricFamily("process_virtual_memory_max_bytes",
                                         "Maximum amount of virtual memory available in bytes.",
                                         value=limit))
        return out
