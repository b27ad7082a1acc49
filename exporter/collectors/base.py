"""The collector contract and the CollectorSet that runs collectors on every scrape.

Each scrape runs every enabled collector in its own thread under one deadline:

* isolation: a collector that raises or overruns contributes only
  ``stackmon_scrape_collector_success{collector="x"} 0`` and its ``failure_metrics()``
  (e.g. ``pg_up 0``); everyone else's data is still served;
* no pile-up: a collector still running from an earlier, timed-out scrape is not
  started again until it returns;
* single-flight: scrapes that arrive while a collection is running share its result.

Sample self-metrics::

    stackmon_scrape_collector_duration_seconds{collector="host"} 0.0021
    stackmon_scrape_collector_success{collector="host"} 1.0
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger("stackmon.collectors")


class Collector(ABC):
    """One backend: ``collect`` queries it once and returns fresh metric families."""

    name: ClassVar[str]

    @abstractmethod
    def collect(self, deadline: float) -> list[Metric]:
        """Query the backend once before ``deadline`` (time.monotonic()); raise on failure."""

    def failure_metrics(self) -> list[Metric]:
        """Metrics served when ``collect`` raised or overran, e.g. ``pg_up 0``."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, most collectors hold nothing
        """Release connections and threads at shutdown."""


@dataclass
class RunState:
    """What the landing page and self-metrics know about a collector's last run."""

    last_duration: float = 0.0
    last_success: bool | None = None
    last_success_time: float | None = None  # wall clock
    last_error: str = ""
    busy: bool = False


@dataclass
class _Outcome:
    metrics: list[Metric]
    success: bool
    duration: float


class _Flight:
    """One collection run that concurrent scrapes share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[Metric] = []


def merge_families(metrics: list[Metric]) -> list[Metric]:
    """Join families that several collectors share (``stackmon_service_up``) into one."""
    by_name: dict[str, Metric] = {}
    out: list[Metric] = []
    for family in metrics:
        first = by_name.get(family.name)
        if first is None:
            by_name[family.name] = family
            out.append(family)
        else:
            first.samples.extend(family.samples)
    return out


class CollectorSet:
    """Runs collectors in parallel under a deadline and adds the self-metrics."""

    def __init__(self, collectors: Sequence[Collector],
                 extras: Sequence[Callable[[], Iterable[Metric]]] = ()) -> None:
        """``extras`` are cheap in-process sources (build info, process metrics)."""
        self.collectors = list(collectors)
        self.state = {c.name: RunState() for c in self.collectors}
        self._lock = threading.Lock()
        self._flight: _Flight | None = None
        self._extras = list(extras)

    def collect(self, deadline: float) -> list[Metric]:
        """Collect once, or join the collection already in flight."""
        with self._lock:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight()
        if not leader:
            # A flight is bounded by its own deadline; wait for it (plus a margin).
            flight.done.wait(max(0.0, deadline - time.monotonic()) + 1.0)
            if flight.done.is_set():
                return flight.result
            return self._collect_now(deadline)  # pathological: the leader is stuck
        try:
            flight.result = self._collect_now(deadline)
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()
        return flight.result

    def _collect_now(self, deadline: float) -> list[Metric]:
        outcomes: dict[str, _Outcome] = {}
        threads: list[tuple[Collector, threading.Thread, dict[str, _Outcome]]] = []
        started = time.monotonic()
        for collector in self.collectors:
            state = self.state[collector.name]
            with self._lock:
                if state.busy:
                    log.warning("collector=%s msg=\"still running from an earlier scrape; "
                                "not started again\"", collector.name)
                    outcomes[collector.name] = _Outcome([], False, 0.0)
                    continue
                state.busy = True
            box: dict[str, _Outcome] = {}
            thread = threading.Thread(target=self._run_one, args=(collector, deadline, box),
                                      name=f"collector-{collector.name}", daemon=True)
            thread.start()
            threads.append((collector, thread, box))
        for collector, thread, box in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            outcome = box.get("outcome")
            if outcome is None:
                log.warning("collector=%s msg=\"deadline exceeded\"", collector.name)
                self.state[collector.name].last_error = "deadline exceeded"
                outcome = _Outcome([], False, time.monotonic() - started)
            outcomes[collector.name] = outcome

        metrics: list[Metric] = []
        duration = GaugeMetricFamily(
            "stackmon_scrape_collector_duration_seconds",
            "Time a collector took in this scrape.", labels=["collector"])
        success = GaugeMetricFamily(
            "stackmon_scrape_collector_success",
            "1 if the collector finished without error within the deadline.",
            labels=["collector"])
        for collector in self.collectors:
            outcome = outcomes[collector.name]
            if outcome.success:
                metrics.extend(outcome.metrics)
            else:
                metrics.extend(self._failure_metrics(collector))
            duration.add_metric([collector.name], outcome.duration)
            success.add_metric([collector.name], 1.0 if outcome.success else 0.0)
        metrics.extend((duration, success))
        for extra in self._extras:
            metrics.extend(extra())
        return merge_families(metrics)

    def _failure_metrics(self, collector: Collector) -> list[Metric]:
        try:
            return collector.failure_metrics()
        except Exception:  # a bug here must not break the scrape either
            log.exception("collector=%s msg=\"failure_metrics raised\"", collector.name)
            return []

    def _run_one(self, collector: Collector, deadline: float, box: dict[str, _Outcome]) -> None:
        state = self.state[collector.name]
        start = time.monotonic()
        try:
            metrics = collector.collect(deadline)
            ok = True
        except Exception as err:  # isolation: one collector never breaks the scrape
            metrics, ok = [], False
            state.last_error = type(err).__name__
            log.warning("collector=%s msg=\"collect failed\" err=\"%s\"",
                        collector.name, err, exc_info=log.isEnabledFor(logging.DEBUG))
        elapsed = time.monotonic() - start
        if ok and time.monotonic() > deadline:
            ok, metrics = False, []
            state.last_error = "deadline exceeded"
        state.last_duration = elapsed
        state.last_success = ok
        if ok:
            state.last_success_time = time.time()
            state.last_error = ""
        box["outcome"] = _Outcome(metrics, ok, elapsed)
        with self._lock:
            state.busy = False

    def close(self) -> None:
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:
                log.exception("collector=%s msg=\"close failed\"", collector.name)
