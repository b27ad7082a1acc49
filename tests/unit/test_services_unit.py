"""Failure paths of the services collector and its config: fakes only where a real
target cannot produce the case (a check that never returns, a bug inside a check)."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from exporter import cli
from exporter.collectors import enabled
from exporter.collectors.services import checks
from exporter.collectors.services import collector as svc
from exporter.collectors.services.settings import ServiceCheck
from exporter.settings import ConfigError

# ---------------------------------------------------------------------------
# Config


def parse(tmp_path: Path, checks: object, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "stackmon.yml"
    path.write_text(yaml.safe_dump({"services": {"checks": checks}}))
    return cli.parse([f"--config.file={path}"], env or {})


@pytest.mark.parametrize(("check", "message"), [
    ({"name": "db", "type": "tcp"}, "services.checks[0].address: missing"),
    ({"name": "x"}, "services.checks[0].url: missing"),
    ({"name": "x", "type": "tcp", "address": "h:1", "url": "http://h/"},
     "services.checks[0].url: not used by a tcp check"),
    ({"name": "x", "type": "tcp", "address": "nohost"}, "services.checks[0].address"),
    ({"name": "x", "type": "tcp", "address": ":80"}, "expected host:port"),
    ({"name": "x", "url": "ftp://h/"}, "expected an http:// or https:// URL"),
    ({"name": "x", "url": "http://h/", "basic_auth_password_env": "PW"},
     "basic_auth_user: missing"),
    ({"name": "x", "url": "http://h/", "basic_auth_user": "u",
      "basic_auth_password_env": "PW", "basic_auth_password_file": "/f"}, "not both"),
    ({"name": "x", "url": "http://h/", "bearer_token_env": "UNSET_TOKEN_VAR_FOR_TEST"},
     'environment variable "UNSET_TOKEN_VAR_FOR_TEST" is not set'),
    ({"name": "x", "url": "http://h/", "bearer_token_file": "/nonexistent/token"},
     'bearer_token_file: file "/nonexistent/token" not found'),
    ({"name": "x", "url": "http://h/", "bearer_token_env": "STACKMON_TOKEN"},
     "not starting with STACKMON_"),
    ({"name": "postgres", "url": "http://h/"}, "other than the built-in services"),
    ({"name": "bad name", "url": "http://h/"}, "services.checks[0].name"),
    ({"name": "x", "type": "ftp", "url": "http://h/"}, "one of http, tcp, nginx"),
    ({"name": "x", "url": "http://h/", "expected_status_codes": [700]}, "between 100 and 599"),
    ({"name": "x", "url": "http://h/", "body_regex": "("}, "valid regular expression"),
    ({"name": "x", "url": "http://h/", "password": "p"}, "password: unknown key"),
    ({"name": "x", "type": "nginx", "url": "http://h/", "body_regex": "a"}, "nginx check"),
    ({"url": "http://h/"}, "services.checks[0].name: missing"),
])
def test_config_errors(tmp_path: Path, check: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, [check])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_names_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='target name "a" appears twice'):
        parse(tmp_path, [{"name": "a", "url": "http://h/"}, {"name": "a", "url": "http://g/"}])


def test_url_password_is_redacted_in_the_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stackmon.yml"
    path.write_text(yaml.safe_dump({"services": {"checks": [
        {"name": "x", "url": "http://user:hunter2secret@h/"}]}}))
    with pytest.raises(SystemExit) as code:
        cli.main([f"--config.file={path}"])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert "services.checks[0].url" in err
    assert "hunter2secret" not in err


def test_secrets_resolved_and_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    token = tmp_path / "token"
    token.write_text("the-token\n")
    monkeypatch.setenv("SVC_UNIT_PW", "the-password")
    cfg = parse(tmp_path, [
        {"name": "a", "url": "http://h/", "bearer_token_file": str(token)},
        {"name": "b", "url": "http://h/", "basic_auth_user": "u",
         "basic_auth_password_env": "SVC_UNIT_PW"}])
    assert isinstance(cfg, cli.settings.Config)
    a, b = cfg.services.checks
    assert a.bearer_token == "the-token"
    assert b.password == "the-password"
    assert {"the-token", "the-password"} <= set(cfg.secrets())
    assert "the-token" not in repr(cfg) and "the-password" not in repr(cfg)
    assert checks.auth_header(a) == "Bearer the-token"


def test_collector_on_only_when_configured(tmp_path: Path) -> None:
    none = cli.parse([], {})
    assert "services" not in [s.name for s in enabled(none)]
    some = parse(tmp_path, [{"name": "a", "type": "tcp", "address": "127.0.0.1:1"}])
    assert isinstance(some, cli.settings.Config)
    assert "services" in [s.name for s in enabled(some)]


# ---------------------------------------------------------------------------
# Parsing


def make_cert(tmp_path: Path, days: int) -> tuple[bytes, float]:
    cert, key, der = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "c.der"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", str(days), "-subj", "/CN=t"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER", "-out", str(der)],
                   check=True, capture_output=True, timeout=60)
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return der.read_bytes(), float(ssl.cert_time_to_seconds(end.strip().split("=", 1)[1]))


@pytest.mark.parametrize("days", [30, 12000])  # UTCTime before 2050, GeneralizedTime after
def test_cert_not_after(tmp_path: Path, days: int) -> None:
    der, not_after = make_cert(tmp_path, days)
    assert checks.cert_not_after(der) == not_after


def test_cert_not_after_truncated(tmp_path: Path) -> None:
    der, _ = make_cert(tmp_path, 30)
    with pytest.raises(ValueError):
        checks.cert_not_after(der[:40])


def test_stub_status_parse() -> None:
    body = ("Active connections: 3 \nserver accepts handled requests\n 10 9 42 \n"
            "Reading: 0 Writing: 1 Waiting: 2 \n")
    stub = checks.parse_stub_status(body)
    assert (stub.active, stub.accepted, stub.handled, stub.requests) == (3, 10, 9, 42)
    assert (stub.reading, stub.writing, stub.waiting) == (0, 1, 2)
    with pytest.raises(checks.CheckFailed) as err:
        checks.parse_stub_status("<html>hello</html>")
    assert err.value.reason == "stub_status"


@pytest.mark.parametrize(("err", "reason"), [
    (TimeoutError(), "timeout"),
    (ConnectionRefusedError(), "refused"), (socket.gaierror(), "dns"),
    (ssl.SSLCertVerificationError(), "tls_verify"), (ssl.SSLError(), "tls"),
    (http.client.BadStatusLine("x"), "protocol"), (ConnectionResetError(), "network"),
    (RuntimeError("bug"), "error"), (checks.CheckFailed("body"), "body"),
])
def test_classify(err: BaseException, reason: str) -> None:
    assert checks.classify(err) == reason
    assert reason in checks.REASONS


def test_clean_version() -> None:
    assert checks.clean_version("nginx/1.22.1", nginx_server=True) == "1.22.1"
    assert checks.clean_version("nginx/1.22.1 (Debian)", nginx_server=True) == "1.22.1"
    assert checks.clean_version("nginx", nginx_server=True) is None
    assert checks.clean_version(None, nginx_server=False) is None
    assert checks.clean_version(" 4.2 ", nginx_server=False) == "4.2"
    assert len(checks.clean_version("v" * 500, nginx_server=False) or "") == checks.VERSION_MAX_LEN


# ---------------------------------------------------------------------------
# The collector's deadline, pile-up and isolation


def values(families: list[object], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in families:
        for sample in getattr(family, "samples", []):
            if sample.name == name:
                out[sample.labels["service"]] = sample.value
    return out


def tcp(name: str, address: str = "127.0.0.1:1") -> ServiceCheck:
    return ServiceCheck(name=name, type="tcp", address=address)


def test_hanging_check_cut_at_deadline_and_not_piled_up(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    release = threading.Event()
    calls: list[str] = []
    real = checks.check_tcp

    def fake(check: ServiceCheck, deadline: float) -> checks.CheckResult:
        calls.append(check.name)
        if check.name == "hang":
            release.wait(30)  # ignores its deadline, as a stuck DNS lookup would
            return checks.CheckResult(up=True, duration=0.0)
        return real(check, deadline)

    monkeypatch.setattr(svc, "check_tcp", fake)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        collector = svc.ServicesCollector([tcp("hang"), tcp("fast", f"127.0.0.1:{port}")])
        try:
            for expected_calls in (["hang", "fast"], ["fast"]):
                calls.clear()
                start = time.monotonic()
                families = collector.collect(start + 0.4)
                assert time.monotonic() - start < 1.5  # the hang lasts 30 s
                up = values(families, "stackmon_service_up")
                assert up == {"hang": 0.0, "fast": 1.0}
                assert sorted(calls) == sorted(expected_calls)  # second time: hang is busy
        finally:
            release.set()


def test_bug_in_one_check_does_not_break_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(check: ServiceCheck, deadline: float, context: object) -> checks.CheckResult:
        raise RuntimeError("bug")

    monkeypatch.setattr(svc, "check_http", broken)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        collector = svc.ServicesCollector([
            ServiceCheck(name="h", url="http://127.0.0.1:1/"),
            tcp("t", f"127.0.0.1:{port}")])
        families = collector.collect(time.monotonic() + 2)
    assert values(families, "stackmon_service_up") == {"h": 0.0, "t": 1.0}


def test_failure_metrics_keep_up_gauges() -> None:
    collector = svc.ServicesCollector([
        ServiceCheck(name="web", type="nginx", url="http://127.0.0.1:1/stub_status"),
        tcp("t")])
    families = collector.failure_metrics()
    assert values(families, "stackmon_service_up") == {"web": 0.0, "t": 0.0}
    assert values(families, "nginx_up") == {"web": 0.0}
    assert set(values(families, "stackmon_service_info")) == {"web", "t"}
    assert values(families, "nginx_http_requests_total") == {}


def test_logs_once_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    collector = svc.ServicesCollector([tcp("closed")])
    with caplog.at_level(logging.INFO, logger="stackmon.collectors.services"):
        for _ in range(3):
            collector.collect(time.monotonic() + 2)
    failed = [r for r in caplog.records if "check failed" in r.getMessage()]
    assert len(failed) == 1
    assert "reason=refused" in failed[0].getMessage()


def test_log_target_drops_query() -> None:
    check = ServiceCheck(name="q", url="http://h:8000/health?token=abc123")
    assert checks.log_target(check) == "http://h:8000/health"
    assert checks.log_target(tcp("t", "db:5432")) == "db:5432"
