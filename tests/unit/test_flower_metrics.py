"""Flower's families (celery.flower_metrics): the same event sequences fed to Flower's own
event state (PyPI ``flower``, in-process) and to stackmon's give the same series, and
stackmon's caps, purge and liveness hold.

The differential test draws task lifecycles as Celery produces them (retries, ETAs,
revocations, rejections with and without requeue, custom task events, a late task-sent,
lost events) interleaved across workers and clients, and compares every sample of the six
families.  The one difference it expects is documented: the executing count of a worker
that went offline is 0 here, Flower's keeps the last heartbeat's.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.collectors.celery.collector import CeleryCollector
from exporter.collectors.celery.events import OVERFLOW, EventState
from exporter.collectors.celery.flower import FlowerMetrics
from exporter.collectors.celery.settings import CelerySettings
from tests.helpers.docs import metrics_section

Key = tuple[str, tuple[tuple[str, str], ...]]
WORKERS = ("celery@a", "celery@b")
CLIENTS = ("gen1@c", "gen2@c")
NAMES = ("t.ok", "t.slow", "t.fail")
FAMILIES = ("flower_events", "flower_task_runtime_seconds",
            "flower_task_prefetch_time_seconds", "flower_worker_prefetched_tasks",
            "flower_worker_online", "flower_worker_number_of_currently_executing_tasks")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **overrides: Any) -> tuple[EventState, FlowerMetrics]:
    base = CelerySettings(broker_url="redis://127.0.0.1:1/0", flower_metrics=True)
    state = EventState(dataclasses.replace(base, **overrides), clock=clock or Clock())
    return state, FlowerMetrics(state)


def ours(flower: FlowerMetrics) -> dict[Key, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in flower.metrics() for s in family.samples}


def theirs(metrics: Any) -> dict[Key, float]:
    out = {}
    for collector in (metrics.events, metrics.runtime, metrics.prefetch_time,
                      metrics.number_of_prefetched_tasks, metrics.worker_online,
                      metrics.worker_number_of_currently_executing_tasks):
        for family in collector.collect():
            for s in family.samples:
                if not s.name.endswith("_created"):  # prometheus_client's, not Flower's
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def real_flower_state() -> Any:
    """A fresh ``flower.events.EventsState``: Flower keeps its metrics in one module-wide
    object registered in prometheus_client's default registry, so the last one is
    unregistered first."""
    import flower.events
    from prometheus_client import REGISTRY

    old = flower.events.PROMETHEUS_METRICS
    if old is not None:
        for collector in (old.events, old.runtime, old.prefetch_time,
                          old.number_of_prefetched_tasks, old.worker_online,
                          old.worker_number_of_currently_executing_tasks):
            REGISTRY.unregister(collector)
        flower.events.PROMETHEUS_METRICS = None
    return flower.events.EventsState(max_tasks_in_memory=10000)


# -- the differential test -------------------------------------------------------------

@st.composite
def lifecycle(draw: st.DrawFn, uuid: str) -> list[dict[str, Any]]:
    """One task's events in the order its worker sends them (the client's task-sent
    first); retries re-send and re-receive the same id, as Celery does."""
    name = draw(st.sampled_from(NAMES))
    worker = draw(st.sampled_from(WORKERS))
    eta = draw(st.sampled_from([None, None, "2030-01-01T00:00:00+00:00"]))
    base = {"uuid": uuid, "hostname": worker}
    out: list[dict[str, Any]] = [{"type": "task-sent", "uuid": uuid, "name": name,
                                  "hostname": draw(st.sampled_from(CLIENTS)), "eta": eta}]
    for attempt in range(draw(st.integers(0, 2)) + 1):
        if attempt:
            out.append({"type": "task-sent", "uuid": uuid, "name": name, "hostname": worker,
                        "eta": eta})
        end = draw(st.sampled_from(["succeeded", "succeeded", "failed", "retried",
                                    "revoked-waiting", "revoked-on-receipt", "rejected",
                                    "requeued", "progress"]))
        if end == "revoked-on-receipt":
            out.append({**base, "type": "task-revoked", "terminated": False})
            return out
        out.append({**base, "type": "task-received", "name": name, "eta": eta})
        if end == "revoked-waiting":
            out.append({**base, "type": "task-revoked", "terminated": False})
            return out
        if end in ("rejected", "requeued"):
            out.append({**base, "type": "task-rejected", "requeue": end == "requeued"})
            if end == "rejected":
                return out
            continue
        out.append({**base, "type": "task-started"})
        if end == "progress":
            out.append({**base, "type": "task-progress", "current": 1})
        if end == "retried":
            out.append({**base, "type": "task-retried", "exception": "Retry()"})
            continue
        if end == "failed":
            out.append({**base, "type": "task-failed", "exception": "ValueError('x')"})
            return out
        runtime = draw(st.sampled_from([0.0, 0.003, 0.07, 0.5, 3.0, 42.0]))
        out.append({**base, "type": "task-succeeded", "runtime": runtime})
        return out
    return out


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Several lifecycles and worker events interleaved; some events lost, and task-sent
    possibly late (it is published after the task message), task-retried possibly after
    the retry's own events."""
    lanes = [draw(lifecycle(f"id-{i}")) for i in range(draw(st.integers(1, 6)))]
    for worker in WORKERS:
        lanes.append([{"type": kind, "hostname": worker, "active": draw(st.integers(0, 3))}
                      for kind in draw(st.lists(st.sampled_from(
                          ["worker-online", "worker-heartbeat", "worker-heartbeat",
                           "worker-offline"]), max_size=5))])
    out: list[dict[str, Any]] = []
    while any(lanes):
        lane = draw(st.sampled_from([lane for lane in lanes if lane]))
        event = lane.pop(0)
        if event["type"] == "task-sent" and lane and draw(st.booleans()):
            lane.insert(draw(st.integers(1, len(lane))), event)  # arrives later
            continue
        if event["type"] == "task-retried" and lane and draw(st.booleans()):
            # sent after the retry was published: a quick retry may even end first
            lane.insert(draw(st.integers(1, len(lane))), event)
            continue
        if not draw(st.integers(0, 9)):
            continue  # lost
        out.append(event)
    for i, event in enumerate(out):  # the fields Celery's receiver adds to every event
        event.update(timestamp=1000.0 + 0.37 * i, local_received=1000.0 + 0.37 * i,
                     clock=i)
    return out


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=streams())
def test_same_series_as_flowers_own_event_state(events: list[dict[str, Any]]) -> None:
    flower = real_flower_state()
    state, mine = make()
    last_worker_event: dict[str, str] = {}
    for event in events:
        flower.event(dict(event))  # Celery's State writes into the dict it is given
        state.handle(dict(event))
        if event["type"].startswith("worker-"):
            last_worker_event[event["hostname"]] = event["type"]
    want, got = theirs(flower.metrics), ours(mine)
    # Documented difference: a worker that went offline executes nothing here.
    executing = "flower_worker_number_of_currently_executing_tasks"
    for name, labels in list(want):
        if name == executing and last_worker_event[dict(labels)["worker"]] == "worker-offline":
            assert got.pop((name, labels)) == 0
            del want[(name, labels)]
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-12), key
    assert state.overflow["bad_event"] == 0


