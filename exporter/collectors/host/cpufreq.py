"""cpufreq: per-CPU frequencies from sysfs, as node_exporter's cpufreq collector.

Sample output::

    node_cpu_scaling_frequency_hertz{cpu="0"} 2.8e+09
    node_cpu_frequency_max_hertz{cpu="0"} 3.5e+09

sysfs gives kHz.  Virtual machines often have no cpufreq directory: no series.
"""

from __future__ import annotations

import glob
import os
import re

from exporter.collectors.host.common import (
    Files,
    Labels,
    Paths,
    SubCollector,
    family,
    read_optional,
)
from exporter.metrics import Metric, Sample

FILES = (  # sysfs file, metric, help
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz", "Current CPU thread frequency in hertz."),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz",
     "Maximum CPU thread frequency in hertz."),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz",
     "Minimum CPU thread frequency in hertz."),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz",
     "Current scaled CPU thread frequency in hertz."),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz",
     "Maximum scaled CPU thread frequency in hertz."),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz",
     "Minimum scaled CPU thread frequency in hertz."),
)


class Cpufreq(SubCollector):
    name = "cpufreq"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        # CPUs with a cpufreq directory, found once: (labels, directory)
        found = glob.glob(self.paths.sys("devices", "system", "cpu", "cpu[0-9]*", "cpufreq"))
        numbered = [(int(re.findall(r"cpu(\d+)", p)[-1]), p) for p in found]
        self.cpus: list[tuple[Labels, str]] = [({"cpu": str(n)}, p) for n, p in sorted(numbered)]

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for file, name, doc in FILES:
            metric = family(name, doc, "gauge")
            for lbl, directory in self.cpus:
                text = read_optional(os.path.join(directory, file))
                if text and text.isdigit():  # absent: CPU offline, or not in this driver
                    metric.samples.append(Sample(name, lbl, int(text) * 1000.0))
            if metric.samples:
                out.append(metric)
        return out
