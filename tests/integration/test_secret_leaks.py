"""Leak test: every secret carries a unique marker; make every collector fail and succeed,
trigger config errors, hit every endpoint, and grep all output and logs (debug level) for
the marker. It must appear nowhere."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.helpers import backends
from tests.helpers.exporter import REPO, Exporter, free_port, start_exporter

MARKER = "zqLEAKMARKx7"
# The session's private servers (tests/helpers/backends.py).
PG_DSN = backends.PG_DSN
REDIS_HOST = f"127.0.0.1:{backends.REDIS_PORT}"
AMQP_HOST = f"127.0.0.1:{backends.AMQP_PORT}"


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory, amqp_url: str
          ) -> Iterator[tuple[Exporter, list[bytes]]]:
    """``amqp_url``: the private RabbitMQ is up, so the wrong AMQP password is refused."""
    d = tmp_path_factory.mktemp("leak")
    closed = free_port()
    (d / "pg_pass").write_text(MARKER + "pg\n")
    (d / "redis_pass").write_text(MARKER + "redis\n")
    (d / "token").write_text(MARKER + "token\n")
    hashed = bcrypt.hashpw((MARKER + "web").encode(), bcrypt.gensalt(rounds=4)).decode()
    (d / "web.yml").write_text(f"basic_auth_users:\n  admin: '{hashed}'\n")
    pg_host = urllib.parse.urlsplit(PG_DSN).netloc.rsplit("@", 1)[-1]
    (d / "stackmon.yml").write_text(f"""
postgres:
  targets:
    - name: pg-down
      dsn: "postgresql://postgres:{MARKER}pgdown@127.0.0.1:{closed}/postgres?connect_timeout=2"
    - name: pg-file
      dsn: "host={pg_host.split(':')[0]} port={pg_host.split(':')[1]} user=postgres dbname=postgres"
      password_file: {d / 'pg_pass'}
redis:
  targets:
    - name: redis-down
      url: "redis://:{MARKER}redisdown@127.0.0.1:{closed}/0"
    - name: redis-file
      url: "redis://{REDIS_HOST}/15"
      password_file: {d / 'redis_pass'}
services:
  checks:
    - name: api-down
      url: "http://127.0.0.1:{closed}/health"
      bearer_token_file: {d / 'token'}
    - name: api-env
      url: "http://127.0.0.1:{closed}/health"
      basic_auth_user: monitor
      basic_auth_password_env: LEAK_TEST_API_PASSWORD
""")
    env = {
        # trust auth on the shared server: the password is sent and must never come back
        "STACKMON_POSTGRES_DSN": f"postgresql://postgres:{MARKER}pgenv@{pg_host}/postgres",
        # the shared Redis has no password: AUTH fails, the error must not carry it
        "STACKMON_REDIS_URL": f"redis://{REDIS_HOST}/15",
        "STACKMON_REDIS_PASSWORD": MARKER + "redisenv",
        "STACKMON_CELERY_BROKER_URL": f"amqp://guest:{MARKER}amqp@{AMQP_HOST}//",
        "LEAK_TEST_API_PASSWORD": MARKER + "api",
    }
    exp = start_exporter([f"--config.file={d / 'stackmon.yml'}", "--log.level=debug",
                          f"--web.config.file={d / 'web.yml'}"], env=env)
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"admin:{MARKER}web".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(
        f"admin:{MARKER}wrong".encode()).decode()}
    bodies: list[bytes] = []
    try:
        for _ in range(2):  # fail and (re)connect paths, first and later scrapes
            for path in ("/metrics", "/", "/-/ready", "/-/healthy",
                         "/probe?target=pg-down", "/probe?target=pg-file",
                         "/probe?target=redis-down", "/probe?target=redis-file",
                         "/probe?target=api-down",
                         f"/probe?target={MARKER}",
                         "/probe?target=" + urllib.parse.quote(
                             f"postgresql://u:{MARKER}@127.0.0.1/x"),
                         f"/nope{MARKER}"):
                for headers in (auth, wrong, {}):
                    _, resp_headers, body = exp.get(path, headers=headers)
                    bodies.append(body + repr(resp_headers).encode())
        yield exp, bodies
    finally:
        exp.stop()


def test_marker_never_in_responses_or_logs(leaky: tuple[Exporter, list[bytes]]) -> None:
    exp, bodies = leaky
    assert all(MARKER.encode() not in body for body in bodies)
    logs = exp.logs()
    assert "level=debug" in logs  # the logs really were at debug level
    assert MARKER not in logs


def test_collectors_really_ran(leaky: tuple[Exporter, list[bytes]]) -> None:
    exp, _ = leaky
    status, _, body = exp.get("/metrics", headers={"Authorization": "Basic " + base64.b64encode(
        f"admin:{MARKER}web".encode()).decode()})
    text = body.decode()
    assert status == 200
    assert 'stackmon_scrape_collector_success{collector="postgres"}' in text
    assert "redis_up 0" in text  # AUTH refused by a server without a password


def run(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, cwd=REPO,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})})
    assert proc.returncode == 2, proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "env"), [
    ([f"--postgres.dsn=postgresql://u:{MARKER}@127.0.0.1/db"], {}),
    ([f"--postgres.dsn=host=127.0.0.1 password={MARKER}"], {}),
    ([f"--redis.password={MARKER}"], {}),
    ([f"--redis.url=redis://:{MARKER}@127.0.0.1:6379/0"], {}),
    ([f"--celery.broker-url=amqp://guest:{MARKER}@127.0.0.1//"], {}),
    (["--no-such-flag"], {"STACKMON_POSTGRES_DSN": f"host=h password={MARKER} port=notaport"}),
    ([], {"STACKMON_POSTGRES_DSN": f"host=h password='{MARKER}"}),
    ([], {"STACKMON_REDIS_URL": f"redis://:{MARKER}@127.0.0.1:notaport/0"}),
    ([], {"STACKMON_REDIS_PASSWORD": MARKER, "STACKMON_REDIS_URL": "ftp://x"}),
    ([], {"STACKMON_CELERY_BROKER_URL": f"amqp://guest:{MARKER}@h:bad//"}),
    ([], {"STACKMON_REDIS_PASWORD": MARKER}),
])
def test_config_errors_never_echo_secrets(args: list[str], env: dict[str, str]) -> None:
    out = run(*args, env=env)
    assert out.startswith("stackmon: error: ")
    assert MARKER not in out


def test_secret_flag_refusal_says_how_to_pass_it() -> None:
    out = run(f"--redis.password={MARKER}")
    assert "STACKMON_REDIS_PASSWORD" in out
    out = run(f"--postgres.dsn=postgresql://u:{MARKER}@127.0.0.1/db")
    assert "STACKMON_POSTGRES_DSN" in out or "password_file" in out


def test_web_config_secret_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  admin: {MARKER}\n")
    out = run(f"--web.config.file={tmp_path / 'web.yml'}")
    assert MARKER not in out
