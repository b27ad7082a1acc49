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

import enum
import functools
import importlib
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from exporter import logs
from exporter.metrics import GaugeMetricFamily, Metric
from exporter.settings import ScrapeSettings

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


# A factory gets its own settings section and the scrape settings, nothing else.
Build = Callable[[Any, ScrapeSettings], "list[Collector]"]
Probes = Callable[[Any, ScrapeSettings], "dict[str, list[Collector]]"]
# ``checks(collector, deadline)``: the diagnostics of one built collector, after it ran
# (``stackmon check`` and the findings on /); returns ``exporter.checks.Finding``s.
Diagnose = Callable[[Any, float], "list[Any]"]


@dataclass(frozen=True)
class CollectorSpec:
    """One row of the collector table, declared in ``collectors/<name>/__init__.py``.

    ``name`` gives ``--collector.<name>``, ``collectors.<name>`` in the file and the label
    ``collector="<name>"``; ``settings`` is its section class (YAML key ``name``);
    ``build`` what plain /metrics serves, ``probes`` one collector list per
    ``/probe?target=<name>``. A ``default`` of None means "on when ``configured``".
    ``checks`` runs the collector's diagnostics (``<name>/checks.py``).
    """

    name: str
    help: str
    settings: type
    build: Build
    default: bool | None = True
    configured: Callable[[Any], bool] | None = None
    probes: Probes | None = None
    checks: Diagnose | None = None


def lazy(module: str, function: str) -> Callable[..., Any]:
    """``module.function(*args)``, imported on first call: a host-only exporter never
    loads psycopg, redis-py or Celery, which keeps its memory small."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args)

    call.__qualname__ = f"{module}.{function}"
    call.__module__ = module  # where it lives (exporter.checks finds a catalogue by it)
    return call


@dataclass
class RunState:
    """What the landing page and self-metrics know about a collector's last run."""

    last_duration: float = 0.0
    last_success: bool | None = None
    last_success_time: float | None = None  # wall clock
    last_error: str = ""


T = TypeVar("T")


class CallState(enum.Enum):
    """How one call in a ParallelRunner round ended."""

    OK = "ok"
    ERROR = "error"  # raised
    TIMEOUT = "timeout"  # still running at the deadline
    BUSY = "busy"  # its call from an earlier round had not returned: not started


@dataclass
class Outcome(Generic[T]):
    """How one call in a ParallelRunner round ended, with its value or error."""

    state: CallState
    value: T | None = None
    error: Exception | None = None
    duration: float = 0.0
    finished: float = 0.0  # time.monotonic() when it returned


# Calls are asked to give up this much before a round's deadline (at most a fifth of the
# time left), and the round waits for them until half of it has passed: a call that
# honours its own deadline has that half to report, so it is not still running ("busy")
# when the next round comes.
DEADLINE_MARGIN_SECONDS = 0.2
# One call of a round: (key, the call with its give-up time bound, the round's outcomes).
_Job = tuple[str, "Callable[[], T]", "_Round[T]"]


class _Round(Generic[T]):
    """The outcomes of one ParallelRunner.run(), filled in by the threads as they finish."""

    def __init__(self, pending: int) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.pending = pending
        self.outcomes: dict[str, Outcome[T]] = {}

    def deliver(self, key: str, outcome: Outcome[T]) -> None:
        with self.cond:
            self.outcomes[key] = outcome
            self.pending -= 1
            if self.pending <= 0:
                self.cond.notify()

    def wait(self, until: float) -> dict[str, Outcome[T]]:
        with self.cond:
            while self.pending > 0:
                left = until - time.monotonic()
                if left <= 0 or not self.cond.wait(left):
                    break
            return dict(self.outcomes)


