"""cpu: seconds per CPU and mode from /proc/stat, as node_exporter's cpu collector.

Sample output::

    node_cpu_seconds_total{cpu="0",mode="idle"} 210.72
    node_cpu_seconds_total{cpu="0",mode="user"} 141.75
    node_cpu_guest_seconds_total{cpu="0",mode="nice"} 0
"""

from __future__ import annotations

import os

from exporter.collectors.host.common import Files, Labels, Paths, SubCollector, family
from exporter.metrics import Metric, Sample

# /proc/stat column order after "cpuN"; the last two are guest and guest_nice.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
USER_HZ = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
SECONDS = "node_cpu_seconds_total"
GUEST = "node_cpu_guest_seconds_total"


class Cpu(SubCollector):
    name = "cpu"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        self._labels: dict[str, tuple[list[Labels], list[Labels]]] = {}

    def _cpu_labels(self, cpu: str) -> tuple[list[Labels], list[Labels]]:
        cached = self._labels.get(cpu)
        if cached is None:
            cached = ([{"cpu": cpu, "mode": m} for m in MODES],
                      [{"cpu": cpu, "mode": m} for m in ("user", "nice")])
            self._labels[cpu] = cached
        return cached

    def collect(self) -> list[Metric]:
        seconds = family(SECONDS, "Seconds the CPUs spent in each mode.", "counter")
        guest = family(GUEST, "Seconds the CPUs spent in guests (VMs) for each mode.",
                       "counter")
        add_seconds, add_guest = seconds.samples.append, guest.samples.append
        for line in self.files.read(self.paths.proc("stat")).splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            fields = line.split()
            mode_labels, guest_labels = self._cpu_labels(fields[0][3:])
            values = [int(v) / USER_HZ for v in fields[1:11]]
            for lbl, value in zip(mode_labels, values, strict=False):
                add_seconds(Sample(SECONDS, lbl, value))
            if len(values) >= 10:
                add_guest(Sample(GUEST, guest_labels[0], values[8]))
                add_guest(Sample(GUEST, guest_labels[1], values[9]))
        return [seconds, guest]
