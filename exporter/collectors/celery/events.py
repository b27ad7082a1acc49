"""Celery events: bounded, cheap-per-event state and the supervised receiver thread.

``EventState.handle(event)`` folds one Celery event into counters, histograms and
worker liveness under one lock; ``EventState.metrics()`` turns a copy of that state
into metric families.  Scrape cost depends on the number of series (capped task
names x queue names, capped workers), never on the number of tasks processed.

``EventReceiverThread`` consumes the broker's event exchange with Celery's own
``app.events.Receiver``; when the broker goes away it logs, reports
``stackmon_celery_events_receiver_up 0``, reconnects with exponential backoff and
resumes.  An unexpected exception is logged with its traceback and the loop goes on;
if the thread ever ends anyway, ``ensure_running()`` (called on every scrape)
starts a new one.

Sample output::

    celery_task_succeeded_total{name="shop.tasks.charge",queue_name="celery"} 1200.0
    celery_task_runtime_seconds_bucket{le="0.1",name="shop.tasks.charge",queue_name="celery"} 1180.0
    celery_task_queue_wait_seconds_count{name="shop.tasks.charge",queue_name="celery"} 1200.0
    celery_worker_up{hostname="celery@web-1"} 1.0
    celery_workers 1.0
    celery_worker_tasks_active{hostname="celery@web-1"} 2.0
    stackmon_celery_events_receiver_up 1.0
    stackmon_celery_events_total 4800.0
    stackmon_celery_events_last_timestamp_seconds 1.7963e+09
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from exporter.collectors.celery.settings import CelerySettings

log = logging.getLogger("stackmon.collectors.celery")

# Task event kinds in the order of the per-series counter slots.
# Task event kind -> the counter it feeds (written out so grep finds each name).
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
OVERFLOW = "__other__"  # label value for names beyond a cap
UNKNOWN = "unknown"  # task name/queue not known (events from before we started listening)
RECEIVER_BACKOFF_START = 0.5
RECEIVER_BACKOFF_MAX = 30.0
# The receiver's own queue on RabbitMQ: messages older than this are dropped by the broker
# (Celery's default of 5 s loses events as soon as we fall a little behind).
EVENT_QUEUE_TTL_SECONDS = 60.0
EVENT_QUEUE_EXPIRES_SECONDS = 60.0
PURGE_EVERY_SECONDS = 1.0
# AMQP heartbeat of the receiver's connection: a dead broker is noticed within ~2x this.
RECEIVER_HEARTBEAT_SECONDS = 10.0
# How long worker-side events of a task wait for its (late) task-sent event.
DEFER_SECONDS = 2.0

_SENT, _RECEIVED, _STARTED, _SUCCEEDED, _FAILED, _RETRIED, _REVOKED, _REJECTED = range(8)


class WorkerState:
    """What the events told us about one worker."""

    __slots__ = ("active", "last_seen", "online", "processed", "version")

    def __init__(self, now: float) -> None:
        self.last_seen = now  # time.monotonic() of the last event from this worker
        self.online = True  # False after worker-offline
        self.active: float | None = None  # from heartbeats
        self.processed: float | None = None
        self.version = ""


class Task:
    """An in-flight task: its labels, when it was sent, and events held back."""

    __slots__ = ("done", "name", "pending", "queue", "start")

    def __init__(self, name: str, queue: str | None, start: Any) -> None:
        self.name = name
        self.queue = queue  # None: not known yet, worker-side events are held back
        self.start = start  # timestamp of task-sent (or task-received)
        self.pending: list[tuple[int, str, Any]] = []
        self.done = False


class _Histogram:
    """Non-cumulative bucket counts (+Inf last), sum and count: O(log buckets) per value."""

    __slots__ = ("counts", "total")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)
        self.total = 0.0


def _buckets(texts: Sequence[str]) -> list[float]:
    return [float(t) for t in texts]


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
        # (deadline, id) of tasks whose worker-side events wait for their task-sent.
        self.deferred: deque[tuple[float, str]] = deque()
        self.sent_seen = False  # the stream carries task-sent events
        self.queue_of: dict[str, str] = {}  # task name -> queue of its last task-sent
        self.counters: dict[tuple[str, ...], list[int]] = {}
        self.runtime: dict[tuple[str, str], _Histogram] = {}
        self.wait: dict[tuple[str, str], _Histogram] = {}
        self.workers: dict[str, WorkerState] = {}
        self.names: set[str] = set()
        self.queues: set[str] = set()
        self.overflow = {"task_name": 0, "queue_name": 0, "hostname": 0, "tracked_task": 0,
                         "bad_event": 0}
        self.events_total = 0
        self.last_event_time = 0.0
        self._next_purge = 0.0
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
            if handler is not None:
                try:
                    handler(event)
                except (TypeError, ValueError, AttributeError):
                    # A malformed event must not cost a reconnect: count it and go on.
                    self.overflow["bad_event"] += 1

    def _name(self, name: Any) -> str:
        if not name:
            name = UNKNOWN
        if name in self.names:
            return str(name)
        if len(self.names) >= self.settings.max_task_names:
            self.overflow["task_name"] += 1
            return OVERFLOW
        self.names.add(name)
        return str(name)

    def _queue(self, queue: Any) -> str:
        if not queue:
            queue = UNKNOWN
        if queue in self.queues:
            return str(queue)
        if len(self.queues) >= self.settings.max_queue_names:
            self.overflow["queue_name"] += 1
            return OVERFLOW
        self.queues.add(queue)
        return str(queue)

    def _seen(self, hostname: Any, online: bool = True) -> str:
        """Refresh a worker's liveness; the hostname label value to use."""
        if not hostname:
            return ""
        worker = self.workers.get(hostname)
        if worker is None:
            if len(self.workers) >= self.settings.max_workers:
                self.overflow["hostname"] += 1
                return OVERFLOW
            worker = self.workers[hostname] = WorkerState(self.clock())
        else:
            worker.last_seen = self.clock()
        worker.online = online
        return str(hostname)

    def _track(self, uuid: str, task: Task) -> Task:
        tasks = self.tasks
        tasks[uuid] = task
        if len(tasks) > self.settings.max_tracked_tasks:
            tasks.popitem(last=False)
            self.overflow["tracked_task"] += 1
        return task

    def _count(self, slot: int, name: str, queue: str, host: str) -> None:
        key: tuple[str, ...] = (name, queue, host) if self.hostname_label else (name, queue)
        row = self.counters.get(key)
        if row is None:
            row = self.counters[key] = [0] * 8
        row[slot] += 1

    def _apply(self, task: Task, slot: int, host: str, value: Any) -> None:
        """Count one worker-side event of ``task`` (whose queue is known)."""
        name, queue = task.name, str(task.queue)
        self._count(slot, name, queue, host)
        if value is None:
            return
        if slot == _STARTED:
            if task.start is not None:
                self._observe(self.wait, self.wait_buckets, (name, queue),
                              max(0.0, float(value) - float(task.start)))
        elif slot == _SUCCEEDED:
            self._observe(self.runtime, self.runtime_buckets, (name, queue), float(value))

    def _worker_side(self, event: dict[str, Any], slot: int, value: Any = None,
                     final: bool = False) -> None:
        """A task event sent by a worker: count it now, or hold it until the queue is known.

        Worker-side events do not carry the queue; task-sent does, but it may arrive after
        the worker's first events (it is published after the task message).  While the
        stream has task-sent events, a task seen first from a worker is held back for up
        to DEFER_SECONDS until its task-sent arrives.
        """
        host = self._seen(event.get("hostname"))
        uuid = event.get("uuid", "")
        task = self.tasks.get(uuid)
        if task is None:
            ts = event.get("timestamp") if slot == _RECEIVED else None
            if self.sent_seen:
                task = self._track(uuid, Task(self._name(event.get("name")), None, ts))
                self.deferred.append((self.clock() + DEFER_SECONDS, uuid))
            else:
                task = self._track(uuid, Task(self._name(event.get("name")),
                                              self._queue(None), ts))
        elif slot == _RECEIVED and task.start is None:
            task.start = event.get("timestamp")
        if task.queue is None:
            task.pending.append((slot, host, value))
            task.done = final
        else:
            self._apply(task, slot, host, value)
            if final:
                self.tasks.pop(uuid, None)

    def _settle(self, uuid: str, task: Task, queue: str) -> None:
        task.queue = queue
        for slot, host, value in task.pending:
            self._apply(task, slot, host, value)
        task.pending = []
        if task.done:
            self.tasks.pop(uuid, None)

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
        else:
            task.start = event.get("timestamp")  # a retry re-sends the same id
            if task.queue is None:  # nothing counted yet: take name and queue from here
                if task.name == UNKNOWN and event.get("name"):
                    task.name = self._name(event.get("name"))
                queue = self._queue(event.get("queue") or event.get("routing_key"))
                self._settle(uuid, task, queue)
        self.queue_of[task.name] = str(task.queue)
        # task-sent comes from the client, whose hostname is no worker's.
        self._count(_SENT, task.name, str(task.queue), "")

    def _task_received(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _RECEIVED)

    def _task_started(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _STARTED, event.get("timestamp"))

    def _task_succeeded(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _SUCCEEDED, event.get("runtime"), final=True)

    def _task_failed(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _FAILED, final=True)

    def _task_retried(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _RETRIED)

    def _task_revoked(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _REVOKED, final=True)

    def _task_rejected(self, event: dict[str, Any]) -> None:
        self._worker_side(event, _REJECTED, final=not event.get("requeue"))

    def _worker_event(self, event: dict[str, Any]) -> None:
        online = event["type"] != "worker-offline"
        host = self._seen(event.get("hostname"), online)
        worker = self.workers.get(host)
        if worker is None:
            return
        if "active" in event:
            worker.active = float(event["active"])
        if "processed" in event:
            worker.processed = float(event["processed"])
        version = event.get("sw_ver")
        if version:
            worker.version = str(version)

    def _observe(self, table: dict[tuple[str, str], _Histogram], buckets: list[float],
                 key: tuple[str, str], value: float) -> None:
        hist = table.get(key)
        if hist is None:
            hist = table[key] = _Histogram(len(buckets))
        hist.counts[bisect_left(buckets, value)] += 1
        hist.total += value

    # -- housekeeping ----------------------------------------------------------

    def purge(self) -> None:
        """Forget workers silent for longer than worker_purge_seconds (and their series)."""
        now = self.clock()
        with self.lock:
            self.flush_deferred()
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_EVERY_SECONDS
            limit = now - self.settings.worker_purge_seconds
            dead = [h for h, w in self.workers.items() if w.last_seen < limit]
            for host in dead:
                del self.workers[host]
            if dead and self.hostname_label:
                gone = set(dead)
                for key in [k for k in self.counters if k[2] in gone]:
                    del self.counters[key]

    # -- scrape ------------------------------------------------------------------

    def online_workers(self) -> list[str]:
        now = self.clock()
        timeout = self.settings.worker_heartbeat_timeout_seconds
        with self.lock:
            return [h for h, w in self.workers.items()
                    if w.online and now - w.last_seen < timeout]

    def known_workers(self) -> set[str]:
        with self.lock:
            return set(self.workers)

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
            runtime = [(k, list(h.counts), h.total) for k, h in self.runtime.items()]
            wait = [(k, list(h.counts), h.total) for k, h in self.wait.items()]
            workers = [(h, w.online, now - w.last_seen, w.active, w.processed)
                       for h, w in self.workers.items()]
            overflow = dict(self.overflow)
            events_total, last_event = self.events_total, self.last_event_time
        labels = ["name", "queue_name", "hostname"] if self.hostname_label else [
            "name", "queue_name"]
        out: list[Metric] = []
        families = [CounterMetricFamily(metric, f"Tasks {kind} (from task-{kind} events).",
                                        labels=labels)
                    for kind, metric in TASK_COUNTERS.items()]
        for key, row in sorted(counters):
            for slot, family in enumerate(families):
                family.add_metric(list(key), float(row[slot]))
        out += families
        out.append(_histogram("celery_task_runtime_seconds",
                              "Task run time of succeeded tasks (task-succeeded runtime).",
                              self.runtime_buckets, runtime))
        out.append(_histogram("celery_task_queue_wait_seconds",
                              "Time from task-sent (or task-received) to task-started.",
                              self.wait_buckets, wait))
        timeout = self.settings.worker_heartbeat_timeout_seconds
        up = GaugeMetricFamily("celery_worker_up", "1 if an event came from the worker within "
                               "the heartbeat timeout; absent once it went offline.",
                               labels=["hostname"])
        active = GaugeMetricFamily("celery_worker_tasks_active",
                                   "Tasks the worker is executing (from its heartbeats).",
                                   labels=["hostname"])
        processed = CounterMetricFamily("celery_worker_tasks_processed",
                                        "Tasks the worker has processed since it started "
                                        "(from its heartbeats).", labels=["hostname"])
        online = 0
        for host, is_online, silent_for, n_active, n_processed in sorted(workers):
            if not is_online:
                # Announced its shutdown (worker-offline): gone, not down. Its series end
                # on their last value (up 1), so CeleryWorkerDown does not page for it.
                continue
            alive = silent_for < timeout
            online += alive
            up.add_metric([host], 1.0 if alive else 0.0)
            if n_active is not None:
                active.add_metric([host], n_active if alive else 0.0)
            if n_processed is not None:
                processed.add_metric([host], n_processed)
        out += [up, active, processed,
                GaugeMetricFamily("celery_workers", "Workers up (see celery_worker_up).",
                                  value=float(online))]
        out.append(CounterMetricFamily("stackmon_celery_events",
                                       "Celery events consumed by the receiver.",
                                       value=float(events_total)))
        out.append(GaugeMetricFamily("stackmon_celery_events_last_timestamp_seconds",
                                     "Unix time the receiver last consumed an event (0 = none).",
                                     value=last_event))
        over = CounterMetricFamily("stackmon_celery_events_overflow",
                                   "Values that hit a cap: task_name/queue_name counted under "
                                   "__other__, hostname counted as __other__, tracked_task "
                                   "forgotten, bad_event malformed and skipped.",
                                   labels=["kind"])
        for kind, n in sorted(overflow.items()):
            over.add_metric([kind], float(n))
        out.append(over)
        return out


