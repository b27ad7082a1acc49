"""The running exporter shows the same findings as ``stackmon check``: the landing page
lists them with their fix and ``stackmon_check_ok`` has one series per finding (a /probe
target's under its name), diagnosed after a scrape and not again on the next scrapes."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import Exporter, Samples, start_exporter, wait_for
from tests.helpers.redis_server import RedisServer, redis_server

PASSWORD = "server-Pw-1"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A Redis whose ACL user for stackmon may not run SLOWLOG."""
    with redis_server() as server:
        server.client().execute_command("ACL", "SETUSER", "stackmon", "on", f">{PASSWORD}",
                                        "-@all", "+info", "+config|get")
        yield server


@pytest.fixture(scope="module")
def exporter(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exporter]:
    config: Path = tmp_path_factory.mktemp("check-server") / "stackmon.yml"
    config.write_text("redis:\n  targets:\n"
                      f"    - {{name: cache, url: 'redis://127.0.0.1:{redis.port}'}}\n")
    exp = start_exporter(["--no-collector.host", f"--config.file={config}"], {
        "STACKMON_REDIS_URL": f"redis://stackmon:{PASSWORD}@127.0.0.1:{redis.port}"})
    yield exp
    exp.stop()


def findings(exp: Exporter) -> Samples | None:
    s = exp.scrape()
    return s if s.get("stackmon_check_last_run_timestamp_seconds") > 0 else None


def test_findings_on_metrics_and_landing_page(exporter: Exporter) -> None:
    # The target first, so that its collector has run when the findings are made.
    assert exporter.scrape("/probe?target=cache").get("redis_up") == 1
    s: Samples = wait_for(lambda: findings(exporter), timeout=30,
                          what="the first findings after a scrape")
    ok = {(lbl["collector"], lbl["check"], lbl["target"]): v
          for lbl, v in s.samples["stackmon_check_ok"]}
    assert ok == {("redis", "collect", ""): 1, ("redis", "slowlog", ""): 0,
                  ("redis", "config_get", ""): 1, ("redis", "collect", "cache"): 1,
                  ("redis", "slowlog", "cache"): 1, ("redis", "config_get", "cache"): 1}
    status, _, body = exporter.get("/")
    page = body.decode()
    assert status == 200 and "<h2>Checks</h2>" in page
    assert html.escape("ACL SETUSER stackmon +slowlog|len +slowlog|get") in page
    assert "the ACL user stackmon may not run SLOWLOG LEN and SLOWLOG GET" in page
    assert "redis (target cache)" in page
    logs = exporter.logs()
    assert "logger=stackmon.checks" in logs and "check=slowlog status=missing" in logs


def test_findings_are_not_made_again_on_every_scrape(exporter: Exporter) -> None:
    first: Samples = wait_for(lambda: findings(exporter), timeout=30, what="findings")
    when = first.get("stackmon_check_last_run_timestamp_seconds")
    for _ in range(5):
        assert exporter.scrape().get("stackmon_check_last_run_timestamp_seconds") == when
    assert exporter.logs().count("check=slowlog status=missing") == 1
