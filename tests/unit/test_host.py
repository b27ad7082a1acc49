"""Host collector failure paths: a hung filesystem must not hang the scrape; a source
the kernel lacks, or one that breaks, costs only its own series."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from exporter import cli
from exporter.collectors.host.collector import HostCollector
from exporter.collectors.host.common import Paths, read_attribute
from exporter.collectors.host.filesystem import parse_mounts
from exporter.collectors.host.settings import HostSettings
from exporter.metrics import Metric
from exporter.settings import ConfigError
from tests.helpers.exporter import wait_for
from tests.helpers.host import captured_adjtimex, fixture_collector, refused_adjtimex

FIXTURE = Path(__file__).parent.parent / "fixtures" / "host"
CLOCK = captured_adjtimex()  # no unit test calls adjtimex for real (refused in containers)


def samples(metrics: list[Metric], name: str, label: str = "mountpoint") -> dict[str, float]:
    fam = next(m for m in metrics if m.name == name)
    return {s.labels[label]: s.value for s in fam.samples}


def fixture_copy(tmp_path: Path) -> Paths:
    shutil.copytree(FIXTURE, tmp_path / "host")
    root = tmp_path / "host"
    return Paths(str(root / "proc"), str(root / "sys"), str(root / "rootfs"))


def network_mount_tree(tmp_path: Path) -> Paths:
    """The fixture host with an NFS root and a local /data: only NFS goes to the worker."""
    paths = fixture_copy(tmp_path)
    (Path(paths.procfs) / "1" / "mounts").write_text(
        "server:/export / nfs4 rw,relatime 0 0\n/dev/vdb /data ext4 rw 0 0\n")
    return paths


def test_hung_statfs_is_skipped_and_reported_then_recovers(tmp_path: Path) -> None:
    paths = network_mount_tree(tmp_path)
    release = threading.Event()
    real = os.statvfs
    root_calls: list[str] = []

    def statfs(path: str) -> os.statvfs_result:
        if path.rstrip("/") == paths.rootfs:
            root_calls.append(path)
            release.wait(30)
        return real(path)

    collector = HostCollector(HostSettings(filesystem_mount_timeout_seconds=0.2), paths,
                              statfs=statfs, adjtimex=CLOCK)
    start = time.monotonic()
    metrics = collector.collect(time.monotonic() + 5)
    assert time.monotonic() - start < 2.0
    hung = collector.filesystem.runner.worker
    assert hung is not None and hung.is_alive()
    assert samples(metrics, "node_filesystem_device_error") == {"/": 1.0, "/data": 0.0}
    assert set(samples(metrics, "node_filesystem_size_bytes")) == {"/data"}

    # While it is stuck, later scrapes skip it instead of calling (and waiting) again.
    metrics = collector.collect(time.monotonic() + 5)
    assert samples(metrics, "node_filesystem_device_error")["/"] == 1.0
    assert len(root_calls) == 1

    release.set()
    wait_for(lambda: not collector.filesystem.runner.stuck, what="statfs to return")
    metrics = collector.collect(time.monotonic() + 5)
    assert samples(metrics, "node_filesystem_device_error")["/"] == 0.0
    assert samples(metrics, "node_filesystem_size_bytes")["/"] > 0
    # The worker given up while hung ends once its call returns; a new one serves.
    assert collector.filesystem.runner.worker is not hung
    wait_for(lambda: not hung.is_alive(), what="the given-up statfs worker to end")


def test_local_filesystems_are_statfsed_inline(tmp_path: Path) -> None:
    """ext4 & co answer statfs from memory: no hand-off to the worker for them."""
    paths = network_mount_tree(tmp_path)
    callers: dict[str, str] = {}

    def statfs(path: str) -> os.statvfs_result:
        callers[path.rstrip("/")] = threading.current_thread().name
        return os.statvfs(path)

    HostCollector(HostSettings(), paths, statfs=statfs, adjtimex=CLOCK).collect(
        time.monotonic() + 5)
    assert callers[paths.rootfs] == "statfs"  # nfs4: through the worker
    assert callers[paths.rootfs + "/data"] == threading.current_thread().name


def test_path_flags_are_settings(tmp_path: Path) -> None:
    """--path.procfs and friends are node_exporter's flags; a relative path is refused
    with a one-line error naming the key and value."""
    cfg = cli.parse(["--path.procfs=/host/proc", "--path.rootfs=/host/root"],
                    {"STACKMON_HOST_SYSFS": "/host/sys"})
    host = cfg.sections["host"]
    assert (host.procfs, host.sysfs, host.rootfs) == ("/host/proc", "/host/sys", "/host/root")
    collector = HostCollector(host)
    assert collector.paths == Paths("/host/proc", "/host/sys", "/host/root")
    with pytest.raises(ConfigError) as info:
        cli.parse(["--path.procfs=host/proc"], {})
    message = str(info.value)
    assert "--path.procfs" in message and "host/proc" in message and "\n" not in message


def test_statfs_error_gives_device_error() -> None:
    def statfs(path: str) -> os.statvfs_result:
        raise PermissionError(13, "denied")

    metrics = HostCollector(HostSettings(), statfs=statfs, adjtimex=CLOCK).collect(
        time.monotonic() + 5)
    errors = samples(metrics, "node_filesystem_device_error")
    assert errors and set(errors.values()) == {1.0}


def test_mount_escapes_duplicates_and_rootfs_prefix() -> None:
    text = ("/dev/sda1 /host/mnt/my\\040disk ext4 ro,relatime 0 0\n"
            "/dev/sda1 /host/mnt/my\\040disk ext4 ro,relatime 0 0\n"
            "/dev/sda2 /host ext4 rw 0 0\n"
            "tmpfs /run tmpfs rw 0 0\n")
    found = parse_mounts(text, Paths(rootfs="/host"))
    assert [(m.device, m.mountpoint, m.readonly) for m in found] == [
        ("/dev/sda1", "/mnt/my disk", True), ("/dev/sda2", "/", False),
        ("tmpfs", "/run", False)]
    assert found[0].labels == {"device": "/dev/sda1", "fstype": "ext4",
                               "mountpoint": "/mnt/my disk"}


def test_exclusions_follow_settings() -> None:
    collector = HostCollector(HostSettings(filesystem_mount_points_exclude="^/$",
                                           network_devices_exclude="^lo$",
                                           disk_devices_exclude=".*"), adjtimex=CLOCK)
    metrics = collector.collect(time.monotonic() + 5)
    assert "/" not in samples(metrics, "node_filesystem_size_bytes")
    assert "lo" not in samples(metrics, "node_network_receive_bytes", "device")
    assert samples(metrics, "node_disk_reads_completed", "device") == {}


def test_missing_source_is_skipped_quietly(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A kernel without PSI or conntrack: those collectors report 0, the rest carry on."""
    paths = fixture_copy(tmp_path)
    shutil.rmtree(Path(paths.procfs) / "pressure")
    for name in ("nf_conntrack_count", "nf_conntrack_max"):
        (Path(paths.procfs) / "sys" / "net" / "netfilter" / name).unlink()
    metrics = fixture_collector(paths=paths).collect(time.monotonic() + 5)
    success = samples(metrics, "node_scrape_collector_success", "collector")
    assert success["pressure"] == 0.0 and success["conntrack"] == 0.0
    assert success["meminfo"] == 1.0 and success["netdev"] == 1.0
    names = {m.name for m in metrics}
    assert not any(n.startswith(("node_pressure", "node_nf_conntrack")) for n in names)
    assert "node_memory_MemTotal_bytes" in names
    assert caplog.records == []  # absent is normal, not a warning


