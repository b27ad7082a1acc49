"""Celery: broker up, queue lengths from the broker, event state and inspect data.

On every scrape the collector reads the queue lengths from the broker (the one
backend call of the scrape) and adds copies of two states kept up to date in the
background: the event state (``events.py``) and the last inspect replies
(stats, active, reserved, scheduled, registered, active_queues), refreshed every
``inspect_interval_seconds`` by a thread of its own so that broadcast timeouts never
reach the scrape.

Per queue, as celery-exporter: ``celery_queue_length``, ``celery_active_worker_count``
and ``celery_active_process_count`` (the workers consuming the queue, from the last inspect
round, and their pool processes) and on RabbitMQ ``celery_active_consumer_count``.
Worker series are labelled with the host part of the node name (``celery@web-1`` ->
``web-1``); several workers on one host add up.

Queue lengths: on Redis a queue is a list ``name`` plus one list per priority step
(``name\\x06\\x163``, ``name\\x06\\x166``, ... -- kombu's priority separator), all summed;
on RabbitMQ a passive ``queue_declare`` gives the message and consumer counts.

Sample output::

    celery_broker_up 1.0
    celery_queue_length{queue_name="celery"} 12.0
    celery_active_consumer_count{queue_name="celery"} 2.0
    celery_active_worker_count{queue_name="celery"} 2.0
    celery_active_process_count{queue_name="celery"} 8.0
    celery_worker_tasks_reserved{hostname="web-1"} 4.0
    celery_worker_pool_info{hostname="web-1",implementation="prefork"} 1.0
    celery_worker_pool_max_concurrency{hostname="web-1"} 2.0
    stackmon_celery_inspect_last_success_timestamp_seconds 1.7963e+09
    stackmon_service_up{service="celery"} 1.0
    stackmon_service_info{role="redis",service="celery",version="5.7.0"} 1.0
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import logs
from exporter.collectors.base import Collector, service_families
from exporter.collectors.celery.events import EventReceiverThread, EventState, node_host
from exporter.collectors.celery.settings import CelerySettings
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.celery")

REDIS_SCHEMES = ("redis", "rediss")
# kombu puts priority n of queue "q" in the list "q" + sep + str(n) (priority 0 in "q");
# its default steps are 0, 3, 6, 9 and custom steps lie in 0..9: read all ten.
REDIS_PRIORITIES = tuple(range(10))
REDIS_DEFAULT_SEP = "\x06\x16"
# The inspect broadcasts made on every refresh (celery.app.control.Inspect methods).
INSPECT_METHODS = ("stats", "active", "reserved", "scheduled", "registered", "active_queues")


def make_app(settings: CelerySettings) -> Any:
    """A private Celery app for the broker (not set as the current app)."""
    from celery import Celery

    timeout = settings.broker_timeout_seconds
    app = Celery("stackmon", broker=settings.url(), set_as_current=False)
    app.conf.update(
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        broker_connection_max_retries=1,
        broker_transport_options={"socket_timeout": timeout,
                                  "socket_connect_timeout": timeout,
                                  "max_retries": 1},
        # No AMQP heartbeats on the scrape and inspect connections: nobody would send
        # them between scrapes and RabbitMQ would close the connection.  The event
        # receiver asks for its own (RECEIVER_HEARTBEAT_SECONDS) and sends them.
        broker_heartbeat=0,
        control_queue_expires=60.0,
    )
    return app


@dataclass
class InspectSnapshot:
    """The workers' replies to the last inspect round."""

    time: float = 0.0  # unix time of the last successful round (0 = never)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by node name
    queues: list[str] = field(default_factory=list)


