"""PostgreSQL collector against clusters the fixtures own: a primary (initdb) and a real
streaming standby (pg_basebackup), both on free loopback ports.

One exporter serves the primary on /metrics and named targets on /probe: the standby,
a pg_monitor-only role, a role without pg_monitor (and one view revoked), a wrong
password and a right one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import Exporter, Samples, promtool_complaints, start_exporter, wait_for
from tests.helpers.openmetrics import scrape_openmetrics, strict_families
from tests.helpers.pgcluster import Cluster, scrape_with_replay_lag, wait_streaming
from tests.integration.test_postgres import SINCE_16, SINCE_18, documented_names, emitted_names

RIGHT_PASSWORD = "Right-Secret-4711"
WRONG_PASSWORD = "Wrong-Secret-0815"
STANDBY_NAME = "stackmon_standby"
SLOT = "stackmon_slot"
KNOWN_QUERY = "SELECT count(*) FROM generate_series(1, 300000)"


@pytest.fixture(scope="module")
def primary() -> Iterator[Cluster]:
    cluster = Cluster.create(
        ["-c shared_preload_libraries=pg_stat_statements", "-c autovacuum=off"],
        hba_lines=["host all stackmon_pw 127.0.0.1/32 scram-sha-256"])
    try:
        for sql in (
            "CREATE EXTENSION pg_stat_statements",
            "CREATE ROLE stackmon_mon LOGIN",
            "GRANT pg_monitor TO stackmon_mon",
            "CREATE ROLE stackmon_plain LOGIN",
            f"CREATE ROLE stackmon_pw LOGIN PASSWORD '{RIGHT_PASSWORD}'",
            # The plain role loses one view entirely; pg_monitor keeps it.
            "REVOKE SELECT ON pg_stat_replication FROM PUBLIC",
            "GRANT SELECT ON pg_stat_replication TO pg_monitor",
            "CREATE DATABASE stackmon_d1",
        ):
            cluster.sql(sql)
        for sql in ("CREATE TABLE a (x int)", "CREATE TABLE b (x int) PARTITION BY RANGE (x)",
                    "CREATE TABLE b1 PARTITION OF b FOR VALUES FROM (0) TO (10)",
                    "CREATE INDEX a_x ON a (x)", "CREATE SEQUENCE s"):
            cluster.sql(sql, dbname="stackmon_d1")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def standby(primary: Cluster) -> Iterator[Cluster]:
    cluster = primary.standby(SLOT, STANDBY_NAME)
    try:
        wait_streaming(primary)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def exporter(primary: Cluster, standby: Cluster, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("pgcfg")
    wrong = tmp / "wrong-password"
    wrong.write_text(WRONG_PASSWORD + "\n")
    base = "host=127.0.0.1 port={port} dbname=postgres user={user}"
    config = tmp / "stackmon.yml"
    config.write_text(f"""
postgres:
  dsn: "{base.format(port=primary.port, user='postgres')}"
  stat_statements: true
  stat_statements_limit: 3
  table_count_discover_max: 5
  targets:
    - name: standby
      dsn: "{base.format(port=standby.port, user='postgres')}"
    - name: monitor
      dsn: "{base.format(port=primary.port, user='stackmon_mon')}"
    - name: limited
      dsn: "{base.format(port=primary.port, user='stackmon_plain')}"
    - name: badpw
      dsn: "{base.format(port=primary.port, user='stackmon_pw')}"
      password_file: "{wrong}"
    - name: goodpw
      dsn: "postgresql://stackmon_pw:{RIGHT_PASSWORD}@127.0.0.1:{primary.port}/postgres"
