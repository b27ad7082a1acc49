"""A private RabbitMQ node for tests that create users and permissions.

The machine's own RabbitMQ (5672) is shared and must not be reconfigured, so this starts
a node of its own: its own node name, AMQP and Erlang distribution ports picked free,
data, logs, config, plugins list and Erlang cookie (HOME) in a temporary directory, and
no plugins (so no management port).  It registers with the running epmd under its
unique name, like any second node would.  Stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.exporter import free_port, wait_for

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_SECONDS = 120


@dataclass
class RabbitNode:
    name: str
    port: int
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def url(self, user: str, password: str, vhost: str = "/") -> str:
        path = "" if vhost == "/" else vhost
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{path}"

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <this node> ...``; raises with its output on failure."""
        proc = subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
                              env=self.env, capture_output=True, timeout=timeout)
        if proc.returncode:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: "
                                 f"{(proc.stdout + proc.stderr).decode()[-2000:]}")
        return proc.stdout.decode()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted((self.home / "log").glob("*.log")))


@contextmanager
def private_rabbitmq() -> Iterator[RabbitNode]:
    home = Path(tempfile.mkdtemp(prefix="stackmon-rabbit-"))
    port, dist_port = free_port(), free_port()
    name = f"stackmon-test-{uuid.uuid4().hex[:8]}@localhost"
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = 127.0.0.1:{port}\n"
        "log.file.level = info\n"
        "log.console = false\n")
    (home / "enabled_plugins").write_text("[].\n")
    (home / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
        "HOME": str(home),  # the Erlang cookie the node and rabbitmqctl share
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "rabbit.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    log = open(home / "server.out", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    node = RabbitNode(name, port, home, env, proc)
    try:
        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("rabbitmq-server exited")  # shown in the timeout message
            # Fails at once until the node has registered with epmd, then waits for boot.
            node.ctl("await_startup", "--timeout", "30", timeout=60)
            return True

        try:
            wait_for(started, timeout=START_TIMEOUT_SECONDS, interval=1.0,
                     what="the private RabbitMQ node to start")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{(home / 'server.out').read_text()[-3000:]}"
                                 ) from None
        yield node
    finally:
        try:
            node.ctl("stop", timeout=60)
            proc.wait(timeout=60)
        except (AssertionError, subprocess.TimeoutExpired):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # our own session, started above
                proc.wait(timeout=30)
        log.close()
        shutil.rmtree(home, ignore_errors=True)
