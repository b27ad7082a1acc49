"""Every body stackmon serves is valid OpenMetrics and carries the text format's series.

A strict OpenMetrics parser (client_python's, tests/helpers/openmetrics.py) reads
/metrics with every collector on (Celery task histograms included) and every /probe
target, each gzipped and not, asked for with the Accept header Prometheus sends.  One
collection rendered both ways gives the same series with the same values.
test_postgres_cluster.py checks the bodies of its targets (replication, pg_stat_statements,
a role without pg_monitor, a wrong password) the same way; tests/e2e/ has Prometheus store
both formats.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric

from exporter import cli
from exporter.collectors.base import CollectorSet
from exporter.http.exposition import render_openmetrics, render_text
from exporter.process import ProcessMetrics
from tests.helpers.celery import Worker, client_app, start_worker
from tests.helpers.exporter import Exporter, start_exporter, wait_for
from tests.helpers.openmetrics import (
    classic_series,
    openmetrics_series,
    same_values,
    scrape_openmetrics,
    strict_families,
)

# Families only some collectors have, and only once tasks ran: they must be in the bodies
# checked, or a strict parse of them proves nothing.
MUST_HAVE = ("node_cpu_seconds_total", "pg_stat_database_xact_commit", "pg_locks_count",
             "redis_commands_total", "celery_task_runtime_bucket", "celery_queue_length",
             "nginx_connections_active", "stackmon_service_tls_cert_expiry_timestamp_seconds",
             "process_cpu_seconds_total")


@pytest.fixture(scope="module")
def worker(broker_url: str) -> Iterator[Worker]:
    worker = start_worker(broker_url)
    try:
        yield worker
    finally:
        worker.stop()


def run_tasks(broker_url: str) -> None:
    app = client_app(broker_url)
    try:
        app.send_task("stackmon.ok", args=[1])
        app.send_task("stackmon.fail")
    finally:
        app.close()


@pytest.fixture(scope="module")
def busy_exporter(full_exporter: Exporter, worker: Worker, broker_url: str) -> Exporter:
    """``full_exporter`` once it has seen tasks run (its histograms exist)."""
    def seen() -> bool:
        run_tasks(broker_url)
        return b"celery_task_runtime_bucket" in full_exporter.get("/metrics")[2]
    wait_for(seen, timeout=60, interval=1.0, what="celery task events")
    return full_exporter


@pytest.fixture(scope="module")
def probe_exporter(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str,
                   redis_url: str) -> Iterator[Exporter]:
    config = tmp_path_factory.mktemp("om") / "stackmon.yml"
    config.write_text(f"postgres:\n  targets:\n    - {{name: db, dsn: '{pg_dsn}'}}\n"
                      f"redis:\n  targets:\n    - {{name: cache, url: '{redis_url}'}}\n")
    exp = start_exporter(["--no-collector.host", f"--config.file={config}"])
    try:
        yield exp
    finally:
        exp.stop()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_metrics_is_strict_openmetrics(busy_exporter: Exporter, gzipped: bool) -> None:
    text = scrape_openmetrics(busy_exporter, "/metrics", gzipped)
    names = {s.name for f in strict_families(text) for s in f.samples}
    assert [n for n in MUST_HAVE if n not in names] == []
    assert "\n# TYPE pg_stat_database_xact_commit unknown\n" in text


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("target,up", [("db", "pg_up"), ("cache", "redis_up")])
def test_probe_is_strict_openmetrics(probe_exporter: Exporter, target: str, up: str,
                                     gzipped: bool) -> None:
    text = scrape_openmetrics(probe_exporter, f"/probe?target={target}", gzipped)
    series = openmetrics_series(text)
    assert series[(up, ())] == 1.0


def test_one_collection_gives_the_same_series_in_both_formats(
        tmp_path: Path, pg_dsn: str, redis_url: str, broker_url: str, worker: Worker) -> None:
    """The exporter's own collectors in this process: one collection, both writers."""
    config = tmp_path / "stackmon.yml"
    config.write_text(f"postgres:\n  dsn: '{pg_dsn}'\nredis:\n  url: '{redis_url}'\n"
                      f"celery:\n  broker_url: '{broker_url}'\n")
    cfg = cli.parse([f"--config.file={config}"], {})
    collectors, _ = cli.build_collectors(cfg)
    cs = CollectorSet(collectors, extras=[cli.build_info,
                                          ProcessMetrics().collect])
    try:
        def collected() -> list[Metric] | None:
            run_tasks(broker_url)
            families = cs.collect(time.monotonic() + 10)
            return families if any(f.name == "celery_task_runtime" and f.samples
                                   for f in families) else None
        families = wait_for(collected, timeout=60, interval=1.0, what="task events")
    finally:
        cs.close()
    classic = classic_series(render_text(families).decode())
    assert [n for n in MUST_HAVE[:5] if not any(k[0] == n for k in classic)] == []
    assert same_values(openmetrics_series(render_openmetrics(families).decode()), classic)
