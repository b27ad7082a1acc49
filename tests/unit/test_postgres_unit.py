"""PostgreSQL collector: config rules, version-dependent SQL, conversions, failure paths."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exporter import cli, settings
from exporter.collectors.postgres import collector as pg
from exporter.collectors.postgres.collector import PostgresCollector
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


def test_version_dependent_queries() -> None:
    assert "pg_stat_checkpointer" in pg.bgwriter_sql(170000)
    assert "pg_stat_checkpointer" not in pg.bgwriter_sql(160004)
    assert "session_time" in pg.database_columns(140000)
    assert "session_time" not in pg.database_columns(130010)
    new = pg.build_parts(150000, 1.5, ("public", "1.10"), 5)
    old = pg.build_parts(150000, 1.5, ("public", "1.7"), 5)
    assert "total_exec_time" in new[-1].sql and "LIMIT 5" in new[-1].sql
    assert "total_time" in old[-1].sql and "total_exec_time" not in old[-1].sql
    assert "secs => 1.5" in new[3].sql


def test_settings_units_and_versions() -> None:
    assert pg.setting_metric("shared_buffers", "16384", "8kB", "integer") == (
        "pg_settings_shared_buffers_bytes", 16384 * 8192.0)
    assert pg.setting_metric("checkpoint_timeout", "300", "s", "integer") == (
        "pg_settings_checkpoint_timeout_seconds", 300.0)
    assert pg.setting_metric("x", "-1", "ms", "integer") == ("pg_settings_x_seconds", -1.0)
    assert pg.setting_metric("max_connections", "100", "", "integer") == (
        "pg_settings_max_connections", 100.0)
    assert pg.setting_metric("name", "abc", "", "string") is None
    assert pg.short_version(150020) == "15.20.0"
    assert pg.short_version(90624) == "9.6.24"


def test_failure_metrics_always_have_pg_up() -> None:
    cfg = load({"STACKMON_POSTGRES_DSN": "host=127.0.0.1"})
    names = {m.name: m.samples[0].value for m in pg_collector(cfg)
             .failure_metrics()}
    assert names == {"pg_up": 0.0, "stackmon_service_up": 0.0}


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
