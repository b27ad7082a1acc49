"""The demo's Celery app (``celery -A demo.celery_app:app worker -E``) and its tasks:
``demo.add`` succeeds, ``demo.fail`` raises, ``demo.flaky`` fails once and succeeds on
its retry. Task events are on, so stackmon's Celery collector sees every state."""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery

app = Celery("demo", broker=os.environ.get("DEMO_BROKER_URL", ""))
app.conf.update(
    task_send_sent_event=True,      # task-sent events: queue wait and the queue label
    worker_send_task_events=True,   # like `worker -E`
    task_ignore_result=True,        # no result backend needed
    broker_connection_retry_on_startup=True,
    task_default_queue="celery",
)


class DemoError(RuntimeError):
    """What demo.fail raises (its class name is the `exception` label of failures)."""


@app.task(name="demo.add")  # type: ignore[untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="demo.fail")  # type: ignore[untyped-decorator]
def fail() -> None:
    raise DemoError("demo task failed on purpose")


@app.task(name="demo.flaky", bind=True, max_retries=3)  # type: ignore[untyped-decorator]
def flaky(self: Any, key: str) -> str:
    """Fails on its first run (remembered in Redis, so any worker sees it), then succeeds."""
    client = redis.Redis.from_url(os.environ["DEMO_REDIS_URL"])
    try:
        first = client.set(f"demo:flaky:{key}", 1, nx=True, ex=600)
    finally:
        client.close()
    if first:
        raise self.retry(countdown=0.5, exc=DemoError("first attempt fails"))
    return key
