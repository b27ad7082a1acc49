"""``stackmon check`` against a real PostgreSQL configured wrong in exactly one way, then
the same server with the fix ``stackmon check`` printed applied: the role without
pg_monitor, track_io_timing off, pg_stat_statements not preloaded, the extension in
another database than the DSN's, and a standby whose role lacks pg_read_all_stats.

A primary and a streaming standby of this module's own (never the session's shared
server: these tests change grants, postgresql.conf and restart it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.check import CheckRun, run_check
from tests.helpers.exporter import wait_for
from tests.helpers.pgcluster import Cluster, wait_ready, wait_streaming


@pytest.fixture(scope="module")
def primary() -> Iterator[Cluster]:
    cluster = Cluster.create(["-c wal_level=replica", "-c max_wal_senders=4"],
                             hba_lines=["host replication all 127.0.0.1/32 trust"])
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def standby(primary: Cluster) -> Iterator[Cluster]:
    cluster = primary.standby("check_standby", "check_standby")
    wait_streaming(primary)
    yield cluster
    cluster.destroy()


def new_role(cluster: Cluster) -> str:
    """A login role of the test's own, with no grant at all."""
    role = f"mon_{uuid.uuid4().hex[:8]}"
    cluster.sql(f"CREATE ROLE {role} LOGIN")
    return role


def check(cluster: Cluster, role: str = "postgres", dbname: str = "postgres",
          statements: bool = False) -> CheckRun:
    env = {"STACKMON_POSTGRES_DSN": f"host=127.0.0.1 port={cluster.port} user={role} "
                                    f"dbname={dbname}"}
    if statements:
        env["STACKMON_POSTGRES_STAT_STATEMENTS"] = "true"
    return run_check(["--no-collector.host"], env)


def conf_line(fix: str) -> str:
    """The postgresql.conf line of a fix (its first line, without the comment)."""
    return fix.splitlines()[0].split("#", 1)[0].strip()


def append_conf(cluster: Cluster, line: str) -> str:
    path = Path(cluster.datadir) / "postgresql.conf"
    before = path.read_text()
    path.write_text(before + "\n" + line + "\n")
    return before


def test_role_without_pg_monitor(primary: Cluster) -> None:
    role = new_role(primary)
    wrong = check(primary, role)
    found = wrong.finding("postgres", "pg_monitor")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert f"role {role} is not a member of pg_monitor" in found["detail"]
    assert found["fix"] == f"GRANT pg_monitor TO {role};"
    assert "Database / Connections by state" in found["affected"]["panels"]
    primary.sql(found["fix"])  # the fix as printed
    right = check(primary, role)
    assert right.status("postgres", "pg_monitor") == "ok", right.explain()


def test_track_io_timing_off(primary: Cluster) -> None:
    wrong = check(primary)
    found = wrong.finding("postgres", "track_io_timing")
    assert found["status"] == "missing" and wrong.code == 1, wrong.explain()
    assert found["affected"]["families"] == ["pg_stat_database_blk_read_time",
                                             "pg_stat_database_blk_write_time"]
    line = conf_line(found["fix"])
    assert line == "track_io_timing = on"
    before = append_conf(primary, line)
    try:
        primary.sql("SELECT pg_reload_conf()")  # as the fix says: no restart
        wait_for(lambda: primary.sql("SHOW track_io_timing")[0][0] == "on", timeout=10,
                 what="the reload")
        right = check(primary)
        assert right.status("postgres", "track_io_timing") == "ok", right.explain()
    finally:
        (Path(primary.datadir) / "postgresql.conf").write_text(before)
        primary.sql("SELECT pg_reload_conf()")


