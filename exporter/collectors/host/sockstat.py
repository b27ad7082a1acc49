"""sockstat: /proc/net/sockstat and sockstat6, as node_exporter's sockstat collector.

Sample output::

    node_sockstat_sockets_used 38
    node_sockstat_TCP_inuse 14
    node_sockstat_TCP_mem_bytes 577536
    node_sockstat_TCP6_inuse 3

``mem`` counts pages; ``mem_bytes`` is the same times the page size.  The names are
built from the file (``<PROTO>: <key> <value> ...``); on Linux 6 they are
node_sockstat_sockets_used, node_sockstat_TCP_inuse, node_sockstat_TCP_orphan,
node_sockstat_TCP_tw, node_sockstat_TCP_alloc, node_sockstat_TCP_mem,
node_sockstat_TCP_mem_bytes, node_sockstat_UDP_inuse, node_sockstat_UDP_mem,
node_sockstat_UDP_mem_bytes, node_sockstat_UDPLITE_inuse, node_sockstat_RAW_inuse,
node_sockstat_FRAG_inuse, node_sockstat_FRAG_memory, node_sockstat_TCP6_inuse,
node_sockstat_UDP6_inuse, node_sockstat_UDPLITE6_inuse, node_sockstat_RAW6_inuse,
node_sockstat_FRAG6_inuse, node_sockstat_FRAG6_memory.
"""

from __future__ import annotations

import os

from exporter.collectors.host.common import NoData, SubCollector, single
from exporter.metrics import Metric

PAGE_SIZE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096


class Sockstat(SubCollector):
    name = "sockstat"

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for file in ("sockstat", "sockstat6"):
            try:
                text = self.files.read(self.paths.proc("net", file))
            except NoData:
                if file == "sockstat6":
                    continue  # no IPv6
                raise
            for line in text.splitlines():
                proto, _, rest = line.partition(":")
                parts = rest.split()
                if proto == "sockets":
                    out.append(single("node_sockstat_sockets_used",
                                      "Number of IPv4 sockets in use.", "gauge",
                                      float(parts[1])))
                    continue
                for key, value in zip(parts[::2], parts[1::2], strict=False):
                    out.append(self._gauge(proto, key, float(value)))
                    if key == "mem":
                        out.append(self._gauge(proto, "mem_bytes", float(value) * PAGE_SIZE))
        return out

    @staticmethod
    def _gauge(proto: str, key: str, value: float) -> Metric:
        return single(f"node_sockstat_{proto}_{key}",
                      f"Number of {proto} sockets in state {key}.", "gauge", value)