# -- stackmon's own bounds ---------------------------------------------------------------

def task(uuid: str, worker: str = "celery@a", name: str = "t.ok", t0: float = 100.0,
         wait: float = 2.0, sent: bool = True) -> list[dict[str, Any]]:
    base = {"uuid": uuid, "hostname": worker}
    return [*([{"type": "task-sent", "uuid": uuid, "name": name, "hostname": "gen1@c",
                "timestamp": t0}] if sent else []),
            {**base, "type": "task-received", "name": name, "timestamp": t0 + 1},
            {**base, "type": "task-started", "timestamp": t0 + 1 + wait},
            {**base, "type": "task-succeeded", "runtime": 0.2, "timestamp": t0 + 2 + wait}]


def test_prefetch_figures_follow_the_worker() -> None:
    state, mine = make()
    events = task("x", wait=2.5)
    for event in events[:2]:
        state.handle(event)
    labels = (("task", "t.ok"), ("worker", "celery@a"))
    assert ours(mine)[("flower_worker_prefetched_tasks", labels)] == 1
    state.handle(events[2])
    assert ours(mine)[("flower_worker_prefetched_tasks", labels)] == 0
    assert ours(mine)[("flower_task_prefetch_time_seconds", labels)] == 2.5
    state.handle(events[3])
    assert ours(mine)[("flower_task_prefetch_time_seconds", labels)] == 0
    assert ours(mine)[("flower_task_runtime_seconds_bucket", (("le", "0.25"), *labels))] == 1
    assert ours(mine)[("flower_events_total", (("task", "t.ok"), ("type", "task-sent"),
                                               ("worker", "gen1@c")))] == 1
    assert not mine.tasks  # the finished task is forgotten


