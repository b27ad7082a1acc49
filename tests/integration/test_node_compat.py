"""Every series we export under a node_exporter name exists in Debian's node_exporter with
the same labels, and values agree (counters within a few percent, static sizes exactly)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from exporter.collectors.host.settings import (
    DISK_DEVICES_EXCLUDE,
    FS_MOUNT_POINTS_EXCLUDE,
    FS_TYPES_EXCLUDE,
)
from tests.helpers.exporter import Exporter, Samples, free_port, http_get, wait_for

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
EXACT = {"node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly",
         "node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes", "node_uname_info",
         "node_filesystem_device_error"}
NEAR_SECONDS = {"node_boot_time_seconds": 1.0, "node_time_seconds": 5.0}


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    if NODE_EXPORTER is None:
        pytest.fail("prometheus-node-exporter is not installed; run scripts/test-services.sh")
    port = free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
         f"--collector.filesystem.mount-points-exclude={FS_MOUNT_POINTS_EXCLUDE}",
         f"--collector.filesystem.fs-types-exclude={FS_TYPES_EXCLUDE}",
         f"--collector.diskstats.device-exclude={DISK_DEVICES_EXCLUDE}",
         "--collector.netdev.device-exclude=^$"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: http_get(url)[0] == 200, what="node_exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def scrape(url: str) -> Samples:
    return Samples.parse(http_get(url)[2].decode())


def test_series_and_values_match_node_exporter(node_exporter: str,
                                               host_exporter: Exporter) -> None:
    before = scrape(node_exporter)
    ours = host_exporter.scrape()
    after = scrape(node_exporter)
    compared = 0
    problems: list[str] = []
    for name, series in ours.samples.items():
        if not name.startswith("node_"):
            continue
        for labels, value in series:
            theirs = [v for lbl, v in before.samples.get(name, []) if lbl == labels]
            theirs_after = [v for lbl, v in after.samples.get(name, []) if lbl == labels]
            if not theirs or not theirs_after:
                problems.append(f"{name}{labels} not exported by node_exporter")
                continue
            lo, hi = min(theirs[0], theirs_after[0]), max(theirs[0], theirs_after[0])
            compared += 1
            if name in EXACT:
                ok = value == theirs[0] or lo <= value <= hi
            elif name in NEAR_SECONDS:
                ok = abs(value - theirs[0]) <= NEAR_SECONDS[name]
            elif name.endswith("_total"):
                ok = lo * 0.97 - 2.0 <= value <= hi * 1.03 + 2.0
            else:
                continue  # gauges that move on their own (free memory, load): presence only
            if not ok:
                problems.append(f"{name}{labels}: ours {value}, node_exporter {lo}..{hi}")
    assert problems == []
    assert compared > 50
    for family in ("node_cpu_seconds_total", "node_load1", "node_memory_MemAvailable_bytes",
                   "node_filesystem_avail_bytes", "node_network_receive_bytes_total",
                   "node_disk_io_time_seconds_total", "node_boot_time_seconds"):
        assert family in ours.samples, family