""")
    exp = start_exporter(["--no-collector.host", f"--config.file={config}"])
    try:
        yield exp
    finally:
        exp.stop()


def probe(exp: Exporter, target: str) -> Samples:
    return exp.scrape(f"/probe?target={target}")


def test_primary_sees_standby_and_slot(exporter: Exporter, primary: Cluster) -> None:
    s = scrape_with_replay_lag(exporter, primary, STANDBY_NAME)
    labels = {"application_name": STANDBY_NAME, "client_addr": "127.0.0.1",
              "state": "streaming"}
    assert s.get("pg_stat_replication_lag_bytes", **labels) >= 0
    assert s.get("pg_stat_replication_replay_lag_seconds", **labels) >= 0
    assert s.get("pg_replication_slot_active", slot_name=SLOT, slot_type="physical") == 1
    assert s.get("pg_replication_slot_retained_wal_bytes", slot_name=SLOT) >= 0
    assert s.get("pg_replication_is_replica") == 0
    assert s.get("stackmon_service_info", service="postgres", role="primary") == 1
    # Once the standby has replayed everything, the byte lag is exactly 0.
    wait_for(lambda: exporter.scrape().get("pg_stat_replication_lag_bytes", **labels) == 0,
             timeout=30, what="the standby to catch up")


def test_standby_reports_replica(exporter: Exporter) -> None:
    s = probe(exporter, "standby")
    assert s.get("pg_up") == 1
    assert s.get("pg_replication_is_replica") == 1
    assert s.get("pg_replication_lag_seconds") >= 0
    assert s.get("stackmon_service_info", service="postgres", role="replica") == 1
    assert not s.has("pg_stat_replication_lag_bytes")


def test_stat_statements_top_n(exporter: Exporter, primary: Cluster) -> None:
    with primary.connect() as conn:
        for _ in range(7):
            conn.execute(KNOWN_QUERY)
    rows = primary.sql("SELECT queryid::text FROM pg_stat_statements "
                       "WHERE query LIKE 'SELECT count(*) FROM generate_series%'")
    assert len(rows) == 1
    queryid = rows[0][0]

    def counted() -> Samples | None:
        s = exporter.scrape()
        return s if s.has("pg_stat_statements_calls_total", queryid=queryid) else None
    s = wait_for(counted, timeout=15, what="the known query in pg_stat_statements")
    assert s.get("pg_stat_statements_calls_total", queryid=queryid, user="postgres",
                 datname="postgres") == 7
    assert s.get("pg_stat_statements_rows_total", queryid=queryid) == 7
    assert s.get("pg_stat_statements_seconds_total", queryid=queryid) > 0
    assert len(s.samples["pg_stat_statements_calls_total"]) <= 3
    assert "generate_series" not in s.text  # never the query text


def test_pg_monitor_role_sees_everything(exporter: Exporter) -> None:
    s = probe(exporter, "monitor")
    assert s.get("pg_up") == 1
    assert s.has("pg_stat_replication_lag_bytes", application_name=STANDBY_NAME)
    assert s.has("pg_database_size_bytes", datname="template0")
    assert s.get("pg_stat_bgwriter_checkpoints_timed_total") >= 0
    logs = exporter.logs()
    assert "target=monitor msg=\"cannot query" not in logs
    assert "target=monitor msg=\"the role is not a member" not in logs


def test_role_without_pg_monitor_exports_what_it_can(exporter: Exporter) -> None:
    for _ in range(3):
        s = probe(exporter, "limited")
        assert s.get("pg_up") == 1
        assert s.has("pg_stat_database_xact_commit", datname="postgres")
        assert s.has("pg_stat_activity_count", datname="postgres", state="active")
        assert not s.has("pg_stat_replication_lag_bytes")  # view revoked
    logs = exporter.logs()
    assert logs.count('target=limited msg="cannot query replication; its metrics are left '
                      'out (grant pg_monitor to the role)" sqlstate=42501') == 1
    assert logs.count('target=limited msg="the role is not a member') == 1


def test_wrong_password(exporter: Exporter) -> None:
    status, _, body = exporter.get("/probe?target=badpw")
    assert status == 200
    s = Samples.parse(body.decode())
    assert s.get("pg_up") == 0
    assert s.get("stackmon_service_up", service="postgres") == 0
    logs = wait_for(lambda: exporter.logs() if "password authentication failed" in
                    exporter.logs() else None, timeout=10, what="the auth failure log line")
    line = next(x for x in logs.splitlines() if "password authentication failed" in x)
    assert 'collector=postgres msg="collect failed"' in line
    assert 'user \\"stackmon_pw\\"' in line  # quotes escaped: one logfmt value
    assert "cause=access_refused" in line
    assert "target badpw:" in line


def test_right_password_and_no_secret_anywhere(exporter: Exporter) -> None:
    assert probe(exporter, "goodpw").get("pg_up") == 1
    exporter.get("/probe?target=badpw")
    texts = [exporter.logs(), exporter.get("/")[2].decode(), exporter.get("/metrics")[2].decode(),
             exporter.get("/probe?target=goodpw")[2].decode()]
    for text in texts:
        assert RIGHT_PASSWORD not in text
        assert WRONG_PASSWORD not in text


def test_discovered_databases_table_counts(exporter: Exporter) -> None:
    s = exporter.scrape()
    assert s.get("pg_database_user_tables", datname="stackmon_d1") == 3  # a, b, b1
    assert s.get("pg_database_user_tables", datname="postgres") >= 0
    assert not s.has("pg_database_user_tables", datname="template1")


def test_database_sizes_refresh_at_most_every_interval(exporter: Exporter,
                                                        primary: Cluster) -> None:
    """Default database_size_refresh_seconds (60): growth shows up only after it."""
    before = exporter.scrape().get("pg_database_size_bytes", datname="postgres")
    primary.sql("CREATE TABLE grow AS SELECT g, repeat('x', 200) AS pad "
                "FROM generate_series(1, 20000) g")
    try:
        real = primary.sql("SELECT pg_database_size('postgres')")[0][0]
        assert real > before + 4_000_000
        assert exporter.scrape().get("pg_database_size_bytes", datname="postgres") == before
    finally:
        primary.sql("DROP TABLE grow")


def test_settings_follow_a_configuration_reload(exporter: Exporter, primary: Cluster) -> None:
    """Settings are cached until pg_conf_load_time() moves: a reload must show at once."""
    before = exporter.scrape().get("pg_settings_work_mem_bytes")
    primary.sql("ALTER SYSTEM SET work_mem = '7MB'")
    primary.sql("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: exporter.scrape().get("pg_settings_work_mem_bytes") == 7 * 2**20,
                 timeout=20, what="the reloaded work_mem")
    finally:
        primary.sql("ALTER SYSTEM RESET work_mem")
        primary.sql("SELECT pg_reload_conf()")
    wait_for(lambda: exporter.scrape().get("pg_settings_work_mem_bytes") == before,
             timeout=20, what="work_mem back to its value")


def test_docs_match_a_full_scrape(exporter: Exporter, primary: Cluster) -> None:
    primary.sql("CREATE TABLE IF NOT EXISTS stackmon_docs_t (id int)")  # pg_stat_user_tables
    # The lag columns are NULL again soon after the standby catches up: use the scrape
    # that saw them.
    lagging = scrape_with_replay_lag(exporter, primary, STANDBY_NAME)
    emitted = emitted_names(lagging, probe(exporter, "standby"))
    major = int(primary.sql("SHOW server_version_num")[0][0]) // 10000
    listed = documented_names() - (set() if major >= 16 else SINCE_16) - SINCE_18
    assert listed - emitted == set(), "documented but never emitted"
    assert emitted - listed == set(), "emitted but not documented"


def test_promtool_full_scrape(exporter: Exporter) -> None:
    for path in ("/metrics", "/probe?target=standby"):
        status, _, body = exporter.get(path)
        assert status == 200
        assert promtool_complaints(body.decode()) == []


def test_every_body_is_strict_openmetrics(exporter: Exporter) -> None:
    """Replication, pg_stat_statements, partial permissions, failed logins: still valid."""
    for target in ("", "standby", "monitor", "limited", "badpw", "goodpw"):
        path = f"/probe?target={target}" if target else "/metrics"
        strict_families(scrape_openmetrics(exporter, path, gzipped=bool(target)))


def test_docs_config_keys_match_schema() -> None:
    import dataclasses

    from exporter.collectors.postgres.settings import PostgresSettings, PostgresTarget
    text = Path(__file__).resolve().parents[2].joinpath("docs/postgres.md").read_text()
    documented = set(re.findall(r"^\| `postgres\.([a-z_]+)` \|", text, re.M))
    assert documented == {f.name for f in dataclasses.fields(PostgresSettings)}
    assert {f.name for f in dataclasses.fields(PostgresTarget)} == {"name", "dsn",
                                                                    "password_file"}