def test_worker_online_turns_0_after_silence_or_offline_then_is_purged() -> None:
    clock = Clock()
    state, mine = make(clock, worker_heartbeat_timeout_seconds=10, worker_purge_seconds=60)
    state.handle({"type": "worker-heartbeat", "hostname": "celery@a", "active": 2})
    state.handle({"type": "worker-online", "hostname": "celery@b"})
    for event in task("x", worker="celery@a"):
        state.handle(event)
    a, b = (("worker", "celery@a"),), (("worker", "celery@b"),)
    executing = "flower_worker_number_of_currently_executing_tasks"
    assert ours(mine)[("flower_worker_online", a)] == 1
    assert ours(mine)[(executing, a)] == 2
    assert (executing, b) not in ours(mine)  # no heartbeat yet
    state.handle({"type": "worker-offline", "hostname": "celery@b"})
    assert ours(mine)[("flower_worker_online", b)] == 0
    clock.now += 9.9
    assert ours(mine)[("flower_worker_online", a)] == 1
    clock.now += 0.1
    # Silent for the heartbeat timeout: Flower would still say 1 (mher/flower#1128).
    assert ours(mine)[("flower_worker_online", a)] == 0
    assert ours(mine)[(executing, a)] == 0
    assert ("flower_events_total", (("task", "t.ok"), ("type", "task-succeeded"),
                                    ("worker", "celery@a"))) in ours(mine)
    clock.now += 50.1  # 60.1 s after the last event of a, b and the client gen1@c
    state.handle({"type": "worker-heartbeat", "hostname": "celery@new", "active": 0})
    assert ours(mine) == {
        ("flower_worker_online", (("worker", "celery@new"),)): 1,
        (executing, (("worker", "celery@new"),)): 0}
    assert not mine.pairs and set(mine.nodes) == {"celery@new"}


def test_purge_frees_the_slots_of_silent_nodes() -> None:
    clock = Clock()
    state, mine = make(clock, max_workers=2, worker_purge_seconds=30,
                       worker_heartbeat_timeout_seconds=5)
    for node in ("celery@a", "celery@b", "celery@c"):
        state.handle({"type": "worker-heartbeat", "hostname": node, "active": 0})
    online = {dict(k[1])["worker"] for k in ours(mine) if k[0] == "flower_worker_online"}
    assert online == {"celery@a", "celery@b"}
    assert state.overflow["flower_worker"] == 1
    clock.now += 31
    state.handle({"type": "worker-heartbeat", "hostname": "celery@c", "active": 0})
    online = {dict(k[1])["worker"] for k in ours(mine) if k[0] == "flower_worker_online"}
    assert online == {"celery@c"}


def test_caps_fold_label_values_into_other() -> None:
    state, mine = make(max_workers=2, max_task_names=2, max_task_series=3)
    for i, (worker, name) in enumerate([("celery@a", "t.1"), ("celery@a", "t.2"),
                                        ("celery@b", "t.1"), ("celery@b", "t.2"),
                                        ("celery@a", "t.3"), ("celery@d", "t.1")]):
        for event in task(f"id{i}", worker=worker, name=name, sent=False):
            state.handle(event)
    succeeded = {(dict(k[1])["worker"], dict(k[1])["task"]): v
                 for k, v in ours(mine).items()
                 if k[0] == "flower_events_total" and ("type", "task-succeeded") in k[1]}
    # b/t.2 is a 4th (worker, task) pair, t.3 a 3rd name (and its pair a 4th),
    # celery@d a 3rd node; each of their 3 events hits the cap.
    assert succeeded == {("celery@a", "t.1"): 1, ("celery@a", "t.2"): 1,
                         ("celery@b", "t.1"): 1, (OVERFLOW, "t.2"): 1,
                         (OVERFLOW, OVERFLOW): 1, (OVERFLOW, "t.1"): 1}
    assert state.overflow["flower_task_name"] == 3
    assert state.overflow["flower_worker"] == 3
    assert state.overflow["flower_task_series"] == 6
    assert len(mine.pairs) == 3 and set(mine.nodes) == {"celery@a", "celery@b"}


def test_event_types_are_capped() -> None:
    state, mine = make()
    for i in range(40):
        state.handle({"type": f"task-custom{i}", "uuid": "x", "hostname": "celery@a",
                      "name": "t.ok"})
    types = {dict(k[1])["type"] for k in ours(mine) if k[0] == "flower_events_total"}
    assert len(types) == 33 and OVERFLOW in types
    assert state.overflow["flower_type"] == 8
    # Celery's own types beyond the cap are counted under __other__ but still followed.
    for event in task("y", sent=False)[:1]:
        state.handle(event)
    labels = (("task", "t.ok"), ("worker", "celery@a"))
    assert ours(mine)[("flower_worker_prefetched_tasks", labels)] == 1
    for event in task("y", sent=False)[1:]:
        state.handle(event)
    assert ours(mine)[("flower_worker_prefetched_tasks", labels)] == 0
    assert "y" not in mine.tasks
    assert ours(mine)[("flower_events_total", (*labels[:1], ("type", OVERFLOW),
                                               *labels[1:]))] == 8 + 3


