"""The Celery app of the bench's real workers (``celery -A bench.celery_app worker``).

100 trivial tasks ``bench.task0`` .. ``bench.task99``, as many names as the simulated
"100 task names" series of ``bench.scale celery-workers``. The broker comes from
``BENCH_CELERY_BROKER`` (the bench's private redis-server); there is no default, so a
worker never falls back to a Redis on the machine's 6379.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

TASK_NAMES = 100


def make_app(broker: str) -> Any:
    """A Celery app on ``broker`` with the bench's tasks (workers and producer alike)."""
    app = Celery("bench", broker=broker, set_as_current=False)
    app.conf.update(
        task_send_sent_event=True,  # the producer's task-sent, as the simulated stream has
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_heartbeat=0,
    )
    for i in range(TASK_NAMES):
        app.task(name=f"bench.task{i}")(_trivial)
    return app


def _trivial(x: int = 0) -> int:
    return x + 1


app = make_app(os.environ.get("BENCH_CELERY_BROKER", "memory://"))
