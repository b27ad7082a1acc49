"""meminfo: every field of /proc/meminfo, as node_exporter's meminfo collector.

Sample output::

    node_memory_MemTotal_bytes 8.253734912e+09
    node_memory_MemAvailable_bytes 7.9812e+09
    node_memory_Active_anon_bytes 4.1828352e+07
    node_memory_HugePages_Total 0

``Active(anon)`` becomes ``Active_anon``; fields in kB are scaled to bytes and get
``_bytes``, counts (``HugePages_*``) keep their bare name.  Which fields exist follows
the kernel; those dashboards use most: node_memory_MemTotal_bytes,
node_memory_MemFree_bytes, node_memory_MemAvailable_bytes, node_memory_Buffers_bytes,
node_memory_Cached_bytes, node_memory_SwapCached_bytes, node_memory_SwapTotal_bytes,
node_memory_SwapFree_bytes, node_memory_Active_bytes, node_memory_Inactive_bytes,
node_memory_Dirty_bytes, node_memory_Shmem_bytes, node_memory_SReclaimable_bytes.
"""

from __future__ import annotations

from exporter.collectors.host.common import NO_LABELS, Files, Paths, SubCollector
from exporter.metrics import Metric, Sample


class Meminfo(SubCollector):
    name = "meminfo"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        self._names: dict[str, tuple[str, float]] = {}

    def _name(self, key: str, unit: bool) -> tuple[str, float]:
        cached = self._names.get(key)
        if cached is None:
            base = key.replace("(", "_").replace(")", "")
            cached = (f"node_memory_{base}_bytes", 1024.0) if unit else (
                f"node_memory_{base}", 1.0)
            self._names[key] = cached
        return cached

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for line in self.files.read(self.paths.proc("meminfo")).splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if not parts:
                continue
            name, scale = self._name(key, len(parts) > 1)
            metric = Metric(name, f"Memory information field {name[12:]}.", "gauge")
            metric.samples.append(Sample(name, NO_LABELS, float(parts[0]) * scale))
            out.append(metric)
        return out
