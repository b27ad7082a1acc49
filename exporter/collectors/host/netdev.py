"""netdev: every /proc/net/dev column per interface, as node_exporter's netdev collector.

Sample output::

    node_network_receive_bytes_total{device="eth0"} 2.53489499e+08
    node_network_transmit_packets_total{device="eth0"} 3676
    node_network_receive_nohandler_total{device="eth0"} 0

``nohandler`` is not in /proc/net/dev; node_exporter takes it from netlink, we read the
same kernel counter from /sys/class/net/<dev>/statistics/rx_nohandler.
"""

from __future__ import annotations

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

# In /proc/net/dev's column order.
NAMES = (
    "node_network_receive_bytes_total", "node_network_receive_packets_total",
    "node_network_receive_errs_total", "node_network_receive_drop_total",
    "node_network_receive_fifo_total", "node_network_receive_frame_total",
    "node_network_receive_compressed_total", "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total", "node_network_transmit_packets_total",
    "node_network_transmit_errs_total", "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total", "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total", "node_network_transmit_compressed_total",
)
COLUMNS = tuple(n.removeprefix("node_network_").removesuffix("_total") for n in NAMES)
NOHANDLER = "node_network_receive_nohandler_total"


class Netdev(SubCollector):
    name = "netdev"

    def __init__(self, paths: Paths, files: Files, exclude: str = "") -> None:
        super().__init__(paths, files)
        self.exclude = re.compile(exclude) if exclude else None
        self._devices: dict[str, Labels | None] = {}  # None: excluded

    def _labels(self, device: str) -> Labels | None:
        if device not in self._devices:
            skip = self.exclude is not None and self.exclude.search(device) is not None
            self._devices[device] = None if skip else {"device": device}
        return self._devices[device]

    def collect(self) -> list[Metric]:
        families = [family(name, f"Network device statistic {column}.", "counter")
                    for name, column in zip(NAMES, COLUMNS, strict=True)]
        appends = [f.samples.append for f in families]
        nohandler = family(NOHANDLER, "Network device statistic receive_nohandler.", "counter")
        for line in self.files.read(self.paths.proc("net", "dev")).splitlines()[2:]:
            device, _, rest = line.partition(":")
            lbl = self._labels(device.strip())
            if lbl is None:
                continue
            for append, name, value in zip(appends, NAMES, rest.split(), strict=False):
                append(Sample(name, lbl, float(value)))
            extra = read_optional(self.paths.sys("class", "net", lbl["device"], "statistics",
                                                 "rx_nohandler"))
            if extra:  # older kernels lack the counter
                nohandler.samples.append(Sample(NOHANDLER, lbl, float(extra)))
        return [*families, nohandler]
