"""prometheus/alertmanager.yml in a real Alertmanager.

1. Every inhibition rule, with alerts posted straight to Alertmanager's API: the target
   alert is marked suppressed (inhibited by the source) when the source fires for the
   same target, and stays active when the source is for another target.
2. One outage pages once: a real Prometheus evaluating the shipped rules scrapes a real
   exporter whose Redis is also the Celery broker; the test stops that Redis (its own,
   on a free port) and checks that Alertmanager sends exactly one notification
   (RedisDown) and holds the broker and receiver alerts it causes as inhibited.

The end-to-end case uses a copy of the rules with every ``for:`` divided by 30 (1 m ->
2 s) and Alertmanager's group_wait at 1 s; nothing else is changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.celery import start_worker
from tests.helpers.exporter import (
    REPO,
    free_port,
    http_get,
    start_exporter,
    stop_processes,
    wait_for,
)
from tests.helpers.prometheus import query
from tests.helpers.redis_server import RedisServer

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS = shutil.which("prometheus")
CONFIG = REPO / "prometheus" / "alertmanager.yml"
RULES = REPO / "prometheus" / "rules"


@dataclass
class Webhook:
    """A loopback HTTP server that records the notifications Alertmanager sends."""

    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alertnames(self) -> list[tuple[str, str, str]]:
        """(receiver path, alertname, status) of every alert of every notification."""
        return [(n["path"], a["labels"]["alertname"], a["status"])
                for n in list(self.received) for a in n["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """``prometheus-alertmanager`` on a free port with a test copy of the shipped config."""

    def __init__(self, tmp: Path, webhook: Webhook) -> None:
        if ALERTMANAGER is None:
            pytest.fail("prometheus-alertmanager is not installed; run scripts/test-services.sh")
        config = yaml.safe_load(CONFIG.read_text())
        config["route"]["group_wait"] = "1s"
        config["route"]["group_interval"] = "1s"
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                path = hook["url"].rsplit("/", 1)[1]
                hook["url"] = f"http://127.0.0.1:{webhook.port}/{path}"
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "alertmanager.log"
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={tmp / 'alertmanager.yml'}",
             f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="],  # no gossip port: a lone instance
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        wait_for(self._ready, timeout=30, what="alertmanager")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited: {self.log.read_text()}")
        return http_get(self.url + "/-/ready")[0] == 200

    def post(self, *alerts: dict[str, str]) -> None:
        now = datetime.now(UTC)
        body = [{"labels": labels, "annotations": {"summary": "test"},
                 "startsAt": now.isoformat(),
                 "endsAt": (now + timedelta(minutes=10)).isoformat()} for labels in alerts]
        req = urllib.request.Request(self.url + "/api/v2/alerts", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def alerts(self) -> list[dict[str, Any]]:
        status, _, body = http_get(self.url + "/api/v2/alerts")
        assert status == 200
        return json.loads(body)  # type: ignore[no-any-return]

    def states(self) -> dict[str, str]:
        """alertname/labels key -> "active" | "suppressed" (inhibited)."""
        out = {}
        for a in self.alerts():
            state = a["status"]["state"]
            if state == "suppressed":
                assert a["status"]["inhibitedBy"], a  # inhibited, not silenced
            out[key(a["labels"])] = state
        return out

    def stop(self) -> None:
        stop_processes(self.proc)


def key(labels: dict[str, str]) -> str:
    return labels["alertname"] + "{" + ",".join(
        f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")
    ) + "}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path, webhook)
    yield am
    am.stop()


def on(instance: str, labels: dict[str, str]) -> dict[str, str]:
    return {**labels, "job": "stackmon", "instance": instance}


# (source alert, target alert): the target is inhibited when both come from the same
# exporter, and stays active when the source comes from another one.
INHIBITIONS = [
    ({"alertname": "StackmonTargetDown", "severity": "critical"},
     {"alertname": "HostHighCpuUsage", "severity": "warning"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "CeleryBrokerDown", "severity": "critical"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "CeleryEventsReceiverDown", "severity": "warning"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "CeleryWorkerDown", "severity": "warning", "hostname": "w1@h"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "StackmonCollectorFailing", "severity": "warning", "collector": "redis"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "StackmonCollectorFailing", "severity": "warning", "collector": "celery"}),
    ({"alertname": "CeleryBrokerDown", "severity": "critical"},
     {"alertname": "CeleryNoWorkers", "severity": "critical"}),
    ({"alertname": "CeleryBrokerDown", "severity": "critical"},
     {"alertname": "StackmonCollectorFailing", "severity": "warning", "collector": "celery"}),
    ({"alertname": "CeleryNoWorkers", "severity": "critical"},
     {"alertname": "CeleryWorkerDown", "severity": "warning", "hostname": "w1@h"}),
    ({"alertname": "PostgresDown", "severity": "critical"},
     {"alertname": "StackmonCollectorFailing", "severity": "warning", "collector": "postgres"}),
    ({"alertname": "NginxDown", "severity": "critical", "service": "nginx"},
     {"alertname": "ServiceDown", "severity": "critical", "service": "nginx"}),
    ({"alertname": "ServiceTLSCertExpired", "severity": "critical", "service": "web"},
     {"alertname": "ServiceDown", "severity": "critical", "service": "web"}),
    ({"alertname": "HostFilesystemFillingUpFast", "severity": "critical", "mountpoint": "/"},
     {"alertname": "HostFilesystemFillingUp", "severity": "warning", "mountpoint": "/"}),
    ({"alertname": "HostFilesystemAlmostFull", "severity": "critical", "mountpoint": "/"},
     {"alertname": "HostFilesystemFillingUpFast", "severity": "critical", "mountpoint": "/"}),
    ({"alertname": "HostInodesAlmostExhausted", "severity": "critical", "mountpoint": "/"},
     {"alertname": "HostInodesFillingUp", "severity": "warning", "mountpoint": "/"}),
    ({"alertname": "PostgresMaxConnectionsReached", "severity": "critical"},
     {"alertname": "PostgresTooManyConnections", "severity": "warning"}),
]

# Same target, but the source does not cause the target: never inhibited.
NOT_INHIBITED = [
    ({"alertname": "PostgresDown", "severity": "critical"},
     {"alertname": "StackmonCollectorFailing", "severity": "warning", "collector": "redis"}),
    ({"alertname": "NginxDown", "severity": "critical", "service": "nginx"},
     {"alertname": "ServiceDown", "severity": "critical", "service": "web"}),
    ({"alertname": "RedisDown", "severity": "critical"},
     {"alertname": "PostgresDown", "severity": "critical"}),
    ({"alertname": "HostFilesystemAlmostFull", "severity": "critical", "mountpoint": "/"},
     {"alertname": "HostFilesystemFillingUp", "severity": "warning", "mountpoint": "/data"}),
]


def test_every_inhibition_rule_is_exercised() -> None:
    """Each inhibit rule of the shipped config has a case above (a new rule needs one)."""
    config = yaml.safe_load(CONFIG.read_text())
    sources: set[str] = set()
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"]:
            m = re.fullmatch(r'alertname(=~?)"(.*)"', matcher)
            if m:
                sources.update(m.group(2).split("|"))
    assert sources == {s["alertname"] for s, _ in INHIBITIONS}


def test_inhibition_rules(alertmanager: Alertmanager) -> None:
    # Each case on instances of its own, so that the cases cannot inhibit each other.
    expected = {}
    for i, (source, target) in enumerate(INHIBITIONS):
        same, other, source_elsewhere = f"a{i}:9860", f"b{i}:9860", f"c{i}:9860"
        alertmanager.post(on(same, source), on(same, target), on(source_elsewhere, source),
                          on(other, target))
        expected[key(on(same, target))] = "suppressed"
        expected[key(on(other, target))] = "active"
    for i, (source, target) in enumerate(NOT_INHIBITED):
        alertmanager.post(on(f"n{i}:9860", source), on(f"n{i}:9860", target))
        expected[key(on(f"n{i}:9860", target))] = "active"

    def settled() -> bool:
        states = alertmanager.states()
        return all(states.get(k) == v for k, v in expected.items())
    try:
        wait_for(settled, timeout=30, interval=0.5, what="inhibitions to apply")
    except AssertionError:
        states = alertmanager.states()
        wrong = {k: (states.get(k), v) for k, v in expected.items() if states.get(k) != v}
        raise AssertionError(f"alert -> (state, expected): {wrong}") from None


def fast_rules(tmp: Path) -> list[Path]:
    """The Redis, Celery and stackmon rules with every ``for:`` divided by 30."""
    out = []
    for name in ("redis", "celery", "stackmon"):
        doc = yaml.safe_load((RULES / f"{name}.yml").read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                seconds = _seconds(str(rule["for"]))
                rule["for"] = f"{max(1, seconds // 30)}s" if seconds else "0s"
        path = tmp / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc))
        out.append(path)
    return out


def _seconds(duration: str) -> int:
    total = 0
    for amount, unit in re.findall(r"(\d+)([smhd])", duration):
        total += int(amount) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


def test_fast_rules_keep_the_order_of_the_for_durations(tmp_path: Path) -> None:
    """RedisDown must become firing before the broker alert it inhibits, as in the
    shipped rules (1 m before 2 m)."""
    fors = {r["alert"]: _seconds(r["for"]) for p in fast_rules(tmp_path)
            for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}
    assert fors["RedisDown"] < fors["CeleryBrokerDown"] <= fors["CeleryEventsReceiverDown"]


@pytest.mark.timeout(180)
def test_redis_broker_outage_pages_once(tmp_path: Path, alertmanager: Alertmanager,
                                        webhook: Webhook) -> None:
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed; run scripts/test-services.sh")
    deadline = time.monotonic() + 120

    def left() -> float:
        return max(5.0, deadline - time.monotonic())
    redis = RedisServer().start()
    exporter = worker = prom = None
    try:
        broker = redis.url + "/1"
        exporter = start_exporter(
            ["--no-collector.host", "--no-collector.postgres", "--no-collector.services",
             "--celery.worker-heartbeat-timeout-seconds=10"],
            {"STACKMON_REDIS_URL": redis.url + "/0", "STACKMON_CELERY_BROKER_URL": broker})
        worker = start_worker(broker)
        # Prometheus starts once the worker is seen, so CeleryNoWorkers cannot fire first.
        wait_for(lambda: exporter.scrape().get("celery_workers") == 1, timeout=left(),
                 interval=0.5, what="the worker in the exporter")
        rules = fast_rules(tmp_path)
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rules],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]},
            "scrape_configs": [{"job_name": "stackmon", "static_configs": [
                {"targets": [f"127.0.0.1:{exporter.port}"]}]}],
        }))
        port = free_port()
        prom = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
        url = f"http://127.0.0.1:{port}"

        # Healthy first: the worker is seen through the broker's event stream.
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, timeout=left(),
                 what="prometheus")
        wait_for(lambda: [s for s in query(url, "celery_workers == 1 and redis_up == 1")],
                 timeout=left(), interval=0.5, what="a healthy stack in Prometheus")
        assert alertmanager.alerts() == [], "alerts before the outage"

        redis.stop()

        def settled() -> bool:
            states = {k.split("{")[0]: v for k, v in alertmanager.states().items()
                      if "collector=" not in k}
            return (states.get("RedisDown") == "active"
                    and states.get("CeleryBrokerDown") == "suppressed"
                    and states.get("CeleryEventsReceiverDown") == "suppressed"
                    and ("/pager", "RedisDown", "firing") in webhook.alertnames())
        try:
            wait_for(settled, timeout=left(), interval=0.5, what="the outage in Alertmanager")
        except AssertionError:
            raise AssertionError(f"alerts: {alertmanager.states()}; "
                                 f"notified: {webhook.alertnames()}") from None

        # Every alert Alertmanager holds is RedisDown or inhibited by it.
        states = alertmanager.states()
        assert {k for k, v in states.items() if v == "active"} == {
            key({"alertname": "RedisDown", "job": "stackmon",
                 "instance": f"127.0.0.1:{exporter.port}"})}, states
        for a in alertmanager.alerts():
            if a["labels"]["alertname"] != "RedisDown":
                assert a["status"]["inhibitedBy"], a
        # The inhibited alerts have had a group_wait (1 s) and more to be notified: a
        # notification would have come with or right after RedisDown's.
        first_seen = max(datetime.fromisoformat(a["updatedAt"].replace("Z", "+00:00"))
                         for a in alertmanager.alerts())

        def past_group_wait() -> bool:
            return datetime.now(UTC) > first_seen + timedelta(seconds=3)
        wait_for(past_group_wait, timeout=10, interval=0.2, what="group_wait to pass")
        assert sorted(set(webhook.alertnames())) == [("/pager", "RedisDown", "firing")]
    finally:
        if prom is not None:
            stop_processes(prom)
        if worker is not None:
            worker.stop()
        if exporter is not None:
            exporter.stop()
        redis.cleanup()
