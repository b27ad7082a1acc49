"""PostgreSQL collector: config rules, version-dependent SQL, conversions, failure paths."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from exporter import cli, settings
from exporter.collectors.postgres import collector as pg
from exporter.collectors.postgres import pg_settings, pg_stat_bgwriter, pg_stat_database
from exporter.collectors.postgres.collector import PostgresCollector
from exporter.collectors.postgres.server import short_version
from exporter.collectors.postgres.view import ServerInfo
from exporter.metrics import Metric
from tests.helpers.exporter import REPO, free_port

SECRET = "S3cret-Pa55"


def load(env: dict[str, str], argv: list[str] | None = None) -> settings.Config:
    return cli.parse(argv or [], env)


def pg_collector(cfg: settings.Config) -> PostgresCollector:
    (collector,) = pg.build(cfg.postgres, cfg.scrape)
    assert isinstance(collector, PostgresCollector)
    return collector


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, cwd=REPO, env={"PATH": "/usr/bin:/bin",
                                                                **(env or {})})


def test_dsn_with_password_refused_on_command_line() -> None:
    for dsn in (f"postgresql://u:{SECRET}@127.0.0.1/db", f"host=h user=u password={SECRET}"):
        proc = run_cli([f"--postgres.dsn={dsn}"])
        assert proc.returncode == 2
        assert SECRET not in proc.stderr
        assert "--postgres.dsn" in proc.stderr and "command line" in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_dsn_without_password_allowed_on_command_line() -> None:
    cfg = load({}, ["--postgres.dsn=host=127.0.0.1 user=stackmon dbname=postgres"])
    assert cfg.postgres.dsn == "host=127.0.0.1 user=stackmon dbname=postgres"
    assert cfg.collectors["postgres"] is None


def test_dsn_password_from_env_is_registered_secret() -> None:
    cfg = load({"STACKMON_POSTGRES_DSN": f"postgresql://u:{SECRET}@127.0.0.1/db"})
    assert SECRET in cfg.secrets()


def test_password_file_secret_and_conflict(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET + "\n")
    cfg = load({"STACKMON_POSTGRES_DSN": "host=h user=u",
                "STACKMON_POSTGRES_PASSWORD_FILE": str(secret_file)})
    assert SECRET in cfg.secrets()
    with pytest.raises(settings.ConfigError) as err:
        load({"STACKMON_POSTGRES_DSN": f"host=h user=u password={SECRET}",
              "STACKMON_POSTGRES_PASSWORD_FILE": str(secret_file)})
    assert "postgres.password_file" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(settings.ConfigError) as err:
        load({"STACKMON_POSTGRES_DSN": "host=h", "STACKMON_POSTGRES_PASSWORD_FILE":
              str(tmp_path / "missing")})
    assert "not found" in str(err.value)


def test_unparsable_dsn_not_echoed() -> None:
    with pytest.raises(settings.ConfigError) as err:
        load({"STACKMON_POSTGRES_DSN": f"host=h password={SECRET} broken"})
    assert "postgres.dsn" in str(err.value) and SECRET not in str(err.value)


def test_targets_from_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text(f"""
postgres:
  targets:
    - name: a
      dsn: "postgresql://u:{SECRET}@h/db"
    - name: b
      dsn: "host=h2"
