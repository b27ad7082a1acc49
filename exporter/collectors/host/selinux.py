"""selinux: whether SELinux is on and its mode, as node_exporter's selinux collector.

Sample output::

    node_selinux_enabled 0
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, read_optional, single
from exporter.metrics import Metric


class Selinux(SubCollector):
    name = "selinux"

    def collect(self) -> list[Metric]:
        enforce = read_optional(self.paths.sys("fs", "selinux", "enforce"))
        if enforce is None:
            return [single("node_selinux_enabled", "SELinux is enabled, 1 is true, 0 is false",
                           "gauge", 0.0)]
        return [single("node_selinux_enabled", "SELinux is enabled, 1 is true, 0 is false",
                       "gauge", 1.0),
                single("node_selinux_current_mode",
                       "SELinux is in enforcing mode, 1 is true, 0 is false", "gauge",
                       1.0 if enforce == "1" else 0.0)]
