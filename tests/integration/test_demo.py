"""The Django demo application (demo/) for real: Django's server on a free loopback port,
a Celery worker of demo.celery_app, a private redis-server as cache and broker, a
private PostgreSQL cluster, and a stackmon exporter watching the broker. After a few requests the
demo's own /metrics holds django-prometheus's request, response, database and cache
series, and stackmon counts the demo's tasks (succeeded, failed, retried)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import (
    REPO,
    Exporter,
    Samples,
    free_port,
    http_get,
    start_exporter,
    stop_processes,
    wait_for,
)
from tests.helpers.pgcluster import Cluster
from tests.helpers.redis_server import RedisServer

pytest.importorskip("django_prometheus", reason="the demo extra is not installed")


class Demo:
    """``python -m demo.manage runserver`` and a worker of ``demo.celery_app:app``."""

    def __init__(self, tmp: Path, redis: RedisServer, postgres: Cluster) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
        self.env.update(
            DEMO_POSTGRES_DSN=f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres",
            DEMO_REDIS_URL=redis.url + "/0", DEMO_BROKER_URL=redis.url + "/1",
            PYTHONUNBUFFERED="1")
        self.logs = {"web": tmp / "web.log", "worker": tmp / "worker.log"}
        self.web = subprocess.Popen(
            [sys.executable, "-m", "demo.manage", "runserver", "--noreload",
             f"127.0.0.1:{self.port}"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
            stderr=self.logs["web"].open("w"))
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "demo.celery_app:app", "worker", "-E",
             "--pool", "threads", "-c", "2", "-n", f"demo-{uuid.uuid4().hex[:6]}@localhost",
             "--without-gossip", "--without-mingle", "-l", "warning"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
            stderr=self.logs["worker"].open("w"))

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")[-3000:]

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        status, _, body = http_get(self.url + path)
        return status, json.loads(body)

    def metrics(self) -> Samples:
        status, _, body = http_get(self.url + "/metrics")
        assert status == 200
        return Samples.parse(body.decode())

    def stop(self) -> None:
        stop_processes(self.web, self.worker)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    cluster = Cluster.create()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def exporter(redis: RedisServer) -> Iterator[Exporter]:
    """stackmon watching the demo's broker (Celery collector only)."""
    exp = start_exporter(["--no-collector.host", "--no-collector.services"],
                         {"STACKMON_CELERY_BROKER_URL": redis.url + "/1"})
    yield exp
    exp.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer, postgres: Cluster,
         exporter: Exporter) -> Iterator[Demo]:
    app = Demo(tmp_path_factory.mktemp("demo"), redis, postgres)

    def web_up() -> bool:
        if app.web.poll() is not None:
            raise AssertionError(f"demo server exited: {app.log('web')}")
        try:
            return http_get(app.url + "/healthz")[0] == 200
        except OSError:
            return False
    try:
        wait_for(web_up, timeout=60, interval=0.3, what="the demo's /healthz")
        # The worker is up once stackmon sees it through the event stream.
        wait_for(lambda: exporter.scrape().get("celery_workers") >= 1 or app.worker.poll(),
                 timeout=60, interval=0.5, what="the demo worker in stackmon")
        assert app.worker.poll() is None, app.log("worker")
        yield app
    finally:
        app.stop()


def test_healthz(demo: Demo) -> None:
    assert demo.get("/healthz") == (200, {"status": "ok"})


def test_views_use_postgres_and_redis(demo: Demo) -> None:
    status, body = demo.get("/api/items")
    assert status == 200 and isinstance(body["items"], list) and body["items"]
    key = uuid.uuid4().hex
    assert demo.get(f"/api/cache?key={key}")[1]["hit"] is False
    assert demo.get(f"/api/cache?key={key}")[1] == {
        "key": f"demo:counter:{key}", "hit": True, "value": 2}


def test_unknown_task_kind_is_404(demo: Demo) -> None:
    status, body = demo.get("/api/tasks/nope")
    assert status == 404 and "nope" in str(body["error"])


def test_tasks_succeed_fail_and_retry(demo: Demo, exporter: Exporter) -> None:
    for kind in ("ok", "fail", "retry"):
        status, body = demo.get(f"/api/tasks/{kind}")
        assert status == 202, body

    def counted() -> bool:
        s = exporter.scrape()

        def total(metric: str, name: str) -> float:
            return sum(v for labels, v in s.samples.get(metric, [])
                       if labels.get("name") == name)
        return (total("celery_task_succeeded_total", "demo.add") >= 1
                and total("celery_task_failed_total", "demo.fail") >= 1
                and total("celery_task_retried_total", "demo.flaky") >= 1
                and total("celery_task_succeeded_total", "demo.flaky") >= 1)
    try:
        wait_for(counted, timeout=60, interval=0.5, what="the demo's tasks in stackmon")
    except AssertionError:
        raise AssertionError(demo.log("worker")) from None


def test_metrics_after_requests(demo: Demo) -> None:
    for path in ("/healthz", "/api/items", "/api/cache?key=m", "/api/tasks/nope"):
        http_get(demo.url + path)
    s = demo.metrics()

    def value(metric: str, **labels: str) -> float:
        return sum(v for lbl, v in s.samples.get(metric, [])
                   if all(lbl.get(k) == want for k, want in labels.items()))
    assert value("django_http_requests_latency_seconds_by_view_method_count",
                 view="healthz", method="GET") >= 1
    assert value("django_http_requests_latency_seconds_by_view_method_bucket",
                 view="items", method="GET", le="+Inf") >= 1
    assert value("django_http_responses_total_by_status_view_method_total",
                 status="200", view="items", method="GET") >= 1
    assert value("django_http_responses_total_by_status_view_method_total",
                 status="404", view="enqueue", method="GET") >= 1
    assert value("django_http_requests_total_by_view_transport_method_total",
                 view="cache", method="GET") >= 1
    # django-prometheus's database and cache wrappers.
    assert value("django_db_execute_total", vendor="postgresql") >= 1
    assert value("django_cache_get_total", backend="redis") >= 1


def test_bad_settings_name_the_variable_without_the_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.update(DEMO_POSTGRES_DSN="mysql://app:s3cret-pw@db/app",
               DEMO_REDIS_URL="redis://127.0.0.1:1/0", DEMO_BROKER_URL="redis://127.0.0.1:1/1")
    proc = subprocess.run([sys.executable, "-m", "demo.manage", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DEMO_POSTGRES_DSN" in proc.stderr and "s3cret-pw" not in proc.stderr
    del env["DEMO_REDIS_URL"]
    env["DEMO_POSTGRES_DSN"] = "postgresql://app@db/app"
    proc = subprocess.run([sys.executable, "-m", "demo.manage", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DEMO_REDIS_URL is not set" in proc.stderr
