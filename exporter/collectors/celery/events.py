"""Celery events: bounded, cheap-per-event state and the supervised receiver thread.

``EventState.handle(event)`` folds one Celery event into counters, histograms and
worker liveness under one lock; ``EventState.metrics()`` turns a copy of that state
into metric families.  Scrape cost depends on the number of series (capped task
names x queue names x hostnames, capped workers), never on the number of tasks processed.

Names, labels and buckets are danihodovic/celery-exporter's: task series carry
``name``, ``hostname`` and ``queue_name`` (``celery_task_failed_total`` also
``exception``, the exception's class name), and a hostname is the part of Celery's node
name after the ``@`` (``celery@web-1`` -> ``web-1``).

``EventReceiverThread`` consumes the broker's event exchange with Celery's own
``app.events.Receiver``; when the broker goes away it logs, reports
``stackmon_celery_events_receiver_up 0``, reconnects with exponential backoff and
resumes.  An unexpected exception is logged with its traceback and the loop goes on;
if the thread ever ends anyway, ``ensure_running()`` (called on every scrape)
starts a new one.

Sample output::

    celery_task_succeeded_total{hostname="web-1",name="shop.charge",queue_name="celery"} 1200.0
    celery_task_failed_total{exception="ValueError",hostname="web-1",name="shop.charge",
        queue_name="celery"} 3.0
    celery_task_runtime_bucket{hostname="web-1",le="0.1",name="shop.charge",
        queue_name="celery"} 1180.0
    celery_task_queue_wait_time_count{hostname="web-1",name="shop.charge",
        queue_name="celery"} 1200.0
    celery_worker_up{hostname="web-1"} 1.0
    celery_workers 1.0
    celery_worker_tasks_active{hostname="web-1"} 2.0
    stackmon_celery_events_receiver_up 1.0
    stackmon_celery_events_total 4800.0
    stackmon_celery_events_last_timestamp_seconds 1.7963e+09
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from kombu.utils.json import object_hook as kombu_object_hook

from exporter import logs
from exporter.collectors.celery.settings import CelerySettings
from exporter.metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    go_float,
)

log = logging.getLogger("stackmon.collectors.celery")

# Task event kind -> the counter it feeds, in the order of the per-series counter slots
# (written out so grep finds each name).
TASK_COUNTERS = {
    "sent": "celery_task_sent_total",
    "received": "celery_task_received_total",
    "started": "celery_task_started_total",
    "succeeded": "celery_task_succeeded_total",
    "failed": "celery_task_failed_total",
    "retried": "celery_task_retried_total",
    "revoked": "celery_task_revoked_total",
    "rejected": "celery_task_rejected_total",
}
TASK_LABELS = ["name", "hostname", "queue_name"]
FAILED_LABELS = ["name", "hostname", "exception", "queue_name"]
OVERFLOW = "__other__"  # label value for values beyond a cap
UNKNOWN = "unknown"  # task name/queue/host not known (events from before we started listening)
GENERIC = "generic"  # hostname of every task series with task_hostname_label off (as the anchor)
UNKNOWN_EXCEPTION = "UnknownException"  # celery-exporter's value when no class name is found
RECEIVER_BACKOFF_START = 0.5
RECEIVER_BACKOFF_MAX = 30.0
# The event receiver is "recovered" (logged once) after consuming this long without error.
RECEIVER_RECOVERED_SECONDS = 10.0
RECEIVER_KEY = "collector=celery part=events"
# The receiver's own queue on RabbitMQ: messages older than this are dropped by the broker
# (Celery's default of 5 s loses events as soon as we fall a little behind).
EVENT_QUEUE_TTL_SECONDS = 60.0
EVENT_QUEUE_EXPIRES_SECONDS = 60.0
PURGE_EVERY_SECONDS = 1.0
# AMQP heartbeat of the receiver's connection: a dead broker is noticed within ~2x this.
RECEIVER_HEARTBEAT_SECONDS = 10.0
# How long worker-side events of a task wait for its (late) task-sent event.
DEFER_SECONDS = 2.0

# Slot of each counter in a counter row, in TASK_COUNTERS' order (the order the metrics
# are emitted in); derived from the names so adding a counter cannot shift the others.
SLOT = {kind: i for i, kind in enumerate(TASK_COUNTERS)}
_SENT = SLOT["sent"]
_RECEIVED = SLOT["received"]
_STARTED = SLOT["started"]
_SUCCEEDED = SLOT["succeeded"]
_FAILED = SLOT["failed"]
_RETRIED = SLOT["retried"]
_REVOKED = SLOT["revoked"]
_REJECTED = SLOT["rejected"]

TaskKey = tuple[str, str, str]  # (task name, queue, hostname label)


def node_host(nodename: str) -> str:
    """The host part of a Celery node name, as celery-exporter labels it.

    >>> node_host("celery@web-1"), node_host("gen4711@web-1"), node_host("web-1")
    ('web-1', 'web-1', 'web-1')
    """
    _, at, host = nodename.partition("@")
    return host if at else nodename


def exception_class(text: Any) -> str:
    """The class name at the start of a task-failed event's exception repr.

    >>> exception_class("ValueError('boom')"), exception_class("oops")
    ('ValueError', 'UnknownException')
    """
    head, paren, _ = str(text or "").partition("(")
    return head if paren and head.isidentifier() else UNKNOWN_EXCEPTION


def eta_timestamp(event: dict[str, Any]) -> float | None:
    """The event's ETA (ISO 8601) as a timestamp comparable with its (localised) timestamp."""
    eta = event.get("eta")
    if not eta:
        return None
    try:
        ts = datetime.fromisoformat(str(eta)).timestamp()
    except ValueError:
        return None
    offset = event.get("utcoffset")
    if offset is None:
        return ts
    # Celery's receiver shifts event timestamps by the sender's UTC offset; do the same.
    from celery.utils.time import adjust_timestamp

    return float(adjust_timestamp(ts, offset))