def _histogram(name: str, doc: str, buckets: list[float],
               rows: Sequence[tuple[tuple[str, ...], list[int], float]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["name", "queue_name"])
    bounds = [str(floatToGoString(b)) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
    for key, counts, total in sorted(rows):
        cumulative, acc = [], 0
        for bound, n in zip(bounds, counts, strict=True):
            acc += n
            cumulative.append((bound, float(acc)))
        family.add_metric(list(key), cumulative, total)
    return family


class EventReceiverThread:
    """Consumes the Celery event stream in a daemon thread; reconnects with backoff."""

    def __init__(self, app: Any, state: EventState, settings: CelerySettings) -> None:
        self.app = app
        self.state = state
        self.settings = settings
        self.up = False
        self.restarts = 0  # reconnects after a failure, and thread restarts
        self.last_error = ""
        self._stop = threading.Event()
        self._receiver: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

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

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        receiver = self._receiver
        if receiver is not None:
            receiver.should_stop = True
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
                log.warning('collector=celery msg="event receiver lost the broker; '
                            'reconnecting" err="%s" retry_in=%.1fs', err, backoff,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            except BaseException:
                self.up = False
                log.exception('collector=celery msg="event receiver thread failed"')
                raise
            self.up = False
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
                log.info('collector=celery msg="event receiver consuming"')
                if thread.settings.enable_events_at_start:
                    self.app.control.enable_events(connection=connection, channel=channel)
                super().on_consume_ready(connection, channel, consumers, **kwargs)

            next_heartbeat = 0.0

            def on_iteration(self) -> None:
                state.purge()
                now = time.monotonic()
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
