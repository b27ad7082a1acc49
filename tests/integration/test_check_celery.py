"""``stackmon check`` against real Celery workers and brokers configured wrong in exactly
one way, then right: workers without task events, producers without task-sent events,
workers with remote control off (inspect answered by no worker), workers that send no
event at all (the events exchange never receives anything), stackmon pointed at another
Redis database than the workers, and a RabbitMQ user that may not use celery.pidbox.

Tasks are sent while the check watches the event stream, as on a live platform: the check
decides on what the workers do, not only on what their configuration says."""

from __future__ import annotations

import shlex
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import backends
from tests.helpers.celery import RedisServer, Worker, client_app, own_redis, start_worker
from tests.helpers.check import CheckRun, run_check
from tests.helpers.exporter import wait_for

SEND_EVERY_SECONDS = 0.2


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with own_redis() as server:
        yield server


@pytest.fixture()
def db(redis: RedisServer) -> Iterator[int]:
    """A Redis database of the test's own as the broker (flushed after)."""
    number = next(_dbs)
    yield number
    redis.client(number).flushdb()


_dbs = iter(range(1, 16))


@contextmanager
def worker(url: str, **kw: Any) -> Iterator[Worker]:
    w = start_worker(url, **kw)
    try:
        yield w
    finally:
        w.kill()


def wait_consuming(url: str, w: Worker) -> None:
    """Until the worker has taken a task from the queue (it consumes: ready)."""
    app = client_app(url)
    app.send_task("stackmon.ok", args=[0])
    client = RedisServer(int(url.split(":")[2].split("/")[0]), "").client(
        int(url.rsplit("/", 1)[1]))
    wait_for(lambda: w.proc.poll() is not None or client.llen("celery") == 0, timeout=60,
             what="the worker to consume")
    assert w.proc.poll() is None, w.logs()


@contextmanager
def sending(url: str, sent_events: bool = True) -> Iterator[None]:
    """A producer sending a task every SEND_EVERY_SECONDS (task-sent events unless not)."""
    app = client_app(url)
    app.conf.task_send_sent_event = sent_events
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(SEND_EVERY_SECONDS):
            app.send_task("stackmon.ok", args=[1])
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def check(url: str) -> CheckRun:
    return run_check(["--no-collector.host"], {"STACKMON_CELERY_BROKER_URL": url})


def test_workers_without_task_events(redis: RedisServer, db: int) -> None:
    url = redis.url(db)
    with worker(url, events=False) as w:
        wait_consuming(url, w)
        with sending(url):
            wrong = check(url)
    found = wrong.finding("celery", "task_events")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert f"{w.hostname} processed" in found["detail"] and "no task event" in found["detail"]
    assert found["fix"].startswith("worker_send_task_events = True")
    assert "Celery tasks / Runtime" in found["affected"]["panels"]
    with worker(url, events=True) as w:  # the same worker with -E
        wait_consuming(url, w)
        with sending(url):
            right = check(url)
    assert right.status("celery", "task_events") == "ok", right.explain()
    assert right.code == 0, right.explain()


def test_producers_without_task_sent_events(redis: RedisServer, db: int) -> None:
    url = redis.url(db)
    with worker(url) as w:
        wait_consuming(url, w)
        with sending(url, sent_events=False):
            wrong = check(url)
        found = wrong.finding("celery", "task_sent_events")
        assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
        assert "not one task-sent event" in found["detail"]
        assert found["fix"].startswith("task_send_sent_event = True")
        with sending(url, sent_events=True):
            right = check(url)
        assert right.status("celery", "task_sent_events") == "ok", right.explain()


def test_inspect_answered_by_no_worker(redis: RedisServer, db: int) -> None:
    """Workers with remote control off: they send heartbeats, answer nothing."""
    url = redis.url(db)
    with worker(url, env={"CELERY_TEST_REMOTE_CONTROL": "0"}) as w:
        wait_consuming(url, w)
        wrong = check(url)
    found = wrong.finding("celery", "inspect")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert "send heartbeats" in found["detail"] and w.hostname in found["detail"]
    assert found["fix"].startswith("worker_enable_remote_control = True")
    assert wrong.status("celery", "events") == "ok"
    with worker(url) as w:
        wait_consuming(url, w)
        right = check(url)
    found = right.finding("celery", "inspect")
    assert found["status"] == "ok" and w.hostname in found["detail"], right.explain()