class WorkerState:
    """What the events told us about one worker (one Celery node)."""

    __slots__ = ("active", "first_processed", "last_seen", "online", "processed",
                 "task_events", "version")

    def __init__(self, now: float) -> None:
        self.last_seen = now  # time.monotonic() of the last event from this worker
        self.online = True  # False after worker-offline
        self.active: float | None = None  # from heartbeats
        self.processed: float | None = None
        # For the diagnostics (checks.py): tasks the worker processed while we listened
        # (heartbeats' count since the first one seen) against the task events it sent.
        self.first_processed: float | None = None
        self.task_events = 0
        self.version = ""


# How many ended tasks are remembered for their late events (~0.2 KB each).
FINISHED_MEMORY = 4096


class Task:
    """An in-flight task: its labels, when it was sent, and events held back."""

    __slots__ = ("done", "eta", "name", "pending", "queue", "sent")

    def __init__(self, name: str, queue: str | None, sent: Any) -> None:
        self.name = name
        self.queue = queue  # None: not known yet, worker-side events are held back
        self.sent = sent  # timestamp of task-sent (None: not seen)
        self.eta: float | None = None  # deliberate delay (countdown, retry backoff)
        self.pending: list[tuple[int, str, Any]] = []  # (slot, hostname label, value)
        self.done = False


class _Histogram:
    """Non-cumulative bucket counts (+Inf last), sum and count: O(log buckets) per value."""

    __slots__ = ("counts", "total")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)
        self.total = 0.0


def _buckets(texts: Sequence[str]) -> list[float]:
    return [float(t) for t in texts]


@dataclass(frozen=True)
class Evidence:
    """What the event stream showed since the receiver started (checks.py decides on it).

    ``workers``: node name -> (task events it sent, tasks its heartbeats say it processed
    since the first heartbeat seen).
    """

    workers: dict[str, tuple[int, float]]
    sent_seen: bool  # any task-sent event
    events_total: int


