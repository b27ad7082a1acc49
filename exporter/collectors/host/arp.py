"""arp: entries of /proc/net/arp per device, as node_exporter's arp collector.

Sample output::

    node_arp_entries{device="eth0"} 1
"""

from __future__ import annotations

from collections import Counter

from exporter.collectors.host.common import SubCollector, add, family
from exporter.metrics import Metric


class Arp(SubCollector):
    name = "arp"

    def collect(self) -> list[Metric]:
        lines = self.files.read(self.paths.proc("net", "arp")).splitlines()[1:]
        counts = Counter(line.split()[-1] for line in lines if line.strip())
        metric = family("node_arp_entries", "ARP entries by device", "gauge")
        for device, count in sorted(counts.items()):
            add(metric, "node_arp_entries", {"device": device}, float(count))
        return [metric]
