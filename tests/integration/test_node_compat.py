"""Parity with Debian's node_exporter run with its default flags on this machine: every
metric name and label-name set it exports exists in stackmon's host output with the same
type, except the ``# node_exporter`` entries of tests/parity-allowlist.txt (each with a
reason); static values agree exactly and counters within a few percent."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers.exporter import Exporter, free_port, http_get, wait_for
from tests.helpers.parity import Scrape, allowed, allowlist

ANCHOR = "node_exporter"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
# Values that do not move: equal (same label set) in both.
STATIC = ("node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes",
          "node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly",
          "node_boot_time_seconds", "node_filefd_maximum", "node_entropy_pool_size_bits",
          "node_network_mtu_bytes", "node_network_speed_bytes", "node_network_iface_id",
          "node_network_flags", "node_network_up", "node_network_info", "node_uname_info",
          "node_os_info", "node_os_version", "node_nf_conntrack_entries_limit",
          "node_time_clocksource_current_info", "node_time_zone_offset_seconds",
          "node_disk_info", "node_memory_Hugepagesize_bytes")
# Counters: ours must lie between the anchor's reading before and after, with slack for
# what moves while three scrapes run (CPU seconds of two exporters, loopback packets).
COUNTER_SLACK = 0.03
COUNTER_ABSOLUTE_SLACK = 500.0


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    """Debian's node_exporter with its default flags on a free loopback port."""
    if NODE_EXPORTER is None:
        pytest.fail("prometheus-node-exporter is not installed; run scripts/test-services.sh")
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: http_get(url)[0] == 200, what="node_exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_allowlist_has_reasons() -> None:
    entries = allowlist(ANCHOR)
    assert entries, "no # node_exporter section in tests/parity-allowlist.txt"
    assert all(len(reason) > 10 for reason in entries.values()), entries


def test_every_anchor_series_exists_with_its_labels_and_type(
        node_exporter: str, host_exporter: Exporter) -> None:
    theirs = Scrape.get(node_exporter)
    ours = Scrape.get(host_exporter.url + "/metrics")
    entries = allowlist(ANCHOR)
    missing = [f"{name} {sorted(sorted(s) for s in lacking)}"
               for name in sorted(theirs.samples) if not allowed(name, entries)
               for lacking in [theirs.label_sets(name) - ours.label_sets(name)] if lacking]
    assert not missing, "node_exporter series stackmon lacks:\n" + "\n".join(missing)
    wrong_type = [f"{name}: {kind}, ours {ours.types.get(name)}"
                  for name, kind in sorted(theirs.types.items())
                  if not allowed(name, entries) and name in theirs.samples
                  and ours.types.get(name) != kind]
    assert not wrong_type, "types differ:\n" + "\n".join(wrong_type)
    # The check can fail: it saw node_exporter's full default set.
    assert len(theirs.samples) > 150 and "node_memory_Active_anon_bytes" in theirs.samples


def test_values_agree(node_exporter: str, host_exporter: Exporter) -> None:
    before = Scrape.get(node_exporter)
    ours = Scrape.get(host_exporter.url + "/metrics")
    after = Scrape.get(node_exporter)
    problems: list[str] = []
    compared = 0
    for name in STATIC:
        theirs_values, our_values = before.values(name), ours.values(name)
        for labels, value in theirs_values.items():
            if labels in our_values:
                compared += 1
                if our_values[labels] != value:
                    problems.append(f"{name}{dict(labels)}: ours {our_values[labels]}, "
                                    f"node_exporter {value}")
            elif name not in ("node_filesystem_size_bytes", "node_filesystem_files",
                              "node_filesystem_readonly", "node_disk_info"):
                problems.append(f"{name}{dict(labels)} missing")  # mounts/disks may differ
    counters = [n for n, kind in before.types.items() if kind == "counter"
                and not allowed(n, allowlist(ANCHOR))]
    for name in counters:
        low, high, our_values = before.values(name), after.values(name), ours.values(name)
        for labels, value in our_values.items():
            if labels not in low or labels not in high:
                continue
            lo, hi = min(low[labels], high[labels]), max(low[labels], high[labels])
            compared += 1
            if not (lo * (1 - COUNTER_SLACK) - COUNTER_ABSOLUTE_SLACK <= value
                    <= hi * (1 + COUNTER_SLACK) + COUNTER_ABSOLUTE_SLACK):
                problems.append(f"{name}{dict(labels)}: ours {value}, node_exporter {lo}..{hi}")
    cpus = {lbl["cpu"] for lbl, _ in before.samples["node_cpu_seconds_total"]}
    assert cpus == {lbl["cpu"] for lbl, _ in ours.samples["node_cpu_seconds_total"]}
    assert problems == []
    # The check saw data: ~200 values on a VM, 74 in a container with nothing but lo and
    # an overlay root (systemd-nspawn --private-network).
    assert compared > 50
