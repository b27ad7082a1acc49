"""vmstat: node_exporter's default /proc/vmstat fields (``oom_kill``, ``pgpg*``,
``pswp*``, ``pg*fault*``), untyped as node_exporter exports them.

Sample output::

    node_vmstat_pgfault 2.3177395e+07
    node_vmstat_pgmajfault 2011
    node_vmstat_oom_kill 0

On Linux 6 the default fields give node_vmstat_pgpgin, node_vmstat_pgpgout,
node_vmstat_pswpin, node_vmstat_pswpout, node_vmstat_pgfault, node_vmstat_pgmajfault
and node_vmstat_oom_kill.
"""

from __future__ import annotations

import re

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric

# node_exporter's --collector.vmstat.fields default.
FIELDS = re.compile(r"^(oom_kill|pgpg|pswp|pg.*fault).*")


class Vmstat(SubCollector):
    name = "vmstat"
    # key -> (metric name, help), or None for a field left out: the file has ~150 keys
    # and they do not change while the kernel runs, so each is matched once.
    _keys: dict[str, tuple[str, str] | None]

    def collect(self) -> list[Metric]:
        keys = self.__dict__.setdefault("_keys", {})
        out: list[Metric] = []
        for line in self.files.read(self.paths.proc("vmstat")).splitlines():
            key, _, value = line.partition(" ")
            wanted = keys.get(key, False)
            if wanted is False:
                wanted = keys[key] = ((f"node_vmstat_{key}",
                                       f"/proc/vmstat information field {key}.")
                                      if FIELDS.match(key) else None)
            if wanted:
                out.append(single(wanted[0], wanted[1], "unknown", float(value)))
        return out
