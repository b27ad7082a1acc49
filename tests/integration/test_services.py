"""HTTP and TCP checks against real loopback servers, through a real stackmon process."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.exporter import Exporter, Samples, free_port, start_exporter
from tests.helpers.services import (
    APP_VERSION,
    TargetServer,
    self_signed_cert,
    tls_server_context,
)

CERT_DAYS = 42
TOKEN = "tok-" + secrets.token_hex(16)
PASSWORD = "pw-" + secrets.token_hex(16)
PASSWORD_ENV = "SVC_TEST_BASIC_PASSWORD"
# Quick checks must finish well inside their timeout; this is not a latency benchmark: a
# loaded 2-core CI machine can retransmit a loopback SYN after 1 s.
QUICK = 3.0


@pytest.fixture(scope="module")
def plain() -> Iterator[TargetServer]:
    basic = "Basic " + base64.b64encode(f"monitor:{PASSWORD}".encode()).decode()
    server = TargetServer(accepted_auth=(f"Bearer {TOKEN}", basic))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TargetServer, float]]:
    cert, key, not_after = self_signed_cert(tmp_path_factory.mktemp("cert"), CERT_DAYS)
    server = TargetServer(tls=tls_server_context(cert, key))
    yield server, not_after
    server.stop()


def write_config(directory: Path, checks: list[dict[str, object]]) -> Path:
    path = directory / "stackmon.yml"
    path.write_text(yaml.safe_dump({"services": {"checks": checks}}))
    return path


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory, plain: TargetServer,
             tls: tuple[TargetServer, float]) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("services")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    tls_server, _ = tls
    checks: list[dict[str, object]] = [
        {"name": "ok", "url": plain.url("/ok"), "body_regex": "status: ok",
         "version_header": "X-App-Version"},
        {"name": "fail", "url": plain.url("/fail")},
        {"name": "fail-expected", "url": plain.url("/fail"), "expected_status_codes": [500]},
        {"name": "degraded", "url": plain.url("/degraded"), "body_regex": "status: ok"},
        {"name": "slow", "url": plain.url("/hang"), "timeout_seconds": 0.5},
        {"name": "refused", "url": f"http://127.0.0.1:{free_port()}/"},
        {"name": "tls", "url": tls_server.url("/ok"), "tls_verify": False},
        {"name": "tls-verified", "url": tls_server.url("/ok")},
        {"name": "bearer", "url": plain.url("/auth"), "bearer_token_file": str(token_file)},
        {"name": "basic", "url": plain.url("/auth"), "basic_auth_user": "monitor",
         "basic_auth_password_env": PASSWORD_ENV},
        {"name": "no-auth", "url": plain.url("/auth")},
        {"name": "tcp-open", "type": "tcp", "address": f"127.0.0.1:{plain.port}"},
        {"name": "tcp-closed", "type": "tcp", "address": f"127.0.0.1:{free_port()}",
         "role": "database"},
    ]
    config = write_config(tmp, checks)
    exp = start_exporter([f"--config.file={config}", "--no-collector.host", "--log.level=debug"],
                         env={PASSWORD_ENV: PASSWORD})
    yield exp
    exp.stop()


@pytest.fixture(scope="module")
def scrape(exporter: Exporter) -> Samples:
    return exporter.scrape()


def test_every_check_has_up_and_info(scrape: Samples) -> None:
    names = {lbl["service"] for lbl, _ in scrape.samples["stackmon_service_up"]}
    assert names == {"ok", "fail", "fail-expected", "degraded", "slow", "refused", "tls",
                     "tls-verified", "bearer", "basic", "no-auth", "tcp-open", "tcp-closed"}
    assert {lbl["service"] for lbl, _ in scrape.samples["stackmon_service_info"]} == names
    assert scrape.get("stackmon_service_info", service="ok", role="http",
                      version=APP_VERSION) == 1
    assert scrape.get("stackmon_service_info", service="tcp-open", role="tcp") == 1
    assert scrape.get("stackmon_service_info", service="tcp-closed", role="database") == 1
    assert scrape.get("stackmon_scrape_collector_success", collector="services") == 1


def test_http_200(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="ok") == 1
    assert scrape.get("stackmon_service_http_status_code", service="ok") == 200
    assert 0 < scrape.get("stackmon_service_check_duration_seconds", service="ok") < QUICK
    assert not scrape.has("stackmon_service_tls_cert_expiry_timestamp_seconds", service="ok")


def test_http_500(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="fail") == 0
    assert scrape.get("stackmon_service_http_status_code", service="fail") == 500
    assert scrape.get("stackmon_service_up", service="fail-expected") == 1
    assert scrape.get("stackmon_service_http_status_code", service="fail-expected") == 500


def test_http_wrong_body(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="degraded") == 0
    assert scrape.get("stackmon_service_http_status_code", service="degraded") == 200


def test_http_slow_beyond_timeout(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="slow") == 0
    assert scrape.get("stackmon_service_http_status_code", service="slow") == 0
    assert 0.45 <= scrape.get("stackmon_service_check_duration_seconds", service="slow") < QUICK


def test_http_connection_refused(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="refused") == 0
    assert scrape.get("stackmon_service_http_status_code", service="refused") == 0
    assert scrape.get("stackmon_service_check_duration_seconds", service="refused") < QUICK


def test_tls_self_signed_expiry(scrape: Samples, tls: tuple[TargetServer, float]) -> None:
    _, not_after = tls
    assert abs(not_after - (time.time() + CERT_DAYS * 86400)) < 2 * 86400
    assert scrape.get("stackmon_service_up", service="tls") == 1
    assert scrape.get("stackmon_service_http_status_code", service="tls") == 200
    assert scrape.get("stackmon_service_tls_cert_expiry_timestamp_seconds",
                      service="tls") == not_after
    # With verification on, the self-signed certificate fails the check.
    assert scrape.get("stackmon_service_up", service="tls-verified") == 0
    assert scrape.get("stackmon_service_http_status_code", service="tls-verified") == 0


def test_auth_from_file_and_env(scrape: Samples, plain: TargetServer) -> None:
    assert scrape.get("stackmon_service_up", service="bearer") == 1
    assert scrape.get("stackmon_service_up", service="basic") == 1
    assert scrape.get("stackmon_service_up", service="no-auth") == 0
    assert scrape.get("stackmon_service_http_status_code", service="no-auth") == 401
    sent = {auth for path, auth in plain.seen if path == "/auth"}
    assert f"Bearer {TOKEN}" in sent
    assert "" in sent


def test_secrets_never_leak(exporter: Exporter, scrape: Samples) -> None:
    basic = base64.b64encode(f"monitor:{PASSWORD}".encode()).decode()
    pages = [scrape.text]
    for path in ("/", "/probe?target=bearer", "/probe?target=basic", f"/probe?target={TOKEN}"):
        _, _, body = exporter.get(path)
        pages.append(body.decode())
    pages.append(exporter.logs())
    assert "check failed" in exporter.logs()  # the log is not empty
    for page in pages:
        for secret in (TOKEN, PASSWORD, basic):
            assert secret not in page


def test_tcp_open_and_closed(scrape: Samples) -> None:
    assert scrape.get("stackmon_service_up", service="tcp-open") == 1
    assert scrape.get("stackmon_service_check_duration_seconds", service="tcp-open") < QUICK
    assert scrape.get("stackmon_service_up", service="tcp-closed") == 0
    assert scrape.has("stackmon_service_check_duration_seconds", service="tcp-closed")
    assert not scrape.has("stackmon_service_http_status_code", service="tcp-open")


def test_probe_contacts_only_the_named_check(exporter: Exporter, plain: TargetServer) -> None:
    before = len(plain.seen)
    probe = exporter.scrape("/probe?target=fail-expected")
    assert plain.paths()[before:] == ["/fail"]
    assert {lbl["service"] for lbl, _ in probe.samples["stackmon_service_up"]} == {
        "fail-expected"}
    # A URL is never a target: it is refused and nothing is contacted.
    before = len(plain.seen)
    for target in (plain.url("/ok?from=probe"), f"127.0.0.1:{plain.port}"):
        status, _, body = exporter.get(f"/probe?target={target}")
        assert status == 400
        assert b"unknown target name" in body
    assert plain.paths()[before:] == []


def test_hanging_target_does_not_delay_fast_one(tmp_path: Path, plain: TargetServer) -> None:
    config = write_config(tmp_path, [
        {"name": "fast", "url": plain.url("/ok")},
        {"name": "hang", "url": plain.url("/hang"), "timeout_seconds": 30},
        {"name": "port", "type": "tcp", "address": f"127.0.0.1:{plain.port}"},
    ])
    exp = start_exporter([f"--config.file={config}", "--no-collector.host"])
    try:
        for _ in range(2):  # the second scrape finds no check still busy
            start = time.monotonic()
            samples = exp.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
            elapsed = time.monotonic() - start
            # Deadline = 2 s - 0.5 s offset; far below the hanging check's 30 s timeout.
            assert elapsed < 3.5  # generous for a loaded machine; the hang lasts 30 s
            assert samples.get("stackmon_service_up", service="fast") == 1
            assert samples.get("stackmon_service_check_duration_seconds", service="fast") < 1.5
            assert samples.get("stackmon_service_up", service="port") == 1
            assert samples.get("stackmon_service_up", service="hang") == 0
            assert 1.0 < samples.get("stackmon_service_check_duration_seconds",
                                     service="hang") < 3.0
            assert samples.get("stackmon_scrape_collector_success", collector="services") == 1
    finally:
        exp.stop()
