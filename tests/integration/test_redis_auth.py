"""Redis authentication, ACL and secrets: the documented ACL gives full metrics, refused
commands are logged once and left out, passwords never reach logs, errors or metrics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.exporter import REPO, Samples, free_port, start_exporter, wait_for
from tests.helpers.redis_server import redis_server
from tests.integration.test_redis import ARGS

PASSWORD = "s3cret-Pa55word"
WRONG = "wr0ng-Pa55word"


def documented_acl() -> str:
    """The ACL rules docs/redis.md gives, e.g. ``-@all +info +slowlog|len +config|get``."""
    text = (REPO / "docs" / "redis.md").read_text()
    m = re.search(r"^ACL SETUSER stackmon on >\S+ (.+)$", text, re.M)
    assert m, "docs/redis.md has no ACL SETUSER stackmon line"
    return m.group(1)


def test_acl_user_with_documented_commands_gets_full_metrics(tmp_path: Path) -> None:
    with redis_server() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "stackmon", "on", f">{PASSWORD}",
                              *documented_acl().split())
        admin.set("k", "v")
        pw_file = tmp_path / "pw"
        pw_file.write_text(PASSWORD + "\n")
        full = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        acl = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url,
                                    "STACKMON_REDIS_USERNAME": "stackmon",
                                    "STACKMON_REDIS_PASSWORD_FILE": str(pw_file)})
        try:
            for _ in range(2):
                a, f = acl.scrape(), full.scrape()
            assert a.get("redis_up") == 1
            assert set(a.types) == set(f.types)
            assert a.has("redis_slowlog_length") and a.has("redis_config_maxclients")
            assert "refused" not in acl.logs()
            assert PASSWORD not in acl.logs()
            denied = admin.acl_log()
            assert denied == [], denied
        finally:
            full.stop()
            acl.stop()


def test_refused_commands_fall_back_and_log_once() -> None:
    """A managed Redis that renames CONFIG and an ACL without SLOWLOG: still up, logged once."""
    with redis_server("--rename-command", "CONFIG", "") as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "limited", "on", f">{PASSWORD}", "-@all",
                              "+info")
        exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": f"redis://limited@127.0.0.1:"
                                                          f"{server.port}",
                                    "STACKMON_REDIS_PASSWORD": PASSWORD})
        try:
            for _ in range(3):
                s = exp.scrape()
                assert s.get("redis_up") == 1
                assert s.get("redis_config_maxclients") == 10000  # from INFO
                assert not s.has("redis_slowlog_length")
                assert s.has("redis_memory_used_bytes")
                assert not s.has("redis_db_keys")  # no CONFIG: only the keyspace (empty)
            logs = exp.logs()
            assert logs.count("server refused SLOWLOG LEN") == 1, logs
            assert logs.count("server refused CONFIG GET maxclients") == 1, logs
            assert PASSWORD not in logs
        finally:
            exp.stop()


def test_requirepass_right_and_wrong_password(tmp_path: Path) -> None:
    with redis_server("--requirepass", PASSWORD) as server:
        good = start_exporter(ARGS, {"STACKMON_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:"
                                                           f"{server.port}"})
        wrong_file = tmp_path / "wrong"
        wrong_file.write_text(WRONG)
        bad = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url,
                                    "STACKMON_REDIS_PASSWORD_FILE": str(wrong_file)})
        none = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        try:
            assert good.scrape().get("redis_up") == 1
            for exp in (bad, none):
                s = exp.scrape()
                assert s.get("redis_up") == 0
                assert s.get("stackmon_service_up", service="redis") == 0
            assert "authentication failed for redis://127.0.0.1:" in bad.logs()
            assert "check the username and password" in bad.logs()
            assert "authentication failed" in none.logs()
            for exp in (good, bad, none):
                _status, _, body = exp.get("/")
                everything = exp.logs() + body.decode() + exp.scrape().text
                assert PASSWORD not in everything and WRONG not in everything
        finally:
            for exp in (good, bad, none):
                exp.stop()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, cwd=REPO, env={"PATH": "/usr/bin:/bin",
                                                                **(env or {})})


def test_secrets_refused_on_the_command_line() -> None:
    for args in ([f"--redis.url=redis://:{PASSWORD}@127.0.0.1:6379"],
                 [f"--redis.url=redis://user:{PASSWORD}@127.0.0.1:6379"],
                 [f"--redis.password={PASSWORD}"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc
        assert PASSWORD not in proc.stderr + proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "command line" in proc.stderr


def test_bad_redis_config_exits_2_with_one_line(tmp_path: Path) -> None:
    cases = {
        "http://127.0.0.1:6379": "redis://",
        "redis://:99999999": "redis://",
        "unix://relative.sock": "unix:///",
    }
    for url, expected in cases.items():
        proc = run_cli(env={"STACKMON_REDIS_URL": url})
        assert proc.returncode == 2, proc
        assert "STACKMON_REDIS_URL" in proc.stderr and expected in proc.stderr, proc.stderr
    proc = run_cli(env={"STACKMON_REDIS_URL": "redis://x", "STACKMON_REDIS_PASSWORD": "a",
                        "STACKMON_REDIS_PASSWORD_FILE": str(tmp_path / "pw")})
    assert proc.returncode == 2 and "not both" in proc.stderr, proc.stderr
    proc = run_cli(env={"STACKMON_REDIS_URL": "redis://x",
                        "STACKMON_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
    assert proc.returncode == 2 and "redis.password_file" in proc.stderr, proc.stderr
    cfg = tmp_path / "c.yml"
    cfg.write_text("redis:\n  targets:\n    - name: a\n      url: redis://x\n"
                   "    - name: a\n      url: redis://y\n")
    proc = run_cli(f"--config.file={cfg}")
    assert proc.returncode == 2 and "appears twice" in proc.stderr, proc.stderr


def test_password_in_file_config_is_redacted(tmp_path: Path) -> None:
    with redis_server("--requirepass", PASSWORD) as server:
        cfg = tmp_path / "c.yml"
        cfg.write_text(f"redis:\n  url: redis://:{PASSWORD}@127.0.0.1:{server.port}\n"
                       "log:\n  level: debug\n")
        exp = start_exporter(["--no-collector.host", f"--config.file={cfg}"])
        try:
            assert exp.scrape().get("redis_up") == 1
            server.stop()
            s: Samples = wait_for(lambda: (r := exp.scrape()).get("redis_up") == 0 and r,
                                  what="redis_up 0")
            assert PASSWORD not in exp.logs() + s.text
        finally:
            exp.stop()


def test_tls_with_and_without_the_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True, timeout=60)
    port = free_port()
    with redis_server("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                      "--tls-auth-clients", "no", "--requirepass", PASSWORD,
                      port=port, tls=True):
        url = f"rediss://127.0.0.1:{port}"
        env = {"STACKMON_REDIS_PASSWORD": PASSWORD}
        good = start_exporter(ARGS, {**env, "STACKMON_REDIS_URL": f"{url}?ssl_ca_certs={cert}"})
        untrusted = start_exporter(ARGS, {**env, "STACKMON_REDIS_URL": url})
        try:
            assert good.scrape().get("redis_up") == 1
            assert untrusted.scrape().get("redis_up") == 0
            assert "certificate verify failed" in untrusted.logs()
            assert PASSWORD not in good.logs() + untrusted.logs()
        finally:
            good.stop()
            untrusted.stop()
