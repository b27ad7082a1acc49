"""EventState with hand-made events: caps, purge, held-back events, histograms, and
celery-exporter's names and labels."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.collectors.celery.events import (
    DEFER_SECONDS,
    GENERIC,
    OVERFLOW,
    EventState,
    exception_class,
    node_host,
)
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
    labels = {"name": "t.ok", "queue_name": "celery", "hostname": "h"}
    assert get(state, "celery_task_sent_total", **labels) == 3
    assert get(state, "celery_task_succeeded_total", **labels) == 3
    # As celery-exporter: the failed counter exists at 0 (exception="") for ratios.
    assert get(state, "celery_task_failed_total", exception="", **labels) == 0
    assert get(state, "celery_task_runtime_bucket", le="0.1", **labels) == 0
    assert get(state, "celery_task_runtime_bucket", le="1.0", **labels) == 3
    assert get(state, "celery_task_runtime_sum", **labels) == pytest.approx(1.5)
    # queue wait: sent at t0, started at t0+3
    assert get(state, "celery_task_queue_wait_time_bucket", le="1.0", **labels) == 0
    assert get(state, "celery_task_queue_wait_time_bucket", le="5.0", **labels) == 3
    assert get(state, "celery_task_queue_wait_time_sum", **labels) == pytest.approx(9.0)
    assert state.tasks == {}  # finished tasks are forgotten


def test_task_name_cap_counts_the_rest_as_overflow() -> None:
    state = make(Clock(), max_task_names=2)
    for i in range(5):
        for event in task_events(f"id{i}", name=f"t.n{i}"):
            state.handle(event)
    names = {dict(k[1]).get("name") for k in samples(state)
             if k[0] == "celery_task_succeeded_total"}
    assert names == {"t.n0", "t.n1", OVERFLOW}
    assert get(state, "celery_task_succeeded_total", name=OVERFLOW, queue_name="celery",
               hostname="h") == 3
    assert get(state, "stackmon_celery_events_overflow_total", kind="task_name") == 3


def test_task_series_cap_folds_the_hostname_of_new_label_sets() -> None:
    """Every task on every host: the label sets grow as names x hosts until
    max_task_series; beyond it new sets keep name and queue with hostname __other__."""
    state = make(Clock(), max_task_series=4)
    n = 0
    for name in ("t.a", "t.b"):
        for host in ("w@h1", "w@h2", "w@h3"):
            for event in task_events(f"id{n}", name=name, host=host):
                state.handle(event)
            n += 1
    succeeded = {dict(labels)["hostname"]: value for (metric, labels), value
                 in samples(state).items() if metric == "celery_task_succeeded_total"
                 and dict(labels)["name"] == "t.b"}
    # client@h's task-sent set of each name comes first, then the worker hosts in order:
    # t.a takes h (sent), h1, h2, h3 = 4 sets; every set of t.b is folded.
    assert succeeded == {OVERFLOW: 3}
    assert get(state, "celery_task_sent_total", name="t.b", queue_name="celery",
               hostname=OVERFLOW) == 3
    assert get(state, "celery_task_succeeded_total", name="t.a", queue_name="celery",
               hostname="h3") == 1
    # Counted once per event that hit the cap (sent, received, started, succeeded).
    assert get(state, "stackmon_celery_events_overflow_total", kind="task_series") == 12
    # Once a set exists it stays itself.
    for event in task_events("again", name="t.a", host="w@h1"):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.a", queue_name="celery",
               hostname="h1") == 2
    assert get(state, "stackmon_celery_events_overflow_total", kind="task_series") == 12


def test_late_task_sent_still_labels_the_queue() -> None:
    """The worker's events may overtake the client's task-sent: they are held back."""
    clock = Clock()
    state = make(clock)
    for event in task_events("warm", queue="q1"):  # the stream has task-sent events
        state.handle(event)
    events = task_events("late", queue="q2")
    for event in events[1:] + events[:1]:  # task-sent last
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q2",
               hostname="h") == 1
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="q2", hostname="h") == 1
    assert get(state, "celery_task_queue_wait_time_count", name="t.ok",
               queue_name="q2", hostname="h") == 1
    assert not any(dict(k[1]).get("queue_name") == "unknown" for k in samples(state))
    assert state.tasks == {}


def test_revoked_before_task_sent_gets_the_name_from_task_sent() -> None:
    state = make(Clock())
    for event in task_events("warm"):
        state.handle(event)
    state.handle({"type": "task-revoked", "uuid": "rv", "hostname": "w@h"})  # no name
    state.handle({"type": "task-sent", "uuid": "rv", "name": "t.ok", "queue": "celery",
                  "hostname": "client@h"})
    assert get(state, "celery_task_revoked_total", name="t.ok", queue_name="celery",
               hostname="h") == 1
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="celery",
               hostname="h") == 2
    assert state.tasks == {}


def test_held_back_events_are_counted_when_task_sent_never_comes() -> None:
    clock = Clock()
    state = make(clock)
    for event in task_events("warm", queue="q1"):
        state.handle(event)
    for event in task_events("nosent", sent=False):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q1",
               hostname="h") == 1
    clock.now += DEFER_SECONDS + 0.1
    # The queue is guessed from the task name's last task-sent.
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="q1",
               hostname="h") == 2
    assert state.tasks == {}


def test_without_task_sent_events_queue_is_unknown_and_nothing_waits() -> None:
    state = make(Clock())
    for event in task_events("a", sent=False):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", name="t.ok", queue_name="unknown",
               hostname="h") == 1
    # As celery-exporter: the queue wait needs task-sent (task-received is the worker's
    # prefetch, not the queue).
    assert not any(k[0].startswith("celery_task_queue_wait_time") for k in samples(state))


def test_worker_up_goes_to_zero_then_series_is_purged() -> None:
    clock = Clock()
    state = make(clock, worker_heartbeat_timeout_seconds=5.0, worker_purge_seconds=20.0)
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    state.handle({"type": "worker-heartbeat", "hostname": "w1@h", "active": 2,
                  "processed": 7, "sw_ver": "5.7.0"})
    assert get(state, "celery_worker_up", hostname="h") == 1
    assert get(state, "celery_worker_tasks_active", hostname="h") == 2
    assert get(state, "celery_worker_tasks_processed_total", hostname="h") == 7
    assert get(state, "celery_workers") == 1
    clock.now += 5.1
    assert get(state, "celery_worker_up", hostname="h") == 0
    assert get(state, "celery_workers") == 0
    clock.now += 15
    assert ("celery_worker_up", (("hostname", "h"),)) not in samples(state)
    assert state.workers == {}


def test_worker_offline_is_gone_at_once() -> None:
    """A graceful shutdown is not an outage: the worker's series end (on up 1), they do
    not turn 0 (which CeleryWorkerDown would page on), and it no longer counts."""
    state = make(Clock())
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    state.handle({"type": "worker-heartbeat", "hostname": "w1@h", "active": 1})
    state.handle({"type": "worker-offline", "hostname": "w1@h"})
    assert not any(name.startswith("celery_worker_") for name, _ in samples(state))
    assert get(state, "celery_workers") == 0
    state.handle({"type": "worker-online", "hostname": "w1@h"})
    assert get(state, "celery_worker_up", hostname="h") == 1


def test_hostname_cap_and_purge_of_task_series() -> None:
    clock = Clock()
    state = make(clock, max_task_hostnames=2, worker_purge_seconds=20.0,
                 worker_heartbeat_timeout_seconds=5.0)
    for i in range(4):  # the client "h" and w0's host take the two slots
        state.handle({"type": "worker-online", "hostname": f"w{i}@h{i}"})
        for event in task_events(f"id{i}", host=f"w{i}@h{i}"):
            state.handle(event)
    labels = {"name": "t.ok", "queue_name": "celery"}
    assert get(state, "celery_task_sent_total", hostname="h", **labels) == 4
    assert get(state, "celery_task_succeeded_total", hostname="h0", **labels) == 1
    assert get(state, "celery_task_succeeded_total", hostname=OVERFLOW, **labels) == 3
    assert get(state, "stackmon_celery_events_overflow_total", kind="hostname") == 9
    assert len(state.workers) == 4  # worker liveness has its own cap (max_workers)
    # A host's task series go with its last worker (w0 silent for worker_purge_seconds);
    # the sending host "h" keeps its series, as in celery-exporter.
    for node in ("w1@h1", "w2@h2", "w3@h3"):
        state.handle({"type": "worker-heartbeat", "hostname": node})
    clock.now += 15
    for node in ("w1@h1", "w2@h2", "w3@h3"):
        state.handle({"type": "worker-heartbeat", "hostname": node})
    clock.now += 10
    hosts = {dict(k[1]).get("hostname") for k in samples(state)
             if k[0].startswith("celery_task_")}
    assert hosts == {"h", OVERFLOW}
    assert get(state, "celery_task_sent_total", hostname="h", **labels) == 4
    assert "h0" not in state.task_hosts  # its slot is free again
    for event in task_events("again", host="w9@h9"):
        state.handle(event)
    assert get(state, "celery_task_succeeded_total", hostname="h9", **labels) == 1


def test_worker_cap() -> None:
    state = make(Clock(), max_workers=2)
    for i in range(4):
        state.handle({"type": "worker-online", "hostname": f"w{i}@h{i}"})
    assert len(state.workers) == 2
    assert get(state, "stackmon_celery_events_overflow_total", kind="worker") == 2
    assert {dict(k[1])["hostname"] for k in samples(state)
            if k[0] == "celery_worker_up"} == {"h0", "h1"}


def test_nodes_on_one_host_add_up_under_the_host_label() -> None:
    state = make(Clock())
    for node, active in (("a@h", 2), ("b@h", 3), ("c@g", 1)):
        state.handle({"type": "worker-heartbeat", "hostname": node, "active": active})
    assert get(state, "celery_worker_tasks_active", hostname="h") == 5
    assert get(state, "celery_worker_up", hostname="h") == 1
    assert get(state, "celery_workers") == 3
    state.handle({"type": "worker-offline", "hostname": "a@h"})
    assert get(state, "celery_worker_tasks_active", hostname="h") == 3
    assert get(state, "celery_worker_up", hostname="h") == 1


def test_hostname_label_off_gives_generic() -> None:
    state = make(Clock(), task_hostname_label=False)
    for event in task_events("a", host="w@h1") + task_events("b", host="w@h2"):
        state.handle(event)
    labels = {"name": "t.ok", "queue_name": "celery", "hostname": GENERIC}
    assert get(state, "celery_task_succeeded_total", **labels) == 2
    assert get(state, "celery_task_sent_total", **labels) == 2
    assert get(state, "celery_task_runtime_count", **labels) == 2
    assert get(state, "celery_worker_up", hostname="h1") == 1  # worker series keep the host


def test_exception_label_and_its_cap() -> None:
    state = make(Clock(), max_exception_names=2)
    errors = ["ValueError('a')", "KeyError('k')", "TypeError('t')", "no class here"]
    for i, error in enumerate(errors):
        events = task_events(f"f{i}")
        state.handle(events[0])
        state.handle(events[1])
        state.handle({"type": "task-failed", "uuid": f"f{i}", "hostname": "w@h",
                      "exception": error})
    labels = {"name": "t.ok", "queue_name": "celery", "hostname": "h"}
    assert get(state, "celery_task_failed_total", exception="ValueError", **labels) == 1
    assert get(state, "celery_task_failed_total", exception="KeyError", **labels) == 1
    assert get(state, "celery_task_failed_total", exception=OVERFLOW, **labels) == 2
    assert get(state, "celery_task_failed_total", exception="", **labels) == 0
    assert get(state, "stackmon_celery_events_overflow_total", kind="exception") == 2
    assert state.tasks == {}


def test_exception_class_and_node_host() -> None:
    assert exception_class("ValueError('boom')") == "ValueError"
    assert exception_class("Retry(in 5s)") == "Retry"
    assert exception_class("x.y.Error('a')") == "UnknownException"
    assert exception_class(None) == "UnknownException"
    assert node_host("celery@web-1") == "web-1"
    assert node_host("gen4711@web-1.example.org") == "web-1.example.org"
    assert node_host("a@b@c") == "b@c"
    assert node_host("web-1") == "web-1"


def test_queue_wait_excludes_a_deliberate_eta() -> None:
    state = make(Clock())
    eta = datetime.fromtimestamp(150.0, tz=UTC).isoformat()  # sent at 100
    events = task_events("e", t0=100.0)
    events[0]["eta"] = eta
    events[2]["timestamp"] = 152.0  # started 2 s after the ETA
    for event in events:
        state.handle(event)
    assert get(state, "celery_task_queue_wait_time_sum", name="t.ok", queue_name="celery",
               hostname="h") == pytest.approx(2.0)


def test_tracked_tasks_are_bounded() -> None:
    state = make(Clock(), max_tracked_tasks=100)
    for i in range(1000):  # sent, never run
        state.handle({"type": "task-sent", "uuid": f"id{i}", "name": "t.ok",
                      "queue": "celery"})
    assert len(state.tasks) == 100
    assert get(state, "stackmon_celery_events_overflow_total", kind="tracked_task") == 900
    assert get(state, "celery_task_sent_total", name="t.ok", queue_name="celery",
               hostname="unknown") == 1000


def test_retry_resend_keeps_one_entry() -> None:
    state = make(Clock())
    events = task_events("r1")
    for event in events[:3]:
        state.handle(event)
    state.handle({"type": "task-retried", "uuid": "r1", "hostname": "w@h"})
    for event in events:
        state.handle(event)
    labels = {"name": "t.ok", "queue_name": "celery", "hostname": "h"}
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


def test_queue_workers_and_processes_per_queue() -> None:
    """celery_active_worker_count / _process_count as celery-exporter: the workers whose
    active_queues hold the queue, and the sum of their pools' child processes."""
    from exporter.collectors.celery.collector import _queue_workers
    from exporter.collectors.celery.inspect import InspectSnapshot

    snap = InspectSnapshot(1.0, {
        "a@web-1": {"queues": ["celery", "mail"], "processes": 4},
        "b@web-1": {"queues": ["celery"], "processes": 2},
        "c@web-2": {"queues": ["mail"], "processes": 0},  # a thread pool
    })
    values = {(s.name, s.labels["queue_name"]): s.value
              for family in _queue_workers(["celery", "mail", "idle"], snap)
              for s in family.samples}
    assert values == {
        ("celery_active_worker_count", "celery"): 2, ("celery_active_process_count", "celery"): 6,
        ("celery_active_worker_count", "mail"): 2, ("celery_active_process_count", "mail"): 4,
        ("celery_active_worker_count", "idle"): 0, ("celery_active_process_count", "idle"): 0,
    }


