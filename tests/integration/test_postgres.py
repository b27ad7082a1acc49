"""PostgreSQL collector against the session's private server: exact values.

Everything we create lives in our own database ``stackmon_test_pg`` (dropped after); the
exporter itself connects to ``postgres`` so its own session never counts in ours.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import psycopg
import pytest

from tests.helpers import backends
from tests.helpers.docs import table_names
from tests.helpers.exporter import (
    Exporter,
    Samples,
    exporter_fixture,
    promtool_complaints,
    wait_for,
)

# The session's private cluster (tests/helpers/backends.py).
PG_HOST = "127.0.0.1"
PG_PORT = str(backends.PG_PORT)
PG_USER = "postgres"
DB = "stackmon_test_pg"
TABLES_DB = "stackmon_test_pg_tables"  # its tables are counted over extra connections
ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"
TEST_DSN = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={DB}"
SLOW_THRESHOLD = 0.5


def connect(dsn: str = TEST_DSN, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=5)


@pytest.fixture(scope="module")
def test_db() -> Iterator[str]:
    with connect(ADMIN_DSN) as admin:
        for db in (DB, TABLES_DB):
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db}")
    try:
        yield DB
    finally:
        with connect(ADMIN_DSN) as admin:
            for db in (DB, TABLES_DB):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture(scope="module")
def exporter(test_db: str) -> Iterator[Exporter]:
    yield from exporter_fixture(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": ADMIN_DSN,
        "STACKMON_POSTGRES_SLOW_QUERY_THRESHOLD_SECONDS": str(SLOW_THRESHOLD),
        "STACKMON_POSTGRES_TABLE_COUNT_DATABASES": TABLES_DB,
        "STACKMON_POSTGRES_DATABASE_SIZE_REFRESH_SECONDS": "0",  # exact sizes every scrape
    })


def test_up_identity_and_settings(exporter: Exporter) -> None:
    s = exporter.scrape()
    assert s.get("pg_up") == 1
    assert s.get("stackmon_service_up", service="postgres") == 1
    with connect(ADMIN_DSN) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "extract(epoch FROM pg_postmaster_start_time()), version(), "
            "current_setting('server_version_num')::int, "
            "pg_size_bytes(current_setting('shared_buffers'))").fetchone()
    assert row is not None
    max_conn, reserved, start, version, num, shared_buffers = row
    assert s.get("pg_settings_max_connections") == max_conn
    assert s.get("pg_settings_superuser_reserved_connections") == reserved
    assert s.get("pg_settings_shared_buffers_bytes") == shared_buffers
    assert s.get("pg_postmaster_start_time_seconds") == pytest.approx(float(start), abs=1e-3)
    short = f"{num // 10000}.{num % 10000}.0"
    assert s.get("pg_static", version=version, short_version=short,
                 server=f"{PG_HOST}:{PG_PORT}") == 1
    assert s.get("stackmon_service_info", service="postgres", version=short,
                 role="primary") == 1
    assert s.get("pg_replication_is_replica") == 0


def test_connection_states_locks_and_slow_query(exporter: Exporter, test_db: str) -> None:
    sessions: list[psycopg.Connection[Any]] = []
    sleeper = connect()
    sleeper_pid = sleeper.info.backend_pid
    sleeping = threading.Thread(target=lambda: _ignore(sleeper, "SELECT pg_sleep(60)"),
                                daemon=True)
    # A dump's long statements are not slow queries (PostgresSlowQueries would page on
    # every nightly backup).
    dumper = psycopg.connect(TEST_DSN, autocommit=True, connect_timeout=5,
                             application_name="pg_dump")
    dumper_pid = dumper.info.backend_pid
    dumping = threading.Thread(target=lambda: _ignore(dumper, "SELECT pg_sleep(60)"),
                               daemon=True)
    try:
        with connect() as setup:
            setup.execute("CREATE TABLE locked (id int)")
        for _ in range(3):  # idle
            sessions.append(connect())
        for _ in range(2):  # idle in transaction
            c = connect(autocommit=False)
            c.execute("SELECT 1")
            sessions.append(c)
        holder = connect(autocommit=False)  # idle in transaction, holding the lock
        holder.execute("LOCK TABLE locked IN SHARE ROW EXCLUSIVE MODE")
        sessions.append(holder)
        aborted = connect(autocommit=False)  # idle in transaction (aborted)
        with pytest.raises(psycopg.errors.DivisionByZero):
            aborted.execute("SELECT 1/0")
        sessions.append(aborted)
        sleeping.start()
        dumping.start()

        def settled() -> Samples | None:
            s = exporter.scrape()
            return s if s.get("pg_stat_activity_slow_queries", datname=test_db) >= 1 else None
        s = wait_for(settled, timeout=15, what="the sleeping statement to count as slow")
        assert s.get("pg_stat_activity_slow_queries", datname=test_db) == 1
        assert s.get("pg_stat_activity_count", datname=test_db, state="idle") == 3
        assert s.get("pg_stat_activity_count", datname=test_db,
                     state="idle in transaction") == 3
        assert s.get("pg_stat_activity_count", datname=test_db,
                     state="idle in transaction (aborted)") == 1
        assert s.get("pg_stat_activity_count", datname=test_db, state="active") == 2
        assert s.get("pg_stat_database_numbackends", datname=test_db) == 9
        assert s.get("pg_locks_count", datname=test_db, mode="sharerowexclusivelock") == 1
        assert s.get("pg_locks_count", datname=test_db, mode="accessexclusivelock") == 0
        assert s.get("pg_stat_activity_max_tx_duration", datname=test_db,
                     state="active") >= SLOW_THRESHOLD
        # The connected database's own query never counts as slow or as our lock.
        assert s.get("pg_stat_activity_slow_queries", datname="postgres") == 0
        assert s.get("pg_stat_activity_slow_query_threshold_seconds") == SLOW_THRESHOLD
    finally:
        with connect(ADMIN_DSN) as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (sleeper_pid,))
            admin.execute("SELECT pg_cancel_backend(%s)", (dumper_pid,))
        sleeping.join(10)
        dumping.join(10)
        sleeper.close()
        dumper.close()
        for c in sessions:
            c.close()
        with connect() as cleanup:
            cleanup.execute("DROP TABLE IF EXISTS locked")


def _ignore(conn: psycopg.Connection[Any], query: str) -> None:
    with contextlib.suppress(psycopg.Error):
        conn.execute(query)


def _xacts(db: str) -> tuple[float, float]:
    with connect(ADMIN_DSN) as conn:
        row = conn.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                           "WHERE datname = %s", (db,)).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def _backends(db: str) -> int:
    with connect(ADMIN_DSN) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                           (db,)).fetchone()
    return int(row[0]) if row else 0


def test_oldest_client_transaction_leaves_out_pg_dump(exporter: Exporter, test_db: str) -> None:
    """PostgresLongRunningTransaction reads pg_stat_activity_client_max_tx_duration_seconds:
    a dump's open transaction is left out of it, a client's is not (the anchor's
    pg_stat_activity_max_tx_duration counts both)."""
    dumper = psycopg.connect(TEST_DSN, autocommit=False, connect_timeout=5,
                             application_name="pg_dump")
    client: psycopg.Connection[Any] | None = None
    try:
        dumper.execute("SELECT 1")  # idle in transaction from here on

        def only_the_dump(s: Samples) -> bool:
            return (s.get("pg_stat_activity_max_tx_duration", datname=test_db,
                          state="idle in transaction") > 0
                    and s.get("pg_stat_activity_client_max_tx_duration_seconds",
                              datname=test_db) == 0)
        wait_for(lambda: only_the_dump(exporter.scrape()),
                 what="the dump's transaction in the anchor metric only")
        client = connect(autocommit=False)
        client.execute("SELECT 1")

        def client_seen() -> Samples | None:
            s = exporter.scrape()
            return s if s.get("pg_stat_activity_client_max_tx_duration_seconds",
                              datname=test_db) > 0 else None
        s = wait_for(client_seen, what="the client's open transaction")
        dump_age = s.get("pg_stat_activity_max_tx_duration", datname=test_db,
                         state="idle in transaction")
        assert s.get("pg_stat_activity_client_max_tx_duration_seconds",
                     datname=test_db) <= dump_age  # the younger of the two
    finally:
        for conn in (dumper, client):
            if conn is not None:
                conn.close()


def test_commits_and_rollbacks_exact(exporter: Exporter, test_db: str) -> None:
    # Autovacuum may visit the database in between: then measure again (at most 3 times).
    for _attempt in range(3):
        def agree() -> tuple[float, float] | None:
            s = exporter.scrape()
            got = (s.get("pg_stat_database_xact_commit", datname=test_db),
                   s.get("pg_stat_database_xact_rollback", datname=test_db))
            if _backends(test_db):  # a session that is ending flushes its counters
                return None
            return got if got == _xacts(test_db) else None
        # Earlier sessions flush their counters when they end: wait until nothing moves.
        c0, r0 = wait_for(agree, timeout=15, what="exporter to agree with pg_stat_database")
        # Two sessions (their counters are flushed when they end): 7 commits, 4 rollbacks.
        with connect(autocommit=False) as conn:
            for _ in range(7):
                conn.execute("SELECT 1")
                conn.commit()
        with connect(autocommit=False) as conn:
            for _ in range(4):
                conn.execute("SELECT 1")
                conn.rollback()

        def flushed(r0: float = r0) -> Samples | None:
            s = exporter.scrape()
            return s if s.get("pg_stat_database_xact_rollback",
                              datname=test_db) >= r0 + 4 else None
        after = wait_for(flushed, timeout=15, what="the session's stats to be flushed")
        commits = after.get("pg_stat_database_xact_commit", datname=test_db) - c0
        rollbacks = after.get("pg_stat_database_xact_rollback", datname=test_db) - r0
        assert rollbacks == 4
        if commits == 9:  # 7 + the transaction each new session runs at start
            break
    assert commits == 9


def test_database_size_and_tables(exporter: Exporter, test_db: str) -> None:
    dsn = TEST_DSN.replace(DB, TABLES_DB)
    test_db = TABLES_DB
    with connect(dsn) as conn:
        for i in range(3):
            conn.execute(f"CREATE TABLE size_t{i} (id int, pad text)")
        conn.execute("CREATE VIEW not_a_table AS SELECT 1")
        conn.execute("INSERT INTO size_t0 SELECT g, repeat('x', 500) FROM "
                     "generate_series(1, 20000) g")
        table_bytes = conn.execute("SELECT pg_total_relation_size('size_t0')").fetchone()
        assert table_bytes is not None and table_bytes[0] > 10_000_000
    try:
        s = exporter.scrape()
        with connect(ADMIN_DSN) as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (test_db,)).fetchone()
        assert row is not None
        assert s.get("pg_database_size_bytes", datname=test_db) == row[0]
        assert s.get("pg_database_size_bytes", datname=test_db) > table_bytes[0]
        assert s.get("pg_database_user_tables", datname=test_db) == 3
        # The connected database is always counted too.
        assert s.has("pg_database_user_tables", datname="postgres")
    finally:
        with connect(dsn) as conn:
            conn.execute("DROP VIEW not_a_table")
            for i in range(3):
                conn.execute(f"DROP TABLE size_t{i}")


def test_exactly_one_connection(exporter: Exporter) -> None:
    for _ in range(3):
        exporter.scrape()
    # Our exporter's sockets to PostgreSQL (other stackmon processes may share the server).
    ports = {c.laddr.port for c in psutil.Process(exporter.proc.pid).net_connections("tcp")
             if c.raddr and c.raddr.port == int(PG_PORT)}
    assert len(ports) == 1
    with connect(ADMIN_DSN) as conn:
        rows = conn.execute("SELECT datname, state, application_name FROM pg_stat_activity "
                            "WHERE client_port = ANY(%s)", (list(ports),)).fetchall()
    assert rows == [("postgres", "idle", "stackmon")]


def test_promtool_clean(exporter: Exporter) -> None:
    status, _, body = exporter.get()
    assert status == 200
    assert promtool_complaints(body.decode()) == []


def documented_names() -> set[str]:
    return table_names("postgres")


# Documented series a server has only from some major version on.
SINCE_16 = {"pg_stat_database_conflicts_confl_active_logicalslot"}
SINCE_18 = {"pg_stat_database_parallel_workers_to_launch",
            "pg_stat_database_parallel_workers_launched"}


def emitted_names(*scrapes: Samples) -> set[str]:
    """pg_ (and stackmon's own stackmon_postgres_) sample names of the scrapes; the
    README's one pg_settings_ row stands for all."""
    names = {n for s in scrapes for n in s.samples
             if n.startswith(("pg_", "stackmon_postgres_"))}
    settings = {n for n in names if n.startswith("pg_settings_")}
    assert "pg_settings_max_connections" in settings and len(settings) > 100
    return names - settings | {"pg_settings_max_connections"}


def test_docs_list_every_emitted_family(exporter: Exporter) -> None:
    emitted = emitted_names(exporter.scrape())
    missing = emitted - documented_names()
    assert not missing, f"docs/postgres.md metrics table lacks {sorted(missing)}"


def test_a_part_the_server_lacks_leaves_the_others(
        test_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A query this server cannot prepare (a column it lacks) drops only its own series.

    In-process against the real server, with one made-up part appended to the batch.
    """
    import time

    from exporter.collectors.postgres import collector as pgmod
    from exporter.collectors.postgres.settings import PostgresSettings
    from exporter.collectors.postgres.view import PreparedQuery

    real = pgmod.build_queries

    def with_bad_part(*args: Any, **kw: Any) -> list[PreparedQuery]:
        return [*real(*args, **kw),
                PreparedQuery("missing", "SELECT no_such_column FROM pg_stat_database")]
    monkeypatch.setattr(pgmod, "build_queries", with_bad_part)
    collector = pgmod.PostgresCollector(PostgresSettings(), TEST_DSN)
    try:
        metrics = collector.collect(time.monotonic() + 10)
    finally:
        collector.close()
    families = {m.name for m in metrics}
    assert {"pg_up", "pg_stat_database_xact_commit", "pg_stat_activity_count",
            "pg_database_size_bytes", "pg_stat_bgwriter_checkpoints_timed",
            "pg_exporter_last_scrape_error"} <= families
    [error] = [m for m in metrics if m.name == "pg_exporter_last_scrape_error"]
    assert error.samples[0].value == 1  # a query left out is an error, as in the anchor
    failed = [r.getMessage() for r in caplog.records if "cannot query" in r.getMessage()]
    assert len(failed) == 1 and "cannot query missing" in failed[0], failed


def test_user_tables_largest_first_capped(test_db: str) -> None:
    """pg_stat_user_tables_*: the limit's largest tables, with the anchor's values."""
    with connect() as conn:
        for name, rows in (("ut_small", 10), ("ut_big", 20000), ("ut_mid", 2000)):
            conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, pad text)")
            conn.execute(f"INSERT INTO {name} SELECT g, repeat('x', 100) FROM "
                         f"generate_series(1, {rows}) g")
            conn.execute(f"ANALYZE {name}")  # relpages: the size the limit orders by
        conn.execute("DELETE FROM ut_mid WHERE id <= 500")
        conn.execute("SELECT count(*) FROM ut_big")
    env = {"STACKMON_POSTGRES_DSN": TEST_DSN, "STACKMON_POSTGRES_USER_TABLES_LIMIT": "2"}
    try:
        for exp in exporter_fixture(["--no-collector.host"], env=env):
            def flushed(exp: Exporter = exp) -> Samples | None:
                s = exp.scrape()
                ok = (s.has("pg_stat_user_tables_n_dead_tup", relname="ut_mid")
                      and s.get("pg_stat_user_tables_n_dead_tup", relname="ut_mid") == 500
                      and s.get("pg_stat_user_tables_seq_scan", relname="ut_big") >= 1)
                return s if ok else None
            s = wait_for(flushed, timeout=20, what="table statistics to be flushed")
            tables = {lbl["relname"] for lbl, _ in s.samples["pg_stat_user_tables_seq_scan"]}
            assert tables == {"ut_big", "ut_mid"}  # ut_small is left out by the limit
            with connect() as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()
            assert row is not None and row[0] >= 3
            # Every user table of the database but the two exported is counted as left out.
            assert s.get("stackmon_postgres_user_tables_omitted", datname=test_db,
                         server=f"{PG_HOST}:{PG_PORT}") == row[0] - 2
            labels = {"datname": test_db, "schemaname": "public", "relname": "ut_big",
                      "server": f"{PG_HOST}:{PG_PORT}"}
            with connect() as conn:
                row = conn.execute(
                    "SELECT n_tup_ins, n_live_tup, extract(epoch FROM last_analyze), "
                    "analyze_count, pg_table_size(relid), pg_indexes_size(relid) "
                    "FROM pg_stat_user_tables WHERE relname = 'ut_big'").fetchone()
            assert row is not None
            assert s.get("pg_stat_user_tables_n_tup_ins", **labels) == row[0] == 20000
            assert s.get("pg_stat_user_tables_n_live_tup", **labels) == row[1]
            assert s.get("pg_stat_user_tables_last_analyze", **labels) == \
                pytest.approx(float(row[2]), abs=1e-3)
            assert s.get("pg_stat_user_tables_analyze_count", **labels) == row[3] == 1
            assert s.get("pg_stat_user_tables_table_size_bytes", **labels) == row[4]
            assert s.get("pg_stat_user_tables_index_size_bytes", **labels) == row[5]
            assert s.get("pg_stat_user_tables_last_vacuum", **labels) == 0  # never
            assert "# TYPE pg_stat_user_tables_seq_scan counter\n" in s.text
    finally:
        with connect() as conn:
            conn.execute("DROP TABLE ut_small, ut_big, ut_mid")