def test_tracked_tasks_are_bounded() -> None:
    state, mine = make(max_tracked_tasks=100)
    for i in range(150):
        state.handle({"type": "task-received", "uuid": f"id{i}", "name": "t.ok",
                      "hostname": "celery@a", "timestamp": 1.0})
    assert len(mine.tasks) == 100 and "id149" in mine.tasks and "id49" not in mine.tasks
    assert state.overflow["flower_tracked_task"] == 50


def test_malformed_events_are_counted_not_raised() -> None:
    state, mine = make()
    state.handle({"type": "task-received", "hostname": "celery@a"})  # no uuid
    state.handle({"type": "worker-heartbeat"})  # no hostname
    state.handle({"type": "task-received", "uuid": "x", "hostname": "celery@a",
                  "name": "t.ok", "timestamp": 1.0})
    state.handle({"type": "task-started", "uuid": "x", "hostname": "celery@a",
                  "timestamp": "soon"})
    assert state.overflow["bad_event"] == 3
    state.handle({"type": "task-started", "uuid": "x", "hostname": "celery@a",
                  "timestamp": 3.5})
    labels = (("task", "t.ok"), ("worker", "celery@a"))
    assert ours(mine)[("flower_task_prefetch_time_seconds", labels)] == 2.5


def collector_families(**overrides: Any) -> set[str]:
    base = CelerySettings(broker_url="redis://127.0.0.1:1/0")
    collector = CeleryCollector(dataclasses.replace(base, **overrides), start=False)
    try:
        return {f.name for f in collector.failure_metrics()}
    finally:
        collector.close()


def test_off_by_default_and_on_with_the_setting() -> None:
    assert CelerySettings().flower_metrics is False
    assert not {n for n in collector_families() if n.startswith("flower_")}
    assert set(FAMILIES) <= collector_families(flower_metrics=True)


def test_docs_table_lists_exactly_the_flower_families() -> None:
    section = metrics_section("celery")
    documented = set(re.findall(r"^\|\s*`(flower_[a-z_]+)`\s*\|", section, re.M))
    _, mine = make()
    emitted = {f.name + ("_total" if f.type == "counter" else "") for f in mine.metrics()}
    assert documented == emitted
    for kind in ("flower_worker", "flower_task_name", "flower_task_series", "flower_type",
                 "flower_tracked_task"):
        assert f"`{kind}`" in section, kind


@pytest.mark.parametrize("name", FAMILIES)
def test_families_have_flowers_types_and_label_names(name: str) -> None:
    real_flower_state()
    import flower.events

    real = {c.describe()[0].name: c for c in vars(flower.events.get_prometheus_metrics())
            .values()}[name]
    state, mine = make()
    for event in task("x"):
        state.handle(event)
    state.handle({"type": "worker-heartbeat", "hostname": "celery@a", "active": 1})
    family = next(f for f in mine.metrics() if f.name == name)
    assert family.type == real.describe()[0].type
    assert {tuple(k for k in s.labels if k != "le") for s in family.samples} \
        == {tuple(real._labelnames)}


def quick_retry(uuid: str, worker: str = "celery@a") -> list[dict[str, Any]]:
    """A task that retries itself with no delay: retry() publishes the retry and then
    raises, and the worker sends task-retried after that; on a busy machine the retry is
    received, run and succeeds first (seen in tests/e2e/test_flower_parity.py)."""
    base = {"uuid": uuid, "hostname": worker}
    return [{**base, "type": "task-received", "name": "t.retry", "timestamp": 100.0},
            {**base, "type": "task-started", "timestamp": 100.1},
            {**base, "type": "task-received", "name": "t.retry", "timestamp": 100.2},
            {**base, "type": "task-started", "timestamp": 100.3},
            {**base, "type": "task-succeeded", "runtime": 0.1, "timestamp": 100.4},
            {**base, "type": "task-retried", "exception": "Retry()", "timestamp": 100.5}]


def test_late_event_of_an_ended_task_keeps_its_name() -> None:
    flower = real_flower_state()
    state, mine = make()
    for i, event in enumerate(quick_retry("r1")):
        event.update(local_received=1000.0 + i, clock=i)
        flower.event(dict(event))
        state.handle(dict(event))
    key = ("flower_events_total", (("task", "t.retry"), ("type", "task-retried"),
                                   ("worker", "celery@a")))
    assert theirs(flower.metrics)[key] == 1
    assert ours(mine) == theirs(flower.metrics)
    assert "r1" not in mine.tasks  # ended: only remembered for late events
