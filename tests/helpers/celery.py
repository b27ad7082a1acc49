"""Real Celery workers, a Redis we own and a RabbitMQ vhost of our own, for the tests."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import backends
from tests.helpers.docs import table_names
from tests.helpers.exporter import REPO, Exporter, Samples, free_port, start_exporter, wait_for

# The session's private Redis and RabbitMQ (tests/helpers/backends.py).
REDIS_HOST = "127.0.0.1"
REDIS_PORT = backends.REDIS_PORT
# The private Redis's DB the Celery tests use (flushed before and after).
CELERY_REDIS_DB = 12
RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = backends.AMQP_PORT


@dataclass
class Worker:
    """A ``celery worker`` subprocess of tests/celery_test_app.py."""

    proc: subprocess.Popen[bytes]
    hostname: str  # the node name, "stackmon-test@w-1a2b3c4d"
    log_path: Path

    @property
    def host(self) -> str:
        """The worker's hostname label (celery-exporter's: the part after the "@")."""
        return self.hostname.partition("@")[2]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); SIGKILL if it does not go within 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(broker: str, queues: str = "celery", concurrency: int = 2,
                 pool: str = "threads", events: bool = True, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> Worker:
    """Start a worker with task events on (-E) unless ``events`` is False; ``args`` are
    more ``celery worker`` options, ``env`` more variables (CELERY_TEST_*)."""
    # A host part of its own, since worker series are labelled by it (several workers on
    # one host add up).
    hostname = f"stackmon-test@w-{uuid.uuid4().hex[:8]}"
    log_fd, log_name = tempfile.mkstemp(prefix="celery-worker-", suffix=".log")
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
    worker_env["CELERY_TEST_BROKER"] = broker
    worker_env["CELERY_TEST_EVENTS"] = "1" if events else "0"
    worker_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_test_app", "worker",
         *(["-E"] if events else []), "-c", str(concurrency), "--pool", pool,
         "-n", hostname, "-Q", queues, "-l", "warning", "--without-gossip", "--without-mingle",
         *args],
        stdout=log_fd, stderr=log_fd, env=worker_env, cwd=REPO)
    os.close(log_fd)
    # Kept for failure messages while the tests run; removed when they end.
    atexit.register(Path(log_name).unlink, missing_ok=True)
    return Worker(proc, hostname, Path(log_name))


@dataclass
class RedisServer:
    """A redis-server this test owns (free port, temp dir): safe to stop and restart."""

    port: int
    dir: str
    password: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, with_password: bool = True) -> str:
        auth = f":{self.password}@" if self.password and with_password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, timeout=15, what=f"redis-server on {self.port}")

    def ping(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None,
                             socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db,
                           password=self.password or None)


@contextmanager
def own_redis(password: str = "") -> Iterator[RedisServer]:
    tmp = tempfile.mkdtemp(prefix="stackmon-redis-")
    server = RedisServer(free_port(), tmp, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def rabbitmqctl(*args: str) -> None:
    """``rabbitmqctl`` against the session's private RabbitMQ node (started if needed)."""
    backends.rabbitmq().ctl(*args)


@contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A vhost of our own on the private RabbitMQ (guest has all permissions); deleted after."""
    vhost = f"stackmon-celery-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def client_app(broker: str) -> Any:
    """The test app pointed at ``broker`` (a fresh app, so brokers never mix)."""
    from celery import Celery

    from tests import celery_test_app

    app = Celery("stackmon_test", broker=broker, set_as_current=False)
    app.conf.update(celery_test_app.app.conf.table(with_defaults=False))
    app.conf.broker_url = broker
    return app


def value(s: Samples, metric: str, labels: dict[str, str] | None = None,
          **more: str) -> float:
    """Like ``Samples.get`` but label names may be ``name`` (Celery's task-name label)."""
    want = {**(labels or {}), **more}
    found = [v for lbl, v in s.samples.get(metric, [])
             if all(lbl.get(k) == w for k, w in want.items())]
    if len(found) != 1:
        raise KeyError(f"{metric}{want}: {len(found)} samples match")
    return found[0]


def total(s: Samples, metric: str, labels: dict[str, str] | None = None,
          **more: str) -> float:
    """The sum of the samples matching the labels given (e.g. over hostname, exception)."""
    want = {**(labels or {}), **more}
    return sum(v for lbl, v in s.samples.get(metric, [])
               if all(lbl.get(k) == w for k, w in want.items()))


def present(s: Samples, metric: str, labels: dict[str, str]) -> bool:
    return any(all(lbl.get(k) == w for k, w in labels.items())
               for lbl, _ in s.samples.get(metric, []))


def documented_names() -> set[str]:
    """Metric names in the first column of docs/celery.md's metrics table."""
    return {n for n in table_names("celery") if n.startswith(("celery_", "stackmon_celery_"))}


RABBITMQ_ONLY = {"celery_active_consumer_count"}


def check_docs(s: Samples) -> None:
    """Every family in the scrape is documented, every documented one is emitted."""
    emitted = {name + ("_total" if kind == "counter" else "") for name, kind in s.types.items()
               if name.startswith(("celery_", "stackmon_celery_"))}
    documented = documented_names()
    assert emitted - documented == set(), "emitted but not in docs/celery.md"
    assert documented - emitted - RABBITMQ_ONLY == set(), "documented but not emitted"


def wait_or_dump(exporter: Any, predicate: Any, worker: Worker, timeout: float,
                 what: str) -> Any:
    """``wait_for`` that, on timeout, shows the Celery series and the worker's log."""
    try:
        return wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as err:
        lines = [ln for ln in exporter.scrape().text.splitlines()
                 if ln.startswith(("celery_", "stackmon_celery")) and "_bucket" not in ln]
        raise AssertionError(f"{err}\n" + "\n".join(lines) + "\nworker log:\n"
                             + worker.logs()[-4000:]) from None


def receiving_exporter(env: dict[str, str], args: tuple[str, ...] = ()) -> Iterator[Exporter]:
    """A Celery-only exporter, yielded once its event receiver is connected."""
    exp = start_exporter(["--no-collector.host", *args], env)
    try:
        wait_for(lambda: exp.scrape().get("stackmon_celery_events_receiver_up") == 1,
                 timeout=30, what="event receiver up")
        yield exp
    finally:
        exp.stop()


def worker_box() -> Iterator[dict[str, Worker]]:
    """Workers a test starts, killed when the module is done."""
    box: dict[str, Worker] = {}
    yield box
    for worker in box.values():
        worker.kill()