def test_broken_source_fails_only_its_collector(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    paths = fixture_copy(tmp_path)
    (Path(paths.procfs) / "loadavg").write_text("garbage\n")
    collector = fixture_collector(paths=paths)
    metrics = collector.collect(time.monotonic() + 5)
    success = samples(metrics, "node_scrape_collector_success", "collector")
    assert success["loadavg"] == 0.0
    assert sum(success.values()) == len(success) - 1
    assert "node_load1" not in {m.name for m in metrics}
    assert len(caplog.records) == 1 and "loadavg" in caplog.records[0].getMessage()
    collector.collect(time.monotonic() + 5)
    assert len(caplog.records) == 1  # the same error is logged once, not every scrape
    durations = samples(metrics, "node_scrape_collector_duration_seconds", "collector")
    assert set(durations) == set(success) and all(v >= 0 for v in durations.values())


def test_refused_adjtimex_fails_only_timex(caplog) -> None:  # type: ignore[no-untyped-def]
    """A seccomp filter with SystemCallErrorNumber=EPERM (the systemd unit): timex reports
    0 and says why, once; every other sub-collector carries on."""
    collector = fixture_collector(adjtimex=refused_adjtimex(errno.EPERM))
    for _ in range(2):
        metrics = collector.collect(time.monotonic() + 5)
    success = samples(metrics, "node_scrape_collector_success", "collector")
    assert success["timex"] == 0.0 and success["meminfo"] == 1.0
    assert not any(m.name.startswith("node_timex_") for m in metrics)
    assert len(caplog.records) == 1
    assert "seccomp" in caplog.records[0].getMessage()


def test_readonly_comes_from_the_mount_table_not_statfs(tmp_path: Path) -> None:
    """Under ProtectSystem=strict, or / bound read-only into a container at --path.rootfs,
    statfs on the exporter's own view says read-only; the host's mount table (what
    node_exporter reads) says rw. The filesystem alerts need the host's answer."""
    real = os.statvfs

    def read_only_view(path: str) -> os.statvfs_result:
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree,
                                  st.f_bavail, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag | os.ST_RDONLY, st.f_namemax))

    metrics = fixture_collector(paths=fixture_copy(tmp_path), statfs=read_only_view).collect(
        time.monotonic() + 5)
    readonly = samples(metrics, "node_filesystem_readonly")
    assert readonly == {"/": 0.0, "/data": 1.0}  # proc/1/mounts: / rw, /data ro


@pytest.mark.parametrize("size", [0, 5, 4095, 4096, 9000, 70000])
def test_attribute_reads_are_whole_at_any_size(tmp_path: Path, size: int) -> None:
    """One read() for a sysfs attribute (under a page); anything longer to the end."""
    path = tmp_path / "attr"
    data = bytes(i % 251 for i in range(size))
    path.write_bytes(data)
    assert read_attribute(str(path)) == data
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert read_attribute("attr", fd) == data
    finally:
        os.close(fd)
