"""Password files are read at every (re)connect, for every backend: after the password
changes on the server and in the file, the next connection logs in without a restart.
(PostgreSQL's is covered by its own password_file tests; it builds the conninfo per connect.)"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.collectors.base import Collector
from exporter.collectors.celery.collector import CeleryCollector
from exporter.collectors.celery.settings import CelerySettings
from exporter.collectors.redis.collector import RedisCollector
from exporter.collectors.redis.settings import RedisSettings
from exporter.metrics import Metric
from tests.helpers.redis_server import RedisServer, redis_server


@pytest.fixture()
def server() -> Iterator[RedisServer]:
    with redis_server("--requirepass", "first-password") as srv:
        yield srv


def value(metrics: list[Metric], name: str) -> float:
    return next(s.value for m in metrics for s in m.samples if s.name == name)


def collect_after_reconnect(collector: Collector) -> list[Metric]:
    """The first collect may meet the connection the server dropped; the second
    reconnects (and reads the password file again)."""
    with contextlib.suppress(Exception):  # the dropped connection
        collector.collect(time.monotonic() + 10)
    return collector.collect(time.monotonic() + 10)


def rotate(server: RedisServer, password_file: Path) -> None:
    """New password on the server and in the file; existing connections are dropped."""
    admin = server.client(password="first-password")
    admin.config_set("requirepass", "second-password")
    password_file.write_text("second-password\n")
    admin.client_kill_filter(_type="normal", skipme=True)
    admin.close()


def test_redis_reads_the_password_file_at_reconnect(server: RedisServer, tmp_path: Path
                                                    ) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("first-password\n")
    collector = RedisCollector.from_settings(
        RedisSettings(url=server.url, password_file=str(password_file)))
    try:
        collector.collect(time.monotonic() + 10)
        rotate(server, password_file)
        assert value(collect_after_reconnect(collector), "redis_up") == 1
    finally:
        collector.close()


def test_celery_reads_the_password_file_at_reconnect(server: RedisServer, tmp_path: Path
                                                     ) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("first-password\n")
    settings = CelerySettings(broker_url=server.url + "/0", broker_password_file=str(password_file),
                              inspect_interval_seconds=0)
    collector = CeleryCollector(settings, start=False)
    try:
        assert value(collector.collect(time.monotonic() + 10), "celery_broker_up") == 1
        rotate(server, password_file)
        assert value(collect_after_reconnect(collector), "celery_broker_up") == 1
    finally:
        collector.close()
