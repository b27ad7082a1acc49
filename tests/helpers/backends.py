"""The suite's own PostgreSQL, Redis and RabbitMQ: one private set per test session.

Tests never use the machine's servers on 5432/6379/5672. The addresses are fixed when
this module is imported (free loopback ports below the kernel's ephemeral range, so no
outgoing connection can take one meanwhile); the servers are started in parallel by
``start()`` (tests/conftest.py calls it once collection shows they are needed) and
stopped by ``stop_all()`` at the end of the session::

    >>> from tests.helpers.backends import PG_DSN, REDIS_URL, BROKER_URL, AMQP_URL
    >>> PG_DSN
    'postgresql://postgres@127.0.0.1:23817/postgres'
    >>> BROKER_URL          # Celery on the private Redis, DB 11
    'redis://127.0.0.1:26104/11'

In a test, prefer the session fixtures ``pg_dsn``, ``redis_url``, ``broker_url`` and
``amqp_url`` (they wait until the server is up); code outside a test (config builders,
module constants) may use the constants, or ``pg()``/``redis()``/``rabbitmq()`` for the
server objects. Subprocesses get the URLs through their environment, never by
importing this module (they would pick other ports).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers.exporter import wait_for

if TYPE_CHECKING:  # imported when started: redis_server imports this module's URLs
    from tests.helpers.pgcluster import Cluster
    from tests.helpers.redis_server import RedisServer

# Below net.ipv4.ip_local_port_range (32768-60999 by default): the kernel never hands
# these out as the local port of an outgoing connection.
_PORT_RANGE = (20000, 32000)
_taken: set[int] = set()


def private_port() -> int:
    """A random loopback port in ``_PORT_RANGE`` that nothing listens on now."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*_PORT_RANGE)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


PG_PORT = private_port()
REDIS_PORT = private_port()
AMQP_PORT = private_port()
AMQP_DIST_PORT = private_port()  # Erlang distribution (rabbitmqctl talks to the node on it)
EPMD_PORT = private_port()       # our own epmd, never the machine's on 4369

PG_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
BROKER_URL = f"redis://127.0.0.1:{REDIS_PORT}/11"
AMQP_URL = f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}//"


class RabbitMQ:
    """A RabbitMQ node of our own: node name, AMQP/distribution/epmd ports, mnesia and
    logs in a temp dir; no plugins; started with the Debian package's scripts."""

    BIN = Path("/usr/lib/rabbitmq/bin")

    def __init__(self, amqp_port: int, dist_port: int, epmd_port: int) -> None:
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.epmd_port = epmd_port
        self.dir = Path(tempfile.mkdtemp(prefix="stackmon-rabbit-"))
        self.node = f"stackmon-test-{uuid.uuid4().hex[:8]}@localhost"
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        """Environment for rabbitmq-server / rabbitmqctl on this node (and nothing else)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_", "STACKMON_"))}
        env.update({
            "HOME": str(self.dir),  # the Erlang cookie lives here, not in ~ or /var/lib
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # Our own files instead of /etc/rabbitmq/* (the machine's node name and ports).
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
        })
        return env

    def start(self) -> RabbitMQ:
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\nlog.file.level = warning\n")
        (self.dir / "advanced.config").write_text("[].\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        log = open(self.dir / "server.out", "ab")  # noqa: SIM115 - owned by the process
        # epmd in the foreground, as our child: the node would otherwise start a daemon
        # that outlives the session.
        self.procs.append(subprocess.Popen(
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=log, stderr=log, env=self.env(), start_new_session=True))
        self.procs.append(subprocess.Popen(
            [str(self.BIN / "rabbitmq-server")], stdout=log, stderr=log, env=self.env(),
            cwd=self.dir, start_new_session=True))
        log.close()
        wait_for(self._up, timeout=120, interval=0.3, what=f"RabbitMQ node {self.node}")
        return self

    def _up(self) -> bool:
        import amqp

        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"RabbitMQ exited ({proc.args}): {self.log()}")
        conn = amqp.Connection(f"127.0.0.1:{self.amqp_port}", userid="guest",
                               password="guest", connect_timeout=2)
        try:
            conn.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        conn.close()
        return True

    def log(self) -> str:
        out = (self.dir / "server.out").read_text(errors="replace")[-3000:]
        logs = sorted((self.dir / "log").glob("*.log")) if (self.dir / "log").is_dir() else []
        return out + "".join(p.read_text(errors="replace")[-3000:] for p in logs)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl`` against this node only."""
        proc = subprocess.run([str(self.BIN / "rabbitmqctl"), "-q", "-n", self.node, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env(),
                              cwd=self.dir)
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def stop(self) -> None:
        # Throw-away data: kill the process groups (script, beam, its helpers) at once.
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)


