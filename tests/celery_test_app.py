"""The small Celery app the tests run real workers of (``celery -A tests.celery_test_app``).

The broker comes from ``CELERY_TEST_BROKER`` (tests/helpers/celery.py sets it to one of
the private test servers); events are on (``-E`` on the worker,
``task_send_sent_event`` here, so retries sent by the worker emit task-sent too).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

# No default broker: a worker must never fall back to a Redis on the machine's 6379.
app = Celery("stackmon_test", broker=os.environ.get("CELERY_TEST_BROKER", "memory://"))
app.conf.update(
    task_send_sent_event=True,
    worker_send_task_events=os.environ.get("CELERY_TEST_EVENTS", "1") == "1",
    # "0": the worker answers no broadcast (tests of `stackmon check`'s inspect check).
    worker_enable_remote_control=os.environ.get("CELERY_TEST_REMOTE_CONTROL", "1") == "1",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    task_create_missing_queues=True,
    broker_heartbeat=0,
)


@app.task(name="stackmon.ok")
def ok(x: int = 0) -> int:
    return x + 1


@app.task(name="stackmon.fail")
def fail() -> None:
    raise ValueError("planned failure")


@app.task(name="stackmon.retry_once", bind=True, max_retries=3)
def retry_once(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "done"


@app.task(name="stackmon.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
