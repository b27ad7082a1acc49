"""The exporter's own session adds no more of itself to a number than postgres_exporter's.

Both exporters watch one idle cluster of this test's own (autovacuum off, so nothing but
them and a session of the test's holds locks or runs), and are scraped one after the
other, never at once.  The test's session sits idle in a transaction that holds one
lock, so there is something to count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers.exporter import Exporter, start_exporter
from tests.helpers.parity import Scrape
from tests.helpers.pgcluster import Cluster
from tests.integration.test_postgres_parity import running_anchor

HOLDER_DB = "stackmon_app"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster.create(["-c autovacuum=off"])
    try:
        cluster.sql(f"CREATE DATABASE {HOLDER_DB}")
        cluster.sql("CREATE TABLE orders (id int)", dbname=HOLDER_DB)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def holder(cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    """A session idle in a transaction holding a SHARE lock on a table."""
    conn = psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres "
                           f"dbname={HOLDER_DB}")
    conn.execute("LOCK TABLE orders IN SHARE MODE")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def both(cluster: Cluster, holder: psycopg.Connection[Any]) -> Iterator[tuple[str, Exporter]]:
    """(postgres_exporter's /metrics URL, stackmon) on the cluster, each connected."""
    exp = start_exporter(["--no-collector.host"], env={"STACKMON_POSTGRES_DSN": cluster.dsn})
    try:
        with running_anchor(cluster.dsn) as anchor:
            assert exp.scrape().get("pg_up") == 1
            yield anchor, exp
    finally:
        exp.stop()


def series(scrape: Scrape, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(lbl[k] for k in labels): v for lbl, v in scrape.samples.get(name, [])}


def scrape_both(both: tuple[str, Exporter]) -> tuple[Scrape, Scrape]:
    """The anchor, then stackmon: one after the other, never overlapping."""
    anchor, exp = both
    theirs = Scrape.get(anchor)
    return theirs, Scrape.get(exp.url + "/metrics")


def test_locks_leave_the_exporters_own_session_out(both: tuple[str, Exporter]) -> None:
    theirs, ours = scrape_both(both)
    anchor = series(theirs, "pg_locks_count", "datname", "mode")
    stackmon = series(ours, "pg_locks_count", "datname", "mode")
    assert anchor.keys() == stackmon.keys()
    # The test's session's lock, seen by both.
    assert stackmon[(HOLDER_DB, "sharelock")] == anchor[(HOLDER_DB, "sharelock")] == 1
    # postgres_exporter counts the lock its own query takes on the pg_locks view in the
    # database it is connected to; stackmon counts nothing of its own (before: the locks
    # of every view its one-transaction batch had read, 6 on an idle server).
    more = {k: anchor[k] - stackmon[k] for k in anchor if anchor[k] != stackmon[k]}
    assert more == {("postgres", "accesssharelock"): 1.0}
    assert sum(stackmon.values()) == 1.0


def test_activity_counts_each_exporter_as_the_other_does(both: tuple[str, Exporter]) -> None:
    """Each sees itself active and the other idle: the same numbers."""
    theirs, ours = scrape_both(both)
    for name, labels in (("pg_stat_activity_count", ("datname", "state")),
                         ("pg_stat_database_numbackends", ("datname",))):
        anchor, stackmon = series(theirs, name, *labels), series(ours, name, *labels)
        assert stackmon == anchor, name
    activity = series(ours, "pg_stat_activity_count", "datname", "state")
    assert activity[("postgres", "active")] == 1  # the reading session, either exporter
    assert activity[(HOLDER_DB, "idle in transaction")] == 1
    # What stackmon's own transaction adds to the oldest-transaction age: nothing (now()
    # is its start), as for the anchor's one-statement transactions.
    ages = series(ours, "pg_stat_activity_max_tx_duration", "datname", "state")
    assert ages[("postgres", "active")] == 0.0
