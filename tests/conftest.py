"""Fixtures shared by every test directory, and the suite's own servers.

Tests never touch the machine's PostgreSQL, Redis or RabbitMQ: the session starts private
ones on free loopback ports (tests/helpers/backends.py) in parallel once collection shows
that a test outside tests/unit runs, and stops them at the end (also on Ctrl-C or a
failure). Use the fixtures ``pg_dsn``, ``redis_url``, ``broker_url`` and ``amqp_url``;
the constants ``PG_DSN``, ``REDIS_URL`` and ``BROKER_URL`` below are the same addresses
for module-level code. A guard (tests/helpers/guard.py) fails the run if any process of
the suite connects to the machine's servers on their default ports.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers import backends, guard, logfmt
from tests.helpers.backends import AMQP_URL, BROKER_URL, PG_DSN, PG_PORT, REDIS_URL
from tests.helpers.exporter import LOG_FILES, Exporter, exporter_fixture
from tests.helpers.services import (
    Nginx,
    TargetServer,
    self_signed_cert,
    tls_server_context,
)

__all__ = ["AMQP_URL", "BROKER_URL", "PG_DSN", "REDIS_URL"]

UNIT_DIR = Path(__file__).parent / "unit"
_GUARD: dict[str, Any] = {}


def _needs_servers(item: pytest.Item) -> bool:
    return UNIT_DIR not in item.path.parents


def _sigterm(signum: int, frame: Any) -> None:
    # Like Ctrl-C: pytest unwinds, session fixtures and sessionfinish stop our servers.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter reads the option
def pytest_configure(config: pytest.Config) -> None:
    # `scripts/test.sh -rs` (to see skip reasons) replaces the configured -ra: failures and
    # errors are still listed in the summary.
    chars = config.option.reportchars
    if "a" not in chars and "A" not in chars:
        config.option.reportchars = chars + "".join(c for c in "fE" if c not in chars)
    if not hasattr(config, "workerinput"):
        signal.signal(signal.SIGTERM, _sigterm)
    atexit.register(backends.stop_all)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("STACKMON_TEST_GUARD", "on") == "off":
        return
    _GUARD["before"] = guard.snapshot()
    guard.settle()
    _GUARD["watcher"] = guard.Watcher().start()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the servers the collected tests need, all at once, in the background."""
    if any(_needs_servers(item) for item in items):
        backends.start("postgres", "redis")
    if any("amqp_url" in getattr(item, "fixturenames", ()) for item in items):
        backends.start("rabbitmq")


@pytest.hookimpl(trylast=True)  # after the session fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _GUARD["started"] = backends.start_times()
    backends.stop_all()
    _check_logs(session)
    watcher = _GUARD.get("watcher")
    if watcher is None:
        return
    hits = watcher.stop()
    after = guard.snapshot()
    lines = guard.compare(_GUARD["before"], after)
    changed = any(line.endswith("CHANGED") for line in lines)
    ports = "/".join(str(p) for p in guard.DEFAULT_PORTS)
    if hits:
        lines.insert(0, f"guard: FAILED: the suite connected to the machine's servers "
                        f"(127.0.0.1:{ports} or their default Unix sockets):")
        lines[1:1] = [f"  pid {h.pid} -> {f'port {h.port}' if h.port else 'a Unix socket'}: "
                      f"{h.cmdline}" for h in hits]
    else:
        lines.insert(0, f"guard: no connection from the suite to 127.0.0.1:{ports} or the "
                        "default Unix sockets")
    strict = os.environ.get("STACKMON_TEST_GUARD") == "strict"
    if hits or (changed and strict):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _GUARD["report"] = lines


def _check_logs(session: pytest.Session) -> None:
    """Every line every exporter of the session wrote is one strict logfmt record."""
    if not LOG_FILES:
        return
    total, bad = logfmt.check_files(LOG_FILES)
    if bad:
        _GUARD["logfmt"] = [f"logfmt: FAILED: {len(bad)} of {total} exporter log lines are "
                            "not one strict logfmt record:", *bad[:30]]
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        _GUARD["logfmt"] = [f"logfmt: all {total} lines of {len(LOG_FILES)} exporter logs "
                            "are strict logfmt records"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _GUARD.get("logfmt", []):
        terminalreporter.write_line(line, red="FAILED" in line)
    if _GUARD.get("started"):
        terminalreporter.write_line(f"private servers started in parallel: {_GUARD['started']}")
    for line in _GUARD.get("report", []):
        terminalreporter.write_line(line, red="FAILED" in line or "CHANGED" in line)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Outside tests/unit, the private PostgreSQL and Redis are up before any fixture of
    a test is set up (module constants like PG_DSN work without asking for a fixture)."""
    if _needs_servers(item):
        backends.pg()
        backends.redis()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The private PostgreSQL as superuser ``postgres`` (trust on loopback)::

        postgresql://postgres@127.0.0.1:23817/postgres
    """
    backends.pg()
    return PG_DSN


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The private Redis, DB 0 (tests that need more pick other DBs of it)."""
    backends.redis()
    return REDIS_URL


@pytest.fixture(scope="session")
def broker_url() -> str:
    """A Celery broker URL on the private Redis (DB 11)."""
    backends.redis()
    return BROKER_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The private RabbitMQ node's default vhost as guest (started on first use)::

        amqp://guest:guest@127.0.0.1:26311//
    """
    backends.rabbitmq()
    return AMQP_URL


@pytest.fixture(scope="session")
def host_exporter() -> Iterator[Exporter]:
    """A real stackmon process with the default (host-only) collectors."""
    yield from exporter_fixture([])


@pytest.fixture(scope="session")
def full_exporter(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, redis_url: str,
                  broker_url: str) -> Iterator[Exporter]:
    """Every collector on, against the private PostgreSQL, Redis and broker, and one check
    of each type: tcp, https (a self-signed test server) and nginx stub_status."""
    tmp = tmp_path_factory.mktemp("full")
    cert, key, _ = self_signed_cert(tmp, 30)
    https = TargetServer(tls=tls_server_context(cert, key))
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    nginx = Nginx(nginx_dir).start()
    config: Path = tmp / "stackmon.yml"
    config.write_text(
        "services:\n  checks:\n"
        f"    - {{name: postgres-port, type: tcp, address: '127.0.0.1:{PG_PORT}'}}\n"
        f"    - {{name: web, url: '{https.url('/ok')}', tls_verify: false}}\n"
        f"    - {{name: nginx, type: nginx, url: '{nginx.url('/stub_status')}'}}\n")
    env = {"STACKMON_POSTGRES_DSN": pg_dsn, "STACKMON_REDIS_URL": redis_url,
           "STACKMON_CELERY_BROKER_URL": broker_url}
    try:
        yield from exporter_fixture([f"--config.file={config}"], env)
    finally:
        # The Celery collector's inspect broadcasts leave kombu keys in its broker DB.
        client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()
        nginx.stop()
        https.stop()
