"""loadavg: /proc/loadavg, as node_exporter's loadavg collector.

Sample output::

    node_load1 0.42
    node_load5 0.31
    node_load15 0.22
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric


class Loadavg(SubCollector):
    name = "loadavg"

    def collect(self) -> list[Metric]:
        one, five, fifteen = self.files.read(self.paths.proc("loadavg")).split()[:3]
        return [single("node_load1", "1m load average.", "gauge", float(one)),
                single("node_load5", "5m load average.", "gauge", float(five)),
                single("node_load15", "15m load average.", "gauge", float(fifteen))]
