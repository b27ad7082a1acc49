"""Backend timeouts come from the scrape budget: against a backend that accepts the TCP
connection and then never answers, with a budget shorter than the configured timeouts,
each collector reports its own failure in time and is not still busy at the next scrape.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import Exporter, start_exporter

# Prometheus's header minus the default 0.5 s offset: 1.8 s, below libpq's 2 s minimum
# connect timeout and the 3 s default broker timeout.
SCRAPE_TIMEOUT_HEADER = {"X-Prometheus-Scrape-Timeout-Seconds": "2.3"}
SCRAPES = 3


@pytest.fixture()
def hung_port() -> Iterator[int]:
    """A listener that never accepts: the kernel completes the handshake, nobody reads."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def scrape_hung(exp: Exporter, collector: str) -> None:
    for i in range(SCRAPES):
        s = exp.scrape(headers=SCRAPE_TIMEOUT_HEADER)
        assert s.get("stackmon_scrape_collector_success", collector=collector) == 0
        # A collector still running from the previous scrape is skipped with duration 0.
        duration = s.get("stackmon_scrape_collector_duration_seconds", collector=collector)
        assert 0 < duration < 1.8, (i, duration)
    logs = exp.logs()
    assert "still running from an earlier scrape" not in logs, logs
    assert 'msg="deadline exceeded"' not in logs, logs
    assert "cause=timeout" in logs, logs


def test_postgres_connect_fits_a_short_budget(hung_port: int) -> None:
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_POSTGRES_DSN": f"postgresql://stackmon@127.0.0.1:{hung_port}/postgres"})
    try:
        scrape_hung(exp, "postgres")
        assert exp.scrape().get("pg_up") == 0
    finally:
        exp.stop()


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_celery_broker_fits_a_short_budget(hung_port: int, scheme: str) -> None:
    url = (f"redis://127.0.0.1:{hung_port}/0" if scheme == "redis"
           else f"amqp://stackmon@127.0.0.1:{hung_port}//")
    exp = start_exporter(["--no-collector.host"], env={"STACKMON_CELERY_BROKER_URL": url})
    try:
        scrape_hung(exp, "celery")
    finally:
        exp.stop()


def test_redis_fits_a_short_budget(hung_port: int) -> None:
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_REDIS_URL": f"redis://127.0.0.1:{hung_port}/0"})
    try:
        scrape_hung(exp, "redis")
        assert exp.scrape().get("redis_up") == 0
    finally:
        exp.stop()


def test_service_check_fits_a_short_budget(hung_port: int, tmp_path: Path) -> None:
    config = tmp_path / "stackmon.yml"
    config.write_text("services:\n  checks:\n"
                      f"    - {{name: hung, url: 'http://127.0.0.1:{hung_port}/',"
                      " timeout_seconds: 30}\n")
    exp = start_exporter(["--no-collector.host", f"--config.file={config}"])
    try:
        for i in range(SCRAPES):
            s = exp.scrape(headers=SCRAPE_TIMEOUT_HEADER)
            assert s.get("stackmon_service_up", service="hung") == 0
            # A check still running from the previous scrape exports no duration.
            assert s.has("stackmon_service_check_duration_seconds", service="hung"), i
    finally:
        exp.stop()
