"""The host collector on a captured /proc, /sys and rootfs (tests/fixtures/host): exact
values, node_exporter's units, and the ``--path.*`` flags end to end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from exporter.collectors.host.common import Paths
from exporter.metrics import Metric
from tests.helpers.exporter import Samples, exporter_fixture
from tests.helpers.host import fixture_collector

FIXTURE = Path(__file__).parent.parent / "fixtures" / "host"
PATHS = Paths(str(FIXTURE / "proc"), str(FIXTURE / "sys"), str(FIXTURE / "rootfs"))
KB = 1024.0


class _Families:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


@pytest.fixture(scope="module")
def scraped() -> Samples:
    """One collection rendered as Prometheus text and parsed back, as a scraper sees it."""
    metrics = fixture_collector().collect(time.monotonic() + 5)
    return Samples.parse(generate_latest(_Families(metrics)).decode())


@pytest.mark.parametrize(("name", "labels", "value"), [
    # meminfo: every field, kB -> bytes, "(anon)" -> "_anon", counts without _bytes
    ("node_memory_MemTotal_bytes", {}, 24684100 * KB),
    ("node_memory_MemFree_bytes", {}, 20987352 * KB),
    ("node_memory_Active_anon_bytes", {}, 46412 * KB),
    ("node_memory_HugePages_Total", {}, 0),
    # cpu / stat (USER_HZ 100)
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "user"}, 176.34),
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, 314.71),
    ("node_cpu_guest_seconds_total", {"cpu": "1", "mode": "nice"}, 0),
    ("node_intr_total", {}, 964701),
    ("node_context_switches_total", {}, 3012346),
    ("node_forks_total", {}, 27168),
    ("node_boot_time_seconds", {}, 1795789041),
    ("node_procs_running", {}, 1),
    ("node_load5", {}, 2.15),
    ("node_vmstat_pgfault", {}, 9291714),
    ("node_vmstat_oom_kill", {}, 0),
    # timex: the captured clock state (adjtimex.json): µs -> s, ppm with a 16-bit fraction
    ("node_timex_sync_status", {}, 1),
    ("node_timex_offset_seconds", {}, -0.0015),
    ("node_timex_frequency_adjustment_ratio", {}, 1 + 786432 / 65536e6),
    ("node_timex_maxerror_seconds", {}, 0.016),
    ("node_timex_tai_offset_seconds", {}, 37),
    # diskstats: sectors x 512, ms -> s
    ("node_disk_reads_completed_total", {"device": "vda"}, 59500),
    ("node_disk_read_bytes_total", {"device": "vda"}, 3206074 * 512),
    ("node_disk_write_time_seconds_total", {"device": "vda"}, 54.308),
    ("node_disk_io_time_weighted_seconds_total", {"device": "vda"}, 68.36),
    ("node_disk_discarded_sectors_total", {"device": "vda"}, 2334624),
    ("node_disk_flush_requests_total", {"device": "vda"}, 8298),
    ("node_disk_io_now", {"device": "vda"}, 0),
    ("node_disk_info", {"device": "vda", "major": "254", "minor": "0", "model": ""}, 1),
    # network
    ("node_network_receive_bytes_total", {"device": "eth0"}, 1266057508),
    ("node_network_transmit_packets_total", {"device": "eth0"}, 17195),
    ("node_network_receive_nohandler_total", {"device": "eth0"}, 0),
    ("node_network_speed_bytes", {"device": "eth0"}, 125_000_000),
    ("node_network_mtu_bytes", {"device": "eth0"}, 1400),
    ("node_network_address_assign_type", {"device": "eth0"}, 0),
    ("node_network_flags", {"device": "eth0"}, 0x1003),
    ("node_network_up", {"device": "eth0"}, 1),
    ("node_network_up", {"device": "lo"}, 0),  # operstate "unknown"
    ("node_network_info", {"device": "eth0", "address": "02:fc:00:00:00:01",
                           "operstate": "up"}, 1),
    ("node_arp_entries", {"device": "eth0"}, 1),
    ("node_netstat_Ip_Forwarding", {}, 2),
    ("node_netstat_Icmp_InMsgs", {}, 1),
    ("node_netstat_Ip6_InOctets", {}, 4204),
    ("node_sockstat_sockets_used", {}, 89),
    ("node_sockstat_TCP_tw", {}, 826),
    ("node_sockstat_TCP_mem_bytes", {}, 53 * os.sysconf("SC_PAGESIZE")),
    ("node_softnet_processed_total", {"cpu": "0"}, 0x2BA07),
    ("node_udp_queues", {"ip": "v4", "queue": "tx"}, 16),
    ("node_udp_queues", {"ip": "v4", "queue": "rx"}, 32),
    # kernel tables
    ("node_pressure_io_waiting_seconds_total", {}, 4.671931),
    ("node_pressure_io_stalled_seconds_total", {}, 2.548986),
    ("node_filefd_allocated", {}, 1504),
    ("node_filefd_maximum", {}, 2466190),
    ("node_entropy_pool_size_bits", {}, 256),
    ("node_textfile_scrape_error", {}, 0),
    ("node_nf_conntrack_entries_limit", {}, 262144),
    ("node_nf_conntrack_stat_found", {}, 0),
    ("node_cpu_scaling_frequency_hertz", {"cpu": "1"}, 2.8e9),
    ("node_cpu_scaling_frequency_max_hertz", {"cpu": "0"}, 3.5e9),
    ("node_time_clocksource_current_info", {"clocksource": "tsc", "device": "0"}, 1),
    ("node_os_version", {"id": "debian", "name": "Debian GNU/Linux"}, 12),
    ("node_os_info", {"version_codename": "bookworm", "pretty_name":
                      "Debian GNU/Linux 12 (bookworm)"}, 1),
])
def test_fixture_values(scraped: Samples, name: str, labels: dict[str, str],
                        value: float) -> None:
    found = [v for lbl, v in scraped.samples.get(name, [])
             if all(lbl.get(k) == want for k, want in labels.items())]
    assert found == [pytest.approx(value, rel=1e-12)]


def test_types_are_node_exporters(scraped: Samples) -> None:
    types = scraped.types
    assert types["node_cpu_seconds"] == "counter"
    assert types["node_vmstat_pgfault"] == "unknown"  # untyped in node_exporter too
    assert types["node_netstat_Tcp_InSegs"] == "unknown"
    assert types["node_disk_io_now"] == "gauge"
    assert types["node_memory_MemTotal_bytes"] == "gauge"
    assert types["node_network_carrier_changes"] == "counter"


def test_every_cpu_and_mode(scraped: Samples) -> None:
    modes = {(lbl["cpu"], lbl["mode"]) for lbl, _ in scraped.samples["node_cpu_seconds_total"]}
    assert modes == {(c, m) for c in ("0", "1") for m in (
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")}


def test_filesystems_relative_to_rootfs(scraped: Samples) -> None:
    """Mount points from the fixture's 1/mounts, statfs'ed under the fixture rootfs."""
    real = os.statvfs(PATHS.rootfs)
    size = scraped.get("node_filesystem_size_bytes", mountpoint="/data", device="/dev/vdb")
    assert size == real.f_blocks * real.f_frsize
    assert scraped.get("node_filesystem_readonly", mountpoint="/data") == 1
    assert scraped.get("node_filesystem_readonly", mountpoint="/") == 0
    # a mount point missing under the rootfs: an error, no sizes
    assert scraped.get("node_filesystem_device_error", mountpoint="/run/my space") == 1
    assert not scraped.has("node_filesystem_size_bytes", mountpoint="/run/my space")
    assert not scraped.has("node_filesystem_size_bytes", mountpoint="/proc")  # excluded type


def test_path_flags_end_to_end() -> None:
    """A real stackmon with --path.procfs/--path.sysfs/--path.rootfs reports the fixture
    host, as a container with the host's /proc, /sys and / mounted would."""
    for exp in exporter_fixture([f"--path.procfs={PATHS.procfs}",
                                 f"--path.sysfs={PATHS.sysfs}",
                                 f"--path.rootfs={PATHS.rootfs}"]):
        got = exp.scrape()
        assert got.get("node_memory_MemTotal_bytes") == 24684100 * KB
        devices = {lbl["device"] for lbl, _ in got.samples["node_network_receive_bytes_total"]}
        assert devices == {"lo", "ifb0", "ifb1", "eth0"}
        assert {lbl["mountpoint"] for lbl, _ in got.samples["node_filesystem_size_bytes"]} == {
            "/", "/data"}
        assert got.get("node_boot_time_seconds") == 1795789041
