"""uname: the uname(2) fields, as node_exporter's uname collector.

Sample output::

    node_uname_info{domainname="(none)",machine="x86_64",nodename="vm",release="6.1.0",
                    sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC"} 1
"""

from __future__ import annotations

import os

from exporter.collectors.host.common import SubCollector, add, family, read_optional
from exporter.metrics import Metric


class Uname(SubCollector):
    name = "uname"

    def collect(self) -> list[Metric]:
        u = os.uname()
        # uname(2) has no domainname field in Python; the kernel keeps it here.
        domain = read_optional(self.paths.proc("sys", "kernel", "domainname")) or "(none)"
        info = family("node_uname_info",
                      "Labeled system information as provided by the uname system call.",
                      "gauge")
        add(info, "node_uname_info", {"domainname": domain, "machine": u.machine,
                                      "nodename": u.nodename, "release": u.release,
                                      "sysname": u.sysname, "version": u.version}, 1.0)
        return [info]
