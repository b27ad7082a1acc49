"""diskstats: every /proc/diskstats field per block device, as node_exporter's
diskstats collector, plus ``node_disk_info`` from udev's database.

Sample output::

    node_disk_reads_completed_total{device="vda"} 36873
    node_disk_read_bytes_total{device="vda"} 1.221526528e+09
    node_disk_io_time_weighted_seconds_total{device="vda"} 22.485
    node_disk_io_now{device="vda"} 0
    node_disk_info{device="vda",major="254",minor="0",model="",path="",revision="",
                   serial="",wwn=""} 1

Sectors are 512 bytes whatever the device (the kernel's unit); times are ms.
"""

from __future__ import annotations

import re

from exporter.collectors.host.common import Files, Labels, Paths, SubCollector, family
from exporter.metrics import Metric, Sample

SECTOR = 512.0
MS = 0.001
FIELDS = (  # in /proc/diskstats order after major, minor, name: name, help, type, scale
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.",
     "counter", 1.0),
    ("node_disk_reads_merged_total", "The total number of reads merged.", "counter", 1.0),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.",
     "counter", SECTOR),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.",
     "counter", MS),
    ("node_disk_writes_completed_total",
     "The total number of writes completed successfully.", "counter", 1.0),
    ("node_disk_writes_merged_total", "The number of writes merged.", "counter", 1.0),
    ("node_disk_written_bytes_total", "The total number of bytes written successfully.",
     "counter", SECTOR),
    ("node_disk_write_time_seconds_total",
     "This is the total number of seconds spent by all writes.", "counter", MS),
    ("node_disk_io_now", "The number of I/Os currently in progress.", "gauge", 1.0),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", "counter", MS),
    ("node_disk_io_time_weighted_seconds_total",
     "The weighted # of seconds spent doing I/Os.", "counter", MS),
    ("node_disk_discards_completed_total",
     "The total number of discards completed successfully.", "counter", 1.0),
    ("node_disk_discards_merged_total", "The total number of discards merged.",
     "counter", 1.0),
    ("node_disk_discarded_sectors_total",
     "The total number of sectors discarded successfully.", "counter", 1.0),
    ("node_disk_discard_time_seconds_total",
     "This is the total number of seconds spent by all discards.", "counter", MS),
    ("node_disk_flush_requests_total",
     "The total number of flush requests completed successfully", "counter", 1.0),
    ("node_disk_flush_requests_time_seconds_total",
     "This is the total number of seconds spent by all flush requests.", "counter", MS),
)
INFO_KEYS = (("model", "ID_MODEL"), ("path", "ID_PATH"), ("revision", "ID_REVISION"),
             ("serial", "ID_SERIAL_SHORT"), ("wwn", "ID_WWN"))


class Diskstats(SubCollector):
    name = "diskstats"

    def __init__(self, paths: Paths, files: Files, exclude: str = "") -> None:
        super().__init__(paths, files)
        self.exclude = re.compile(exclude) if exclude else None
        # device -> (its label dict, its node_disk_info labels); None when excluded
        self._devices: dict[tuple[str, str, str], tuple[Labels, Labels] | None] = {}

    def _device(self, major: str, minor: str, device: str) -> tuple[Labels, Labels] | None:
        key = (major, minor, device)
        if key not in self._devices:
            if self.exclude is not None and self.exclude.search(device):
                self._devices[key] = None
            else:
                self._devices[key] = ({"device": device}, self._info(major, minor, device))
        return self._devices[key]

    def _info(self, major: str, minor: str, device: str) -> Labels:
        """udev's properties of the device (read once: they change with the device)."""
        props: dict[str, str] = {}
        try:
            with open(self.paths.root(f"/run/udev/data/b{major}:{minor}"),
                      encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("E:"):
                        key, _, value = line[2:].rstrip("\n").partition("=")
                        props[key] = value
        except OSError:
            pass  # no udev (containers): empty labels, as node_exporter
        info = {"device": device, "major": major, "minor": minor}
        for label, key in INFO_KEYS:
            info[label] = props.get(key, "")
        return info

    def collect(self) -> list[Metric]:
        families = [family(name, doc, typ) for name, doc, typ, _ in FIELDS]
        info = family("node_disk_info", "Info of /sys/block/<block_device>.", "gauge")
        appends = [(f.samples.append, spec[0], spec[3]) for f, spec in
                   zip(families, FIELDS, strict=True)]
        for line in self.files.read(self.paths.proc("diskstats")).splitlines():
            parts = line.split()
            if len(parts) < 14:
                continue
            labels = self._device(parts[0], parts[1], parts[2])
            if labels is None:
                continue
            lbl, info_labels = labels
            info.samples.append(Sample("node_disk_info", info_labels, 1.0))
            for (append, name, scale), value in zip(appends, parts[3:], strict=False):
                append(Sample(name, lbl, int(value) * scale))
        return [*families, info]
