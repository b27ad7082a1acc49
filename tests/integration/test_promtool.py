"""`promtool check metrics` on a full scrape prints only allow-listed names."""

from __future__ import annotations

from tests.helpers.exporter import Exporter, allowlist, promtool_complaints


def test_promtool_clean_apart_from_allowlist(host_exporter: Exporter) -> None:
    text = host_exporter.get("/metrics")[1:][1].decode()
    assert promtool_complaints(text) == []


def test_allowlist_entries_are_exported(host_exporter: Exporter) -> None:
    """A stale allow-list entry would hide a future complaint: each must be in use."""
    text = host_exporter.get("/metrics")[2].decode()
    missing = [name for name in allowlist()
               if name.startswith("node_") and f"\n{name} " not in text]
    assert missing == []
