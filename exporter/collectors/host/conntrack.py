"""conntrack: netfilter connection tracking, as node_exporter's conntrack collector.

Sample output::

    node_nf_conntrack_entries 12
    node_nf_conntrack_entries_limit 262144
    node_nf_conntrack_stat_found 0

The stat_* figures sum the per-CPU hex columns of /proc/net/stat/nf_conntrack.  Without
the nf_conntrack module neither file exists: no data.
"""

from __future__ import annotations

from exporter.collectors.host.common import NoData, SubCollector, single
from exporter.metrics import Metric

STATS = {  # column of /proc/net/stat/nf_conntrack -> (name, help)
    "found": ("node_nf_conntrack_stat_found",
              "Number of searched entries which were successful."),
    "invalid": ("node_nf_conntrack_stat_invalid",
                "Number of packets seen which can not be tracked."),
    "ignore": ("node_nf_conntrack_stat_ignore",
               "Number of packets seen which are already connected to a conntrack entry."),
    "insert": ("node_nf_conntrack_stat_insert", "Number of entries inserted into the list."),
    "insert_failed": ("node_nf_conntrack_stat_insert_failed",
                      "Number of entries for which list insertion was attempted but failed."),
    "drop": ("node_nf_conntrack_stat_drop",
             "Number of packets dropped due to conntrack failure."),
    "early_drop": ("node_nf_conntrack_stat_early_drop",
                   "Number of dropped conntrack entries to make room for new ones, if "
                   "maximum table size was reached."),
    "search_restart": ("node_nf_conntrack_stat_search_restart",
                       "Number of conntrack table lookups which had to be restarted due to "
                       "hashtable resizes."),
}


class Conntrack(SubCollector):
    name = "conntrack"

    def collect(self) -> list[Metric]:
        netfilter = ("sys", "net", "netfilter")
        count = self.files.read(self.paths.proc(*netfilter, "nf_conntrack_count"))
        limit = self.files.read(self.paths.proc(*netfilter, "nf_conntrack_max"))
        out = [single("node_nf_conntrack_entries",
                      "Number of currently allocated flow entries for connection tracking.",
                      "gauge", float(count)),
               single("node_nf_conntrack_entries_limit",
                      "Maximum size of connection tracking table.", "gauge", float(limit))]
        try:
            lines = self.files.read(self.paths.proc("net", "stat", "nf_conntrack")).splitlines()
        except NoData:
            return out
        header = lines[0].split()
        totals = [0] * len(header)
        for line in lines[1:]:
            for i, value in enumerate(line.split()):
                totals[i] += int(value, 16)
        for i, key in enumerate(header):
            if key in STATS:
                name, doc = STATS[key]
                out.append(single(name, doc, "gauge", float(totals[i])))
        return out