class ParallelRunner(Generic[T]):
    """Runs one call per key, each in its own daemon thread, and waits until the deadline.

    Each call gets the time (``time.monotonic()``) by which it should give up, a margin
    before the deadline. A key whose call from an earlier round has not returned yet is
    not started again (``CallState.BUSY``), so a hung backend holds one thread, never a
    pile of them. Used for the collectors of a scrape and for the checks of the services
    collector.

    With ``keep_threads`` each key keeps its thread between rounds, waiting for the next
    call: starting a thread per collector per scrape was ~11 % of an all-in-one scrape's
    CPU (bench/RESULTS.md).  The services collector, with a key per check, starts them
    per round instead, so a hundred checks do not hold a hundred idle threads.
    """

    def __init__(self, name: str, keep_threads: bool = False) -> None:
        self.name = name
        self.keep_threads = keep_threads
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        # key -> the queue its long-lived thread takes calls from (keep_threads only)
        self._workers: dict[str, queue.SimpleQueue[_Job[T] | None]] = {}

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._busy

    def run(self, calls: Mapping[str, Callable[[float], T]], deadline: float
            ) -> dict[str, Outcome[T]]:
        margin = min(DEADLINE_MARGIN_SECONDS, 0.2 * max(0.0, deadline - time.monotonic()))
        give_up, wait_until = deadline - margin, deadline - margin / 2
        outcomes: dict[str, Outcome[T]] = {}
        todo: list[str] = []
        with self._lock:
            for key in calls:
                if key in self._busy:
                    outcomes[key] = Outcome(CallState.BUSY)
                else:
                    self._busy.add(key)
                    todo.append(key)
        round_: _Round[T] = _Round(len(todo))
        started = time.monotonic()
        for key in todo:
            job: _Job[T] = (key, functools.partial(calls[key], give_up), round_)
            if self.keep_threads:
                self._worker(key).put(job)
            else:
                threading.Thread(target=self._call, args=(job,), name=f"{self.name}-{key}",
                                 daemon=True).start()
        finished = round_.wait(wait_until) if todo else {}
        for key in todo:
            outcomes[key] = finished.get(key) or Outcome(
                CallState.TIMEOUT, duration=time.monotonic() - started)
        return outcomes

    def _worker(self, key: str) -> queue.SimpleQueue[_Job[T] | None]:
        jobs = self._workers.get(key)
        if jobs is None:
            jobs = self._workers[key] = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs,), name=f"{self.name}-{key}",
                             daemon=True).start()
        return jobs

    def _serve(self, jobs: queue.SimpleQueue[_Job[T] | None]) -> None:
        while (job := jobs.get()) is not None:
            self._call(job)

    def close(self) -> None:
        """End the kept threads once their current call (if any) returns."""
        with self._lock:
            workers, self._workers = self._workers, {}
        for jobs in workers.values():
            jobs.put(None)

    def _call(self, job: _Job[T]) -> None:
        key, call, round_ = job
        start = time.monotonic()
        try:
            outcome: Outcome[T] = Outcome(CallState.OK, value=call())
        except Exception as err:  # isolation: report it, never let it escape the thread
            outcome = Outcome(CallState.ERROR, error=err)
        finally:
            with self._lock:
                self._busy.discard(key)
        outcome.finished = time.monotonic()
        outcome.duration = outcome.finished - start
        round_.deliver(key, outcome)


class _Flight:
    """One collection run that concurrent scrapes share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[Metric] = []


# Families every backend shares, declared once so their HELP and labels agree.
SERVICE_UP = ("stackmon_service_up", "1 if the service answered in this scrape.")
SERVICE_INFO = ("stackmon_service_info", "Version and role of a service (value always 1).")


def service_up_family() -> GaugeMetricFamily:
    """``stackmon_service_up{service}``: add one sample per service."""
    return GaugeMetricFamily(*SERVICE_UP, labels=["service"])


def service_info_family() -> GaugeMetricFamily:
    """``stackmon_service_info{service,version,role}``: add one sample per service."""
    return GaugeMetricFamily(*SERVICE_INFO, labels=["service", "version", "role"])


def service_families(service: str, up: float, version: str | None = None,
                     role: str = "") -> list[Metric]:
    """The up gauge of one service, plus its info when the version is known::

        stackmon_service_up{service="redis"} 1.0
        stackmon_service_info{role="primary",service="redis",version="7.0.15"} 1.0
    """
    up_family = service_up_family()
    up_family.add_metric([service], up)
    if version is None:
        return [up_family]
    info = service_info_family()
    info.add_metric([service, version, role], 1.0)
    return [up_family, info]


def _series_keys(family: Metric) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Each sample's (name, label set): `{("up", frozenset({("service", "redis")}))}`."""
    return {(s.name, frozenset(s.labels.items())) for s in family.samples}


class DuplicateSeriesError(ValueError):
    """Two collectors exported the same family differently, or the same series twice."""


