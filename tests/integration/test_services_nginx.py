"""nginx stub_status against a real nginx, plus promtool and the docs table on a full scrape."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporter.collectors.services.checks import parse_stub_status
from tests.helpers.docs import table_names
from tests.helpers.exporter import REPO, Exporter, free_port, promtool_complaints, start_exporter
from tests.helpers.services import (
    Nginx,
    TargetServer,
    nginx_version,
    self_signed_cert,
    tls_server_context,
)

DOCS = REPO / "docs" / "services.md"
REQUESTS = 7
NGINX_SERIES = ("nginx_connections_active", "nginx_connections_reading",
                "nginx_connections_writing", "nginx_connections_waiting",
                "nginx_connections_accepted_total", "nginx_connections_handled_total",
                "nginx_http_requests_total")


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    server = Nginx(tmp_path_factory.mktemp("nginx")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetServer]:
    cert, key, _ = self_signed_cert(tmp_path_factory.mktemp("cert"), 10)
    server = TargetServer(tls=tls_server_context(cert, key))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx,
             tls: TargetServer) -> Iterator[Exporter]:
    """Every check type at once, so one scrape holds every family the collector makes."""
    tmp = tmp_path_factory.mktemp("services-nginx")
    checks = [
        {"name": "web", "type": "nginx", "url": nginx.url("/stub_status")},
        {"name": "web-not-stub", "type": "nginx", "url": nginx.url("/")},
        {"name": "web-gone", "type": "nginx", "url": f"http://127.0.0.1:{free_port()}/s"},
        {"name": "api", "url": tls.url("/ok"), "tls_verify": False,
         "version_header": "X-App-Version"},
        {"name": "port", "type": "tcp", "address": f"127.0.0.1:{nginx.port}"},
    ]
    config = tmp / "stackmon.yml"
    config.write_text(yaml.safe_dump({"services": {"checks": checks}}))
    exp = start_exporter([f"--config.file={config}"])  # host collector on: a full scrape
    yield exp
    exp.stop()


def read_stub_status(nginx: Nginx) -> dict[str, int]:
    with urllib.request.urlopen(nginx.url("/stub_status"), timeout=10) as resp:
        return vars(parse_stub_status(resp.read().decode()))


def test_nginx_series_match_stub_status(exporter: Exporter, nginx: Nginx) -> None:
    exporter.scrape()  # warm up: checks that contact nginx (port, not-stub) run every scrape
    direct = read_stub_status(nginx)  # counts this request and connection itself
    for _ in range(REQUESTS):
        with urllib.request.urlopen(nginx.url("/"), timeout=10) as resp:
            assert resp.read() == b"hello\n"
    samples = exporter.scrape()
    assert samples.get("nginx_up", service="web") == 1
    assert samples.get("stackmon_service_up", service="web") == 1
    # Per scrape: the stub_status request, the not-stub request ("/"), the tcp connect.
    # Their order inside a scrape is not fixed, so bound rather than pin what the other
    # two checks added before the stub_status request was answered.
    own = 1
    got_requests = samples.get("nginx_http_requests_total", service="web")
    want = direct["requests"] + REQUESTS + own
    assert want <= got_requests <= want + 1
    got_accepted = samples.get("nginx_connections_accepted_total", service="web")
    want = direct["accepted"] + REQUESTS + own
    assert want <= got_accepted <= want + 2
    assert samples.get("nginx_connections_handled_total", service="web") == got_accepted
    assert 1 <= samples.get("nginx_connections_active", service="web") <= 3
    assert samples.get("nginx_connections_writing", service="web") >= 1
    assert samples.get("nginx_connections_reading", service="web") >= 0
    assert samples.get("nginx_connections_waiting", service="web") >= 0
    assert samples.get("stackmon_service_info", service="web", role="nginx",
                       version=nginx_version()) == 1


def test_nginx_counters_exact_when_alone(tmp_path: Path, nginx: Nginx) -> None:
    """With one nginx check, the counters are exactly stub_status's after N requests."""
    config = tmp_path / "stackmon.yml"
    config.write_text(yaml.safe_dump({"services": {"checks": [
        {"name": "web", "type": "nginx", "url": nginx.url("/stub_status")}]}}))
    exp = start_exporter([f"--config.file={config}", "--no-collector.host"])
    try:
        first = exp.scrape()
        for _ in range(REQUESTS):
            with urllib.request.urlopen(nginx.url("/"), timeout=10) as resp:
                resp.read()
        second = exp.scrape()
        direct = read_stub_status(nginx)
    finally:
        exp.stop()
    for name, key in (("nginx_http_requests_total", "requests"),
                      ("nginx_connections_accepted_total", "accepted"),
                      ("nginx_connections_handled_total", "handled")):
        # REQUESTS plus the exporter's own stub_status request of the second scrape.
        assert second.get(name, service="web") - first.get(name, service="web") == REQUESTS + 1
        # The direct read after the scrape counts itself once more.
        assert direct[key] == second.get(name, service="web") + 1
    assert second.get("nginx_connections_active", service="web") == 1  # its own connection
    assert second.get("nginx_connections_writing", service="web") == 1
    assert second.get("nginx_connections_reading", service="web") == 0
    assert second.get("nginx_connections_waiting", service="web") == 0


def test_nginx_failures_keep_nginx_up(exporter: Exporter) -> None:
    samples = exporter.scrape()
    for service in ("web-not-stub", "web-gone"):
        assert samples.get("nginx_up", service=service) == 0
        assert samples.get("stackmon_service_up", service=service) == 0
        for name in NGINX_SERIES:
            assert not samples.has(name, service=service)
    assert samples.get("stackmon_scrape_collector_success", collector="services") == 1


def test_nginx_stopped_flips_to_zero(tmp_path: Path) -> None:
    own = Nginx(tmp_path / "own")
    own.tmp.mkdir()
    own.start()
    config = tmp_path / "stackmon.yml"
    config.write_text(yaml.safe_dump({"services": {"checks": [
        {"name": "own", "type": "nginx", "url": own.url("/stub_status")},
        {"name": "own-port", "type": "tcp", "address": f"127.0.0.1:{own.port}"}]}}))
    exp = start_exporter([f"--config.file={config}", "--no-collector.host"])
    try:
        samples = exp.scrape()
        assert samples.get("nginx_up", service="own") == 1
        assert samples.get("stackmon_service_up", service="own-port") == 1
        own.stop()
        samples = exp.scrape()
        assert samples.get("nginx_up", service="own") == 0
        assert samples.get("stackmon_service_up", service="own") == 0
        assert samples.get("stackmon_service_up", service="own-port") == 0
        own.start()  # picked up again without restarting the exporter
        samples = exp.scrape()
        assert samples.get("nginx_up", service="own") == 1
    finally:
        exp.stop()
        own.stop()


def test_promtool_clean(exporter: Exporter) -> None:
    samples = exporter.scrape()
    assert samples.has("stackmon_service_tls_cert_expiry_timestamp_seconds", service="api")
    assert samples.has("nginx_http_requests_total", service="web")
    assert promtool_complaints(samples.text) == []


def documented_names() -> set[str]:
    return table_names("services")


def test_docs_table_matches_emitted_families(exporter: Exporter) -> None:
    samples = exporter.scrape()
    emitted = {name for name in samples.samples
               if name.startswith(("stackmon_service_", "nginx_"))}
    assert emitted == documented_names()
