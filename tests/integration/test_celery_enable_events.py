"""Workers started without task events: enable_events_at_start turns them on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.celery import RedisServer, client_app, own_redis, start_worker, total
from tests.helpers.exporter import Exporter, start_exporter, wait_for


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with own_redis() as server:
        yield server


@pytest.fixture(scope="module")
def exporter(redis_server: RedisServer) -> Iterator[Exporter]:
    exp = start_exporter(["--no-collector.host"], {
        "STACKMON_CELERY_BROKER_URL": redis_server.url(),
        "STACKMON_CELERY_ENABLE_EVENTS_AT_START": "true",
        "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "1",
    })
    try:
        yield exp
    finally:
        exp.stop()


def test_events_enabled_on_a_worker_started_without_them(exporter: Exporter,
                                                         redis_server: RedisServer) -> None:
    worker = start_worker(redis_server.url(), events=False)
    try:
        # Seen by inspect first (no task events yet), then enable_events reaches it.
        wait_for(lambda: exporter.scrape().has("celery_worker_pool_info",
                                               hostname=worker.host),
                 timeout=40, what="the worker in the inspect replies")
        app = client_app(redis_server.url())

        def counted() -> bool:
            app.send_task("stackmon.ok", args=(1,), queue="celery")
            s = exporter.scrape()
            return total(s, "celery_task_succeeded_total", name="stackmon.ok",
                         queue_name="celery") >= 1
        # A task sent before the worker enabled its events is not counted: keep sending
        # (bounded) until one is.
        wait_for(counted, timeout=30, interval=0.5, what="task events from the worker")
    finally:
        worker.kill()
