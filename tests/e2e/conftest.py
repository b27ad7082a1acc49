"""A real Prometheus scraping the full exporter, shared by the e2e tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import BROKER_URL
from tests.helpers.celery import Worker, client_app, start_worker
from tests.helpers.exporter import Exporter, free_port, http_get, stop_processes, wait_for
from tests.helpers.prometheus import query, warm_up

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="session")
def prometheus(full_exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    """URL of a Prometheus scraping ``full_exporter`` every second."""
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed; run scripts/test-services.sh")
    d = tmp_path_factory.mktemp("prometheus")
    config = d / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: stackmon\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{full_exporter.port}']\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={d / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(d / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, timeout=30, what="prometheus")
        yield url
    finally:
        stop_processes(proc)


@pytest.fixture(scope="session")
def celery_worker() -> Iterator[Worker]:
    """A worker on the full exporter's broker that ran a succeeding, a failing and a
    once-retried task, so the task counters, histograms and celery_worker_up exist."""
    worker = start_worker(BROKER_URL)
    app = client_app(BROKER_URL)
    try:
        app.send_task("stackmon.ok", args=[1])
        app.send_task("stackmon.fail")
        app.send_task("stackmon.retry_once")
        yield worker
    finally:
        worker.stop()
        app.close()


@pytest.fixture(scope="session")
def warm(prometheus: str, celery_worker: Worker) -> str:
    """``prometheus`` once it has scraped the exporter a few times and seen the worker and
    its first tasks: from then on a query has its data within a few scrapes, or never."""
    warm_up(prometheus)
    wait_for(lambda: query(prometheus, "celery_workers > 0"), timeout=60, what="a worker")
    wait_for(lambda: query(prometheus, "sum(celery_task_received_total) >= 3"), timeout=90,
             what="the worker's first tasks")
    # The inspect poller answers in the background, on its own interval.
    wait_for(lambda: query(prometheus, "celery_worker_pool_max_concurrency"), timeout=90,
             what="the worker's inspect data")
    return prometheus
