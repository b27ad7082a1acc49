"""pressure: /proc/pressure/{cpu,io,memory} (PSI), as node_exporter's pressure collector.

Sample output::

    node_pressure_cpu_waiting_seconds_total 29.304254
    node_pressure_io_waiting_seconds_total 2.469598
    node_pressure_io_stalled_seconds_total 2.135281

"some" is time at least one task waited, "full" time all non-idle tasks stalled; the
kernel counts microseconds.  A kernel without PSI has no /proc/pressure: no data.
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric

METRICS = (  # resource, line, name, help
    ("cpu", "some", "node_pressure_cpu_waiting_seconds_total",
     "Total time in seconds that processes have waited for CPU time"),
    ("io", "some", "node_pressure_io_waiting_seconds_total",
     "Total time in seconds that processes have waited due to IO congestion"),
    ("io", "full", "node_pressure_io_stalled_seconds_total",
     "Total time in seconds no process could make progress due to IO congestion"),
    ("memory", "some", "node_pressure_memory_waiting_seconds_total",
     "Total time in seconds that processes have waited for memory"),
    ("memory", "full", "node_pressure_memory_stalled_seconds_total",
     "Total time in seconds no process could make progress due to memory congestion"),
)


def _totals(text: str) -> dict[str, float]:
    """``some avg10=0.00 ... total=131361200`` -> {"some": 131.3612}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        total = rest.rpartition("total=")[2]
        if total:
            out[kind] = int(total) / 1e6
    return out


class Pressure(SubCollector):
    name = "pressure"

    def collect(self) -> list[Metric]:
        totals = {res: _totals(self.files.read(self.paths.proc("pressure", res)))
                  for res in ("cpu", "io", "memory")}
        return [single(name, doc, "counter", totals[res][kind])
                for res, kind, name, doc in METRICS if kind in totals[res]]
