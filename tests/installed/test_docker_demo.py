"""The demo image (demo/Dockerfile) under a real Docker engine: compose's ``app`` serves
/healthz and /metrics, compose's ``worker`` runs the tasks the app enqueues, and
compose's ``stackmon`` counts them from the Celery event stream.

Both images are built from their Dockerfiles on a local stand-in base image (the
docstring of tests/installed/test_docker_host.py lists how it differs from the official
one). Each container gets its compose.yaml options, with these differences, all forced
by the test machine (host network, no service names, the machine's own servers on the
default ports):

* ``--network host``; the demo's backend addresses, which compose.yaml writes as service
  names (``postgres:5432``, ``redis:6379``), point at the suite's private servers, with
  accounts that need the passwords from the mounted secrets; the demo's cache and broker
  are DBs 12 and 13 of the suite's Redis (the ``broker_url`` fixture's DB 11 has the e2e
  session's worker consuming the same default queue, which would take the demo's tasks);
* gunicorn binds ``127.0.0.1:<free port>``: the image's CMD (read from the built image)
  with its ``--bind`` value replaced;
* stackmon listens on ``127.0.0.1:<free port>`` (``STACKMON_WEB_LISTEN_ADDRESS``);
* the worker's health check interval is 2 s (compose: 60 s), so the test sees it pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from tests.helpers import docker
from tests.helpers.exporter import REPO, Samples, free_port, wait_for

pytestmark = pytest.mark.skipif(docker.skip_reason() is not None,
                                reason=f"Docker tests: {docker.skip_reason()}")

CACHE_DB, BROKER_DB = 12, 13


@pytest.fixture(scope="module")
def images(engine: docker.Engine) -> dict[str, docker.Built]:
    services = docker.load_compose({})["services"]
    return {"stackmon": docker.build(engine, REPO, docker.DOCKERFILE,
                                     services["stackmon"]["image"]),
            "app": docker.build(engine, REPO / "demo", docker.DEMO_DOCKERFILE,
                                services["app"]["image"])}


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, redis_url: str
             ) -> Iterator[docker.Accounts]:
    server = redis_url.rsplit("/", 1)[0]
    with docker.accounts(pg_dsn, redis_url, f"{server}/{BROKER_DB}",
                         tmp_path_factory.mktemp("compose") / "secrets") as acc:
        yield acc
    for url in (f"{server}/{BROKER_DB}", f"{server}/{CACHE_DB}"):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def demo_env(acc: docker.Accounts) -> dict[str, str]:
    """The demo's URLs on the suite's servers (user names only: the entrypoint adds the
    passwords from the secret files)."""
    redis_base = f"redis://{acc.broker_user}@{acc.redis_host_port}"
    return {"DEMO_POSTGRES_DSN": f"postgresql://{acc.pg_role}@{acc.pg_host_port}/postgres",
            "DEMO_REDIS_URL": f"{redis_base}/{CACHE_DB}",
            "DEMO_BROKER_URL": f"{redis_base}/{acc.broker_db}"}


def demo_options(model: dict[str, object], service: str, acc: docker.Accounts
                 ) -> docker.RunOptions:
    # The demo's broker password is the broker user's; its Redis password the same user's.
    files = {**acc.secret_files, "redis_password": acc.secret_files["broker_password"]}
    return docker.run_options(model, service, secret_files=files).with_env(demo_env(acc))


@pytest.fixture(scope="module")
def stack(engine: docker.Engine, images: dict[str, docker.Built], accounts: docker.Accounts,
          tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, docker.Container]]:
    checks = tmp_path_factory.mktemp("checks") / "stackmon.yml"
    checks.write_text("services:\n  checks: []\n")
    checks.chmod(0o644)
    model = docker.load_compose(accounts.stackmon_env(checks))
    started: list[docker.Container] = []
    try:
        port = free_port()
        stackmon = docker.run(engine, docker.run_options(
            model, "stackmon", secret_files=accounts.secret_files), "demo-stackmon", port,
            "-e", f"STACKMON_WEB_LISTEN_ADDRESS=127.0.0.1:{port}")
        started.append(stackmon)
        # The event receiver must be listening before the first task is sent.
        wait_for(lambda: stackmon.scrape().get("stackmon_celery_events_receiver_up") == 1,
                 timeout=30, interval=0.5, what="stackmon's Celery event receiver")

        app_options = demo_options(model, "app", accounts)
        cmd = engine.inspect(images["app"].name)["Config"]["Cmd"]
        bind = cmd.index("--bind") + 1
        port = free_port()
        app_options.command = [*cmd[:bind], f"127.0.0.1:{port}", *cmd[bind + 1:]]
        app = docker.run(engine, app_options, "demo-app", port, path="/healthz")
        started.append(app)

        worker = docker.run(engine, demo_options(model, "worker", accounts), "demo-worker",
                            0, "--health-interval=2s", path=None)
        started.append(worker)
        yield {"stackmon": stackmon, "app": app, "worker": worker}
    finally:
        for container in started:
            container.remove()


def total(s: Samples, family: str, labels: dict[str, str]) -> float:
    """The sum of ``family``'s samples whose labels include ``labels`` (one of them is
    ``name``, which Samples.get takes for itself)."""
    return float(sum(v for lbl, v in s.samples.get(family, [])
                     if all(lbl.get(k) == want for k, want in labels.items())))


def test_app_serves_healthz_and_metrics(stack: dict[str, docker.Container]) -> None:
    app = stack["app"]
    status, _, body = app.get("/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"}), app.logs()
    samples = app.scrape()
    assert samples.has("django_http_requests_total_by_view_transport_method_total",
                       view="healthz"), sorted(samples.samples)[:20]


def test_worker_tasks_are_counted_by_stackmon(stack: dict[str, docker.Container]) -> None:
    app, stackmon, worker = stack["app"], stack["stackmon"], stack["worker"]
    hostname = wait_for(lambda: [lbl["hostname"] for lbl, v in
                                 stackmon.scrape().samples.get("celery_worker_up", [])
                                 if v == 1], timeout=60, interval=0.5,
                        what="stackmon to see the worker's heartbeat")[0]
    for kind in ("ok", "ok", "ok", "fail"):
        status, _, body = app.get(f"/api/tasks/{kind}")
        assert status == 202, body

    def counted() -> Samples | None:
        s = stackmon.scrape()
        done = (total(s, "celery_task_succeeded_total", {"name": "demo.add"}) >= 3
                and total(s, "celery_task_failed_total",
                          {"name": "demo.fail", "exception": "DemoError"}) >= 1)
        return s if done else None
    try:
        s = wait_for(counted, timeout=60, interval=0.5, what="the tasks to be counted")
    except AssertionError as err:
        tasks = "\n".join(line for line in stackmon.scrape().text.splitlines()
                          if line.startswith("celery_task_"))
        raise AssertionError(f"{err}\n{tasks}\nworker:\n{worker.logs()[-3000:]}\n"
                             f"stackmon:\n{stackmon.logs()[-3000:]}") from None
    add = {"name": "demo.add", "queue_name": "celery"}
    assert total(s, "celery_task_sent_total", add) == 3
    for family in ("received", "started", "succeeded"):
        assert total(s, f"celery_task_{family}_total", {**add, "hostname": hostname}) == 3
    # compose's worker health check (celery inspect ping through the entrypoint) passes.
    wait_for(lambda: worker.health() != "starting", timeout=60, interval=0.5,
             what="the worker's first health check")
    assert worker.health() == "healthy", worker.engine.inspect(worker.name)["State"]["Health"]
    assert "Traceback" not in stackmon.logs()

