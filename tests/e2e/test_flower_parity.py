"""stackmon's Flower families against a real Flower (PyPI ``flower``, the test extra)
watching the same real workers on a Redis of this module's own.

Two workers: ``slow`` (one thread) runs a 2 s task, then a long one that waited those 2 s
at the worker (so the prefetch figures stay non-zero while the module runs) with a third
waiting behind it; ``main`` (two threads) runs a mix of succeeding, failing, retried,
revoked and ETA tasks.  Then:

- the scrapes agree: the same flower_* families and types, the same label sets, equal
  counters, gauges and histogram buckets (only prometheus_client's ``*_created`` series
  are Flower's alone: the ``# flower`` entries of tests/parity-allowlist.txt);
- every expression of Flower's Grafana dashboard and alert rules (mher/flower,
  ``examples/celery-monitoring-grafana-dashboard.json`` and ``examples/prometheus-
  alerts.yaml``), written here in our own words with the same metrics, labels and
  aggregations (Grafana's ``$worker``/``$task`` at All, ``$__range`` 5m,
  ``$__rate_interval`` 15s), asked of two real Prometheus servers, one scraping Flower,
  one stackmon: wherever Flower's returns data, stackmon's returns the same label sets;
- after ``main`` shuts down, both say ``flower_worker_online 0`` and Flower's
  CeleryWorkerOffline expression returns it on both;
- after ``slow`` is killed, stackmon says 0 and Flower still 1 (the documented
  difference: Flower only believes the worker's own worker-offline).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.celery import Worker, client_app, own_redis, start_worker
from tests.helpers.exporter import (
    Exporter,
    free_port,
    http_get,
    promtool_complaints,
    start_exporter,
    stop_processes,
    wait_for,
)
from tests.helpers.openmetrics import classic_series, openmetrics_series, scrape_openmetrics
from tests.helpers.parity import Scrape, allowed, allowlist

ANCHOR = "flower"
PROMETHEUS = shutil.which("prometheus")
LONG_TASK_SECONDS = 600.0  # outlives the module; the worker is killed at the end
N_OK, M_FAIL, K_RETRY = 6, 2, 2
HEARTBEAT_TIMEOUT = 6.0  # workers send one every 2 s

# Flower's dashboard panels and template variables, then its alert rules.
ALL = 'worker=~".*", task=~".*"'
QUERIES = {
    "online workers": 'count(flower_worker_online{worker=~".*"} == 1) or vector(0)',
    "offline workers": 'count(flower_worker_online{worker=~".*"} == 0) or vector(0)',
    "processed tasks in range": f'sum(increase(flower_events_total{{{ALL}, '
                                f'type=~"task-(succeeded|failed)"}}[5m])) or vector(0)',
    "failed tasks in range": f'sum(increase(flower_events_total{{{ALL}, '
                             f'type="task-failed"}}[5m])) or vector(0)',
    "active tasks": 'flower_worker_number_of_currently_executing_tasks{worker=~".*"}',
    "processed tasks by worker": f'sum by (worker) (increase(flower_events_total{{{ALL}, '
                                 f'type=~"task-(succeeded|failed)"}}[15s]))',
    "failed tasks by worker": f'sum by (worker) (increase(flower_events_total{{{ALL}, '
                              f'type="task-failed"}}[15s]))',
    "retried tasks by worker": f'sum by (worker) (increase(flower_events_total{{{ALL}, '
                               f'type="task-retried"}}[15s]))',
    "prefetched tasks by worker": f"sum by (worker) (flower_worker_prefetched_tasks{{{ALL}}})",
    "prefetch time by task": f"avg by (task) (flower_task_prefetch_time_seconds{{{ALL}}})",
    "mean task runtime": f"sum by (task) (rate(flower_task_runtime_seconds_sum{{{ALL}}}[15s]))"
                         f" / clamp_min(sum by (task) (rate(flower_task_runtime_seconds_count"
                         f"{{{ALL}}}[15s])), 1e-9)",
    "p95 task runtime": f"histogram_quantile(0.95, sum by (le, task) "
                        f"(rate(flower_task_runtime_seconds_bucket{{{ALL}}}[15s])))",
    "variable worker": "group by (worker) (flower_worker_online)",
    "variable task": "group by (task) (flower_events_total)",
    "alert task failure ratio": '100 * (sum by (task) (avg_over_time(flower_events_total'
                                '{type="task-failed"}[15m])) / sum by (task) (avg_over_time('
                                'flower_events_total{type=~"task-failed|task-succeeded"}'
                                '[15m]))) > 1',
    "alert task prefetch time": "sum by (task, worker) (avg_over_time("
                                "flower_task_prefetch_time_seconds[15m])) > 1",
}
WORKER_OFFLINE = "flower_worker_online == 0"  # Flower's CeleryWorkerOffline alert


@dataclass
class Rig:
    stackmon: Exporter
    flower_url: str
    slow: Worker
    main: Worker
    prometheus: dict[str, str]  # "flower"/"stackmon" -> URL of the Prometheus scraping it
    mix_failed: str | None = None  # why the task mix never finished, once it has been waited for

    def scrapes(self) -> tuple[Scrape, Scrape]:
        return (Scrape.get(self.flower_url + "/metrics"),
                Scrape.parse(self.stackmon.get()[2].decode()))


def start_flower(broker: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``celery flower`` with Flower's defaults, on a free loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACKMON_", "FLOWER_", "CELERY_"))}
    log = (tmp / "flower.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", f"--broker={broker}", "flower",
         "--address=127.0.0.1", f"--port={port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"flower exited: {(tmp / 'flower.log').read_text()}")
        return http_get(url + "/healthcheck", timeout=2)[0] == 200

    wait_for(ready, timeout=30, what="flower to answer")
    return proc, url


def start_prometheus(target: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Prometheus of its own scraping ``target`` every second."""
    assert PROMETHEUS is not None
    tmp.mkdir()
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                      "scrape_configs:\n  - job_name: celery\n"
                      f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_get(url + "/-/ready")[0] == 200, timeout=30, what="prometheus")
    return proc, url


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed; run scripts/test-services.sh")
    tmp = tmp_path_factory.mktemp("flower")
    with ExitStack() as stack:
        redis = stack.enter_context(own_redis())
        broker = redis.url()
        stackmon = start_exporter(["--no-collector.host"], {
            "STACKMON_CELERY_BROKER_URL": broker, "STACKMON_CELERY_FLOWER_METRICS": "true",
            "STACKMON_CELERY_QUEUES": "celery,slow",
            "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "0",
            "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT)})
        stack.callback(stackmon.stop)
        wait_for(lambda: stackmon.scrape().get("stackmon_celery_events_receiver_up") == 1,
                 timeout=30, what="stackmon's event receiver")
        flower, flower_url = start_flower(broker, tmp)
        stack.callback(stop_processes, flower)
        slow = start_worker(broker, queues="slow", concurrency=1)
        stack.callback(slow.kill)
        main = start_worker(broker, queues="celery", concurrency=2)
        stack.callback(main.kill)
        prometheus = {}
        for name, target in (("flower", flower_url), ("stackmon", stackmon.url)):
            proc, url = start_prometheus(target.removeprefix("http://"), tmp / f"prom-{name}")
            stack.callback(stop_processes, proc)
            prometheus[name] = url
        rig = Rig(stackmon, flower_url, slow, main, prometheus)

        def both_online() -> bool:
            flower_side, ours = rig.scrapes()
            return all(s.values("flower_worker_online").get(
                frozenset({("worker", w.hostname)})) == 1
                for s in (flower_side, ours) for w in (slow, main))

        wait_for(both_online, timeout=60, what="both workers online in Flower and stackmon")
        run_tasks(client_app(broker), main)
        yield rig


def run_tasks(app: Any, main: Worker) -> None:
    """The slow lane first (its prefetch waits), then the mix on ``main``."""
    app.send_task("stackmon.sleep", args=[2.0], queue="slow")
    for _ in range(2):
        app.send_task("stackmon.sleep", args=[LONG_TASK_SECONDS], queue="slow")
    revoked = "stackmon-flower-revoked"
    assert app.control.revoke(revoked, reply=True, timeout=10, destination=[main.hostname])
    app.send_task("stackmon.ok", args=[0], task_id=revoked, queue="celery")
    for i in range(N_OK):
        app.send_task("stackmon.ok", args=[i], queue="celery")
    for _ in range(M_FAIL):
        app.send_task("stackmon.fail", queue="celery")
    for _ in range(K_RETRY):
        app.send_task("stackmon.retry_once", queue="celery")
    app.send_task("stackmon.ok", args=[99], countdown=1, queue="celery")  # an ETA task
    app.close()


def flower_names(scrape: Scrape) -> set[str]:
    return {n for n in scrape.samples if n.startswith("flower_")}


def differences(flower: Scrape, ours: Scrape) -> list[str]:
    """What stackmon's flower_* series lack or hold differently from Flower's."""
    entries = allowlist(ANCHOR)
    out = []
    for name in sorted(flower_names(flower) | flower_names(ours)):
        if allowed(name, entries):
            if name in ours.samples:
                out.append(f"{name}: allow-listed as Flower's alone, but stackmon has it")
            continue
        family = flower.family(name)
        if flower.types.get(family) != ours.types.get(ours.family(name)):
            out.append(f"{name}: type {ours.types.get(ours.family(name))}, Flower "
                       f"{flower.types.get(family)}")
        want, got = flower.values(name), ours.values(name)
        if want.keys() != got.keys():
            only_theirs = sorted(map(sorted, want.keys() - got.keys()))
            only_ours = sorted(map(sorted, got.keys() - want.keys()))
            out.append(f"{name}: label sets only in Flower {only_theirs}, only in stackmon "
                       f"{only_ours}")
            continue
        for labels, value in want.items():
            if not math.isclose(got[labels], value, rel_tol=1e-9, abs_tol=1e-9):
                out.append(f"{name}{dict(labels)}: {got[labels]}, Flower {value}")
    return out


def expected_mix(main: Worker) -> dict[tuple[str, str], float]:
    """(type, task) -> events on ``main`` once the mix is done."""
    ok = N_OK + 1  # and the ETA task
    return {("task-received", "stackmon.ok"): ok, ("task-started", "stackmon.ok"): ok,
            ("task-succeeded", "stackmon.ok"): ok, ("task-revoked", "stackmon.ok"): 1,
            ("task-failed", "stackmon.fail"): M_FAIL,
            ("task-retried", "stackmon.retry_once"): K_RETRY,
            ("task-succeeded", "stackmon.retry_once"): K_RETRY,
            ("task-received", "stackmon.retry_once"): 2 * K_RETRY}


def counted(scrape: Scrape, main: Worker, kind: str, task: str) -> float:
    """Events of ``kind`` for ``task`` on ``main``.  A task revoked on receipt gets no
    task-received, and its task-revoked (which names no task) may overtake the client's
    task-sent: then Flower, as stackmon, counts it under ``task=""``."""
    got = scrape.values("flower_events_total")
    names = (task, "") if kind == "task-revoked" else (task,)
    return sum(got.get(frozenset({("worker", main.hostname), ("type", kind),
                                  ("task", name)}), 0.0) for name in names)


def mix_done(scrape: Scrape, main: Worker) -> bool:
    return all(counted(scrape, main, kind, task) == n
               for (kind, task), n in expected_mix(main).items())


def wait_for_mix(rig: Rig) -> None:
    """Until both count the whole mix on ``main``; else what each counted, and its log.
    Waited for once per rig: after a failure the other tests fail at once instead of
    waiting a minute each."""
    if rig.mix_failed is not None:
        raise AssertionError(f"the task mix never finished (see the first failure): "
                             f"{rig.mix_failed.splitlines()[0]}")
    try:
        wait_for(lambda: all(mix_done(s, rig.main) for s in rig.scrapes()), timeout=60,
                 what="the task mix to finish in both")
    except AssertionError as err:
        flower, ours = rig.scrapes()
        seen = [f"{kind} {task}: want {n}, Flower {counted(flower, rig.main, kind, task)}, "
                f"stackmon {counted(ours, rig.main, kind, task)}"
                for (kind, task), n in expected_mix(rig.main).items()]
        diff = [f"{name}{sorted(lbl)}: Flower {flower.values(name).get(lbl)}, stackmon "
                f"{ours.values(name).get(lbl)}" for name in ("flower_events_total",)
                for lbl in sorted(set(flower.values(name)) | set(ours.values(name)), key=sorted)
                if flower.values(name).get(lbl) != ours.values(name).get(lbl)]
        rig.mix_failed = "\n".join([str(err), *seen, "series that differ:", *diff,
                                     "main's log:", rig.main.logs()[-3000:]])
        raise AssertionError(rig.mix_failed) from None


def test_allowlist_entries_have_reasons() -> None:
    entries = allowlist(ANCHOR)
    assert entries, "no # flower section in tests/parity-allowlist.txt"
    assert all(reason for reason in entries.values())


def test_prefetch_figures_agree_while_tasks_wait(rig: Rig) -> None:
    """The slow lane: the second task waited 2 s at the worker and runs; the third waits."""
    labels = frozenset({("worker", rig.slow.hostname), ("task", "stackmon.sleep")})

    def waiting() -> bool:
        flower, ours = rig.scrapes()
        return all(s.values("flower_worker_prefetched_tasks").get(labels) == 1
                   and s.values("flower_task_prefetch_time_seconds").get(labels, 0) > 1.5
                   for s in (flower, ours)) and \
            flower.values("flower_task_prefetch_time_seconds")[labels] \
            == ours.values("flower_task_prefetch_time_seconds")[labels]

    wait_for(waiting, timeout=60, what="one prefetched task and a 2 s prefetch time in both")


def test_same_families_labels_and_values_as_flower(rig: Rig) -> None:
    wait_for_mix(rig)
    last: list[str] = []

    def same() -> bool:
        nonlocal last
        flower, ours = rig.scrapes()
        last = differences(flower, ours)
        return not last

    try:
        wait_for(same, timeout=20, what="equal flower_* series")
    except AssertionError:
        raise AssertionError("\n".join(last)) from None
    flower, ours = rig.scrapes()
    # The families Flower's dashboard and alerts read, all there and filled.
    assert {flower.family(n) for n in flower_names(flower)} >= {
        "flower_events_total", "flower_task_runtime_seconds",
        "flower_task_prefetch_time_seconds", "flower_worker_prefetched_tasks",
        "flower_worker_online", "flower_worker_number_of_currently_executing_tasks"}
    # The histogram's buckets are Flower's defaults, and counted alike.
    buckets = {dict(lbl)["le"] for lbl in ours.values("flower_task_runtime_seconds_bucket")}
    assert buckets == {"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5",
                       "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "+Inf"}
    assert ours.values("flower_task_runtime_seconds_count")[frozenset(
        {("worker", rig.main.hostname), ("task", "stackmon.ok")})] == N_OK + 1
    # Flower's names break no naming rule: promtool has nothing to say; and they are the
    # same series in OpenMetrics (what Prometheus asks for first), strictly valid.
    classic = rig.stackmon.get()[2].decode()
    assert promtool_complaints(classic) == []
    om = openmetrics_series(scrape_openmetrics(rig.stackmon, "/metrics", gzipped=False))
    assert {k for k in om if k[0].startswith("flower_")} \
        == {k for k in classic_series(classic) if k[0].startswith("flower_")}


def query(url: str, promql: str, at: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    status, _, body = http_get(f"{url}/api/v1/query?{params}")
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def label_sets(result: list[dict[str, Any]]) -> set[frozenset[tuple[str, str]]]:
    return {frozenset((k, v) for k, v in row["metric"].items() if k not in ("job", "instance"))
            for row in result}


def same_data_as_flower(rig: Rig, promql: str) -> str:
    """'' once, at one instant, Flower's Prometheus returns data for ``promql`` and
    stackmon's the same label sets; else what differed."""
    at = time.time() - 2.5  # scraped and stored by both by now
    theirs = query(rig.prometheus["flower"], promql, at)
    if not theirs:
        return "no data on Flower yet"
    ours = query(rig.prometheus["stackmon"], promql, at)
    if label_sets(ours) != label_sets(theirs):
        return f"stackmon {sorted(map(sorted, label_sets(ours)))}, " \
               f"Flower {sorted(map(sorted, label_sets(theirs)))}"
    return ""


@pytest.mark.parametrize("what", sorted(QUERIES))
def test_flowers_dashboard_and_alerts_return_the_same_data(rig: Rig, what: str) -> None:
    wait_for_mix(rig)
    last = ""

    def agree() -> bool:
        nonlocal last
        last = same_data_as_flower(rig, QUERIES[what])
        return not last

    try:
        wait_for(agree, timeout=60, interval=0.5, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: {QUERIES[what]}: {last}") from None


def test_worker_offline_alert_fires_on_both(rig: Rig) -> None:
    rig.main.stop()  # warm shutdown: worker-offline
    node = frozenset({("worker", rig.main.hostname)})
    wait_for(lambda: all(s.values("flower_worker_online").get(node) == 0
                         for s in rig.scrapes()),
             timeout=30, what="flower_worker_online 0 in both")
    last = ""

    def agree() -> bool:
        nonlocal last
        last = same_data_as_flower(rig, WORKER_OFFLINE)
        return not last

    try:
        wait_for(agree, timeout=30, interval=0.5, what="CeleryWorkerOffline's expression")
    except AssertionError:
        raise AssertionError(f"{WORKER_OFFLINE}: {last}") from None
    at = time.time() - 2.5
    assert label_sets(query(rig.prometheus["stackmon"], WORKER_OFFLINE, at)) \
        == {frozenset({("__name__", "flower_worker_online"), ("worker", rig.main.hostname)})}


def test_killed_worker_is_offline_on_stackmon_only(rig: Rig) -> None:
    """docs/celery.md: Flower keeps a killed worker at 1 (mher/flower#1128); stackmon
    turns it 0 after the heartbeat timeout, so CeleryWorkerOffline sees it."""
    rig.slow.kill()
    node = frozenset({("worker", rig.slow.hostname)})
    executing = "flower_worker_number_of_currently_executing_tasks"
    ours = wait_for(lambda: (s := Scrape.parse(rig.stackmon.get()[2].decode())).values(
        "flower_worker_online").get(node) == 0 and s, timeout=HEARTBEAT_TIMEOUT + 10,
        what="stackmon's flower_worker_online 0 for the killed worker")
    assert ours.values(executing)[node] == 0
    flower = Scrape.get(rig.flower_url + "/metrics")
    assert flower.values("flower_worker_online")[node] == 1
    assert flower.values(executing)[node] == 1  # its long task, as of the last heartbeat