""")
    cfg = load({}, [f"--config.file={cfg_file}"])
    assert [t.name for t in cfg.postgres.targets] == ["a", "b"]
    assert SECRET in cfg.secrets()
    assert pg.build(cfg.postgres, cfg.scrape) == []  # no default DSN: /metrics has no postgres
    assert sorted(pg.probes(cfg.postgres, cfg.scrape)) == ["a", "b"]
    cfg_file.write_text("postgres:\n  targets:\n    - name: 'bad name/x'\n      dsn: h\n")
    with pytest.raises(settings.ConfigError):
        load({}, [f"--config.file={cfg_file}"])


def server_info(version: int = 150000, statements: tuple[str, str] | None = None,
                env: dict[str, str] | None = None) -> ServerInfo:
    cfg = load({"STACKMON_POSTGRES_DSN": "host=127.0.0.1", **(env or {})})
    return ServerInfo(version=version, server="127.0.0.1:5432", settings=cfg.postgres,
                      statements=statements)


def test_version_dependent_queries() -> None:
    assert "pg_stat_checkpointer" in pg_stat_bgwriter.bgwriter_sql(170000)
    assert "pg_stat_checkpointer" not in pg_stat_bgwriter.bgwriter_sql(160004)
    database = pg_stat_database.STAT_DATABASE_COLUMNS
    assert "session_time" in pg_stat_database.columns(database, 140000)
    assert "session_time" not in pg_stat_database.columns(database, 130010)
    assert "checksum_failures" not in pg_stat_database.columns(database, 110000)
    conflicts = pg_stat_database.CONFLICT_COLUMNS
    assert "confl_active_logicalslot" in pg_stat_database.columns(conflicts, 160000)
    env = {"STACKMON_POSTGRES_STAT_STATEMENTS_LIMIT": "5",
           "STACKMON_POSTGRES_SLOW_QUERY_THRESHOLD_SECONDS": "1.5"}
    new = pg.build_queries(server_info(statements=("public", "1.10"), env=env))
    old = pg.build_queries(server_info(statements=("public", "1.7"), env=env))
    assert "total_exec_time" in new[-1].sql and "LIMIT 5" in new[-1].sql
    assert "total_time" in old[-1].sql and "total_exec_time" not in old[-1].sql
    assert "secs => 1.5" in {q.name: q.sql for q in new}["slow"]
    names = [q.name for q in new]
    assert len(names) == len(set(names)), "prepared statement names must be unique"


def test_user_tables_limit_bounds_the_query_and_zero_turns_it_off() -> None:
    default = {q.name: q.sql for q in pg.build_queries(server_info())}
    assert "LIMIT 200" in default["user_tables"]
    limited = {q.name: q.sql for q in pg.build_queries(server_info(
        env={"STACKMON_POSTGRES_USER_TABLES_LIMIT": "7"}))}
    assert "LIMIT 7" in limited["user_tables"]
    off = {q.name for q in pg.build_queries(server_info(
        env={"STACKMON_POSTGRES_USER_TABLES_LIMIT": "0"}))}
    assert "user_tables" not in off and "database" in off
    with pytest.raises(settings.ConfigError) as err:
        load({"STACKMON_POSTGRES_USER_TABLES_LIMIT": "-1"})
    assert "postgres.user_tables_limit" in str(err.value)


def test_settings_units_and_versions() -> None:
    setting_metric = pg_settings.setting_metric
    assert setting_metric("shared_buffers", "16384", "8kB", "integer") == (
        "pg_settings_shared_buffers_bytes", 16384 * 8192.0)
    assert setting_metric("checkpoint_timeout", "300", "s", "integer") == (
        "pg_settings_checkpoint_timeout_seconds", 300.0)
    assert setting_metric("x", "-1", "ms", "integer") == ("pg_settings_x_seconds", -1.0)
    assert setting_metric("max_connections", "100", "", "integer") == (
        "pg_settings_max_connections", 100.0)
    assert setting_metric("fsync", "on", "", "bool") == ("pg_settings_fsync", 1.0)
    assert setting_metric("jit", "off", "", "bool") == ("pg_settings_jit", 0.0)
    assert setting_metric("log_file_mode", "0600", "", "integer") == (
        "pg_settings_log_file_mode", 600.0)
    assert setting_metric("pg_stat_statements.max", "5000", "", "integer") == (
        "pg_settings_pg_stat_statements_max", 5000.0)
    assert setting_metric("name", "abc", "", "string") is None
    assert setting_metric("x", "1", "parsecs", "integer") is None
    assert short_version(150020) == "15.20.0"
    assert short_version(90624) == "9.6.24"


def test_statement_timeout_setting_is_the_servers_not_ours() -> None:
    info = ServerInfo(version=150000, server="s:1", settings=server_info().settings,
                      statement_timeout="30000")
    rows = {"settings": [("statement_timeout", "10000", "ms", "integer")]}
    [family] = pg_settings.metrics(rows, info)
    assert family.name == "pg_settings_statement_timeout_seconds"
    assert family.samples[0].value == 30.0 and family.samples[0].labels == {"server": "s:1"}


def render(families: list[Metric]) -> str:
    class Families:
        def collect(self) -> list[Metric]:
            return families
    return generate_latest(Families()).decode()


def test_counters_keep_postgres_exporters_names_without_total() -> None:
    """prometheus_client writes a counter's TYPE as name_total; ours must match the samples."""
    rows = {"database": [("5", "app", *([1.0] * len(pg_stat_database.columns(
        pg_stat_database.STAT_DATABASE_COLUMNS, 150000))))]}
    text = render(pg_stat_database.metrics(rows, server_info()))
    assert "# TYPE pg_stat_database_xact_commit counter\n" in text
    assert 'pg_stat_database_xact_commit{datid="5",datname="app",server="127.0.0.1:5432"} 1.0' \
        in text
    assert "# TYPE pg_stat_database_active_time untyped\n" in text
    assert "# TYPE pg_stat_database_numbackends gauge\n" in text
    assert "_total" not in text
    bgwriter = render(pg_stat_bgwriter.metrics({"bgwriter": [tuple([2.0] * 11)]},
                                               server_info()))
    assert "# TYPE pg_stat_bgwriter_checkpoints_timed_total counter\n" in bgwriter
    assert "\npg_stat_bgwriter_checkpoints_timed_total{server=" in bgwriter


