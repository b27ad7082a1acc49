"""CollectorSet failure paths with fake collectors that raise, hang and run slowly."""

from __future__ import annotations

import threading
import time

import pytest

from exporter.collectors.base import Collector, CollectorSet
from exporter.http.server import scrape_deadline
from exporter.metrics import GaugeMetricFamily, Metric


class Fake(Collector):
    def __init__(self, name: str, behaviour: str = "ok", delay: float = 0.0) -> None:
        self.name = name  # type: ignore[misc]
        self.behaviour = behaviour
        self.delay = delay
        self.release = threading.Event()
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def collect(self, deadline: float) -> list[Metric]:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.behaviour == "raise":
                raise RuntimeError("backend exploded")
            if self.behaviour == "hang":
                self.release.wait(30)
            if self.delay:
                time.sleep(self.delay)  # simulates a slow backend, not synchronisation
            return [GaugeMetricFamily(f"{self.name}_value", "A value.", value=1.0)]
        finally:
            with self.lock:
                self.running -= 1

    def failure_metrics(self) -> list[Metric]:
        return [GaugeMetricFamily(f"{self.name}_up", "Up.", value=0.0)]


def by_name(metrics: list[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {m.name: [(s.labels, s.value) for s in m.samples] for m in metrics}


def success(metrics: list[Metric], collector: str) -> float:
    return next(v for labels, v in by_name(metrics)["stackmon_scrape_collector_success"]
                if labels["collector"] == collector)


def test_raising_collector_is_isolated() -> None:
    good, bad = Fake("good"), Fake("bad", "raise")
    metrics = CollectorSet([good, bad]).collect(time.monotonic() + 2)
    names = by_name(metrics)
    assert names["good_value"] == [({}, 1.0)]
    assert "bad_value" not in names
    assert names["bad_up"] == [({}, 0.0)]
    assert success(metrics, "good") == 1.0
    assert success(metrics, "bad") == 0.0


def test_hanging_collector_misses_deadline_but_scrape_returns() -> None:
    good, hung = Fake("good"), Fake("hung", "hang")
    cs = CollectorSet([good, hung])
    start = time.monotonic()
    metrics = cs.collect(start + 0.3)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert success(metrics, "hung") == 0.0
    assert success(metrics, "good") == 1.0
    assert by_name(metrics)["hung_up"] == [({}, 0.0)]
    hung.release.set()


def test_timed_out_collector_is_not_started_again() -> None:
    hung = Fake("hung", "hang")
    cs = CollectorSet([hung])
    for _ in range(3):
        metrics = cs.collect(time.monotonic() + 0.1)
        assert success(metrics, "hung") == 0.0
    assert hung.calls == 1
    assert hung.max_running == 1
    hung.release.set()
    deadline = time.monotonic() + 5
    while cs._runner.busy("hung") and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics = cs.collect(time.monotonic() + 2)
    assert success(metrics, "hung") == 1.0
    assert hung.calls == 2


def test_collectors_run_in_parallel() -> None:
    slow = [Fake(f"slow{i}", delay=0.3) for i in range(4)]
    start = time.monotonic()
    metrics = CollectorSet(slow).collect(time.monotonic() + 5)
    assert time.monotonic() - start < 1.0  # sequential would take 1.2 s
    assert all(success(metrics, c.name) == 1.0 for c in slow)


def test_concurrent_scrapes_share_one_collection() -> None:
    slow = Fake("slow", delay=0.3)
    cs = CollectorSet([slow])
    results: list[list[Metric]] = []
    threads = [threading.Thread(target=lambda: results.append(cs.collect(time.monotonic() + 5)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert slow.calls == 1
    assert all(success(r, "slow") == 1.0 for r in results)


def test_duration_and_state_recorded() -> None:
    slow = Fake("slow", delay=0.05)
    cs = CollectorSet([slow])
    metrics = cs.collect(time.monotonic() + 2)
    duration = by_name(metrics)["stackmon_scrape_collector_duration_seconds"][0][1]
    assert 0.05 <= duration < 1.9
    assert cs.state["slow"].last_success is True
    assert cs.state["slow"].last_success_time is not None


def test_result_overrunning_deadline_counts_as_failure() -> None:
    slow = Fake("slow", delay=0.2)
    metrics = CollectorSet([slow]).collect(time.monotonic() + 0.05)
    assert success(metrics, "slow") == 0.0
    assert "slow_value" not in by_name(metrics)


def test_families_shared_by_collectors_are_merged() -> None:
    class Service(Fake):
        def collect(self, deadline: float) -> list[Metric]:
            fam = GaugeMetricFamily("stackmon_service_up", "Up.", labels=["service"])
            fam.add_metric([self.name], 1.0)
            return [fam]
    metrics = CollectorSet([Service("a"), Service("b")]).collect(time.monotonic() + 2)
    assert [m.name for m in metrics].count("stackmon_service_up") == 1
    assert sorted(lbl["service"] for lbl, _ in by_name(metrics)["stackmon_service_up"]) == [
        "a", "b"]


def test_deadline_from_prometheus_header() -> None:
    now = time.monotonic()
    assert scrape_deadline({}, 10.0, 0.5) - now == pytest.approx(10.0, abs=0.1)
    d = scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "3"}, 10.0, 0.5)
    assert d - now == pytest.approx(2.5, abs=0.1)
    d = scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "30"}, 10.0, 0.5)
    assert d - now == pytest.approx(10.0, abs=0.1)
    d = scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "garbage"}, 10.0, 0.5)
    assert d - now == pytest.approx(10.0, abs=0.1)
    d = scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "0.2"}, 10.0, 0.5)
    assert 0.05 < d - now <= 0.2


def test_collector_threads_are_kept_between_scrapes() -> None:
    """One long-lived thread per collector, not one per scrape (bench/RESULTS.md: starting
    them was ~11 % of a scrape's CPU); a hung one is not started again and its thread
    serves the next scrape once the call returns; close() ends them."""
    ok, hang = Fake("ok"), Fake("slow", "hang")
    cs = CollectorSet([ok, hang])
    before = set(threading.enumerate())
    threads: list[set[threading.Thread]] = []
    for _ in range(3):
        metrics = cs.collect(time.monotonic() + 0.3)
        threads.append(set(threading.enumerate()) - before)
        assert success(metrics, "ok") == 1.0
        assert success(metrics, "slow") == 0.0
    assert threads[0] == threads[1] == threads[2]
    assert sorted(t.name for t in threads[0]) == ["collector-ok", "collector-slow"]
    assert hang.calls == 1  # busy: not started again while it hangs
    hang.release.set()
    wait = time.monotonic() + 10
    while cs._runner.busy("slow") and time.monotonic() < wait:
        time.sleep(0.01)  # polling a condition with a deadline
    hang.behaviour = "ok"
    metrics = cs.collect(time.monotonic() + 2)
    assert success(metrics, "slow") == 1.0
    assert hang.calls == 2
    assert set(threading.enumerate()) - before == threads[0]
    cs.close()
    for thread in threads[0]:
        thread.join(5)
        assert not thread.is_alive()