class EventState:
    """Counters, histograms and worker liveness built from the event stream; bounded."""

    def __init__(self, settings: CelerySettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        self.hostname_label = settings.task_hostname_label
        self.runtime_buckets = _buckets(settings.runtime_buckets)
        self.wait_buckets = _buckets(settings.queue_wait_buckets)
        # In-flight tasks by id, oldest evicted first.
        self.tasks: OrderedDict[str, Task] = OrderedDict()
        # Tasks that ended lately: an event may still come for one (a retried task's
        # task-retried is sent after its retry was published, and a quick retry can end
        # first), and is counted under the name and queue the task had.
        self.finished: OrderedDict[str, Task] = OrderedDict()
        # (deadline, id) of tasks whose worker-side events wait for their task-sent.
        self.deferred: deque[tuple[float, str]] = deque()
        self.sent_seen = False  # the stream carries task-sent events
        self.queue_of: dict[str, str] = {}  # task name -> queue of its last task-sent
        self.counters: dict[TaskKey, list[int]] = {}
        self.failures: dict[tuple[str, str, str, str], int] = {}  # TaskKey + exception
        self.runtime: dict[TaskKey, _Histogram] = {}
        self.wait: dict[TaskKey, _Histogram] = {}
        self.workers: dict[str, WorkerState] = {}  # by node name ("celery@web-1")
        self.names: set[str] = set()
        self.queues: set[str] = set()
        self.exceptions: set[str] = set()
        self.task_hosts: set[str] = set()  # hostname label values of the task series
        self.overflow = {"task_name": 0, "queue_name": 0, "hostname": 0, "exception": 0,
                         "task_series": 0, "worker": 0, "tracked_task": 0, "bad_event": 0}
        self.events_total = 0
        self.last_event_time = 0.0
        self._next_purge = 0.0
        # Further consumers of every event (flower.py), called under the lock after ours.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "task-sent": self._task_sent,
            "task-received": self._task_received,
            "task-started": self._task_started,
            "task-succeeded": self._task_succeeded,
            "task-failed": self._task_failed,
            "task-retried": self._task_retried,
            "task-revoked": self._task_revoked,
            "task-rejected": self._task_rejected,
            "worker-online": self._worker_event,
            "worker-heartbeat": self._worker_event,
            "worker-offline": self._worker_event,
        }

    # -- per event (hot path) ------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        """Fold one event (a Celery event dict) into the state."""
        handler = self._handlers.get(event.get("type", ""))
        with self.lock:
            self.events_total += 1
            self.last_event_time = time.time()
            try:
                if handler is not None:
                    handler(event)
                for listener in self.listeners:
                    listener(event)
            except (TypeError, ValueError, AttributeError):
                # A malformed event must not cost a reconnect: count it and go on.
                self.overflow["bad_event"] += 1

    def _capped(self, value: Any, seen: set[str], cap: int, kind: str) -> str:
        """``value`` as a label value, or OVERFLOW once ``cap`` distinct values were seen."""
        text = str(value) if value else UNKNOWN
        if text in seen:
            return text
        if len(seen) >= cap:
            self.overflow[kind] += 1
            return OVERFLOW
        seen.add(text)
        return text

    def _name(self, name: Any) -> str:
        return self._capped(name, self.names, self.settings.max_task_names, "task_name")

    def _queue(self, queue: Any) -> str:
        return self._capped(queue, self.queues, self.settings.max_queue_names, "queue_name")

    def _exception(self, text: Any) -> str:
        return self._capped(exception_class(text), self.exceptions,
                            self.settings.max_exception_names, "exception")

    def _task_host(self, nodename: Any) -> str:
        """The hostname label of a task series for an event sent by ``nodename``."""
        if not self.hostname_label:
            return GENERIC
        return self._capped(node_host(str(nodename)) if nodename else None, self.task_hosts,
                            self.settings.max_task_hostnames, "hostname")

    def _seen(self, nodename: Any, online: bool = True) -> WorkerState | None:
        """Refresh a worker's liveness; None when it has no name or is beyond the cap."""
        if not nodename:
            return None
        worker = self.workers.get(nodename)
        if worker is None:
            if len(self.workers) >= self.settings.max_workers:
                self.overflow["worker"] += 1
                return None
            worker = self.workers[nodename] = WorkerState(self.clock())
        else:
            worker.last_seen = self.clock()
        worker.online = online
        return worker

    def _track(self, uuid: str, task: Task) -> Task:
        tasks = self.tasks
        tasks[uuid] = task
        if len(tasks) > self.settings.max_tracked_tasks:
            tasks.popitem(last=False)
            self.overflow["tracked_task"] += 1
        return task

    def _count(self, slot: int, key: TaskKey) -> None:
        row = self.counters.get(key)
        if row is None:
            row = self.counters[key] = [0] * len(SLOT)
        row[slot] += 1

    def _key(self, name: str, queue: str, host: str) -> TaskKey:
        """The label set of a task series, with the hostname folded into OVERFLOW once
        max_task_series label sets exist: each cap alone still lets names x hosts grow
        (every worker runs every task), this one bounds the product.  Totals per task
        name and queue stay right; the folded sets are at most names x queues."""
        key = (name, queue, host)
        if key in self.counters or len(self.counters) < self.settings.max_task_series:
            return key
        self.overflow["task_series"] += 1
        return (name, queue, OVERFLOW)

    def _apply(self, task: Task, slot: int, host: str, value: Any) -> None:
        """Count one worker-side event of ``task`` (whose queue is known)."""
        key = self._key(task.name, str(task.queue), host)
        self._count(slot, key)
        if slot == _FAILED:
            fkey = (*key, str(value))
            self.failures[fkey] = self.failures.get(fkey, 0) + 1
        elif value is None:
            return
        elif slot == _STARTED:
            # celery-exporter's queue wait: from task-sent (or the ETA, when later: a
            # countdown or retry backoff is a deliberate delay, not waiting) to task-started.
            if task.sent is not None:
                baseline = float(task.sent)
                if task.eta is not None:
                    baseline = max(baseline, task.eta)
                self._observe(self.wait, self.wait_buckets, key,
                              max(0.0, float(value) - baseline))
        elif slot == _SUCCEEDED:
            self._observe(self.runtime, self.runtime_buckets, key, float(value))

    def _worker_side(self, event: dict[str, Any], slot: int, value: Any = None,
                     final: bool = False) -> None:
        """A task event sent by a worker: count it now, or hold it until the queue is known.

        Worker-side events do not carry the queue; task-sent does, but it may arrive after
        the worker's first events (it is published after the task message).  While the
        stream has task-sent events, a task seen first from a worker is held back for up
        to DEFER_SECONDS until its task-sent arrives.
        """
        nodename = event.get("hostname")
        worker = self._seen(nodename)
        if worker is not None:
            worker.task_events += 1
        host = self._task_host(nodename)
        uuid = event.get("uuid", "")
        task = self.tasks.get(uuid)
        if task is None:
            late = self.finished.get(uuid)
            if late is not None and slot != _RECEIVED:  # (a new delivery is a new task)
                self._apply(late, slot, host, value)
                return
            if self.sent_seen:
                task = self._track(uuid, Task(self._name(event.get("name")), None, None))
                self.deferred.append((self.clock() + DEFER_SECONDS, uuid))
            else:
                task = self._track(uuid, Task(self._name(event.get("name")),
                                              self._queue(None), None))
        if slot == _RECEIVED and task.eta is None:
            task.eta = eta_timestamp(event)
        if task.queue is None:
            task.pending.append((slot, host, value))
            task.done = final
        else:
            self._apply(task, slot, host, value)
            if final:
                self._finish(uuid)

    def _finish(self, uuid: str) -> None:
        task = self.tasks.pop(uuid, None)
        if task is not None:
            finished = self.finished
            finished[uuid] = task
            if len(finished) > FINISHED_MEMORY:
                finished.popitem(last=False)

    def _settle(self, uuid: str, task: Task, queue: str) -> None:
        task.queue = queue
        for slot, host, value in task.pending:
            self._apply(task, slot, host, value)
        task.pending = []
        if task.done:
            self._finish(uuid)

    def flush_deferred(self) -> None:
        """Count held-back events whose task-sent never came (queue from the task name)."""
        now = self.clock()
        deferred = self.deferred
        while deferred and deferred[0][0] <= now:
            _, uuid = deferred.popleft()
            task = self.tasks.get(uuid)
            if task is not None and task.queue is None:
                self._settle(uuid, task, self.queue_of.get(task.name) or self._queue(None))

    def _task_sent(self, event: dict[str, Any]) -> None:
        self.sent_seen = True
        uuid = event.get("uuid", "")
        task = self.tasks.get(uuid)
        if task is None:
            name = self._name(event.get("name"))
            queue = self._queue(event.get("queue") or event.get("routing_key"))
            task = self._track(uuid, Task(name, queue, event.get("timestamp")))
            task.eta = eta_timestamp(event)
        else:
            task.sent = event.get("timestamp")  # a retry re-sends the same id
            task.eta = eta_timestamp(event)
            if task.queue is None:  # nothing counted yet: take name and queue from here
                if task.name == UNKNOWN and event.get("name"):
                    task.name = self._name(event.get("name"))
                queue = self._queue(event.get("queue") or event.get("routing_key"))
                self._settle(uuid, task, queue)
        self.queue_of[task.name] = str(task.queue)
        # task-sent comes from the client: its hostname is the sending host's.
        self._count(_SENT, self._key(task.name, str(task.queue),
                                     self._task_host(event.get("hostname"))))

    def _task_received(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _RECEIVED)

    def _task_started(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _STARTED, event.get("timestamp"))

    def _task_succeeded(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _SUCCEEDED, event.get("runtime"), final=True)

    def _task_failed(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _FAILED, self._exception(event.get("exception")), final=True)

    def _task_retried(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _RETRIED)

    def _task_revoked(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _REVOKED, final=True)

    def _task_rejected(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _REJECTED, final=not event.get("requeue"))

    def _worker_event(self, event: dict[str, Any]) -> None:
        worker = self._seen(event.get("hostname"), event["type"] != "worker-offline")
        if worker is None:
            return
        if "active" in event:
            worker.active = float(event["active"])
        if "processed" in event:
            worker.processed = float(event["processed"])
            if worker.first_processed is None:
                worker.first_processed = worker.processed
        version = event.get("sw_ver")
        if version:
            worker.version = str(version)

    def _observe(self, table: dict[TaskKey, _Histogram], buckets: list[float],
                 key: TaskKey, value: float) -> None:
        hist = table.get(key)
        if hist is None:
            hist = table[key] = _Histogram(len(buckets))
        hist.counts[bisect_left(buckets, value)] += 1
        hist.total += value

    # -- housekeeping ----------------------------------------------------------

    def purge(self) -> None:
        """Forget workers silent for longer than worker_purge_seconds, and the task series
        of a host whose last worker that was (as celery-exporter does; hosts that only
        send tasks keep theirs, bounded by max_task_hostnames)."""
        now = self.clock()
        with self.lock:
            self.flush_deferred()
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_EVERY_SECONDS
            limit = now - self.settings.worker_purge_seconds
            dead = [n for n, w in self.workers.items() if w.last_seen < limit]
            for node in dead:
                del self.workers[node]
            gone = {node_host(n) for n in dead} - {node_host(n) for n in self.workers}
            if not gone or not self.hostname_label:
                return
            self.task_hosts -= gone
            tables: tuple[dict[Any, Any], ...] = (self.counters, self.failures, self.runtime,
                                                  self.wait)
            for table in tables:
                for key in [k for k in table if k[2] in gone]:
                    del table[key]

    # -- scrape ------------------------------------------------------------------

    def online_workers(self) -> list[str]:
        """Node names of the workers up now."""
        now = self.clock()
        timeout = self.settings.worker_heartbeat_timeout_seconds
        with self.lock:
            return [n for n, w in self.workers.items()
                    if w.online and now - w.last_seen < timeout]

    def known_hosts(self) -> set[str]:
        """Hostname labels of the workers the events know."""
        with self.lock:
            return {node_host(n) for n in self.workers}

    def evidence(self) -> Evidence:
        """What the stream showed so far, for the diagnostics (checks.py)."""
        with self.lock:
            workers = {node: (w.task_events, (w.processed or 0.0) - (w.first_processed or 0.0))
                       for node, w in self.workers.items() if w.online}
            return Evidence(workers, self.sent_seen, self.events_total)

    def worker_versions(self) -> list[str]:
        with self.lock:
            return [w.version for w in self.workers.values() if w.version]

    def metrics(self) -> list[Metric]:
        """Families for the current state (copied under the lock, built outside it)."""
        self._next_purge = 0.0
        self.purge()
        now = self.clock()
        with self.lock:
            counters = [(k, list(v)) for k, v in self.counters.items()]
            failures = list(self.failures.items())
            runtime = [(k, list(h.counts), h.total) for k, h in self.runtime.items()]
            wait = [(k, list(h.counts), h.total) for k, h in self.wait.items()]
            workers = [(n, w.online, now - w.last_seen, w.active, w.processed)
                       for n, w in self.workers.items()]
            overflow = dict(self.overflow)
            events_total, last_event = self.events_total, self.last_event_time
        out: list[Metric] = []
        out += _task_counters(counters, failures)
        out.append(_histogram("celery_task_runtime", "Histogram of task runtime measurements "
                              "(the runtime of task-succeeded events, seconds).",
                              self.runtime_buckets, runtime))
        out.append(_histogram("celery_task_queue_wait_time",
                              "Histogram of the time tasks spend waiting in the queue before "
                              "being executed, excluding deliberate ETA/countdown delay "
                              "(task-sent to task-started, seconds).",
                              self.wait_buckets, wait))
        out += self._worker_metrics(workers)
        out.append(CounterMetricFamily("stackmon_celery_events",
                                       "Celery events consumed by the receiver.",
                                       value=float(events_total)))
        out.append(GaugeMetricFamily("stackmon_celery_events_last_timestamp_seconds",
                                     "Unix time the receiver last consumed an event (0 = none).",
                                     value=last_event))
        over = CounterMetricFamily("stackmon_celery_events_overflow",
                                   "Values that hit a cap: task_name/queue_name/hostname/"
                                   "exception counted under __other__, task_series with "
                                   "hostname __other__, worker not tracked, "
                                   "tracked_task forgotten, bad_event malformed and skipped.",
                                   labels=["kind"])
        for kind, n in sorted(overflow.items()):
            over.add_metric([kind], float(n))
        out.append(over)
        return out

    def _worker_metrics(self, workers: list[tuple[str, bool, float, float | None,
                                                  float | None]]) -> list[Metric]:
        """Per-host worker series: several nodes on one host add up, as one label value."""
        timeout = self.settings.worker_heartbeat_timeout_seconds
        up: dict[str, float] = {}
        active: dict[str, float] = {}
        processed: dict[str, float] = {}
        online = 0
        for node, is_online, silent_for, n_active, n_processed in workers:
            if not is_online:
                # Announced its shutdown (worker-offline): gone, not down. Its series end on
                # their last value (up 1), so CeleryWorkerDown does not page for it.
                continue
            host = node_host(node)
            alive = silent_for < timeout
            online += alive
            up[host] = max(up.get(host, 0.0), 1.0 if alive else 0.0)
            if n_active is not None:
                active[host] = active.get(host, 0.0) + (n_active if alive else 0.0)
            if n_processed is not None:
                processed[host] = processed.get(host, 0.0) + n_processed
        up_f = GaugeMetricFamily("celery_worker_up", "Indicates if a worker has recently sent "
                                 "a heartbeat (an event within the heartbeat timeout, and no "
                                 "worker-offline).", labels=["hostname"])
        active_f = GaugeMetricFamily("celery_worker_tasks_active", "The number of tasks the "
                                     "worker is currently processing (from its heartbeats).",
                                     labels=["hostname"])
        processed_f = CounterMetricFamily("celery_worker_tasks_processed",
                                          "Tasks the worker has processed since it started "
                                          "(from its heartbeats).", labels=["hostname"])
        for table, family in ((up, up_f), (active, active_f), (processed, processed_f)):
            for host, value in sorted(table.items()):
                family.add_metric([host], value)
        return [up_f, active_f, processed_f,
                GaugeMetricFamily("celery_workers", "Workers up (Celery nodes; see "
                                  "celery_worker_up).", value=float(online))]