def merge_families(metrics: list[Metric]) -> list[Metric]:
    """Join families that several collectors share (``stackmon_service_up``) into one.

    Like client_python's registry it refuses what would make the exposition ambiguous:
    a family declared with another HELP or type, or a series (name and label set) that
    is already there. That is a bug in a collector, so it fails loudly.
    """
    by_name: dict[str, Metric] = {}
    # Series keys only of the names that more than one family declares: a key for every
    # sample of every family made a 200,000-series scrape cost 2.4 s of CPU instead of
    # 1.0 s (bench/RESULTS.md, "Scale"), for the few families that are ever shared.
    series: dict[str, set[tuple[str, frozenset[tuple[str, str]]]]] = {}
    out: list[Metric] = []
    for family in metrics:
        first = by_name.get(family.name)
        if first is None:
            by_name[family.name] = family
            out.append(family)
            continue
        if (first.documentation, first.type) != (family.documentation, family.type):
            raise DuplicateSeriesError(
                f"{family.name}: declared as {first.type} {first.documentation!r} and as "
                f"{family.type} {family.documentation!r}")
        seen = series.get(family.name)
        if seen is None:  # the second family of this name: index the first one now
            seen = series[family.name] = _series_keys(first)
        keys = _series_keys(family)
        twice = seen & keys
        if twice:
            name, labels = sorted(twice, key=repr)[0]
            raise DuplicateSeriesError(f"{name}{dict(sorted(labels))}: exported twice")
        seen |= keys
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
        self._runner: ParallelRunner[list[Metric]] = ParallelRunner("collector",
                                                                    keep_threads=True)
        self._flight: _Flight | None = None
        self._extras = list(extras)
        self._failures = logs.RepeatedFailures(log)

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
        outcomes = self._runner.run({c.name: c.collect for c in self.collectors}, deadline)
        results: dict[str, tuple[list[Metric], bool, float]] = {}
        for collector in self.collectors:
            outcome = outcomes[collector.name]
            ok = outcome.state is CallState.OK and outcome.finished <= deadline
            self._record(collector.name, outcome, ok)
            results[collector.name] = (outcome.value or [] if ok else [], ok, outcome.duration)

        metrics: list[Metric] = []
        duration = GaugeMetricFamily(
            "stackmon_scrape_collector_duration_seconds",
            "Time a collector took in this scrape.", labels=["collector"])
        success = GaugeMetricFamily(
            "stackmon_scrape_collector_success",
            "1 if the collector finished without error within the deadline.",
            labels=["collector"])
        for collector in self.collectors:
            collected, ok, elapsed = results[collector.name]
            metrics.extend(collected if ok else self._failure_metrics(collector))
            duration.add_metric([collector.name], elapsed)
            success.add_metric([collector.name], 1.0 if ok else 0.0)
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

    def _record(self, name: str, outcome: Outcome[list[Metric]], ok: bool) -> None:
        """Log a failure and remember the run for the landing page."""
        state = self.state[name]
        # Logged when the failure starts or changes kind, then once a minute with a count
        # (logs.RepeatedFailures): a backend down for hours must not log every scrape.
        key = f"collector={name}"
        if outcome.state is CallState.BUSY:
            self._failures.failed(key, "still running from an earlier scrape; not started "
                                  "again", "deadline")
            state.last_error = "still running"
        elif outcome.state is CallState.ERROR:
            err = outcome.error
            assert err is not None
            self._failures.failed(key, "collect failed", type(err).__name__,
                                  'cause=%s err="%s"', logs.cause(err), err,
                                  exc_info=err if log.isEnabledFor(logging.DEBUG) else None)
            state.last_error = type(err).__name__
        elif not ok:
            self._failures.failed(key, "deadline exceeded", "deadline")
            state.last_error = "deadline exceeded"
        else:
            self._failures.ok(key)
        state.last_duration = outcome.duration
        state.last_success = ok
        if ok:
            state.last_success_time = time.time()
            state.last_error = ""

    def close(self) -> None:
        self._runner.close()
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:
                log.exception("collector=%s msg=\"close failed\"", collector.name)


class _BareName(str):
    """A family name that stays as it is when prometheus_client appends ``_total``.

    Some anchors export counters without ``_total`` (postgres_exporter's
    ``pg_stat_database_xact_commit``, redis_exporter's ``redis_total_error_replies``);
    prometheus_client's text encoder writes a counter's HELP/TYPE lines for
    ``name + "_total"``, which would announce a name no sample has.  Appending ``_total``
    to this name returns the name itself; any other suffix (``_created``) is appended.
    """

    __slots__ = ()

    def __add__(self, other: str) -> str:
        return str(self) if other == "_total" else str(self) + other


def bare_counter(name: str, help_text: str, labels: Sequence[str] = ()) -> Metric:
    """A counter family whose samples are named exactly ``name`` (no ``_total``); add
    samples with ``family.add_sample(name, labels, value)``.  Sample output::

        # TYPE pg_stat_database_xact_commit counter
        pg_stat_database_xact_commit{datid="5",datname="postgres"} 1042.0
    """
    family = Metric(name, help_text, "counter")
    family.name = _BareName(name)
    family._labelnames = tuple(labels)
    return family
