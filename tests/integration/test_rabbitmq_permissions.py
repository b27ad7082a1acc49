"""The README's least-privilege RabbitMQ user, created exactly as documented on a private
RabbitMQ node, runs every part of the Celery collector: queue lengths, the event
receiver, inspect and enable_events broadcasts; nothing is refused."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import pytest

from tests.helpers.celery import start_worker
from tests.helpers.exporter import REPO, Exporter, Samples, start_exporter, wait_for
from tests.helpers.rabbitmq_node import RabbitNode, private_rabbitmq

PASSWORD = "least-Priv-1"


def documented_commands() -> list[list[str]]:
    """The ``rabbitmqctl`` lines of the README's least-privilege RabbitMQ block."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Least privilege", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(# RabbitMQ.*?)```", section, re.S)
    assert block, "no RabbitMQ block in the README's Least privilege section"
    commands = [shlex.split(line) for line in block.group(1).splitlines()
                if line.startswith("rabbitmqctl ")]
    assert any(c[1] == "set_permissions" for c in commands), commands
    return commands


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    with private_rabbitmq() as n:
        for command in documented_commands():
            # Exactly as documented, but with a password of ours on the add_user line.
            args = command[1:]
            if args[0] == "add_user":
                args = [args[0], args[1], PASSWORD]
            n.ctl(*args)
        yield n


def worker_up(exp: Exporter, hostname: str) -> Samples | None:
    s = exp.scrape()
    return s if s.has("celery_worker_up", hostname=hostname) and s.get(
        "celery_worker_up", hostname=hostname) == 1 else None


def test_documented_permissions_run_every_part(node: RabbitNode) -> None:
    # The worker uses the node's default guest user (all permissions on "/").
    worker = start_worker(node.url("guest", "guest"))
    exp = start_exporter(["--no-collector.host"], env={
        "STACKMON_CELERY_BROKER_URL": node.url("stackmon", PASSWORD),
        "STACKMON_CELERY_ENABLE_EVENTS_AT_START": "true",
        "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "2"})
    try:
        wait_for(lambda: exp.scrape().get("stackmon_celery_events_receiver_up") == 1,
                 timeout=60, what="the event receiver to consume")
        s = wait_for(lambda: worker_up(exp, worker.hostname), timeout=90,
                     what="worker heartbeats through the event receiver")
        s = wait_for(lambda: (lambda x: x if x.get(
            "stackmon_celery_inspect_last_success_timestamp_seconds") > 0 else None)(
            exp.scrape()), timeout=60, what="an inspect round answered")
        assert s.get("celery_broker_up") == 1
        assert s.has("celery_queue_length", queue_name="celery")
        assert s.has("celery_worker_pool_info", hostname=worker.hostname)
        logs = exp.logs()
        assert "ACCESS_REFUSED" not in logs and "failed" not in logs, logs
        assert "refused for user 'stackmon'" not in node.logs(), node.logs()[-3000:]
    finally:
        exp.stop()
        worker.stop()
