"""Every query of every dashboard panel, and every variable's query, returns data from a
real Prometheus scraping the full exporter: the dashboards ask for series stackmon
actually serves, with labels that exist. And with two exporters behind one Prometheus,
no panel mixes their series up."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.conftest import BROKER_URL, REDIS_URL
from tests.helpers.celery import Worker, client_app
from tests.helpers.dashboards import APP_PREFIX, concrete, load, panels
from tests.helpers.exporter import (
    REPO,
    Exporter,
    exporter_fixture,
    free_port,
    http_get,
    stop_processes,
    wait_for,
)
from tests.helpers.machine import absent_here
from tests.helpers.prometheus import query, returns_data

DASHBOARDS = load()
PROMETHEUS = shutil.which("prometheus")
SLOT = "stackmon_dashboards"

# (dashboard, panel title): why its series do not exist in the full fixture.
SKIP = {
    ("database", "Standby lag (bytes)"):
        "pg_stat_replication_lag_bytes: only on a primary with a streaming standby",
    ("database", "Standby lag per standby"):
        "pg_stat_replication_*_lag_seconds: only on a primary with a streaming standby",
    ("database", "Top statements"):
        "pg_stat_statements needs shared_preload_libraries, which the private test "
        "cluster does not load (the collector has its own integration test)",
    ("cache", "Replica link"): "redis_master_link_up: only on a Redis replica",
    ("cache", "Replica ack lag"):
        "redis_connected_slave_lag_seconds: only on a primary with replicas",
}
# The API row reads the Django application's own /metrics (django-prometheus), served by
# the demo application (demo/) that test_api_row_returns_data runs.
DEMO_MISSING = ("the Django demo application (demo/, issue 12's alerting work) or its "
                "'demo' extra (django-prometheus) is not installed here: nothing serves "
                "the django_* metrics the API row reads")
# demo/ exists before the application does (compose files), so look for its manage.py.
HAVE_DEMO = (REPO / "demo" / "manage.py").is_file() and all(
    importlib.util.find_spec(m) is not None for m in ("django", "django_prometheus"))

TARGETS = [(slug, p["title"], t["refId"], t["expr"])
           for slug, d in DASHBOARDS.items() for p in panels(d) for t in p["targets"]]
APP_TARGETS = [t for t in TARGETS if APP_PREFIX in t[3]]
EXPORTER_TARGETS = [t for t in TARGETS if t not in APP_TARGETS]


def machine_skips() -> dict[tuple[str, str], str]:
    """Panels whose series this machine cannot have (not the fixture's doing): see
    tests/helpers/machine.py (a container's private network or overlay root, a seccomp
    filter on adjtimex, a kernel without cpufreq)."""
    skips = {}
    for slug, title, _, expr in TARGETS:
        reason = absent_here(expr)
        if reason:
            skips[(slug, title)] = reason
    return skips


MACHINE_SKIPS = machine_skips()
# A completion older than this may leave a panel's 10m rate window before a later test
# of the module runs (a slow module once took longer than the window): send a new batch.
FRESH_FOR = 300.0


def test_skip_names_real_panels() -> None:
    titles = {(slug, title) for slug, title, _, _ in TARGETS}
    assert sorted(set(SKIP) - titles) == []
    assert sorted(set(MACHINE_SKIPS) - titles) == []
    assert len(SKIP) <= 8, "keep the skip list small"
    assert len(APP_TARGETS) >= 3, "the API row's queries"


@pytest.fixture(scope="module")
def replication_slot(pg_dsn: str) -> Iterator[str]:
    """A physical slot reserving WAL on the private test cluster (not the machine's), so
    the slot panels have a series; dropped at the end."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (SLOT,))
    try:
        yield SLOT
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))


def completed(prometheus: str) -> float:
    """Task completions (succeeded + failed) Prometheus has seen so far."""
    result = query(prometheus, "sum(celery_task_runtime_count) + sum(celery_task_failed_total)")
    return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


@dataclass
class TaskFeed:
    """Tasks that complete while Prometheus watches: the session's first tasks may finish
    before its first scrape, and a rate of a counter that never moved is 0, so the
    quantiles and ratios of a window without completions have no value (by design)."""

    prometheus: str
    sent: float = -math.inf

    def ensure_fresh(self) -> None:
        if time.monotonic() - self.sent < FRESH_FOR:
            return
        before = completed(self.prometheus)
        sent = time.monotonic()
        app = client_app(BROKER_URL)
        try:
            for name in ("stackmon.ok", "stackmon.fail", "stackmon.retry_once", "stackmon.ok"):
                app.send_task(name, args=[1] if name == "stackmon.ok" else [])
        finally:
            app.close()
        wait_for(lambda: completed(self.prometheus) >= before + 4, timeout=90,
                 what="the new tasks' completions in Prometheus")
        self.sent = sent


@pytest.fixture(scope="module")
def task_feed(warm: str) -> TaskFeed:
    return TaskFeed(warm)


@pytest.fixture
def fresh_tasks(task_feed: TaskFeed) -> None:
    """Completions inside every panel's 10m window when the test runs."""
    task_feed.ensure_fresh()


@pytest.mark.parametrize(("slug", "title", "ref", "expr"),
                         [t for t in EXPORTER_TARGETS if (t[0], t[1]) not in SKIP],
                         ids=lambda v: re.sub(r"\W+", "_", str(v))[:40])
