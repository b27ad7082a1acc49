"""host: CPU, memory, filesystems, network and disks under node_exporter's names."""

from exporter.collectors.base import CollectorSpec, lazy
from exporter.collectors.host.settings import HostSettings

SPEC = CollectorSpec(
    "host", "CPU, memory, filesystems, network and disks (node_exporter names)",
    HostSettings, lazy("exporter.collectors.host.collector", "build"),
    checks=lazy("exporter.collectors.host.checks", "diagnose"))
