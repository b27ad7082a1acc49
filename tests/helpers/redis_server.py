"""redis-server instances owned by a test: free loopback port, temp dir, stopped after."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.helpers.backends import REDIS_URL
from tests.helpers.exporter import free_port, wait_for

# The session's private Redis (tests/helpers/backends.py), without a DB number.
SHARED_URL = REDIS_URL.rsplit("/", 1)[0]


class RedisServer:
    """One ``redis-server`` subprocess; ``start``/``stop`` may be called repeatedly."""

    def __init__(self, *args: str, port: int | None = None, tls: bool = False) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="stackmon-redis-"))
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir), *self.args],
            stdout=log, stderr=log, cwd=self.dir)
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log()}")
            probe = redis.Redis(port=self.port, socket_timeout=1, ssl=self.tls,
                                ssl_cert_reqs="none")
            try:
                return bool(probe.ping())
            except redis.AuthenticationError:
                return True
            except redis.ResponseError as err:  # NOAUTH: up, but needs a password
                return "NOAUTH" in str(err)
            finally:
                probe.close()
        wait_for(up, timeout=15, what=f"redis-server on {self.port}")
        return self

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return (self.dir / "redis.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_server(*args: str, port: int | None = None, tls: bool = False
                 ) -> Iterator[RedisServer]:
    server = RedisServer(*args, port=port, tls=tls).start()
    try:
        yield server
    finally:
        server.cleanup()