def test_late_event_of_an_ended_task_keeps_its_name_and_queue() -> None:
    """retry() publishes the retry, then raises; the worker sends task-retried after that,
    and a quick retry may be received, run and succeed first. celery-exporter reads
    Celery's State, which still knows the task: so does this."""
    state = make(Clock())
    t0 = 100.0
    base = {"uuid": "r1", "hostname": "w@h"}
    for event in [
        {"type": "task-sent", "uuid": "r1", "name": "t.retry", "queue": "q", "timestamp": t0,
         "hostname": "client@h"},
        {**base, "type": "task-received", "name": "t.retry", "timestamp": t0 + 1},
        {**base, "type": "task-started", "timestamp": t0 + 2},
        {"type": "task-sent", "uuid": "r1", "name": "t.retry", "queue": "q",
         "timestamp": t0 + 3, "hostname": "w@h"},
        {**base, "type": "task-received", "name": "t.retry", "timestamp": t0 + 3},
        {**base, "type": "task-started", "timestamp": t0 + 4},
        {**base, "type": "task-succeeded", "runtime": 0.1, "timestamp": t0 + 5},
        {**base, "type": "task-retried", "exception": "Retry()", "timestamp": t0 + 6},
    ]:
        state.handle(event)
    assert get(state, "celery_task_retried_total", name="t.retry", queue_name="q",
               hostname="h") == 1
    assert not any(dict(labels).get("name") == "unknown" for _, labels in samples(state))
    assert state.tasks == {}
