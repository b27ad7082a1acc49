"""entropy: the kernel's random pool, as node_exporter's entropy collector.

Sample output::

    node_entropy_available_bits 256
    node_entropy_pool_size_bits 256
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric


class Entropy(SubCollector):
    name = "entropy"

    def collect(self) -> list[Metric]:
        available = self.files.read(self.paths.proc("sys", "kernel", "random", "entropy_avail"))
        pool = self.files.read(self.paths.proc("sys", "kernel", "random", "poolsize"))
        return [single("node_entropy_available_bits", "Bits of available entropy.", "gauge",
                       float(available)),
                single("node_entropy_pool_size_bits", "Bits of entropy pool.", "gauge",
                       float(pool))]