class _Backend:
    """One server started at most once, in a thread of its own."""

    def __init__(self, name: str, start: Callable[[], Any], stop: Callable[[Any], None]
                 ) -> None:
        self.name = name
        self._start = start
        self._stop = stop
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._error: BaseException | None = None
        self.start_seconds: float | None = None

    def _run(self) -> None:
        began = time.monotonic()
        try:
            self._server = self._start()
        except BaseException as err:  # re-raised in get()
            self._error = err
        self.start_seconds = time.monotonic() - began

    def begin(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"start-{self.name}",
                                                daemon=True)
                self._thread.start()

    def get(self) -> Any:
        self.begin()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"the tests' private {self.name} did not start: "
                               f"{self._error}") from self._error
        return self._server

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join()
        server, self._server, self._error = self._server, None, None
        if server is not None:
            self._stop(server)


def _start_pg() -> Cluster:
    from tests.helpers.pgcluster import Cluster

    # autovacuum off: the exact-value tests count transactions and tuples.
    return Cluster.create(["-c autovacuum=off", "-c max_connections=200"], port=PG_PORT)


def _stop_pg(cluster: Cluster) -> None:
    cluster.destroy()


def _start_redis() -> RedisServer:
    from tests.helpers.redis_server import RedisServer

    return RedisServer(port=REDIS_PORT).start()


def _stop_redis(server: RedisServer) -> None:
    server.cleanup()


def _start_rabbitmq() -> RabbitMQ:
    return RabbitMQ(AMQP_PORT, AMQP_DIST_PORT, EPMD_PORT).start()


_BACKENDS = {
    "postgres": _Backend("PostgreSQL", _start_pg, _stop_pg),
    "redis": _Backend("Redis", _start_redis, _stop_redis),
    "rabbitmq": _Backend("RabbitMQ", _start_rabbitmq, RabbitMQ.stop),
}


def start(*names: str) -> None:
    """Begin starting these servers ("postgres", "redis", "rabbitmq") in the background."""
    for name in names:
        _BACKENDS[name].begin()


def pg() -> Cluster:
    """The private PostgreSQL cluster, started if needed (blocks until it accepts)."""
    cluster: Cluster = _BACKENDS["postgres"].get()
    return cluster


def redis() -> RedisServer:
    server: RedisServer = _BACKENDS["redis"].get()
    return server


def rabbitmq() -> RabbitMQ:
    server: RabbitMQ = _BACKENDS["rabbitmq"].get()
    return server


def start_times() -> str:
    """How long each server took to start (they start in parallel)::

        PostgreSQL 1.4 s, Redis 0.1 s, RabbitMQ 4.7 s
    """
    return ", ".join(f"{b.name} {b.start_seconds:.1f} s" for b in _BACKENDS.values()
                     if b.start_seconds is not None)


def stop_all() -> None:
    """Stop every server this process started (idempotent; also run at exit)."""
    for backend in _BACKENDS.values():
        with contextlib.suppress(Exception):
            backend.stop()