class InspectPoller:
    """Refreshes the inspect data in a background thread, off the scrape path.

    Each broadcast stops waiting once every worker the events know as online replied
    (``limit``), else after ``inspect_timeout_seconds``.
    """

    def __init__(self, app: Any, settings: CelerySettings, state: EventState) -> None:
        self.app = app
        self.settings = settings
        self.state = state
        self.snapshot = InspectSnapshot()
        self.ok = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = logs.RepeatedFailures(log)

    def start(self) -> None:
        if self.settings.inspect_interval_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="celery-inspect", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self.ok = True
                self._failures.ok("collector=celery part=inspect")
            except Exception as err:
                self.ok = False
                self._failures.failed("collector=celery part=inspect", "inspect refresh failed",
                                      type(err).__name__, 'cause=%s err="%s"',
                                      logs.cause(err), err)
            self._stop.wait(self.settings.inspect_interval_seconds)

    def refresh(self) -> None:
        expected = len(self.state.online_workers())
        timeout = self.settings.inspect_timeout_seconds
        replies: dict[str, dict[str, Any]] = {}
        # The URL is rebuilt at every connection: a rotated password file is picked up.
        with self.app.connection_for_write(url=self.settings.url()) as conn:
            if self.settings.enable_events_at_start:
                self.app.control.enable_events(connection=conn)
            inspect = self.app.control.inspect(timeout=timeout, connection=conn,
                                               limit=expected or None)
            for method in INSPECT_METHODS:
                for host, reply in (getattr(inspect, method)() or {}).items():
                    replies.setdefault(host, {})[method] = reply
        workers: dict[str, dict[str, Any]] = {}
        queues: set[str] = set()
        for node, data in list(replies.items())[: self.settings.max_workers]:
            stats = data.get("stats") or {}
            pool = stats.get("pool") or {}
            consumes = sorted({str(q["name"]) for q in data.get("active_queues") or []
                               if isinstance(q, dict) and q.get("name")})
            processes = pool.get("processes")
            workers[node] = {
                "implementation": _pool_name(pool.get("implementation")),
                "max_concurrency": pool.get("max-concurrency"),
                "active": _length(data.get("active")),
                "reserved": _length(data.get("reserved")),
                "scheduled": _length(data.get("scheduled")),
                "registered": _length(data.get("registered")),
                "queues": consumes,
                # celery-exporter counts the pool's child processes: 0 for a thread pool.
                "processes": len(processes) if isinstance(processes, list) else 0,
            }
            queues.update(consumes)
        self.snapshot = InspectSnapshot(time.time(), workers,
                                        sorted(queues)[: self.settings.max_queue_names])


def _length(value: Any) -> float | None:
    return float(len(value)) if isinstance(value, list | dict) else None


def _pool_name(implementation: Any) -> str:
    """``celery.concurrency.prefork:TaskPool`` -> ``prefork``."""
    text = str(implementation or "unknown")
    return text.partition(":")[0].rpartition(".")[2] or text


