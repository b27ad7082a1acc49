"""udp_queues: bytes queued on UDP sockets, summed from /proc/net/udp{,6}, as
node_exporter's udp_queues collector.

Sample output::

    node_udp_queues{ip="v4",queue="rx"} 0
    node_udp_queues{ip="v4",queue="tx"} 0
"""

from __future__ import annotations

from exporter.collectors.host.common import NoData, SubCollector, add, family
from exporter.metrics import Metric

NAME = "node_udp_queues"
LABELS = {(ip, q): {"ip": ip, "queue": q} for ip in ("v4", "v6") for q in ("rx", "tx")}


class UdpQueues(SubCollector):
    name = "udp_queues"

    def collect(self) -> list[Metric]:
        metric = family(NAME, "Number of allocated memory in the kernel for UDP datagrams in "
                        "bytes.", "gauge")
        for ip, file in (("v4", "udp"), ("v6", "udp6")):
            try:
                lines = self.files.read(self.paths.proc("net", file)).splitlines()[1:]
            except NoData:
                if ip == "v4":
                    raise
                continue
            tx = rx = 0
            for line in lines:
                # "sl local rem st tx_queue:rx_queue ...", queues in hex
                queues = line.split()[4]
                tx_hex, _, rx_hex = queues.partition(":")
                tx += int(tx_hex, 16)
                rx += int(rx_hex, 16)
            add(metric, NAME, LABELS[(ip, "rx")], float(rx))
            add(metric, NAME, LABELS[(ip, "tx")], float(tx))
        return [metric]