def test_panel_query_returns_data(warm: str, fresh_tasks: None,
                                  replication_slot: str, slug: str, title: str, ref: str,
                                  expr: str) -> None:
    if (slug, title) in MACHINE_SKIPS:
        pytest.skip(MACHINE_SKIPS[(slug, title)])
    # A window that still holds the fixture's few tasks when this test runs: a quantile
    # or ratio of a window without completions is left out (no NaN), so no data.
    promql = concrete(expr, rate_interval="10m")
    returns_data(warm, promql, what=f"{slug} / {title} / {ref}: {promql}")


@pytest.mark.parametrize("slug", sorted(DASHBOARDS))
def test_variable_queries_return_data(warm: str, slug: str) -> None:
    for v in DASHBOARDS[slug]["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
        assert m, v["query"]
        if APP_PREFIX in m.group(1):
            continue  # test_api_row_returns_data
        selector, label = concrete(m.group(1)), m.group(2)

        result = returns_data(warm, selector, what=selector)
        assert all(label in r["metric"] for r in result), (label, result)


@pytest.fixture(scope="module")
def second_exporter(pg_dsn: str, redis_url: str, broker_url: str) -> Iterator[Exporter]:
    """Another stackmon on the same PostgreSQL, Redis and broker: the same series under
    another instance, as with one exporter per host."""
    env = {"STACKMON_POSTGRES_DSN": pg_dsn, "STACKMON_REDIS_URL": redis_url,
           "STACKMON_CELERY_BROKER_URL": broker_url}
    yield from exporter_fixture([], env)


@pytest.fixture(scope="module")
def demo_app(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """Address of the Django demo application (``runserver`` on the private PostgreSQL and
    Redis; its broker is a Redis database of its own, so the test worker never sees its
    tasks), after a few requests; None when the demo is not installed here."""
    if not HAVE_DEMO:
        yield None
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    redis_base = REDIS_URL.rsplit("/", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.update(DEMO_POSTGRES_DSN=pg_dsn, DEMO_REDIS_URL=f"{redis_base}/5",
               DEMO_BROKER_URL=f"{redis_base}/6", PYTHONUNBUFFERED="1")
    log = tmp_path_factory.mktemp("demo") / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.manage", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))

    def served() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"demo server exited: {log.read_text()[-2000:]}")
        try:
            return http_get(url + "/api/items")[0] == 200
        except OSError:
            return False

    try:
        wait_for(served, timeout=90, interval=0.3, what="the demo's /api/items")
        for path in ("/api/items", "/api/cache", "/api/items", "/api/cache", "/nope"):
            http_get(url + path)
        yield f"127.0.0.1:{port}"
    finally:
        stop_processes(proc)


@pytest.fixture(scope="module")
def two_instances(full_exporter: Exporter, second_exporter: Exporter, demo_app: str | None,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """URL of a Prometheus scraping both exporters (job stackmon) and the demo application
    (job demo), and the exporters' instances."""
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed; run scripts/test-services.sh")
    d = tmp_path_factory.mktemp("prometheus-two")
    instances = [f"127.0.0.1:{full_exporter.port}", f"127.0.0.1:{second_exporter.port}"]
    demo_job = ("  - job_name: demo\n"
                f"    static_configs:\n      - targets: ['{demo_app}']\n") if demo_app else ""
    (d / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: stackmon\n"
        f"    static_configs:\n      - targets: {instances!r}\n" + demo_job)
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={d / 'prometheus.yml'}",
         f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(d / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, timeout=30, what="prometheus")
        for instance in instances:  # two scrapes of each, so rate() has data for both
            def scraped(i: str = instance) -> list[dict[str, object]]:
                return query(url, f'rate(node_cpu_seconds_total{{instance="{i}"}}[15s])')

            wait_for(scraped, timeout=60, what=f"two scrapes of {instance}")
        yield url, instances
    finally:
        proc.terminate()
        proc.wait(20)


def instance_of(result: dict[str, object]) -> object:
    metric = result["metric"]
    assert isinstance(metric, dict), result
    return metric.get("instance")


def test_no_panel_mixes_two_exporters_up(two_instances: tuple[str, list[str]],
                                         celery_worker: Worker) -> None:
    """Each panel query, with one instance chosen, returns only that instance's series
    (an aggregation that drops ``instance`` would return a series without it, or sum both
    exporters into one); with all chosen, host panels show both exporters apart."""
    url, instances = two_instances
    mixed, both = [], 0
    for slug, title, ref, expr in TARGETS:
        if APP_PREFIX in expr:
            continue  # the application's own target, not an exporter
        for instance in instances:
            for r in query(url, concrete(expr, instance=instance)):
                got = instance_of(r)
                if got != instance:
                    mixed.append(f"{slug} / {title} / {ref}: {instance} chosen, got {got}")
        seen = {instance_of(r) for r in query(url, concrete(expr))}
        both += seen == set(instances)
    assert mixed == []
    assert both >= 20, "too few panels showed both exporters: the check saw no data"


@pytest.mark.parametrize(("slug", "title", "ref", "expr"), APP_TARGETS,
                         ids=lambda v: re.sub(r"\W+", "_", str(v))[:40])
def test_api_row_returns_data(two_instances: tuple[str, list[str]], slug: str, title: str,
                              ref: str, expr: str) -> None:
    """The API row's queries against the demo application's own /metrics."""
    if not HAVE_DEMO:
        pytest.skip(DEMO_MISSING)
    url, _ = two_instances
    promql = concrete(expr, rate_interval="10m")
    returns_data(url, promql, what=f"{slug} / {title} / {ref}: {promql}")
