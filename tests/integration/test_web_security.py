"""--web.config.file: TLS (with client certificates and min_version) and basic auth."""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from tests.helpers.exporter import start_exporter

PASSWORD = "s3cret-Pass"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=stackmon-test-ca", "-keyout", str(d / "ca.key"),
            "-out", str(d / "ca.crt"))
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(ext), "-out", str(d / f"{name}.crt"))
    return d


def write_web_config(d: Path, text: str) -> Path:
    path = d / "web.yml"
    path.write_text(text)
    return path


def https_get(port: int, ca: Path, path: str = "/metrics", cert: tuple[Path, Path] | None = None,
              max_version: ssl.TLSVersion | None = None,
              headers: dict[str, str] | None = None) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_version:
        ctx.maximum_version = max_version
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


def test_https_scrape_with_self_signed_certificate(pki: Path, tmp_path: Path) -> None:
    cfg = write_web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
                                     f"  key_file: {pki}/server.key\n")
    exp = start_exporter([f"--web.config.file={cfg}"], scheme="https")
    try:
        assert https_get(exp.port, pki / "ca.crt") == 200
        with pytest.raises(ssl.SSLError):  # plain clients that do not trust the CA fail
            https_get(exp.port, pki / "client.crt")
    finally:
        exp.stop()


def test_client_certificate_required(pki: Path, tmp_path: Path) -> None:
    cfg = write_web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
                                     f"  key_file: {pki}/server.key\n"
                                     f"  client_ca_file: {pki}/ca.crt\n"
                                     "  client_auth_type: RequireAndVerifyClientCert\n")
    exp = start_exporter([f"--web.config.file={cfg}"], scheme="https")
    try:
        assert https_get(exp.port, pki / "ca.crt",
                         cert=(pki / "client.crt", pki / "client.key")) == 200
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.HTTPException)):
            https_get(exp.port, pki / "ca.crt")
        assert exp.proc.poll() is None
    finally:
        exp.stop()


def test_tls_below_min_version_refused(pki: Path, tmp_path: Path) -> None:
    cfg = write_web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
                                     f"  key_file: {pki}/server.key\n  min_version: TLS13\n")
    exp = start_exporter([f"--web.config.file={cfg}"], scheme="https")
    try:
        with pytest.raises(ssl.SSLError):
            https_get(exp.port, pki / "ca.crt", max_version=ssl.TLSVersion.TLSv1_2)
        assert https_get(exp.port, pki / "ca.crt") == 200
    finally:
        exp.stop()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    cfg = write_web_config(tmp_path, f"basic_auth_users:\n  prom: '{hashed}'\n")
    exp = start_exporter([f"--web.config.file={cfg}"])
    try:
        assert exp.get("/metrics", headers=basic("prom", PASSWORD))[0] == 200
        assert exp.get("/", headers=basic("prom", PASSWORD))[0] == 200
        for headers in (basic("prom", "wrong"), basic("nobody", PASSWORD), {},
                        {"Authorization": "Basic !!!notbase64"},
                        {"Authorization": "Bearer abc"},
                        {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}):
            for path in ("/metrics", "/", "/-/ready", "/probe?target=x", "/nope"):
                status, resp_headers, _ = exp.get(path, headers=headers)
                assert status == 401, (path, headers)
                assert resp_headers["WWW-Authenticate"].startswith("Basic")
        assert exp.get("/-/healthy")[0] == 200
        assert PASSWORD not in exp.logs()
    finally:
        exp.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_users:\n  prom: plain-text-password\n",
         "basic_auth_users.prom: expected a bcrypt hash"),
        ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
         'tls_server_config.cert_file: file "/nonexistent.crt" not found'),
        ("tls_srv_config: {}\n", "tls_srv_config: unknown key"),
        ("tls_server_config:\n  cert_file: x\n", "cert_file and key_file are both required"),
    ],
)
def test_bad_web_config_is_a_clear_startup_error(tmp_path: Path, text: str,
                                                 expected: str) -> None:
    cfg = write_web_config(tmp_path, text)
    exp = start_exporter([f"--web.config.file={cfg}"], wait=False)
    assert exp.proc.wait(timeout=30) == 2
    log = exp.logs()
    assert expected in log
    assert "plain-text-password" not in log
    assert "Traceback" not in log
