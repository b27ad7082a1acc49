"""softnet: /proc/net/softnet_stat (one line of hex counters per CPU), as
node_exporter's softnet collector.

Sample output::

    node_softnet_processed_total{cpu="0"} 166760
    node_softnet_dropped_total{cpu="0"} 0
    node_softnet_times_squeezed_total{cpu="0"} 0
"""

from __future__ import annotations

from exporter.collectors.host.common import Files, Labels, Paths, SubCollector, family
from exporter.metrics import Metric, Sample

COLUMNS = (  # column, name, help
    (0, "node_softnet_processed_total", "Number of processed packets"),
    (1, "node_softnet_dropped_total", "Number of dropped packets"),
    (2, "node_softnet_times_squeezed_total",
     "Number of times processing packets ran out of quota"),
)


class Softnet(SubCollector):
    name = "softnet"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        self._cpus: list[Labels] = []

    def collect(self) -> list[Metric]:
        lines = self.files.read(self.paths.proc("net", "softnet_stat")).splitlines()
        while len(self._cpus) < len(lines):
            self._cpus.append({"cpu": str(len(self._cpus))})
        out: list[Metric] = []
        rows = [line.split() for line in lines]
        for column, name, doc in COLUMNS:
            metric = family(name, doc, "counter")
            append = metric.samples.append
            for cpu, row in zip(self._cpus, rows, strict=False):
                append(Sample(name, cpu, float(int(row[column], 16))))
            out.append(metric)
        return out
