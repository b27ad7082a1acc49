"""stackmon against Debian's postgres_exporter on the same server: a drop-in, exactly.

Every metric name and label-name set the anchor exports under its default flags must be
in stackmon's output with the same type, except the reviewed ``# postgres_exporter``
entries of tests/parity-allowlist.txt; settings, the version and sizes agree, and
counters agree within a few percent (the anchor is scraped before and after stackmon).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import PG_DSN
from tests.helpers.exporter import (
    Exporter,
    exporter_fixture,
    free_port,
    http_get,
    start_exporter,
    wait_for,
)
from tests.helpers.parity import Scrape, allowed, allowlist
from tests.helpers.pgcluster import Cluster

ANCHOR = "postgres_exporter"
POSTGRES_EXPORTER = (shutil.which("prometheus-postgres-exporter")
                     or shutil.which("postgres_exporter"))
# Series whose values are counters: stackmon's reading must lie between the anchor's
# before and after (with this relative slack and a small absolute one for the rows our
# own and the anchor's sessions add while they run).
COUNTER_PREFIXES = ("pg_stat_database_", "pg_stat_bgwriter_", "pg_stat_archiver_")
COUNTER_SLACK = 0.05
COUNTER_ABSOLUTE_SLACK = 200.0
# Gauges that move with every session (ours, the anchor's, other tests'): shape only.
MOVING = ("pg_stat_activity_", "pg_locks_count", "pg_stat_database_numbackends",
          "pg_stat_database_active_time", "pg_stat_database_session_time",
          "pg_stat_database_idle_in_transaction_time", "pg_exporter_",
          "pg_stat_archiver_last_archive_age")
# Settings a client sets in its own session: lib/pq (the anchor's driver) starts every
# session with extra_float_digits=2; stackmon reports the server's value.
SESSION_SETTINGS = {"pg_settings_extra_float_digits"}


def anchor_dsn(dsn: str) -> str:
    """lib/pq defaults to sslmode=require; libpq (stackmon) to prefer."""
    if "sslmode=" in dsn:
        return dsn
    if "://" in dsn:
        return dsn + ("&" if "?" in dsn else "?") + "sslmode=disable"
    return dsn + " sslmode=disable"


@contextlib.contextmanager
def running_anchor(dsn: str) -> Iterator[str]:
    """Debian's postgres_exporter on a free port against ``dsn``; yields its /metrics URL."""
    if POSTGRES_EXPORTER is None:
        pytest.fail("prometheus-postgres-exporter is not installed; "
                    "apt-get install prometheus-postgres-exporter")
    port = free_port()
    proc = subprocess.Popen(
        [POSTGRES_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
        env={"DATA_SOURCE_NAME": anchor_dsn(dsn), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: b"\npg_up 1\n" in http_get(url)[2], timeout=30,
                 what="postgres_exporter to reach PostgreSQL")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def anchor() -> Iterator[str]:
    with running_anchor(PG_DSN) as url:
        yield url


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    yield from exporter_fixture(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": PG_DSN,
        "STACKMON_POSTGRES_DATABASE_SIZE_REFRESH_SECONDS": "0",  # sizes of this scrape
    })


def test_allowlist_entries_have_reasons() -> None:
    entries = allowlist(ANCHOR)
    assert entries, "no # postgres_exporter section in tests/parity-allowlist.txt"
    assert all(len(reason) > 10 for reason in entries.values()), entries


def test_every_anchor_series_exists_with_its_labels_and_type(anchor: str,
                                                             exporter: Exporter) -> None:
    theirs = Scrape.get(anchor)
    ours = Scrape.get(exporter.url + "/metrics")
    entries = allowlist(ANCHOR)
    missing: list[str] = []
    for name in sorted(theirs.samples):
        if allowed(name, entries):
            continue
        lacking = theirs.label_sets(name) - ours.label_sets(name)
        if lacking:
            missing.append(f"{name} {sorted(sorted(s) for s in lacking)}")
    assert not missing, "anchor series stackmon lacks:\n" + "\n".join(missing)
    wrong_type = [f"{name}: {kind} vs ours {ours.types.get(name)}"
                  for name, kind in sorted(theirs.types.items())
                  if not allowed(name, entries) and ours.types.get(name) != kind]
    assert not wrong_type, "types differ:\n" + "\n".join(wrong_type)
    # The check can fail: it saw the anchor's settings and database statistics.
    assert len([n for n in theirs.samples if n.startswith("pg_settings_")]) > 100
    assert "pg_stat_database_xact_commit" in theirs.samples


def test_settings_version_and_sizes_agree(anchor: str, exporter: Exporter) -> None:
    theirs = Scrape.get(anchor)
    ours = Scrape.get(exporter.url + "/metrics")
    problems = []
    compared = 0
    for name, series in theirs.samples.items():
        exact = name.startswith("pg_settings_") or name == "pg_static"
        if name in SESSION_SETTINGS or not (exact or name == "pg_database_size_bytes"):
            continue
        mine = ours.values(name)
        for labels, value in series:
            key = frozenset(labels.items())
            if key not in mine:
                problems.append(f"{name}{labels} missing")
                continue
            compared += 1
            # Sizes move with other tests' writes: 2 % or 64 pages.
            tolerance = 0.0 if exact else max(0.02 * value, 64 * 8192)
            if abs(mine[key] - value) > tolerance:
                problems.append(f"{name}{labels}: {mine[key]} vs {value}")
    assert compared > 100
    assert not problems, "\n".join(problems)


def test_counters_agree_within_a_few_percent(anchor: str, exporter: Exporter) -> None:
    before = Scrape.get(anchor)
    ours = Scrape.get(exporter.url + "/metrics")
    after = Scrape.get(anchor)
    problems = []
    compared = 0
    for name, series in ours.samples.items():
        if not name.startswith(COUNTER_PREFIXES) or name.startswith(MOVING):
            continue
        low_values, high_values = before.values(name), after.values(name)
        for labels, value in series:
            key = frozenset(labels.items())
            if key not in low_values or key not in high_values:
                continue  # a database created or dropped meanwhile by another test
            low, high = sorted((low_values[key], high_values[key]))
            if math.isnan(low) or math.isnan(high):
                if not math.isnan(value):
                    problems.append(f"{name}{dict(key)}: {value} vs NaN")
                continue
            compared += 1
            slack = COUNTER_SLACK * high + COUNTER_ABSOLUTE_SLACK
            if not low - slack <= value <= high + slack:
                problems.append(f"{name}{dict(key)}: {value} not in [{low}, {high}]")
    assert compared > 50
    assert not problems, "\n".join(problems)


def test_extension_settings_have_the_anchors_names() -> None:
    """Settings of a preloaded extension (pg_stat_statements.max) under the anchor's names."""
    cluster = Cluster.create(["-c shared_preload_libraries=pg_stat_statements"])
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        with running_anchor(dsn) as url:
            theirs = {n for n in Scrape.get(url).samples if n.startswith("pg_settings_")}
        exp = start_exporter(["--no-collector.host"], env={"STACKMON_POSTGRES_DSN": dsn})
        try:
            ours = {n for n in Scrape.get(exp.url + "/metrics").samples
                    if n.startswith("pg_settings_")}
        finally:
            exp.stop()
    finally:
        cluster.destroy()
    extension = {n for n in theirs if "pg_stat_statements" in n}
    assert extension, "the anchor shows no pg_stat_statements settings"
    assert theirs - ours == set()
