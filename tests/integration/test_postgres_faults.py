"""Faults on a cluster the fixture owns: stopped, restarted, hung (SIGSTOP), down at start.

Also counts what one scrape costs the server: transactions and connections.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.exporter import Exporter, Samples, free_port, start_exporter, wait_for
from tests.helpers.pgcluster import Cluster, wait_ready

SCRAPE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster.create(["-c autovacuum=off"])
    try:
        c.sql("CREATE DATABASE stackmon_xact")
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def exporter(cluster: Cluster) -> Iterator[Exporter]:
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": cluster.dsn,
        "STACKMON_SCRAPE_TIMEOUT_SECONDS": str(SCRAPE_TIMEOUT),
    })
    try:
        yield exp
    finally:
        exp.stop()


def timed_scrape(exp: Exporter) -> tuple[float, Samples]:
    start = time.monotonic()
    s = exp.scrape()
    return time.monotonic() - start, s


def test_hung_server_answers_within_deadline(exporter: Exporter, cluster: Cluster) -> None:
    assert exporter.scrape().get("pg_up") == 1
    cluster.signal_all(signal.SIGSTOP)
    try:
        for _ in range(3):  # the stuck query, then the reconnect attempts
            elapsed, s = timed_scrape(exporter)
            assert s.get("pg_up") == 0
            assert s.get("stackmon_scrape_collector_success", collector="postgres") == 0
            assert elapsed < SCRAPE_TIMEOUT + 1.0
    finally:
        cluster.signal_all(signal.SIGCONT)
    wait_for(lambda: exporter.scrape().get("pg_up") == 1, timeout=20,
             what="pg_up 1 after SIGCONT")


def test_stopped_then_restarted(exporter: Exporter, cluster: Cluster) -> None:
    assert exporter.scrape().get("pg_up") == 1
    cluster.stop()
    try:
        elapsed, s = timed_scrape(exporter)
        assert s.get("pg_up") == 0
        assert s.get("stackmon_service_up", service="postgres") == 0
        assert elapsed < 4.5  # refused at once: below connect_timeout (5 s) and the deadline (10 s)
        assert exporter.logs().count('msg="collect failed"') >= 1
    finally:
        cluster.start()
    wait_ready(cluster)
    # Same exporter process: the next scrape reconnects.
    assert exporter.proc.poll() is None
    assert exporter.scrape().get("pg_up") == 1


def test_down_at_start() -> None:
    port = free_port()  # nothing listens here
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
    })
    try:
        elapsed, s = timed_scrape(exp)
        assert s.get("pg_up") == 0
        assert elapsed < 4.5  # refused at once: below connect_timeout (5 s) and the deadline (10 s)
    finally:
        exp.stop()


def _xacts(cluster: Cluster) -> int:
    rows = cluster.sql("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                       "WHERE datname = 'stackmon_xact'")
    return int(rows[0][0])


def _stackmon_backends(cluster: Cluster, db: str) -> list[tuple[str, str]]:
    return [(str(d), str(s)) for d, s in cluster.sql(
        "SELECT datname, state FROM pg_stat_activity WHERE application_name = 'stackmon' "
        f"AND datname = '{db}'")]


# session start, reading the server's statement_timeout and setting ours (one message),
# the PREPARE batch, the privilege check
CONNECT_TRANSACTIONS = 4
# The checks' facts (exporter/collectors/postgres/checks.py): once after the first scrape,
# then at most every checks.REFRESH_SECONDS.
CHECK_TRANSACTIONS = 1


def _transactions_for(cluster: Cluster, scrapes: int) -> int:
    """Transactions in the exporter's database from its start to its (flushed) exit."""
    before = _xacts(cluster)
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": cluster.dsn.replace("dbname=postgres", "dbname=stackmon_xact"),
    })
    try:
        for _ in range(scrapes):
            assert exp.scrape().get("pg_up") == 1
        # The landing page (no scrape) says when the checks after the first scrape ran.
        wait_for(lambda: b"Diagnosed at" in exp.get("/")[2], what="the checks to run")
        assert _stackmon_backends(cluster, "stackmon_xact") == [("stackmon_xact", "idle")]
    finally:
        exp.stop()
    expected = before + CONNECT_TRANSACTIONS + scrapes + CHECK_TRANSACTIONS
    # The session flushes its counters as it ends: wait for them, then check nothing more.
    wait_for(lambda: not _stackmon_backends(cluster, "stackmon_xact")
             and _xacts(cluster) >= expected,
             timeout=15, what="the exporter's session to end and flush")
    return _xacts(cluster) - before


@pytest.mark.parametrize("scrapes", [2, 12])
def test_one_transaction_per_scrape(cluster: Cluster, scrapes: int) -> None:
    assert _transactions_for(cluster, scrapes) == (CONNECT_TRANSACTIONS + scrapes
                                                   + CHECK_TRANSACTIONS)


def test_concurrent_scrapes_share_one_connection(exporter: Exporter, cluster: Cluster) -> None:
    results: list[float] = []
    threads = [threading.Thread(target=lambda: results.append(exporter.scrape().get("pg_up")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1.0] * 6
    assert _stackmon_backends(cluster, "postgres") == [("postgres", "idle")]
