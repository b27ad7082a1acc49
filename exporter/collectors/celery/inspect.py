"""The inspect side of the Celery collector: the workers' replies to the inspect
broadcasts (stats, active, reserved, scheduled, registered, active_queues), refreshed
every ``inspect_interval_seconds`` by a thread of its own so that broadcast timeouts
never reach the scrape::

    celery_worker_pool_info{hostname="web-1",implementation="prefork"} 1.0
    stackmon_celery_inspect_last_success_timestamp_seconds 1.7963e+09
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from exporter import logs
from exporter.collectors.celery.events import EventState
from exporter.collectors.celery.settings import CelerySettings

log = logging.getLogger("stackmon.collectors.celery")

# The inspect broadcasts made on every refresh (celery.app.control.Inspect methods).
INSPECT_METHODS = ("stats", "active", "reserved", "scheduled", "registered", "active_queues")


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

    def request_stop(self) -> None:
        """Ask the thread to end after the broadcast it waits for; stop() also waits."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                if self._stop.is_set():
                    break  # a round cut short by close() says nothing
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
                if self._stop.is_set():  # each broadcast may wait inspect_timeout_seconds
                    return
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
