"""Host metrics under node_exporter's names, labels and meaning (psutil and /proc).

Sample output::

    node_cpu_seconds_total{cpu="0",mode="idle"} 5120.33
    node_load1 0.42
    node_memory_MemAvailable_bytes 2.02e+10
    node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 5.6e+10
    node_network_receive_bytes_total{device="eth0"} 1.0197e+08
    node_disk_read_bytes_total{device="vda"} 1.26e+09
    node_boot_time_seconds 1.79e+09

Memory comes from /proc/meminfo itself because psutil's ``cached`` adds SReclaimable,
which node_exporter's ``node_memory_Cached_bytes`` does not.  A filesystem whose
``statvfs`` hangs (a stale network mount) is reported with
``node_filesystem_device_error 1`` and skipped until the call returns, as
node_exporter does, so it never holds up a scrape.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.collectors.base import Collector
from exporter.collectors.host.settings import HostSettings
from exporter.settings import ScrapeSettings

MEMINFO_FIELDS = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "SwapTotal",
    "SwapFree", "Active", "Inactive", "Dirty", "Shmem", "SReclaimable",
)
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
FS_LABELS = ["device", "fstype", "mountpoint"]
MOUNTS_FILES = ("/proc/1/mounts", "/proc/self/mounts")
StatFn = Callable[[str], os.statvfs_result]


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    readonly: bool

    @property
    def labels(self) -> list[str]:
        return [self.device, self.fstype, self.mountpoint]


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(path: str) -> list[Mount]:
    mounts: list[Mount] = []
    seen: set[tuple[str, str, str]] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            device, mountpoint, fstype = _unescape(parts[0]), _unescape(parts[1]), parts[2]
            key = (device, mountpoint, fstype)
            if key in seen:
                continue
            seen.add(key)
            mounts.append(Mount(device, mountpoint, fstype, "ro" in parts[3].split(",")))
    return mounts


def _cpu_number(path: str) -> int:
    """``/sys/devices/system/cpu/cpu12/cpufreq/scaling_cur_freq`` -> 12."""
    match = re.search(r"/cpu(\d+)/", path)
    return int(match.group(1)) if match else -1


class _StatfsRunner:
    """Runs statvfs off the scrape thread so a hung mount costs at most its timeout.

    A mount whose call has not returned stays "stuck" (skipped) until it does.
    """

    def __init__(self, statfs: StatFn) -> None:
        self.statfs = statfs
        self.stuck: set[str] = set()
        self.lock = threading.Lock()

    def run(self, mountpoints: list[str], timeout: float
            ) -> dict[str, os.statvfs_result | OSError | None]:
        results: dict[str, os.statvfs_result | OSError | None] = {}
        with self.lock:
            todo = [m for m in mountpoints if m not in self.stuck]
        for m in mountpoints:
            results[m] = None  # None = stuck / no answer
        done = threading.Event()
        current: list[str] = []

        def work() -> None:
            for mp in todo:
                current[:] = [mp]
                try:
                    results[mp] = self.statfs(mp)
                except OSError as err:
                    results[mp] = err
                with self.lock:
                    self.stuck.discard(mp)
            current.clear()
            done.set()

        thread = threading.Thread(target=work, name="statfs", daemon=True)
        thread.start()
        if not done.wait(timeout):
            with self.lock:
                self.stuck.update(current)
        return dict(results)


class HostCollector(Collector):
    """CPU, load, memory, filesystems, network, disks and boot time of this host."""

    name = "host"

    def __init__(self, settings: HostSettings, statfs: StatFn = os.statvfs,
                 proc: str = "/proc", sys: str = "/sys") -> None:
        self.settings = settings
        self.proc = proc
        self.mount_exclude = re.compile(settings.filesystem_mount_points_exclude)
        self.fstype_exclude = re.compile(settings.filesystem_fs_types_exclude)
        self.disk_exclude = re.compile(settings.disk_devices_exclude)
        self.net_exclude = (re.compile(settings.network_devices_exclude)
                            if settings.network_devices_exclude else None)
        self.statfs = _StatfsRunner(statfs)
        self.freq_files = sorted(
            glob.glob(f"{sys}/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"),
            key=_cpu_number)
        self.mounts_file = next((p for p in MOUNTS_FILES if os.access(p, os.R_OK)),
                                MOUNTS_FILES[-1])

    def collect(self, deadline: float) -> list[Metric]:
        out: list[Metric] = []
        out += self._cpu()
        out += self._load()
        out += self._memory()
        out += self._filesystems(deadline)
        out += self._network()
        out += self._disks()
        out += self._misc()
        return out

    def _cpu(self) -> list[Metric]:
        seconds = CounterMetricFamily("node_cpu_seconds_total",
                                      "Seconds the CPUs spent in each mode.",
                                      labels=["cpu", "mode"])
        guest = CounterMetricFamily("node_cpu_guest_seconds_total",
                                    "Seconds the CPUs spent in guests (VMs) for each mode.",
                                    labels=["cpu", "mode"])
        for i, t in enumerate(psutil.cpu_times(percpu=True)):
            cpu = str(i)
            for mode in CPU_MODES:
                seconds.add_metric([cpu, mode], getattr(t, mode, 0.0))
            guest.add_metric([cpu, "user"], getattr(t, "guest", 0.0))
            guest.add_metric([cpu, "nice"], getattr(t, "guest_nice", 0.0))
        out: list[Metric] = [seconds, guest]
        if self.freq_files:
            freq = GaugeMetricFamily("node_cpu_scaling_frequency_hertz",
                                     "Current scaled CPU thread frequency in hertz.",
                                     labels=["cpu"])
            for path in self.freq_files:
                cpu = str(_cpu_number(path))
                try:
                    with open(path, encoding="ascii") as f:
                        freq.add_metric([cpu], int(f.read()) * 1000.0)
                except (OSError, ValueError):
                    continue  # CPU went offline
            out.append(freq)
        return out

    def _load(self) -> list[Metric]:
        one, five, fifteen = os.getloadavg()
        return [GaugeMetricFamily("node_load1", "1m load average.", value=one),
                GaugeMetricFamily("node_load5", "5m load average.", value=five),
                GaugeMetricFamily("node_load15", "15m load average.", value=fifteen)]

    def _memory(self) -> list[Metric]:
        values: dict[str, float] = {}
        with open(f"{self.proc}/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in MEMINFO_FIELDS:
                    parts = rest.split()
                    scale = 1024.0 if len(parts) > 1 and parts[1] == "kB" else 1.0
                    values[key] = float(parts[0]) * scale
        return [GaugeMetricFamily(f"node_memory_{key}_bytes",
                                  f"Memory information field {key}_bytes.", value=values[key])
                for key in MEMINFO_FIELDS if key in values]

    def _filesystems(self, deadline: float) -> list[Metric]:
        mounts = [m for m in read_mounts(self.mounts_file)
                  if not self.mount_exclude.search(m.mountpoint)
                  and not self.fstype_exclude.search(m.fstype)]
        families = {
            "size": GaugeMetricFamily("node_filesystem_size_bytes",
                                      "Filesystem size in bytes.", labels=FS_LABELS),
            "free": GaugeMetricFamily("node_filesystem_free_bytes",
                                      "Filesystem free space in bytes.", labels=FS_LABELS),
            "avail": GaugeMetricFamily("node_filesystem_avail_bytes",
                                       "Filesystem space available to non-root users in bytes.",
                                       labels=FS_LABELS),
            "files": GaugeMetricFamily("node_filesystem_files",
                                       "Filesystem total file nodes.", labels=FS_LABELS),
            "files_free": GaugeMetricFamily("node_filesystem_files_free",
                                            "Filesystem total free file nodes.",
                                            labels=FS_LABELS),
            "readonly": GaugeMetricFamily("node_filesystem_readonly",
                                          "Filesystem read-only status.", labels=FS_LABELS),
        }
        error = GaugeMetricFamily("node_filesystem_device_error",
                                  "Whether an error occurred while getting statistics for "
                                  "the given device.", labels=FS_LABELS)
        timeout = min(self.settings.filesystem_mount_timeout_seconds,
                      max(0.0, deadline - time.monotonic()))
        results = self.statfs.run(sorted({m.mountpoint for m in mounts}), timeout)
        for m in mounts:
            st = results.get(m.mountpoint)
            if not isinstance(st, os.statvfs_result):
                error.add_metric(m.labels, 1.0)
                continue
            error.add_metric(m.labels, 0.0)
            bsize = float(st.f_frsize or st.f_bsize)
            families["size"].add_metric(m.labels, st.f_blocks * bsize)
            families["free"].add_metric(m.labels, st.f_bfree * bsize)
            families["avail"].add_metric(m.labels, st.f_bavail * bsize)
            families["files"].add_metric(m.labels, float(st.f_files))
            families["files_free"].add_metric(m.labels, float(st.f_ffree))
            ro = m.readonly or bool(st.f_flag & os.ST_RDONLY)
            families["readonly"].add_metric(m.labels, 1.0 if ro else 0.0)
        return [*families.values(), error]

    def _network(self) -> list[Metric]:
        names = ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets",
                 "receive_errs", "transmit_errs", "receive_drop", "transmit_drop")
        # psutil's snetio order: bytes_sent, bytes_recv, packets_sent, packets_recv,
        # errin, errout, dropin, dropout
        fields = ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent",
                  "errin", "errout", "dropin", "dropout")
        families = [CounterMetricFamily(f"node_network_{n}_total",
                                        f"Network device statistic {n}.", labels=["device"])
                    for n in names]
        for device, counters in sorted(psutil.net_io_counters(pernic=True, nowrap=False).items()):
            if self.net_exclude and self.net_exclude.search(device):
                continue
            for family, attr in zip(families, fields, strict=True):
                family.add_metric([device], float(getattr(counters, attr)))
        return list(families)

    def _disks(self) -> list[Metric]:
        reads = CounterMetricFamily("node_disk_reads_completed_total",
                                    "The total number of reads completed successfully.",
                                    labels=["device"])
        writes = CounterMetricFamily("node_disk_writes_completed_total",
                                     "The total number of writes completed successfully.",
                                     labels=["device"])
        read_bytes = CounterMetricFamily("node_disk_read_bytes_total",
                                         "The total number of bytes read successfully.",
                                         labels=["device"])
        written = CounterMetricFamily("node_disk_written_bytes_total",
                                      "The total number of bytes written successfully.",
                                      labels=["device"])
        io_time = CounterMetricFamily("node_disk_io_time_seconds_total",
                                      "Total seconds spent doing I/Os.", labels=["device"])
        for device, c in sorted(psutil.disk_io_counters(perdisk=True, nowrap=False).items()):
            if self.disk_exclude.search(device):
                continue
            reads.add_metric([device], float(c.read_count))
            writes.add_metric([device], float(c.write_count))
            read_bytes.add_metric([device], float(c.read_bytes))
            written.add_metric([device], float(c.write_bytes))
            io_time.add_metric([device], c.busy_time / 1000.0)
        return [reads, writes, read_bytes, written, io_time]

    def _misc(self) -> list[Metric]:
        uname = os.uname()
        try:
            with open(f"{self.proc}/sys/kernel/domainname", encoding="utf-8") as f:
                domain = f.read().strip()
        except OSError:
            domain = "(none)"
        info = GaugeMetricFamily(
            "node_uname_info", "Labeled system information as provided by the uname system call.",
            labels=["domainname", "machine", "nodename", "release", "sysname", "version"])
        info.add_metric([domain, uname.machine, uname.nodename, uname.release, uname.sysname,
                         uname.version], 1.0)
        return [
            GaugeMetricFamily("node_boot_time_seconds", "Node boot time, in unixtime.",
                              value=psutil.boot_time()),
            GaugeMetricFamily("node_time_seconds",
                              "System time in seconds since epoch (1970).", value=time.time()),
            info,
        ]


def build(settings: HostSettings, scrape: ScrapeSettings) -> list[Collector]:
    """What /metrics serves: one host collector."""
    return [HostCollector(settings)]
