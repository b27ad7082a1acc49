"""Celery: broker up, queue lengths from the broker, event state and inspect data.

On every scrape the collector reads the queue lengths from the broker (``broker.py``,
the one backend call of the scrape) and adds copies of two states kept up to date in the
background: the event state (``events.py``) and the last inspect replies (``inspect.py``:
stats, active, reserved, scheduled, registered, active_queues), refreshed every
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
from collections import Counter

from exporter.collectors.base import Collector, service_families
from exporter.collectors.celery.broker import QueueReader, make_app
from exporter.collectors.celery.events import EventReceiverThread, EventState, node_host
from exporter.collectors.celery.flower import FlowerMetrics
from exporter.collectors.celery.inspect import InspectPoller, InspectSnapshot
from exporter.collectors.celery.settings import CelerySettings
from exporter.metrics import GaugeMetricFamily, Metric
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.celery")


class CeleryCollector(Collector):
    """Queue lengths, workers and task counters of one Celery broker."""

    name = "celery"

    def __init__(self, settings: CelerySettings, start: bool = True) -> None:
        self.settings = settings
        self.app = make_app(settings)
        self.state = EventState(settings)
        self.flower = FlowerMetrics(self.state) if settings.flower_metrics else None
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
        if self.flower is not None:
            out += self.flower.metrics()
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
        # Both threads may be in broker I/O: the receiver looks at its flag once a second,
        # the inspector between broadcasts (with no worker to answer, each waits the whole
        # inspect_timeout_seconds). Ask both before waiting for either, so that a SIGTERM
        # ends the exporter in about a second, well within `docker stop`'s grace.
        self.receiver.request_stop()
        self.inspector.request_stop()
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