def test_null_statistics_are_nan_like_postgres_exporter() -> None:
    width = len(pg_stat_database.columns(pg_stat_database.STAT_DATABASE_COLUMNS, 150000))
    rows = {"database": [("0", "", *([None] * width))]}
    families = pg_stat_database.metrics(rows, server_info())
    assert all(math.isnan(f.samples[0].value) for f in families)
    assert families[0].samples[0].labels == {"datid": "0", "datname": "",
                                             "server": "127.0.0.1:5432"}


def test_failure_metrics_always_have_pg_up() -> None:
    cfg = load({"STACKMON_POSTGRES_DSN": "host=127.0.0.1"})
    names = {m.name: m.samples[0].value for m in pg_collector(cfg)
             .failure_metrics()}
    assert names == {"pg_up": 0.0, "stackmon_service_up": 0.0,
                     "pg_exporter_last_scrape_error": 1.0, "pg_exporter_scrapes": 0.0,
                     "pg_exporter_last_scrape_duration_seconds": 0.0}


def test_watchdog_unblocks_a_read_at_the_deadline() -> None:
    """A silent peer (a hung server): the blocked recv returns when the watchdog fires."""
    a, b = socket.socketpair()
    try:
        start = time.monotonic()
        with pg._Watchdog(a.fileno(), time.monotonic() + 0.3) as dog:
            data = a.recv(10)  # blocks until the shutdown
        assert data == b"" and dog.fired
        assert 0.25 < time.monotonic() - start < 3
    finally:
        a.close()
        b.close()


def test_watchdog_silent_when_done_in_time() -> None:
    a, b = socket.socketpair()
    try:
        with pg._Watchdog(a.fileno(), time.monotonic() + 0.2) as dog:
            b.send(b"x")
            assert a.recv(1) == b"x"
        time.sleep(0.4)  # past the deadline: nothing may fire after exit
        assert not dog.fired
        b.send(b"y")
        assert a.recv(1) == b"y"
    finally:
        a.close()
        b.close()


def test_silent_server_fails_within_deadline() -> None:
    """A port that accepts TCP but never answers: collect raises, bounded by the timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        cfg = load({"STACKMON_POSTGRES_DSN": f"host=127.0.0.1 port={port} sslmode=disable",
                    "STACKMON_POSTGRES_CONNECT_TIMEOUT_SECONDS": "2"})
        collector = pg_collector(cfg)
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="target default"):
            collector.collect(time.monotonic() + 1.0)
        assert time.monotonic() - start < 4  # libpq's minimum connect timeout is 2 s
    finally:
        stop.set()
        thread.join()
        server.close()
        for s in accepted:
            s.close()


def test_refused_port_fails_fast() -> None:
    cfg = load({"STACKMON_POSTGRES_DSN": f"host=127.0.0.1 port={free_port()}"})
    collector = pg_collector(cfg)
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        collector.collect(time.monotonic() + 5)
    assert time.monotonic() - start < 2.5  # vs the 5 s budget
