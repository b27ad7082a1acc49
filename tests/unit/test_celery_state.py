"""EventState with hand-made events: caps, purge, held-back events, histograms."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from exporter.collectors.celery.events import DEFER_SECONDS, OVERFLOW, EventState
from exporter.collectors.celery.settings import CelerySettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **overrides: Any) -> EventState:
    settings = dataclasses.replace(CelerySettings(broker_url="redis://127.0.0.1:1/0"),
                                   **overrides)
    return EventState(settings, clock=clock)


def samples(state: EventState) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in state.metrics():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(state: EventState, metric: str, /, **labels: str) -> float:
    return samples(state)[(metric, tuple(sorted(labels.items())))]


def task_events(uuid: str, name: str = "t.ok", queue: str = "celery", host: str = "w@h",
                runtime: float = 0.5, sent: bool = True, t0: float = 100.0
                ) -> list[dict[str, Any]]:
    events = []
    if sent:
        events.append({"type": "task-sent", "uuid": uuid, "name": name, "queue": queue,
                       "timestamp": t0, "hostname": "client@h"})
    events += [
        {"type": "task-received", "uuid": uuid, "name": name, "hostname": host,
         "timestamp": t0 + 1},
        {"type": "task-started", "uuid": uuid, "hostname": host, "timestamp": t0 + 3},
        {"type": "task-succeeded", "uuid": uuid, "hostname": host, "runtime": runtime,
         "timestamp": t0 + 3 + runtime},
    ]
    return events


def test_counters_and_histograms() -> None:
    clock = Clock()
    state = make(clock, runtime_buckets=("0.1", "1"), queue_wait_buckets=("1", "5"))
    for i in range(3):
        for event in task_events(f"id{i}", runtime=0.5):
            state.handle(event)
    labels = {"name": "t.ok", "queue_name": "celery"}
    assert get(state, "celery_task_sent_total", **labels) == 3
    assert get(state, "celery_task_succeeded_total", **labels) == 3
    assert get(state, "celery_task_failed_total", **labels) == 0
    assert get(state, "celery_task_runtime_seconds_bucket", le="0.1", **labels) == 0
    assert get(state, "celery_task_runtime_seconds_bucket", le="1.0", **labels) == 3
    assert get(state, "celery_task_runtime_seconds_sum", **labels) == pytest.approx(1.5)
    # queue wait: sent at t0, started at t0+3
    assert get(state, "celery_task_queue_wait_seconds_bucket", le="1.0", **labels) == 0
    assert get(state, "celery_task_queue_wait_seconds_bucket", le="5.0", **labels) == 3
    assert get(state, "celery_task_queue_wait_seconds_sum", **labels) == pytest.approx(9.0)
    assert state.tasks == {}  # finished tasks are forgotten


def test_task_name_cap_counts_the_rest_as_overflow() -> None:
    state = make(Clock(), max_task_names=2)
    for i in range(5):
        for event in task_events(f"id{i}", name=f"t.n{i}"):
            state.handle(event)
    names = {dict(k[1]).get("name") for k in samples(state)
             if k[0] == "celery_task_succeeded_total"}
    assert names == {"t.n0", "t.n1", OVERFLOW}
    assert get(state, "celery_task_succeeded_total", name=OVERFLOW, queue_name="celery") == 3
    assert get(state, "stackmon_celery_events_overflow_total", kind="task_name") == 3


def test_late_task_sent_still_labels_the_queue() -> None:
    """The worker's events may overtake the client's task-sent: they are held back."""
    clock = Clock()
    state = make(clock)
    for event in task_events("warm", queue="q1"):  # the stream has task-sent events
        state.handle(event)
    events = task_events("late", queue="q2")
    for event in events[1:] + events[:1]:  # task-sent last
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q2") == 1
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="q2") == 1
    assert get(state, "celery_task_queue_wait_seconds_count", name="t.ok",
               queue_name="q2") == 1
    assert not any(dict(k[1]).get("queue_name") == "unknown" for k in samples(state))
    assert state.tasks == {}


def test_revoked_before_task_sent_gets_the_name_from_task_sent() -> None:
    state = make(Clock())
    for event in task_events("warm"):
        state.handle(event)
    state.handle({"type": "task-revoked", "uuid": "rv", "hostname": "w@h"})  # no name
    state.handle({"type": "task-sent", "uuid": "rv", "name": "t.ok", "queue": "celery"})
    assert get(state, "celery_task_revoked_total", name="t.ok", queue_name="celery") == 1
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="celery") == 2
    assert state.tasks == {}


def test_held_back_events_are_counted_when_task_sent_never_comes() -> None:
    clock = Clock()
    state = make(clock)
    for event in task_events("warm", queue="q1"):
        state.handle(event)
    for event in task_events("nosent", sent=False):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q1") == 1
    clock.now += DEFER_SECONDS + 0.1
    # The queue is guessed from the task name's last task-sent.
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q1") == 2
    assert state.tasks == {}


def test_without_task_sent_events_queue_is_unknown_and_nothing_waits() -> None:
    state = make(Clock())
    for event in task_events("a", sent=False):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="unknown") == 1
    # queue wait measured from task-received (t0+1) to task-started (t0+3)
    assert get(state, "celery_task_queue_wait_seconds_sum", name="t.ok",
               queue_name="unknown") == pytest.approx(2.0)


def test_worker_up_goes_to_zero_then_series_is_purged() -> None:
    clock = Clock()
    state = make(clock, worker_heartbeat_timeout_seconds=5.0, worker_purge_seconds=20.0)
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    state.handle({"type": "worker-heartbeat", "hostname": "w1@h", "active": 2,
                  "processed": 7, "sw_ver": "5.7.0"})
    assert get(state, "celery_worker_up", hostname="w1@h") == 1
    assert get(state, "celery_worker_tasks_active", hostname="w1@h") == 2
    assert get(state, "celery_worker_tasks_processed_total", hostname="w1@h") == 7
    assert get(state, "celery_workers") == 1
    clock.now += 5.1
    assert get(state, "celery_worker_up", hostname="w1@h") == 0
    assert get(state, "celery_workers") == 0
    clock.now += 15
    assert ("celery_worker_up", (("hostname", "w1@h"),)) not in samples(state)
    assert state.workers == {}


def test_worker_offline_is_gone_at_once() -> None:
    """A graceful shutdown is not an outage: the worker's series end (on up 1), they do
    not turn 0 (which CeleryWorkerDown would page on), and it no longer counts."""
    state = make(Clock())
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    state.handle({"type": "worker-heartbeat", "hostname": "w1@h", "active": 1})
    state.handle({"type": "worker-offline", "hostname": "w1@h"})
    assert ("celery_worker_up", (("hostname", "w1@h"),)) not in samples(state)
    assert not any(name.startswith("celery_worker_") for name, _ in samples(state))
    assert get(state, "celery_workers") == 0
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    assert get(state, "celery_worker_up", hostname="w1@h") == 1


def test_hostname_cap_and_hostname_label() -> None:
    clock = Clock()
    state = make(clock, max_workers=2, task_hostname_label=True, worker_purge_seconds=20.0,
                 worker_heartbeat_timeout_seconds=5.0)
    for i in range(4):
        state.handle({"type": "worker-online", "hostname": f"w{i}@h"})
        for event in task_events(f"id{i}", host=f"w{i}@h"):
            state.handle(event)
    assert len(state.workers) == 2
    labels = {"name": "t.ok", "queue_name": "celery"}
    assert get(state, "celery_task_succeeded_total", hostname="w0@h", **labels) == 1
    assert get(state, "celery_task_succeeded_total", hostname=OVERFLOW, **labels) == 2
    assert get(state, "stackmon_celery_events_overflow_total", kind="hostname") > 0
    # Purging a worker also drops its hostname-labelled task series.
    clock.now += 25
    assert not any(dict(k[1]).get("hostname") == "w0@h" for k in samples(state))


def test_tracked_tasks_are_bounded() -> None:
    state = make(Clock(), max_tracked_tasks=100)
    for i in range(1000):  # sent, never run
        state.handle({"type": "task-sent", "uuid": f"id{i}", "name": "t.ok",
                      "queue": "celery"})
    assert len(state.tasks) == 100
    assert get(state, "stackmon_celery_events_overflow_total", kind="tracked_task") == 900
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="celery") == 1000


def test_retry_resend_keeps_one_entry() -> None:
    state = make(Clock())
    events = task_events("r1")
    for event in events[:3]:
        state.handle(event)
    state.handle({"type": "task-retried", "uuid": "r1", "hostname": "w@h"})
    for event in events:
        state.handle(event)
    labels = {"name": "t.ok", "queue_name": "celery"}
    assert get(state, "celery_task_sent_total", **labels) == 2
    assert get(state, "celery_task_started_total", **labels) == 2
    assert get(state, "celery_task_retried_total", **labels) == 1
    assert get(state, "celery_task_succeeded_total", **labels) == 1
    assert state.tasks == {}


def test_unknown_and_malformed_events_are_counted_not_fatal() -> None:
    state = make(Clock())
    state.handle({"type": "something-new"})
    state.handle({})
    state.handle({"type": "task-succeeded", "uuid": "x"})  # never seen, no hostname
    assert get(state, "stackmon_celery_events_total") == 3
    state.handle({"type": "task-succeeded", "uuid": "y", "runtime": "not a number"})
    assert get(state, "stackmon_celery_events_overflow_total", kind="bad_event") == 1


def test_scrape_size_does_not_grow_with_tasks_processed() -> None:
    state = make(Clock())
    sizes = []
    for batch in range(3):
        for i in range(2000):
            for event in task_events(f"b{batch}-{i}", name=f"t.n{i % 10}"):
                state.handle(event)
        sizes.append(len(samples(state)))
    assert sizes[0] == sizes[1] == sizes[2]
    assert len(state.tasks) == 0
