"""Celery on RabbitMQ (a vhost of our own): queue length and consumers from a passive
queue_declare while no worker runs, then a real worker and exact counters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.celery import (
    Worker,
    check_docs,
    client_app,
    rabbit_vhost,
    receiving_exporter,
    start_worker,
    value,
    wait_or_dump,
    worker_box,
)
from tests.helpers.exporter import Exporter, Samples, promtool_complaints, wait_for

N_OK, M_FAIL, K_RETRY, SLEEPS, SLEEP_SECONDS, PILED = 10, 2, 2, 2, 0.3, 4


@pytest.fixture(scope="module")
def broker(amqp_url: str) -> Iterator[str]:
    with rabbit_vhost() as url:
        yield url


@pytest.fixture(scope="module")
def exporter(broker: str) -> Iterator[Exporter]:
    for exp in receiving_exporter({
        "STACKMON_CELERY_BROKER_URL": broker,
        "STACKMON_CELERY_QUEUES": "celery,absent",
        "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": "4",
        "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "1",
    }):
        yield exp
        assert "guest:guest" not in exp.logs()


@pytest.fixture(scope="module")
def app(broker: str) -> Any:
    return client_app(broker)


@pytest.fixture(scope="module", name="worker_box")
def worker_box_fixture() -> Iterator[dict[str, Worker]]:
    yield from worker_box()


def count(s: Samples, kind: str, name: str) -> float:
    return value(s, f"celery_task_{kind}_total", name=name, queue_name="celery")


def test_queue_length_and_consumers_without_worker(exporter: Exporter, app: Any) -> None:
    for i in range(PILED):
        app.send_task("stackmon.ok", args=(i,), queue="celery")
    wait_for(lambda: exporter.scrape().get("celery_queue_length", queue_name="celery")
             == PILED, timeout=15, what="queue length from queue_declare")
    s = exporter.scrape()
    assert s.get("celery_queue_active_consumers", queue_name="celery") == 0
    assert s.get("celery_queue_length", queue_name="absent") == 0  # no such queue
    assert s.get("celery_broker_up") == 1
    assert s.get("stackmon_service_info", service="celery", role="amqp") == 1


def test_known_mix_on_rabbitmq(exporter: Exporter, app: Any, broker: str,
                               worker_box: dict[str, Worker]) -> None:
    worker = worker_box["w"] = start_worker(broker)
    wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=worker.hostname) == 1,
             timeout=40, what="worker-online event")
    revoked_id = "stackmon-revoked-" + worker.hostname.partition("@")[0]
    assert app.control.revoke(revoked_id, reply=True, timeout=10,
                              destination=[worker.hostname])
    app.send_task("stackmon.ok", args=(0,), task_id=revoked_id, queue="celery")
    for i in range(N_OK):
        app.send_task("stackmon.ok", args=(i,), queue="celery")
    for _ in range(M_FAIL):
        app.send_task("stackmon.fail", queue="celery")
    for _ in range(K_RETRY):
        app.send_task("stackmon.retry_once", queue="celery")
    for _ in range(SLEEPS):
        app.send_task("stackmon.sleep", args=(SLEEP_SECONDS,), queue="celery")

    def done() -> Samples | None:
        s = exporter.scrape()
        try:
            finished = (count(s, "succeeded", "stackmon.ok") == N_OK + PILED
                        and count(s, "failed", "stackmon.fail") == M_FAIL
                        and count(s, "succeeded", "stackmon.retry_once") == K_RETRY
                        and count(s, "succeeded", "stackmon.sleep") == SLEEPS
                        and count(s, "revoked", "stackmon.ok") == 1)
        except KeyError:
            return None
        return s if finished else None

    s = wait_or_dump(exporter, done, worker, timeout=60, what="the task mix to finish")
    assert count(s, "sent", "stackmon.ok") == N_OK + PILED + 1
    assert count(s, "received", "stackmon.ok") == N_OK + PILED
    assert count(s, "started", "stackmon.fail") == M_FAIL
    assert count(s, "retried", "stackmon.retry_once") == K_RETRY
    assert count(s, "started", "stackmon.retry_once") == 2 * K_RETRY
    rt = {"name": "stackmon.sleep", "queue_name": "celery"}
    assert value(s, "celery_task_runtime_seconds_count", rt) == SLEEPS
    total = value(s, "celery_task_runtime_seconds_sum", rt)
    assert SLEEPS * SLEEP_SECONDS <= total < SLEEPS * SLEEP_SECONDS + 0.25, total
    assert s.get("celery_queue_length", queue_name="celery") == 0
    wait_for(lambda: exporter.scrape().get("celery_queue_active_consumers",
                                           queue_name="celery") >= 1,
             timeout=15, what="the worker as a consumer")
    assert promtool_complaints(s.text) == []
    check_docs(exporter.scrape())


def test_sigkilled_worker_goes_down(exporter: Exporter, worker_box: dict[str, Worker]) -> None:
    worker = worker_box["w"]
    worker.kill()
    wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=worker.hostname) == 0,
             timeout=7, interval=0.2, what="celery_worker_up 0")