def _task_counters(counters: Sequence[tuple[TaskKey, list[int]]],
                   failures: Sequence[tuple[tuple[str, str, str, str], int]]) -> list[Metric]:
    """The task counters.  As celery-exporter does, every series a worker-side event made
    exists for every counter (at 0) -- ``celery_task_failed_total`` with ``exception=""`` --
    so ratios such as failed / (succeeded + failed) have both inputs; task-sent only where
    tasks were sent, since senders are other hosts."""
    families = {kind: CounterMetricFamily(
        metric, f"Tasks {kind} (from task-{kind} events).",
        labels=FAILED_LABELS if kind == "failed" else TASK_LABELS)
        for kind, metric in TASK_COUNTERS.items()}
    failed = families["failed"]
    for (name, queue, host), row in sorted(counters):
        for kind, family in families.items():
            if kind == "failed":
                failed.add_metric([name, host, "", queue], 0.0)
            elif kind != "sent" or row[_SENT]:
                family.add_metric([name, host, queue], float(row[SLOT[kind]]))
    for (name, queue, host, exception), n in sorted(failures):
        failed.add_metric([name, host, exception, queue], float(n))
    return list(families.values())


def _histogram(name: str, doc: str, buckets: list[float],
               rows: Sequence[tuple[TaskKey, list[int], float]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=TASK_LABELS)
    bounds = [go_float(b) for b in buckets] + ["+Inf"]
    for (task, queue, host), counts, total in sorted(rows):
        cumulative, acc = [], 0
        for bound, n in zip(bounds, counts, strict=True):
            acc += n
            cumulative.append((bound, float(acc)))
        family.add_metric([task, host, queue], cumulative, total)
    return family


# --- decoding (hot path of the receiver) -----------------------------------------------
# On a Redis broker kombu and Celery spent ~45 µs an event before EventState.handle's ~2:
# redis-py's reply parser, a kombu Message per event (properties, headers, accept checks,
# serializer registry), a new JSONDecoder per document (kombu's loads passes an
# object_hook), Celery's timestamp shift with a time.localtime() per event.  These
# functions decode the common envelope (JSON, base64 body, no compression) themselves and
# hand each event to the receiver's own ``process`` (~17 µs an event with hiredis; bench/
# RESULTS.md, "Celery").  Anything else takes kombu's path unchanged, as does RabbitMQ.

JSON = "application/json"
# kombu decodes JSON with json.loads(s, object_hook=...), which builds a new JSONDecoder
# on every call; two documents an event (envelope and body) made half the receiver's time.
# orjson gives the same objects at a fifth of the cost.  What it refuses (NaN, integers
# beyond 64 bits, lone surrogates) and kombu's own {"__type__": ..., "__value__": ...}
# encodings (datetimes, UUIDs, decimals) go to the stdlib decoder with kombu's hook, so
# every document decodes exactly as kombu would decode it.
_stdlib_json = json.JSONDecoder(object_hook=kombu_object_hook).decode


def _json(data: bytes | str) -> Any:
    if isinstance(data, str):
        data = data.encode()
    if b'"__type__"' not in data:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return _stdlib_json(data.decode())


# Celery's receiver shifts each event's timestamp by the sender's UTC offset against ours
# (celery.utils.time.adjust_timestamp), and works ours out again on every event (a
# time.localtime() call); a second is precise enough for a DST change.
_here: list[float] = [0.0, -1.0]  # our UTC offset in hours, valid until (monotonic)


def _utcoffset_hours() -> float:
    now = time.monotonic()
    if now >= _here[1]:
        from celery.utils.time import utcoffset

        _here[0], _here[1] = float(utcoffset()), now + 1.0
    return _here[0]


def localize(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(type, event) with the timestamp in our time, as Celery's
    ``EventReceiver.event_from_message`` makes them (its Lamport clock and
    ``local_received`` are left out: nothing here reads them)."""
    kind = event["type"]
    try:
        offset, timestamp = event["utcoffset"], event["timestamp"]
    except KeyError:
        pass
    else:
        event["timestamp"] = timestamp - (offset - _utcoffset_hours()) * 3600
    return kind, event


def envelope_body(raw: Any) -> Any:
    """The decoded body of a kombu virtual-transport envelope (Redis broker) holding JSON.

    >>> envelope_body({"body": "eyJ0eXBlIjogInRhc2stc2VudCJ9", "content-type": "application/json",
    ...                "content-encoding": "utf-8", "properties": {"body_encoding": "base64"}})
    {'type': 'task-sent'}

    Raises ValueError for anything kombu must decode itself (another content type or
    encoding, a compressed body, a body encoding other than base64).
    """
    if raw.get("content-type") != JSON or raw.get("content-encoding", "utf-8") != "utf-8":
        raise ValueError("not a plain JSON envelope")
    headers = raw.get("headers")
    if headers and headers.get("compression"):
        raise ValueError("compressed body")
    encoding = raw["properties"].get("body_encoding")
    body = raw["body"]
    if encoding == "base64":
        body = binascii.a2b_base64(body)
    elif encoding is not None:
        raise ValueError("unknown body encoding")
    return _json(body)


def fast_callback(slow: Callable[[Any], Any], receiver: Any) -> Callable[[Any], Any]:
    """A transport callback that decodes JSON envelopes itself and hands each event to
    ``receiver.process`` as Celery's ``EventReceiver._receive`` does (a list body is a
    batch of events); any other envelope goes to ``slow``, kombu's."""

    def deliver(raw: Any) -> Any:
        try:
            body = envelope_body(raw)
        except (AttributeError, KeyError, TypeError, ValueError, binascii.Error):
            return slow(raw)
        process = receiver.process
        if isinstance(body, list):
            for event in body:
                process(*localize(event))
        else:
            process(*localize(body))
        return None

    deliver.stackmon_fast = True  # type: ignore[attr-defined]
    return deliver


def lean_receive_one(channel: Any) -> Callable[[Any], Any]:
    """kombu's Redis ``Channel._receive_one`` for a channel that only reads fanout (pub/sub)
    messages, with the envelope decoded by the shared decoder: the same replies read
    the same way (redis-py's ``parse_response``: health checks, connection errors), the
    same message types, the same delivery (``_deliver_fanout_message``: kombu's
    duplicate check included)."""
    empty = channel.connection_errors

    def receive_one(client: Any) -> Any:
        try:
            response = client.parse_response()
        except empty:
            channel._in_listen = None
            raise
        if not isinstance(response, (list, tuple)):
            return None
        kind = response[0]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if not kind.endswith("message"):
            channel._handle_message(client, response)  # (p)unsubscribe bookkeeping
            return None
        name, data = response[-2], response[-1]
        if not data:
            return None
        name = name.decode() if isinstance(name, bytes) else name
        if name[0] == "/":
            name = name.partition(".")[2]
        try:
            message = _json(data)
        except (TypeError, ValueError):
            log.warning('collector=celery msg="cannot decode an event; skipped" channel="%s"',
                        name)
            return None
        return channel._deliver_fanout_message(message, name.split("/", 1)[0])

    receive_one.stackmon_fast = True  # type: ignore[attr-defined]
    return receive_one


def install_fast_decode(consumers: Sequence[Any], receiver: Any) -> int:
    """Put ``fast_callback`` in front of kombu's callback of each queue ``consumers`` read
    through a virtual transport (Redis); py-amqp (RabbitMQ) keeps kombu's path.  Only for
    consumers without acks that accept JSON, as Celery's event consumer is.  Returns how
    many queues got it."""
    installed = 0
    for consumer in consumers:
        callbacks = getattr(getattr(consumer.channel, "connection", None), "_callbacks", None)
        accept = consumer.accept
        if (not isinstance(callbacks, dict) or not consumer.no_ack
                or (accept is not None and JSON not in accept)):
            continue
        for queue in consumer.queues:
            slow = callbacks.get(queue.name)
            if slow is not None and not getattr(slow, "stackmon_fast", False):
                callbacks[queue.name] = fast_callback(slow, receiver)
                installed += 1
        channel = consumer.channel
        # kombu's Redis channel reads pub/sub messages in _receive_one (lists: BRPOP).
        if (installed and callable(getattr(channel, "_receive_one", None))
                and callable(getattr(channel, "_deliver_fanout_message", None))
                and not getattr(channel._receive_one, "stackmon_fast", False)):
            channel._receive_one = lean_receive_one(channel)
    return installed


class EventReceiverThread:
    """Consumes the Celery event stream in a daemon thread; reconnects with backoff."""

    def __init__(self, app: Any, state: EventState, settings: CelerySettings) -> None:
        self.app = app
        self.state = state
        self.settings = settings
        self.up = False
        self.restarts = 0  # reconnects after a failure, and thread restarts
        self.last_error = ""
        self.last_cause = ""  # logs.cause() of the last failure: "access_refused", ...
        # time.monotonic() the current consume began (None: not consuming), for checks.py
        self.consuming_since: float | None = None
        self._stop = threading.Event()
        self._receiver: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failures = logs.RepeatedFailures(log)

    def start(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="celery-events",
                                            daemon=True)
            self._thread.start()

    def ensure_running(self) -> None:
        """Start a new thread if the old one ended (it should never; log loudly if so)."""
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            log.error('collector=celery msg="event receiver thread ended; starting it again"')
            self.up = False
            self.restarts += 1
            self.start()

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def request_stop(self) -> None:
        """Ask the thread to end (it checks once a second); stop() also waits for it."""
        self._stop.set()
        receiver = self._receiver
        if receiver is not None:
            receiver.should_stop = True

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        backoff = RECEIVER_BACKOFF_START
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._consume()
            except Exception as err:  # reconnect on anything; never die silently
                self.up = False
                self.last_error = type(err).__name__
                # Name the real cause: a missing module or a refused permission is not
                # a lost broker, and retrying will not fix it by itself.
                kind = self.last_cause = logs.cause(err)
                what = ("event receiver lost the broker; reconnecting"
                        if kind in ("unreachable", "timeout") else
                        "event receiver failed; retrying")
                self._failures.failed(RECEIVER_KEY, what, type(err).__name__,
                                      'cause=%s err="%s" retry_in=%.1fs', kind, err, backoff,
                                      exc_info=err if log.isEnabledFor(logging.DEBUG) else None)
            except BaseException:
                self.up = False
                self.consuming_since = None
                log.exception('collector=celery msg="event receiver thread failed"')
                raise
            self.up = False
            self.consuming_since = None
            if self._stop.is_set():
                break
            self.restarts += 1
            if time.monotonic() - started > RECEIVER_BACKOFF_MAX:
                backoff = RECEIVER_BACKOFF_START  # it ran fine for a while: start over
            self._stop.wait(backoff)
            backoff = min(backoff * 2, RECEIVER_BACKOFF_MAX)

    def _consume(self) -> None:
        state = self.state
        thread = self

        class Receiver(self.app.events.Receiver):  # type: ignore[misc,name-defined]
            connect_max_retries = 1
            broker_conn: Any = None

            def on_consume_ready(self, connection: Any, channel: Any, consumers: Any,
                                 **kwargs: Any) -> None:
                self.broker_conn = connection
                thread.up = True
                self.consuming_since = thread.consuming_since = time.monotonic()
                if not thread._failures.failing(RECEIVER_KEY):  # else "recovered" later
                    log.info('collector=celery msg="event receiver consuming"')
                if thread.settings.enable_events_at_start:
                    self.app.control.enable_events(connection=connection, channel=channel)
                super().on_consume_ready(connection, channel, consumers, **kwargs)
                install_fast_decode(consumers, self)

            next_heartbeat = 0.0
            consuming_since = 0.0  # time.monotonic() of on_consume_ready

            def on_iteration(self) -> None:
                state.purge()
                now = time.monotonic()
                # Consuming for a while, not only connecting then failing again: only now
                # is it "recovered" (once), so a flapping receiver does not log each retry.
                if (self.consuming_since
                        and now - self.consuming_since > RECEIVER_RECOVERED_SECONDS
                        and thread._failures.failing(RECEIVER_KEY)):
                    thread._failures.ok(RECEIVER_KEY)
                if self.broker_conn is not None and now >= self.next_heartbeat:
                    # A busy stream never times out drain_events, where kombu would
                    # send the AMQP heartbeats: send them here (no-op on Redis).
                    self.next_heartbeat = now + 1.0
                    self.broker_conn.heartbeat_check()

            def on_connection_error(self, exc: Exception, interval: float) -> None:
                pass  # reported by the supervisor loop

        with self.app.connection_for_read(url=self.settings.url(),
                                          heartbeat=RECEIVER_HEARTBEAT_SECONDS) as conn:
            receiver = Receiver(conn, handlers={"*": state.handle}, app=self.app,
                                queue_ttl=EVENT_QUEUE_TTL_SECONDS,
                                queue_expires=EVENT_QUEUE_EXPIRES_SECONDS)
            self._receiver = receiver
            if self._stop.is_set():
                return
            receiver.capture(limit=None, timeout=None, wakeup=True)

    def metrics(self) -> list[Metric]:
        return [
            GaugeMetricFamily("stackmon_celery_events_receiver_up",
                              "1 while the event receiver thread is consuming from the broker.",
                              value=1.0 if self.up and self.alive() else 0.0),
            CounterMetricFamily("stackmon_celery_events_receiver_restarts",
                                "Times the event receiver reconnected after a failure.",
                                value=float(self.restarts)),
        ]
