"""Celery on Redis: a real worker, a known mix of tasks, exact counters and queue lengths.

Uses the shared Redis on its own DB (CELERY_REDIS_DB, flushed before and after).  Order
matters inside this module: the queues are filled while no worker runs, then a worker
drains them and runs the mix, then it is killed with SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.helpers.celery import (
    CELERY_REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    Worker,
    check_docs,
    client_app,
    present,
    receiving_exporter,
    start_worker,
    value,
    wait_or_dump,
    worker_box,
)
from tests.helpers.exporter import (
    Exporter,
    Samples,
    promtool_complaints,
    wait_for,
)

BROKER = f"redis://{REDIS_HOST}:{REDIS_PORT}/{CELERY_REDIS_DB}"
HEARTBEAT_TIMEOUT = 4.0
PURGE_AFTER = 8.0
N_OK, M_FAIL, K_RETRY, SLEEPS, SLEEP_SECONDS = 20, 3, 2, 3, 0.3
PILED_DEFAULT, PILED_PRIO = 5, (0, 5, 9)  # tasks sent while no worker runs
EXPORTER_ENV = {
    "STACKMON_CELERY_BROKER_URL": BROKER,
    "STACKMON_CELERY_QUEUES": "celery,prio",
    "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT),
    "STACKMON_CELERY_WORKER_PURGE_SECONDS": str(PURGE_AFTER),
    "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "1",
    # No worker answers in the first test: each broadcast waits this long, in the
    # background; scrapes must not.
    "STACKMON_CELERY_INSPECT_TIMEOUT_SECONDS": "2",
    "STACKMON_CELERY_RUNTIME_BUCKETS": "0.1,0.25,0.5,1",
}


def flush() -> None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=CELERY_REDIS_DB)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    flush()
    try:
        yield from receiving_exporter(EXPORTER_ENV)
    finally:
        flush()


@pytest.fixture(scope="module")
def app() -> Any:
    return client_app(BROKER)


@pytest.fixture(scope="module", name="worker_box")
def worker_box_fixture() -> Iterator[dict[str, Worker]]:
    yield from worker_box()


def count(s: Samples, kind: str, name: str, queue: str = "celery") -> float:
    return value(s, f"celery_task_{kind}_total", {"name": name, "queue_name": queue})


def test_queue_lengths_pile_up_while_no_worker_runs(exporter: Exporter, app: Any) -> None:
    for i in range(PILED_DEFAULT):
        app.send_task("stackmon.ok", args=(i,), queue="celery")
    for priority in PILED_PRIO:
        app.send_task("stackmon.ok", args=(priority,), queue="prio", priority=priority)

    def lengths() -> bool:
        s = exporter.scrape()
        return (s.get("celery_queue_length", queue_name="celery") == PILED_DEFAULT
                and s.get("celery_queue_length", queue_name="prio") == len(PILED_PRIO))

    wait_for(lengths, timeout=15, what="queue lengths to count the piled-up tasks")
    # The priority tasks really sit in kombu's priority sub-lists, not only in "prio".
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=CELERY_REDIS_DB)
    assert client.llen("prio") < len(PILED_PRIO)
    assert any(client.llen(f"prio\x06\x16{p}") for p in range(1, 10))
    s = exporter.scrape()
    assert s.get("celery_broker_up") == 1
    assert s.get("stackmon_service_up", service="celery") == 0  # broker up, but no worker
    # Inspect broadcasts (waiting 2 s each for absent workers) stay off the scrape path.
    durations = [exporter.scrape().get("stackmon_scrape_collector_duration_seconds",
                                       collector="celery") for _ in range(10)]
    assert max(durations) < 1.9, durations  # each broadcast waits 2 s
    assert count(s, "sent", "stackmon.ok", "prio") == len(PILED_PRIO)
    assert count(s, "received", "stackmon.ok", "prio") == 0


def test_known_mix_gives_exact_counters(exporter: Exporter, app: Any,
                                        worker_box: dict[str, Worker]) -> None:
    worker = worker_box["w"] = start_worker(BROKER, queues="celery,prio")
    wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=worker.hostname) == 1,
             timeout=40, what="worker-online event")
    # Revoke first (wait for the worker's reply), then send: the worker drops it on receipt.
    revoked_id = "stackmon-revoked-" + worker.hostname.partition("@")[0]
    replies = app.control.revoke(revoked_id, reply=True, timeout=10,
                                 destination=[worker.hostname])
    assert replies, "worker did not acknowledge the revoke"
    app.send_task("stackmon.ok", args=(0,), task_id=revoked_id, queue="celery")
    for i in range(N_OK):
        app.send_task("stackmon.ok", args=(i,), queue="celery")
    for _ in range(M_FAIL):
        app.send_task("stackmon.fail", queue="celery")
    for _ in range(K_RETRY):
        app.send_task("stackmon.retry_once", queue="celery")
    for _ in range(SLEEPS):
        app.send_task("stackmon.sleep", args=(SLEEP_SECONDS,), queue="celery")

    ok_total = PILED_DEFAULT + N_OK

    def done() -> Samples | None:
        s = exporter.scrape()
        if (present(s, "celery_task_succeeded_total", {"name": "stackmon.sleep"})
                and count(s, "succeeded", "stackmon.ok") == ok_total
                and count(s, "succeeded", "stackmon.ok", "prio") == len(PILED_PRIO)
                and count(s, "failed", "stackmon.fail") == M_FAIL
                and count(s, "succeeded", "stackmon.retry_once") == K_RETRY
                and count(s, "succeeded", "stackmon.sleep") == SLEEPS
                and count(s, "revoked", "stackmon.ok") == 1):
            return s
        return None

    s = wait_or_dump(exporter, done, worker, timeout=60, what="the task mix to finish")
    # ok: piled + sent now + the revoked one; every received one ran and succeeded.
    assert count(s, "sent", "stackmon.ok") == ok_total + 1
    assert count(s, "received", "stackmon.ok") == ok_total
    assert count(s, "started", "stackmon.ok") == ok_total
    assert count(s, "failed", "stackmon.ok") == 0
    assert count(s, "received", "stackmon.ok", "prio") == len(PILED_PRIO)
    # fail: no success; retry_once: each runs twice, retried once, re-sent by the worker.
    assert count(s, "succeeded", "stackmon.fail") == 0
    assert count(s, "started", "stackmon.fail") == M_FAIL
    assert count(s, "sent", "stackmon.retry_once") == 2 * K_RETRY
    assert count(s, "received", "stackmon.retry_once") == 2 * K_RETRY
    assert count(s, "started", "stackmon.retry_once") == 2 * K_RETRY
    assert count(s, "retried", "stackmon.retry_once") == K_RETRY
    assert count(s, "failed", "stackmon.retry_once") == 0
    assert count(s, "rejected", "stackmon.ok") == 0
    # Histograms: one runtime per success, one queue wait per start.
    rt = {"name": "stackmon.sleep", "queue_name": "celery"}
    assert value(s, "celery_task_runtime_seconds_count", rt) == SLEEPS
    total = value(s, "celery_task_runtime_seconds_sum", rt)
    assert SLEEPS * SLEEP_SECONDS <= total < SLEEPS * SLEEP_SECONDS + 0.25, total
    assert value(s, "celery_task_runtime_seconds_bucket", rt, le="0.25") == 0
    assert value(s, "celery_task_runtime_seconds_bucket", rt, le="0.5") == SLEEPS
    assert value(s, "celery_task_runtime_seconds_bucket", rt, le="+Inf") == SLEEPS
    ok_labels = {"name": "stackmon.ok", "queue_name": "celery"}
    assert value(s, "celery_task_runtime_seconds_count", ok_labels) == ok_total
    assert value(s, "celery_task_queue_wait_seconds_count", ok_labels) == ok_total
    assert value(s, "celery_task_queue_wait_seconds_count",
                 {"name": "stackmon.retry_once", "queue_name": "celery"}) == 2 * K_RETRY
    # Queues drained; worker state from heartbeats and from inspect.
    assert s.get("celery_queue_length", queue_name="celery") == 0
    assert s.get("celery_queue_length", queue_name="prio") == 0
    assert s.get("celery_workers") == 1

    def inspected() -> Samples | None:
        s = exporter.scrape()
        return s if s.has("celery_worker_pool_max_concurrency", hostname=worker.hostname) \
            else None

    s = wait_for(inspected, timeout=30, what="inspect data")
    assert s.get("celery_worker_pool_max_concurrency", hostname=worker.hostname) == 2
    assert s.get("celery_worker_pool_info", hostname=worker.hostname,
                 implementation="thread") == 1
    assert s.get("celery_worker_tasks_registered", hostname=worker.hostname) >= 4
    assert s.get("celery_worker_tasks_reserved", hostname=worker.hostname) == 0
    assert s.get("celery_worker_tasks_scheduled", hostname=worker.hostname) == 0
    assert s.get("stackmon_celery_inspect_up") == 1
    assert s.get("stackmon_celery_inspect_last_success_timestamp_seconds") > 0
    assert s.get("stackmon_service_info", service="celery", role="redis") == 1
    assert s.get("stackmon_celery_events_total") > 0
    assert s.get("stackmon_celery_events_last_timestamp_seconds") > 0
    assert promtool_complaints(s.text) == []
    check_docs(s)


def test_sigkilled_worker_goes_down_then_is_purged(exporter: Exporter,
                                                   worker_box: dict[str, Worker]) -> None:
    worker = worker_box["w"]
    assert exporter.scrape().get("celery_worker_up", hostname=worker.hostname) == 1
    assert exporter.scrape().get("stackmon_service_up", service="celery") == 1
    worker.kill()
    wait_for(lambda: exporter.scrape().get("celery_worker_up", hostname=worker.hostname) == 0,
             timeout=HEARTBEAT_TIMEOUT + 3, interval=0.2, what="celery_worker_up 0")
    assert exporter.scrape().get("celery_workers") == 0
    assert exporter.scrape().get("stackmon_service_up", service="celery") == 0
    wait_for(lambda: not exporter.scrape().has("celery_worker_up", hostname=worker.hostname),
             timeout=PURGE_AFTER + 3, interval=0.2, what="the dead worker's series to go")
