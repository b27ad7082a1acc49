"""Celery against a Redis this module owns: broker restart under the receiver, the
broker password from a file (never shown), and 20,000 tasks through a real worker
counted exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.celery import (
    RedisServer,
    Worker,
    client_app,
    own_redis,
    present,
    receiving_exporter,
    start_worker,
    total,
    value,
)
from tests.helpers.exporter import Exporter, Samples, wait_for

PASSWORD = "s3cr3t-Celery-pw"
LOAD_TASKS = 20_000


def succeeded(s: Samples, name: str = "stackmon.ok") -> float:
    return total(s, "celery_task_succeeded_total", name=name, queue_name="celery")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with own_redis(password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def exporter(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exporter]:
    password_file = Path(tmp_path_factory.mktemp("secret")) / "redis-password"
    password_file.write_text(PASSWORD + "\n")
    for exp in receiving_exporter({
        "STACKMON_CELERY_BROKER_URL": redis_server.url(with_password=False),
        "STACKMON_CELERY_BROKER_PASSWORD_FILE": str(password_file),
        "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": "30",
        "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "2",
    }, ("--log.level=debug",)):
        yield exp
        assert PASSWORD not in exp.logs()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, exporter: Exporter) -> Iterator[Worker]:
    w = start_worker(redis_server.url(), concurrency=2)
    try:
        wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=w.host) == 1,
                 timeout=40, what="worker-online event")
        yield w
    finally:
        w.kill()


@pytest.fixture(scope="module")
def app(redis_server: RedisServer) -> Any:
    return client_app(redis_server.url())


def test_password_from_file_works_and_is_never_shown(exporter: Exporter, worker: Worker
                                                     ) -> None:
    s = exporter.scrape()
    assert s.get("celery_broker_up") == 1
    assert PASSWORD not in s.text
    _, _, landing = exporter.get("/")
    assert PASSWORD.encode() not in landing
    assert PASSWORD not in exporter.logs()


def test_receiver_resumes_after_broker_restart(exporter: Exporter, worker: Worker,
                                               redis_server: RedisServer, app: Any) -> None:
    for _ in range(5):
        app.send_task("stackmon.sleep", args=(0,), queue="celery")
    wait_for(lambda: succeeded(exporter.scrape(), "stackmon.sleep") == 5, timeout=30,
             what="5 tasks before the restart")
    before = exporter.scrape().get("stackmon_celery_events_receiver_restarts_total")

    redis_server.stop()
    wait_for(lambda: exporter.scrape().get("stackmon_celery_events_receiver_up") == 0,
             timeout=15, what="receiver_up 0 while the broker is down")
    down = exporter.scrape()
    assert down.get("celery_broker_up") == 0
    assert down.get("stackmon_scrape_collector_success", collector="celery") == 0
    assert down.get("stackmon_service_up", service="celery") == 0
    # The event state is still served while the broker is away.
    assert succeeded(down, "stackmon.sleep") == 5

    redis_server.start()
    wait_for(lambda: exporter.scrape().get("stackmon_celery_events_receiver_up") == 1,
             timeout=60, what="receiver_up 1 after the broker came back")
    s = exporter.scrape()
    assert s.get("celery_broker_up") == 1
    assert s.get("stackmon_celery_events_receiver_restarts_total") > before
    assert "event receiver lost the broker" in exporter.logs()
    # The worker reconnects on its own; tasks sent now are counted.
    wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=worker.host) == 1,
             timeout=60, what="worker heartbeats after the restart")
    for _ in range(5):
        app.send_task("stackmon.sleep", args=(0,), queue="celery")
    wait_for(lambda: succeeded(exporter.scrape(), "stackmon.sleep") == 10, timeout=60,
             what="5 more tasks counted after the restart")


def test_lossless_under_load(exporter: Exporter, worker: Worker, app: Any) -> None:
    """20,000 tasks through the real worker: the succeeded counter equals 20,000 exactly."""
    assert not present(exporter.scrape(), "celery_task_succeeded_total",
                       {"name": "stackmon.ok"})

    def send(offset: int, count: int) -> None:
        with app.producer_or_acquire() as producer:
            for i in range(count):
                app.send_task("stackmon.ok", args=(offset + i,), queue="celery",
                              producer=producer)

    threads = [threading.Thread(target=send, args=(k * LOAD_TASKS // 2, LOAD_TASKS // 2))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        s = wait_for(lambda: (lambda s: s if succeeded(s) >= LOAD_TASKS else None)(
            exporter.scrape()), timeout=120, interval=0.5, what=f"{LOAD_TASKS} successes")
    except AssertionError:
        text = exporter.scrape().text
        raise AssertionError("\n".join(
            ln for ln in text.splitlines() if not ln.startswith("#") and "_bucket" not in ln
            and ("stackmon.ok" in ln or "stackmon_celery" in ln or "queue_length" in ln
                 or "worker" in ln)) + "\n" + worker.logs()[-3000:]) from None
    ok = {"name": "stackmon.ok", "queue_name": "celery"}
    assert succeeded(s) == LOAD_TASKS
    assert total(s, "celery_task_sent_total", ok) == LOAD_TASKS
    assert total(s, "celery_task_received_total", ok) == LOAD_TASKS
    assert total(s, "celery_task_started_total", ok) == LOAD_TASKS
    assert value(s, "celery_task_runtime_count", ok) == LOAD_TASKS
    assert value(s, "celery_task_queue_wait_time_count", ok) == LOAD_TASKS
    assert s.get("stackmon_celery_events_overflow_total", kind="tracked_task") == 0
