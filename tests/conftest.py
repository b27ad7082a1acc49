"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.exporter import Exporter, exporter_fixture
from tests.helpers.services import (
    Nginx,
    TargetServer,
    self_signed_cert,
    tls_server_context,
)

PG_DSN = os.environ.get("STACKMON_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STACKMON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("STACKMON_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture(scope="session")
def host_exporter() -> Iterator[Exporter]:
    """A real stackmon process with the default (host-only) collectors."""
    yield from exporter_fixture([])


@pytest.fixture(scope="session")
def full_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """Every collector on, against the shared PostgreSQL, Redis and broker, and one check
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
        "    - {name: postgres-port, type: tcp, address: '127.0.0.1:5432'}\n"
        f"    - {{name: web, url: '{https.url('/ok')}', tls_verify: false}}\n"
        f"    - {{name: nginx, type: nginx, url: '{nginx.url('/stub_status')}'}}\n")
    env = {"STACKMON_POSTGRES_DSN": PG_DSN, "STACKMON_REDIS_URL": REDIS_URL,
           "STACKMON_CELERY_BROKER_URL": BROKER_URL}
    try:
        yield from exporter_fixture([f"--config.file={config}"], env)
    finally:
        # The Celery collector's inspect broadcasts leave kombu keys in its broker DB.
        client = redis.Redis.from_url(BROKER_URL)
        client.flushdb()
        client.close()
        nginx.stop()
        https.stop()
