"""stat: interrupts, context switches, forks, boot time and process states from
/proc/stat, as node_exporter's stat collector.

Sample output::

    node_intr_total 467729
    node_context_switches_total 1.530746e+06
    node_forks_total 15580
    node_boot_time_seconds 1.795789041e+09
    node_procs_running 7
    node_procs_blocked 0
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric

FIELDS = {  # /proc/stat key -> (name, help, type)
    "intr": ("node_intr_total", "Total number of interrupts serviced.", "counter"),
    "ctxt": ("node_context_switches_total", "Total number of context switches.", "counter"),
    "processes": ("node_forks_total", "Total number of forks.", "counter"),
    "btime": ("node_boot_time_seconds", "Node boot time, in unixtime.", "gauge"),
    "procs_running": ("node_procs_running", "Number of processes in runnable state.", "gauge"),
    "procs_blocked": ("node_procs_blocked",
                      "Number of processes blocked waiting for I/O to complete.", "gauge"),
}


class Stat(SubCollector):
    name = "stat"

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for line in self.files.read(self.paths.proc("stat")).splitlines():
            key, _, rest = line.partition(" ")
            spec = FIELDS.get(key)
            if spec is not None:
                # "intr" is followed by one count per interrupt: the first is the total.
                first = rest.split(None, 1)[0]
                out.append(single(spec[0], spec[1], spec[2], float(first)))
        return out