class QueueReader:
    """Reads queue lengths through one long-lived broker connection, repaired on error."""

    def __init__(self, app: Any, settings: CelerySettings) -> None:
        self.app = app
        self.settings = settings
        self.scheme = settings.url().partition("://")[0].lower()
        self.conn: Any = None
        self.channel: Any = None

    @property
    def is_redis(self) -> bool:
        return self.scheme in REDIS_SCHEMES

    def read(self, queues: list[str], deadline: float
             ) -> dict[str, tuple[float, float | None]]:
        """``{queue: (messages, consumers or None)}`` before ``deadline``; raises when the
        broker is down or does not answer in time."""
        try:
            if self.conn is None:
                # Connecting is two waits (TCP, then the broker's handshake or first
                # reply): each gets half of what is left, so together they fit.
                timeout = self._timeout(deadline) / 2
                options = dict(self.app.conf.broker_transport_options or {})
                options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
                self.conn = self.app.connection_for_read(url=self.settings.url(),
                                                         connect_timeout=timeout,
                                                         transport_options=options)
                self.conn.ensure_connection(max_retries=0)  # a retry would sleep 2 s first
            self._bound_reads(self._timeout(deadline))
            return self._redis(queues) if self.is_redis else self._amqp(queues)
        except Exception:
            self.close()
            raise

    def _timeout(self, deadline: float) -> float:
        """The broker timeout, cut to the time left before the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left before the scrape deadline")
        return min(self.settings.broker_timeout_seconds, left)

    def _bound_reads(self, timeout: float) -> None:
        """Set the long-lived connection's socket timeouts to this scrape's time left
        (they were set from an earlier scrape's budget when it connected)."""
        if self.is_redis:
            pool = self.conn.default_channel.client.connection_pool
            pool.connection_kwargs.update(socket_timeout=timeout / 2,
                                          socket_connect_timeout=timeout / 2)
            # redis-py has no public list of a pool's connections; these are stable since 3.x.
            for conn in (*pool._available_connections, *pool._in_use_connections):
                conn.socket_timeout = conn.socket_connect_timeout = timeout / 2
                if conn._sock is not None:
                    conn._sock.settimeout(timeout)
        else:
            sock = getattr(self.conn.connection, "sock", None)  # py-amqp's socket
            if sock is not None:
                sock.settimeout(timeout)

    def _redis(self, queues: list[str]) -> dict[str, tuple[float, float | None]]:
        channel = self.conn.default_channel
        sep = getattr(channel, "sep", REDIS_DEFAULT_SEP)
        steps = sorted(set(REDIS_PRIORITIES) | set(getattr(channel, "priority_steps", ())))
        client = channel.client
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for pri in steps:
                    pipe.llen(f"{queue}{sep}{pri}" if pri else queue)
            sizes = pipe.execute()
        out: dict[str, tuple[float, float | None]] = {}
        for i, queue in enumerate(queues):
            out[queue] = (float(sum(sizes[i * len(steps):(i + 1) * len(steps)])), None)
        return out

    def _amqp(self, queues: list[str]) -> dict[str, tuple[float, float | None]]:
        not_found = tuple(self.conn.channel_errors)
        out: dict[str, tuple[float, float | None]] = {}
        for queue in queues:
            if self.channel is None:
                self.channel = self.conn.channel()
            try:
                _, messages, consumers = self.channel.queue_declare(queue=queue, passive=True)
            except not_found:  # no such queue: the broker closed our channel
                self.channel = None
                out[queue] = (0.0, 0.0)
                continue
            out[queue] = (float(messages), float(consumers))
        return out

    def close(self) -> None:
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            try:
                conn.collect()
            except Exception:
                log.debug('collector=celery msg="closing the broker connection failed"',
                          exc_info=True)


class CeleryCollector(Collector):
    """Queue lengths, workers and task counters of one Celery broker."""

    name = "celery"

    def __init__(self, settings: CelerySettings, start: bool = True) -> None:
        self.settings = settings
        self.app = make_app(settings)
        self.state = EventState(settings)
        self.receiver = EventReceiverThread(self.app, self.state, settings)
        self.inspector = InspectPoller(self.app, settings, self.state)
        self.queues = QueueReader(self.app, settings)
        self.role = "redis" if self.queues.is_redis else "amqp"
        self._lock = threading.Lock()
        if start:
            self.receiver.start()
            self.inspector.start()

    def collect(self, deadline: float) -> list[Metric]:
        self.receiver.ensure_running()
        snapshot = self.inspector.snapshot
        names = list(self.settings.queues)
        names += [q for q in snapshot.queues if q not in names]
        with self._lock:
            lengths = self.queues.read(names, deadline)
        length = GaugeMetricFamily("celery_queue_length",
                                   "Messages waiting in the queue (all priorities).",
                                   labels=["queue_name"])
        consumers = GaugeMetricFamily("celery_active_consumer_count",
                                      "The number of active consumers of the broker queue "
                                      "(RabbitMQ only).", labels=["queue_name"])
        for queue, (messages, n_consumers) in sorted(lengths.items()):
            length.add_metric([queue], messages)
            if n_consumers is not None:
                consumers.add_metric([queue], n_consumers)
        out: list[Metric] = [_gauge("celery_broker_up", "1 if the broker answered.", 1.0),
                             length]
        if not self.queues.is_redis:
            out.append(consumers)
        if self.settings.inspect_interval_seconds > 0:
            out += _queue_workers(sorted(lengths), snapshot)
        # The service is up when the broker answers and at least one worker is alive.
        out += self._service(1.0 if self.state.online_workers() else 0.0)
        out += self._background_metrics()
        return out

    def failure_metrics(self) -> list[Metric]:
        """Broker down: celery_broker_up 0, but the event and inspect state still shown."""
        out = [_gauge("celery_broker_up", "1 if the broker answered.", 0.0),
               *self._service(0.0)]
        try:
            out += self._background_metrics()
        except Exception:
            log.exception('collector=celery msg="event state metrics failed"')
        return out

    def _service(self, up: float) -> list[Metric]:
        # version: the workers' Celery version; role: the broker transport.
        versions = Counter(self.state.worker_versions())
        version = versions.most_common(1)[0][0] if versions else "unknown"
        return service_families("celery", up, version, self.role)

    def _background_metrics(self) -> list[Metric]:
        out = self.state.metrics()
        out += self.receiver.metrics()
        out += self._inspect_metrics()
        return out

    def _inspect_metrics(self) -> list[Metric]:
        snap = self.inspector.snapshot
        per_host = {
            "reserved": GaugeMetricFamily("celery_worker_tasks_reserved",
                                          "Tasks the worker has prefetched, waiting to run "
                                          "(inspect reserved).", labels=["hostname"]),
            "scheduled": GaugeMetricFamily("celery_worker_tasks_scheduled",
                                           "Tasks with an ETA/countdown held by the worker "
                                           "(inspect scheduled).", labels=["hostname"]),
            "registered": GaugeMetricFamily("celery_worker_tasks_registered",
                                            "Task types registered in the worker (inspect "
                                            "registered).", labels=["hostname"]),
            "max_concurrency": GaugeMetricFamily("celery_worker_pool_max_concurrency",
                                                 "Pool size of the worker (inspect stats).",
                                                 labels=["hostname"]),
        }
        pool = GaugeMetricFamily("celery_worker_pool_info",
                                 "Pool implementation of the worker (inspect stats).",
                                 labels=["hostname", "implementation"])
        active = GaugeMetricFamily("celery_worker_tasks_active",
                                   "The number of tasks the worker is currently processing "
                                   "(from its heartbeats).", labels=["hostname"])
        from_events = self.state.known_hosts()
        sums: dict[str, dict[str, float]] = {key: {} for key in ("active", *per_host)}
        pools: set[tuple[str, str]] = set()
        for node, data in snap.workers.items():
            host = node_host(node)
            for key, table in sums.items():
                value = data.get(key)
                if value is not None and not (key == "active" and host in from_events):
                    table[host] = table.get(host, 0.0) + float(value)
            pools.add((host, data["implementation"]))
        for host, value in sorted(sums.pop("active").items()):
            active.add_metric([host], value)  # events off: inspect active
        for key, family in per_host.items():
            for host, value in sorted(sums[key].items()):
                family.add_metric([host], value)
        for host, implementation in sorted(pools):
            pool.add_metric([host, implementation], 1.0)
        return [*per_host.values(), pool, active,
                _gauge("stackmon_celery_inspect_last_success_timestamp_seconds",
                       "Unix time of the last inspect round that succeeded (0 = never); "
                       "the celery_worker_tasks_reserved/scheduled/registered and pool "
                       "series are that old.", snap.time),
                _gauge("stackmon_celery_inspect_up",
                       "1 if the last inspect round succeeded.", 1.0 if self.inspector.ok
                       else 0.0)]

    def close(self) -> None:
        self.receiver.stop()
        self.inspector.stop()
        self.queues.close()


def _queue_workers(queues: list[str], snap: InspectSnapshot) -> list[Metric]:
    """celery_active_worker_count / _process_count per queue, from the last inspect round."""
    workers = GaugeMetricFamily("celery_active_worker_count",
                                "The number of active workers consuming the broker queue "
                                "(inspect active_queues).", labels=["queue_name"])
    processes = GaugeMetricFamily("celery_active_process_count",
                                  "The number of pool processes of the workers consuming the "
                                  "broker queue (inspect stats; 0 for a thread pool).",
                                  labels=["queue_name"])
    for queue in queues:
        consumers = [w for w in snap.workers.values() if queue in w["queues"]]
        workers.add_metric([queue], float(len(consumers)))
        processes.add_metric([queue], float(sum(w["processes"] for w in consumers)))
    return [workers, processes]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def build(settings: CelerySettings, scrape: ScrapeSettings) -> list[Collector]:
    """What /metrics serves: one collector for the broker."""
    return [CeleryCollector(settings)]
