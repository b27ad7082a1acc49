"""Flower's metric families (``celery.flower_metrics``), from the collector's event stream.

Flower (mher/flower, ``flower/events.py``) exports six families from the Celery events it
receives; users' Grafana dashboards and alert rules query them.  ``FlowerMetrics`` rebuilds
them with Flower's names, labels, types and meaning from the events ``EventState`` already
consumes (it is called for every event, under the state's lock): no second connection.

- ``worker`` is Celery's full node name as the event carries it (``celery@web-1``; for
  task-sent the sending client's, e.g. ``gen4711@web-1``), not the host part the
  celery-exporter families use.
- ``flower_events_total{worker,type,task}``: every ``task-*`` event (worker events are
  not counted).  ``task`` is the event's task name, or the one an earlier event of the
  same task carried, or ``""``.
- ``flower_task_runtime_seconds{worker,task}``: the ``runtime`` field of task events
  (task-succeeded), with ``celery.runtime_buckets`` (Flower's default buckets too).
- ``flower_worker_prefetched_tasks{worker,task}``: +1 on task-received, -1 on task-started
  (or on task-revoked/-rejected of a task that never started); tasks with an ETA and
  tasks whose task-received was not seen are left out, as Flower does.
- ``flower_task_prefetch_time_seconds{worker,task}``: task-started minus task-received of
  the latest started task (the time it waited at the worker), back to 0 when it ends.
- ``flower_worker_online{worker}`` and ``flower_worker_number_of_currently_executing_tasks
  {worker}`` from worker-online/-heartbeat/-offline.

Where stackmon differs from Flower, on purpose (docs/celery.md says why):
``flower_worker_online`` turns 0 when a worker has been silent for
``worker_heartbeat_timeout_seconds`` (Flower keeps 1 for a killed worker), the executing
count of a worker that is not online is 0, and a node silent for ``worker_purge_seconds``
loses all its series (Flower keeps them unless ``--purge_offline_workers``).  Label values
are capped like the celery-exporter families: ``max_workers`` node names,
``max_task_names`` task names, ``max_task_series`` (worker, task) pairs; beyond a cap the
value is ``__other__``, counted in ``stackmon_celery_events_overflow_total``.

Sample output::

    flower_events_total{task="shop.charge",type="task-succeeded",worker="celery@web-1"} 1200.0
    flower_task_runtime_seconds_bucket{le="0.1",task="shop.charge",worker="celery@web-1"} 1180.0
    flower_task_prefetch_time_seconds{task="shop.charge",worker="celery@web-1"} 0.0
    flower_worker_prefetched_tasks{task="shop.charge",worker="celery@web-1"} 3.0
    flower_worker_online{worker="celery@web-1"} 1.0
    flower_worker_number_of_currently_executing_tasks{worker="celery@web-1"} 2.0
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from typing import Any

from exporter.collectors.celery.events import FINISHED_MEMORY, OVERFLOW, EventState
from exporter.metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    go_float,
)

# Distinct event types in flower_events_total: Celery's eight task events plus the custom
# ones applications send (task-progress, ...); a type beyond this is "__other__".
MAX_EVENT_TYPES = 32
# Overflow kinds added to stackmon_celery_events_overflow_total.
OVERFLOW_KINDS = ("flower_worker", "flower_task_name", "flower_task_series", "flower_type",
                  "flower_tracked_task")
# Events after which a task has no more events (a requeued rejection does).
FINAL = frozenset({"task-succeeded", "task-failed", "task-revoked"})
PURGE_EVERY_SECONDS = 1.0

Pair = tuple[str, str]  # (worker, task)


class _Node:
    """One Celery node seen in the events (a worker, or a client sending tasks)."""

    __slots__ = ("active", "is_worker", "last_seen", "online")

    def __init__(self, now: float) -> None:
        self.last_seen = now
        self.is_worker = False  # sent worker-* events: has flower_worker_online
        self.online = False  # the last worker-* event was not worker-offline
        self.active: float | None = None  # from the last heartbeat


class _Task:
    """What Flower's prefetch figures need of one task: Celery's State keeps the same."""

    __slots__ = ("eta", "name", "received", "started")

    def __init__(self) -> None:
        self.name = ""
        self.eta: Any = None
        self.received: Any = None  # timestamp of the last task-received
        self.started: Any = None  # timestamp of the last task-started


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)  # not cumulative; +Inf last
        self.total = 0.0


class FlowerMetrics:
    """Flower's families, fed by ``EventState.handle`` (its lock held) for every event."""

    def __init__(self, state: EventState) -> None:
        self.state = state
        self.settings = state.settings
        self.clock = state.clock
        self.max_tracked_tasks = self.settings.max_tracked_tasks
        self.buckets = [float(b) for b in self.settings.runtime_buckets]
        self.nodes: dict[str, _Node] = {}
        self.names: set[str] = set()
        self.types: set[str] = set()
        self.pairs: set[Pair] = set()
        self.tasks: OrderedDict[str, _Task] = OrderedDict()
        self.finished: OrderedDict[str, _Task] = OrderedDict()  # ended lately (late events)
        self.events: dict[tuple[str, str, str], int] = {}  # (worker, type, task)
        self.runtime: dict[Pair, _Histogram] = {}
        self.prefetch_time: dict[Pair, float] = {}
        self.prefetched: dict[Pair, float] = {}
        self._next_purge = 0.0
        with state.lock:
            for kind in OVERFLOW_KINDS:
                state.overflow.setdefault(kind, 0)
            state.listeners.append(self.handle)

    # -- per event (EventState.lock held) -------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        now = self.clock()
        if now >= self._next_purge:
            self._purge(now)
        if kind[:5] == "task-":
            self._task_event(kind, event, now)
        elif kind[:7] == "worker-":
            self._worker_event(kind, event, now)

    def _node(self, nodename: str, now: float) -> _Node | None:
        node = self.nodes.get(nodename)
        if node is None:
            if len(self.nodes) >= self.settings.max_workers:
                self._overflow("flower_worker")
                return None
            node = self.nodes[nodename] = _Node(now)
        node.last_seen = now
        return node

    def _overflow(self, kind: str) -> None:
        self.state.overflow[kind] += 1

    def _worker_event(self, kind: str, event: dict[str, Any], now: float) -> None:
        nodename = event.get("hostname")
        if not nodename:
            raise ValueError("worker event without hostname")  # EventState: bad_event
        node = self._node(nodename, now)
        if node is None or kind not in ("worker-online", "worker-heartbeat", "worker-offline"):
            return
        node.is_worker = True
        node.online = kind != "worker-offline"
        if kind == "worker-heartbeat" and event.get("active") is not None:
            node.active = float(event["active"])

    def _label(self, value: str, seen: set[str], cap: int, kind: str) -> str:
        if not value or value in seen:
            return value
        if len(seen) >= cap:
            self._overflow(kind)
            return OVERFLOW
        seen.add(value)
        return value

    def _pair(self, nodename: str, name: str, now: float) -> Pair:
        """(worker, task) label values, within the caps (the slow path of _task_event)."""
        worker = nodename if self._node(nodename, now) is not None else OVERFLOW
        task = self._label(name, self.names, self.settings.max_task_names, "flower_task_name")
        pair = (worker, task)
        if pair in self.pairs or worker == OVERFLOW:
            return pair
        if len(self.pairs) >= self.settings.max_task_series:
            self._overflow("flower_task_series")
            return (OVERFLOW, task)
        self.pairs.add(pair)
        return pair

    def _task_event(self, kind: str, event: dict[str, Any], now: float) -> None:
        get = event.get
        nodename, uuid = get("hostname"), get("uuid")
        if not nodename or not uuid:
            raise ValueError("task event without hostname or uuid")  # EventState: bad_event
        task = self.tasks.get(uuid)
        if task is None and kind != "task-received" and uuid in self.finished:
            # A late event of a task that ended (a retried task's task-retried after its
            # quick retry succeeded): Celery's State, which Flower reads, still knows it.
            task = self.finished[uuid]
        elif task is None:
            task = self.tasks[uuid] = _Task()
            if len(self.tasks) > self.max_tracked_tasks:
                self.tasks.popitem(last=False)
                self._overflow("flower_tracked_task")
        # As Celery's State (which Flower reads): every event's fields update the task,
        # and the event type's own field holds the event's timestamp.
        name = get("name")
        if name:
            task.name = str(name)
        if "eta" in event:
            task.eta = event["eta"]
        if kind == "task-received":
            task.received = get("timestamp")
        elif kind == "task-started":
            task.started = get("timestamp")
        # Known node, name and pair (nearly every event): no cap to check.
        node = self.nodes.get(nodename)
        pair = (nodename, task.name)
        if node is not None and pair in self.pairs:
            node.last_seen = now
        else:
            pair = self._pair(nodename, task.name, now)
        type_label = kind if kind in self.types else self._label(
            kind, self.types, MAX_EVENT_TYPES, "flower_type")
        key = (pair[0], type_label, pair[1])
        self.events[key] = self.events.get(key, 0) + 1
        runtime = get("runtime")
        if runtime:
            self._observe(pair, float(runtime))
        if (kind in FINAL or (kind == "task-rejected" and not get("requeue"))) \
                and self.tasks.pop(uuid, None) is not None:
            self.finished[uuid] = task
            if len(self.finished) > FINISHED_MEMORY:
                self.finished.popitem(last=False)
        # Flower leaves out tasks with an ETA (their wait at the worker is deliberate) and
        # tasks whose task-received it did not see.
        if task.eta or not task.received:
            return
        if kind == "task-received":
            self.prefetched[pair] = self.prefetched.get(pair, 0.0) + 1
        elif kind == "task-started" and task.started:
            self.prefetch_time[pair] = float(task.started) - float(task.received)
            self.prefetched[pair] = self.prefetched.get(pair, 0.0) - 1
        elif kind in ("task-succeeded", "task-failed") and task.started:
            self.prefetch_time[pair] = 0.0
        elif kind in ("task-revoked", "task-rejected") and not task.started:
            self.prefetched[pair] = self.prefetched.get(pair, 0.0) - 1

    def _observe(self, pair: Pair, value: float) -> None:
        hist = self.runtime.get(pair)
        if hist is None:
            hist = self.runtime[pair] = _Histogram(len(self.buckets))
        hist.counts[bisect_left(self.buckets, value)] += 1
        hist.total += value

    def _purge(self, now: float) -> None:
        """Drop nodes silent for worker_purge_seconds, and every series of theirs."""
        self._next_purge = now + PURGE_EVERY_SECONDS
        limit = now - self.settings.worker_purge_seconds
        gone = {n for n, node in self.nodes.items() if node.last_seen < limit}
        if not gone:
            return
        for nodename in gone:
            del self.nodes[nodename]
        self.pairs = {p for p in self.pairs if p[0] not in gone}
        self.events = {k: v for k, v in self.events.items() if k[0] not in gone}
        for table in (self.runtime, self.prefetch_time, self.prefetched):
            for pair in [p for p in table if p[0] in gone]:
                del table[pair]

    # -- scrape ------------------------------------------------------------------------

    def metrics(self) -> list[Metric]:
        """The six families (copied under the state's lock, built outside it)."""
        timeout = self.settings.worker_heartbeat_timeout_seconds
        with self.state.lock:
            now = self.state.clock()
            self._purge(now)
            events = sorted(self.events.items())
            runtime = sorted((p, list(h.counts), h.total) for p, h in self.runtime.items())
            prefetch_time = sorted(self.prefetch_time.items())
            prefetched = sorted(self.prefetched.items())
            workers = sorted((n, node.online and now - node.last_seen < timeout, node.active)
                             for n, node in self.nodes.items() if node.is_worker)
        events_f = CounterMetricFamily("flower_events", "Celery task events received, by "
                                       "node, event type and task name (Flower's name).",
                                       labels=["worker", "type", "task"])
        for (worker, kind, task), n in events:
            events_f.add_metric([worker, kind, task], float(n))
        runtime_f = HistogramMetricFamily("flower_task_runtime_seconds",
                                          "Run time of tasks in seconds, from the runtime "
                                          "field of their events (Flower's name).",
                                          labels=["worker", "task"])
        bounds = [go_float(b) for b in self.buckets] + ["+Inf"]
        for (worker, task), counts, total in runtime:
            cumulative, acc = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                acc += n
                cumulative.append((bound, float(acc)))
            runtime_f.add_metric([worker, task], cumulative, total)
        time_f = GaugeMetricFamily("flower_task_prefetch_time_seconds",
                                   "Seconds the latest started task waited at the worker "
                                   "between task-received and task-started; 0 once it "
                                   "ended (Flower's name).", labels=["worker", "task"])
        for (worker, task), seconds in prefetch_time:
            time_f.add_metric([worker, task], seconds)
        prefetched_f = GaugeMetricFamily("flower_worker_prefetched_tasks",
                                         "Tasks received by the worker and not started yet, "
                                         "without ETA tasks (Flower's name).",
                                         labels=["worker", "task"])
        for (worker, task), waiting in prefetched:
            prefetched_f.add_metric([worker, task], waiting)
        online_f = GaugeMetricFamily("flower_worker_online",
                                     "1 while the worker sends events; 0 after worker-offline "
                                     "or worker_heartbeat_timeout_seconds of silence "
                                     "(Flower's name).", labels=["worker"])
        executing_f = GaugeMetricFamily("flower_worker_number_of_currently_executing_tasks",
                                        "Tasks the worker is executing, from its last "
                                        "heartbeat; 0 when it is not online (Flower's name).",
                                        labels=["worker"])
        for worker, online, active in workers:
            online_f.add_metric([worker], 1.0 if online else 0.0)
            if active is not None:
                executing_f.add_metric([worker], active if online else 0.0)
        return [events_f, runtime_f, time_f, prefetched_f, online_f, executing_f]

