"""Host collector failure paths: a hung filesystem must not hang the scrape."""

from __future__ import annotations

import os
import threading
import time

from exporter.collectors.host.collector import HostCollector, read_mounts
from exporter.collectors.host.settings import HostSettings


def samples(metrics, name):  # type: ignore[no-untyped-def]
    fam = next(m for m in metrics if m.name == name)
    return {s.labels["mountpoint"]: s.value for s in fam.samples}


def test_hung_statfs_is_skipped_and_reported_then_recovers() -> None:
    release = threading.Event()
    real = os.statvfs
    root_calls: list[str] = []

    def statfs(path: str) -> os.statvfs_result:
        if path == "/":
            root_calls.append(path)
            release.wait(30)
        return real(path)

    collector = HostCollector(HostSettings(filesystem_mount_timeout_seconds=0.2), statfs=statfs)
    start = time.monotonic()
    metrics = collector.collect(time.monotonic() + 5)
    assert time.monotonic() - start < 2.0
    assert samples(metrics, "node_filesystem_device_error")["/"] == 1.0
    assert "/" not in samples(metrics, "node_filesystem_size_bytes")

    # While it is stuck, later scrapes skip it instead of calling (and waiting) again.
    metrics = collector.collect(time.monotonic() + 5)
    assert samples(metrics, "node_filesystem_device_error")["/"] == 1.0
    assert len(root_calls) == 1

    release.set()
    deadline = time.monotonic() + 5
    while "/" in collector.statfs.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics = collector.collect(time.monotonic() + 5)
    assert samples(metrics, "node_filesystem_device_error")["/"] == 0.0
    assert samples(metrics, "node_filesystem_size_bytes")["/"] > 0


def test_statfs_error_gives_device_error() -> None:
    def statfs(path: str) -> os.statvfs_result:
        raise PermissionError(13, "denied")

    metrics = HostCollector(HostSettings(), statfs=statfs).collect(time.monotonic() + 5)
    errors = samples(metrics, "node_filesystem_device_error")
    assert errors and set(errors.values()) == {1.0}


def test_mount_escapes_and_duplicates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 /mnt/my\\040disk ext4 ro,relatime 0 0\n"
                      "/dev/sda1 /mnt/my\\040disk ext4 ro,relatime 0 0\n"
                      "tmpfs /run tmpfs rw 0 0\n")
    found = read_mounts(str(mounts))
    assert [(m.device, m.mountpoint, m.readonly) for m in found] == [
        ("/dev/sda1", "/mnt/my disk", True), ("tmpfs", "/run", False)]


def test_exclusions_follow_settings() -> None:
    collector = HostCollector(HostSettings(filesystem_mount_points_exclude="^/$",
                                           network_devices_exclude="^lo$",
                                           disk_devices_exclude=".*"))
    metrics = collector.collect(time.monotonic() + 5)
    assert "/" not in samples(metrics, "node_filesystem_size_bytes")
    net = next(m for m in metrics if m.name == "node_network_receive_bytes")
    assert "lo" not in {s.labels["device"] for s in net.samples}
    disk = next(m for m in metrics if m.name == "node_disk_reads_completed")
    assert disk.samples == []
