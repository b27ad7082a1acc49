"""The least-privilege RabbitMQ user of docs/security.md, created as documented (the same
permission regexes; a vhost, user name and password of the test's own) on the suite's
private RabbitMQ node, runs every part of the Celery collector: queue lengths, the
event receiver, inspect and enable_events broadcasts; nothing is refused."""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from tests.helpers import backends
from tests.helpers.celery import start_worker
from tests.helpers.exporter import REPO, Exporter, Samples, start_exporter, wait_for

PASSWORD = "least-Priv-1"


def documented_commands() -> list[list[str]]:
    """The ``rabbitmqctl`` lines of docs/security.md's least-privilege RabbitMQ block."""
    text = (REPO / "docs" / "security.md").read_text()
    section = text.split("## Least privilege", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(# RabbitMQ.*?)```", section, re.S)
    assert block, "no RabbitMQ block in docs/security.md → Least privilege"
    commands = [shlex.split(line) for line in block.group(1).splitlines()
                if line.startswith("rabbitmqctl ")]
    assert any(c[1] == "set_permissions" for c in commands), commands
    return commands


@dataclass
class Broker:
    node: backends.RabbitMQ
    vhost: str
    user: str

    def url(self, user: str, password: str) -> str:
        return (f"amqp://{user}:{password}@127.0.0.1:{self.node.amqp_port}/"
                f"{quote(self.vhost, safe='')}")


@pytest.fixture()
def broker(amqp_url: str) -> Iterator[Broker]:
    """A vhost and user of this test's own on the private node, removed afterwards."""
    node = backends.rabbitmq()
    tag = uuid.uuid4().hex[:8]
    vhost, user = f"stackmon-perm-{tag}", f"stackmon-{tag}"
    node.ctl("add_vhost", vhost)
    node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")  # the worker's
    try:
        for command in documented_commands():
            args = command[1:]
            if args[0] == "add_user":
                args = [args[0], user, PASSWORD]
            else:  # set_permissions -p <vhost> <user> <configure> <write> <read>
                assert args[1:4] == ["-p", "/", "stackmon"], args
                args = [args[0], "-p", vhost, user, *args[4:]]
            node.ctl(*args)
        yield Broker(node, vhost, user)
    finally:
        node.ctl("delete_vhost", vhost)
        node.ctl("delete_user", user)


def worker_up(exp: Exporter, hostname: str) -> Samples | None:
    s = exp.scrape()
    return s if s.has("celery_worker_up", hostname=hostname) and s.get(
        "celery_worker_up", hostname=hostname) == 1 else None


def test_documented_permissions_run_every_part(broker: Broker) -> None:
    worker = start_worker(broker.url("guest", "guest"))
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_CELERY_BROKER_URL": broker.url(broker.user, PASSWORD),
        "STACKMON_CELERY_ENABLE_EVENTS_AT_START": "true",
        "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "2"})
    try:
        wait_for(lambda: exp.scrape().get("stackmon_celery_events_receiver_up") == 1,
                 timeout=60, what="the event receiver to consume")
        s = wait_for(lambda: worker_up(exp, worker.host), timeout=90,
                     what="worker heartbeats through the event receiver")
        s = wait_for(lambda: (lambda x: x if x.get(
            "stackmon_celery_inspect_last_success_timestamp_seconds") > 0 else None)(
            exp.scrape()), timeout=60, what="an inspect round answered")
        assert s.get("celery_broker_up") == 1
        assert s.has("celery_queue_length", queue_name="celery")
        assert s.has("celery_worker_pool_info", hostname=worker.host)
        logs = exp.logs()
        assert "ACCESS_REFUSED" not in logs and "failed" not in logs, logs
        node_log = broker.node.log()
        assert f"refused for user '{broker.user}'" not in node_log, node_log
    finally:
        exp.stop()
        worker.stop()