def test_pg_stat_statements_not_preloaded(primary: Cluster) -> None:
    primary.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        wrong = check(primary, statements=True)
        found = wrong.finding("postgres", "pg_stat_statements_preload")
        assert found["status"] == "missing", wrong.explain()
        assert wrong.status("postgres", "pg_stat_statements_extension") == "ok"
        line = conf_line(found["fix"])
        assert line == "shared_preload_libraries = 'pg_stat_statements'"
        assert "restart" in found["fix"]
        before = append_conf(primary, line)
        try:
            primary.stop()
            primary.start()  # as the fix says: a reload is not enough
            wait_ready(primary)
            right = check(primary, statements=True)
            assert right.status("postgres", "pg_stat_statements_preload") == "ok", \
                right.explain()
            assert right.code == 1  # track_io_timing is still off: only that
            assert {k[1] for k, f in right.findings.items() if f["status"] != "ok"} == {
                "track_io_timing"}, right.explain()
        finally:
            (Path(primary.datadir) / "postgresql.conf").write_text(before)
            primary.stop()
            primary.start()
            wait_ready(primary)
    finally:
        primary.sql("DROP EXTENSION IF EXISTS pg_stat_statements")


def test_preload_seen_without_pg_read_all_settings(primary: Cluster) -> None:
    """A role that may not read shared_preload_libraries: the extension itself tells."""
    primary.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        run = check(primary, new_role(primary), statements=True)
        found = run.finding("postgres", "pg_stat_statements_preload")
        assert found["status"] == "missing", run.explain()
        assert "not loaded" in found["detail"]
    finally:
        primary.sql("DROP EXTENSION IF EXISTS pg_stat_statements")


def test_extension_in_another_database(primary: Cluster) -> None:
    tag = uuid.uuid4().hex[:6]
    dsn_db, other = f"dsn_{tag}", f"app_{tag}"
    primary.sql(f"CREATE DATABASE {dsn_db}")
    primary.sql(f"CREATE DATABASE {other}")
    primary.sql("CREATE EXTENSION pg_stat_statements", dbname=other)
    wrong = check(primary, dbname=dsn_db, statements=True)
    found = wrong.finding("postgres", "pg_stat_statements_extension")
    assert found["status"] == "missing", wrong.explain()
    assert f"installed in database {other}, not in {dsn_db}" in found["detail"]
    assert f"-- in database {dsn_db} (the one postgres.dsn names)" in found["fix"]
    primary.sql(found["fix"], dbname=dsn_db)  # the fix as printed, where it says
    right = check(primary, dbname=dsn_db, statements=True)
    assert right.status("postgres", "pg_stat_statements_extension") == "ok", right.explain()
    # Without postgres.stat_statements neither check applies.
    off = check(primary, dbname=dsn_db)
    assert ("postgres", "pg_stat_statements_extension", "") not in off.findings


def test_standby_without_pg_read_all_stats(primary: Cluster, standby: Cluster) -> None:
    role = new_role(primary)
    wait_for(lambda: standby.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"),
             timeout=30, what="the role on the standby")
    wrong = check(standby, role)
    found = wrong.finding("postgres", "replica_pg_read_all_stats")
    assert found["status"] == "missing", wrong.explain()
    assert ("postgres", "pg_monitor", "") not in wrong.findings  # a standby's own check
    assert "standby" in found["detail"] and "on the primary" in found["fix"]
    primary.sql(found["fix"])  # on the primary, as the fix says
    wait_for(lambda: standby.sql(f"SELECT pg_has_role('{role}', 'pg_read_all_stats', "
                                 "'MEMBER')")[0][0], timeout=30, what="the grant replayed")
    right = check(standby, role)
    assert right.status("postgres", "replica_pg_read_all_stats") == "ok", right.explain()


def test_server_down_is_broken() -> None:
    """No server at all: the collect check is broken and names libpq's error."""
    cluster = Cluster.create()
    port = cluster.port
    cluster.destroy()
    run = run_check(["--no-collector.host"],
                    {"STACKMON_POSTGRES_DSN": f"host=127.0.0.1 port={port} user=postgres"})
    found = run.finding("postgres", "collect")
    assert run.code == 1 and found["status"] == "broken", run.explain()
    assert "refused" in found["detail"].lower()