def test_events_exchange_receives_nothing(redis: RedisServer, db: int) -> None:
    """Workers without heartbeats and task events: they answer inspect, publish no event."""
    url = redis.url(db)
    with worker(url, events=False, args=["--without-heartbeat"]) as w:
        wait_consuming(url, w)
        wrong = check(url)
    found = wrong.finding("celery", "events")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert "answer inspect but no event arrived" in found["detail"]
    assert wrong.status("celery", "inspect") == "ok"
    with worker(url, events=False) as w:  # the same worker, heartbeats on
        wait_consuming(url, w)
        right = check(url)
    assert right.status("celery", "events") == "ok", right.explain()


def test_broker_url_names_another_database(redis: RedisServer, db: int) -> None:
    """stackmon on the right Redis but the wrong database: no worker, no event."""
    url = redis.url(db)
    other = redis.url(0 if db != 0 else 15)
    with worker(url) as w:
        wait_consuming(url, w)
        wrong = check(other)
        right = check(url)
    for name, cause in (("inspect", "no worker answered inspect"),
                        ("events", "no worker publishes to this broker")):
        found = wrong.finding("celery", name)
        assert found["status"] == "missing" and cause in found["detail"], wrong.explain()
        assert "celery.broker_url" in found["fix"]
        assert right.status("celery", name) == "ok", right.explain()


@pytest.fixture()
def rabbit(amqp_url: str) -> Iterator[tuple[backends.RabbitMQ, str, str]]:
    """A vhost of the test's own (the worker uses guest) and a user for stackmon."""
    node = backends.rabbitmq()
    tag = uuid.uuid4().hex[:8]
    vhost, user = f"stackmon-check-{tag}", f"stackmon-{tag}"
    node.ctl("add_vhost", vhost)
    node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    node.ctl("add_user", user, "check-Pw-1")
    try:
        yield node, vhost, user
    finally:
        node.ctl("delete_vhost", vhost)
        node.ctl("delete_user", user)


def test_rabbitmq_user_cannot_use_pidbox(rabbit: tuple[backends.RabbitMQ, str, str]) -> None:
    node, vhost, user = rabbit
    # Events only: celery.pidbox and the reply exchange are not in the regexes.
    node.ctl("set_permissions", "-p", vhost, user, r"^celeryev(\..+)?$", r"^celeryev\..+$",
             r"^celeryev(\..+)?$")
    base = f"127.0.0.1:{node.amqp_port}/{quote(vhost, safe='')}"
    with worker(f"amqp://guest:guest@{base}") as w:
        ping = client_app(f"amqp://guest:guest@{base}")
        wait_for(lambda: ping.control.inspect(timeout=0.5).ping(), timeout=60,
                 what=f"{w.hostname} to answer")
        wrong = check(f"amqp://{user}:check-Pw-1@{base}")
        found = wrong.finding("celery", "rabbitmq_permissions")
        assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
        assert "celery.pidbox" in found["detail"] and "ACCESS_REFUSED" in found["detail"]
        # Celery's event receiver declares celery.pidbox as well: both are refused.
        assert wrong.status("celery", "events") == "missing", wrong.explain()
        assert wrong.status("celery", "inspect") == "missing", wrong.explain()
        command = shlex.split(found["fix"])
        assert command[:5] == ["rabbitmqctl", "set_permissions", "-p", vhost, user]
        node.ctl(*command[1:])  # the fix as printed
        right = check(f"amqp://{user}:check-Pw-1@{base}")
    for name in ("rabbitmq_permissions", "inspect", "events"):
        assert right.status("celery", name) == "ok", right.explain()
