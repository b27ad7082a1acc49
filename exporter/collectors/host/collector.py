"""The host collector: node_exporter's default Linux collectors, one module each.

Each sub-collector (``meminfo.py``, ``netdev.py``...) reads its /proc or /sys source
under node_exporter's names, labels, units and types; this file runs them in order and
adds node_exporter's per-collector self-metrics::

    node_scrape_collector_duration_seconds{collector="meminfo"} 0.00012
    node_scrape_collector_success{collector="meminfo"} 1
    node_scrape_collector_success{collector="pressure"} 0   # kernel without PSI

A source the kernel lacks (``NoData``) is skipped quietly with success 0, as
node_exporter does; any other error is logged once per change and also gives 0.
Every read goes through ``--path.procfs``, ``--path.sysfs`` and ``--path.rootfs``.
"""

from __future__ import annotations

import logging
import os
import time

from exporter.collectors.base import Collector
from exporter.collectors.host.arp import Arp
from exporter.collectors.host.build_info import build_info
from exporter.collectors.host.common import Files, NoData, Paths, SubCollector, family
from exporter.collectors.host.conntrack import Conntrack
from exporter.collectors.host.cpu import Cpu
from exporter.collectors.host.cpufreq import Cpufreq
from exporter.collectors.host.diskstats import Diskstats
from exporter.collectors.host.entropy import Entropy
from exporter.collectors.host.filefd import Filefd
from exporter.collectors.host.filesystem import Filesystem, StatFn
from exporter.collectors.host.loadavg import Loadavg
from exporter.collectors.host.meminfo import Meminfo
from exporter.collectors.host.netclass import Netclass
from exporter.collectors.host.netdev import Netdev
from exporter.collectors.host.netstat import Netstat
from exporter.collectors.host.os import Os
from exporter.collectors.host.pressure import Pressure
from exporter.collectors.host.selinux import Selinux
from exporter.collectors.host.settings import HostSettings
from exporter.collectors.host.sockstat import Sockstat
from exporter.collectors.host.softnet import Softnet
from exporter.collectors.host.stat import Stat
from exporter.collectors.host.textfile import Textfile
from exporter.collectors.host.time import Time
from exporter.collectors.host.timex import AdjtimexFn, Timex
from exporter.collectors.host.udp_queues import UdpQueues
from exporter.collectors.host.uname import Uname
from exporter.collectors.host.vmstat import Vmstat
from exporter.metrics import Metric, Sample
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.host")
DURATION = "node_scrape_collector_duration_seconds"
SUCCESS = "node_scrape_collector_success"


class HostCollector(Collector):
    """CPU, memory, load, filesystems, disks, network and kernel tables of this host."""

    name = "host"

    def __init__(self, settings: HostSettings, paths: Paths | None = None,
                 statfs: StatFn = os.statvfs, adjtimex: AdjtimexFn | None = None) -> None:
        """``paths`` overrides the settings' roots, ``statfs`` and ``adjtimex`` the system
        calls (tests)."""
        self.paths = paths or Paths(settings.procfs, settings.sysfs, settings.rootfs)
        self.files = Files()
        p, f = self.paths, self.files
        self.filesystem = Filesystem(p, f, settings.filesystem_mount_points_exclude,
                                     settings.filesystem_fs_types_exclude,
                                     settings.filesystem_mount_timeout_seconds, statfs)
        self.textfile = Textfile(p, f, settings.textfile_directory)
        self.subcollectors: list[SubCollector] = [
            Arp(p, f), Conntrack(p, f), Cpu(p, f), Cpufreq(p, f),
            Diskstats(p, f, settings.disk_devices_exclude), Entropy(p, f), Filefd(p, f),
            self.filesystem, Loadavg(p, f), Meminfo(p, f), Netclass(p, f),
            Netdev(p, f, settings.network_devices_exclude), Netstat(p, f), Os(p, f),
            Pressure(p, f), Selinux(p, f), Sockstat(p, f), Softnet(p, f), Stat(p, f),
            Time(p, f), Timex(p, f, adjtimex), UdpQueues(p, f), Uname(p, f), Vmstat(p, f),
            # Last: its files may not repeat a family the others exported.
            self.textfile,
        ]
        self._labels = {c.name: {"collector": c.name} for c in self.subcollectors}
        self._errors: dict[str, str] = {}

    def collect(self, deadline: float) -> list[Metric]:
        self.files.clear()
        self.filesystem.deadline = deadline
        out: list[Metric] = []
        duration = family(DURATION, "node_exporter: Duration of a collector scrape.", "gauge")
        success = family(SUCCESS, "node_exporter: Whether a collector succeeded.", "gauge")
        for sub in self.subcollectors:
            start = time.perf_counter()
            ok = 1.0
            try:
                if sub is self.textfile and self.textfile.directories:
                    out += self.textfile.collect(exclude={m.name for m in out})
                else:
                    out += sub.collect()
                self._errors.pop(sub.name, None)
            except NoData:
                ok = 0.0
            except Exception as err:  # isolation: one bad source never hides the others
                ok = 0.0
                message = f"{type(err).__name__}: {err}"
                if self._errors.get(sub.name) != message:
                    log.warning('collector=host subcollector=%s msg="collect failed" err="%s"',
                                sub.name, message)
                    self._errors[sub.name] = message
            lbl = self._labels[sub.name]
            duration.samples.append(Sample(DURATION, lbl, time.perf_counter() - start))
            success.samples.append(Sample(SUCCESS, lbl, ok))
        self.files.clear()
        return [*out, duration, success, build_info()]


def build(settings: HostSettings, scrape: ScrapeSettings) -> list[Collector]:
    """What /metrics serves: one host collector."""
    return [HostCollector(settings)]
