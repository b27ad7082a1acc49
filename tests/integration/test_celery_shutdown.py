"""SIGTERM ends an exporter with the Celery collector in about a second, also while its
inspect thread waits for replies no worker sends (six broadcasts of
``inspect_timeout_seconds`` each): ``docker stop`` must not wait for them (found by
tests/installed/test_docker_backends.py: 6 s)."""

from __future__ import annotations

import signal
import time

import redis

from tests.helpers.exporter import start_exporter, wait_for


def test_sigterm_during_an_inspect_round_exits_quickly(broker_url: str) -> None:
    exp = start_exporter(["--no-collector.host"], {"STACKMON_CELERY_BROKER_URL": broker_url})
    try:
        def receiving() -> bool:
            return exp.scrape().get("stackmon_celery_events_receiver_up") == 1
        wait_for(receiving, timeout=20, what="the event receiver")
        # No worker answers: the first inspect round is still waiting for replies.
        assert exp.scrape().get("stackmon_celery_inspect_up") == 0
        start = time.monotonic()
        exp.proc.send_signal(signal.SIGTERM)
        code = exp.proc.wait(timeout=15)
        took = time.monotonic() - start
    finally:
        exp.stop()
        # The inspect broadcasts leave kombu keys in the broker's DB.
        client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()
    assert code == 0, exp.logs()
    assert took < 2, f"SIGTERM to exit took {took:.1f} s"
