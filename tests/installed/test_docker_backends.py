"""compose.yaml's ``stackmon`` (the backends' exporter) under a real Docker engine,
against the suite's private PostgreSQL, Redis and Celery broker, with its passwords
mounted as Compose mounts file secrets; the image's health check at non-default
addresses (plain and TLS); ``docker stop``; the logs.

The image is built from the Dockerfile on a local stand-in base image (the docstring of
tests/installed/test_docker_host.py lists how it differs from the official one). The
container gets compose.yaml's options for ``stackmon`` (read from compose.yaml, with
the variables a user sets in ``.env`` for their own servers: ``STACKMON_POSTGRES_DSN``,
``STACKMON_REDIS_URL``, ``STACKMON_CELERY_BROKER_URL``, ``SERVICE_CHECKS_FILE``), with
these differences, all forced by the test machine:

* ``--network host`` instead of compose's project network (no bridge here), and so
  ``STACKMON_WEB_LISTEN_ADDRESS=127.0.0.1:<free port>`` (``expose`` means nothing there);
* the secrets' files are the test's own (random passwords; a 0700 directory with 0644
  files, as scripts/make-secrets.sh makes them), not ./secrets/;
* ``--health-interval=1s`` where a test waits for the health check (the image: 30 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import docker, logfmt
from tests.helpers.exporter import Samples, free_port, wait_for
from tests.helpers.services import self_signed_cert

pytestmark = pytest.mark.skipif(docker.skip_reason() is not None,
                                reason=f"Docker tests: {docker.skip_reason()}")

SERVICE = "stackmon"


@pytest.fixture(scope="module")
def image(engine: docker.Engine) -> docker.Built:
    return docker.build_service(engine, SERVICE)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, redis_url: str,
             broker_url: str) -> Iterator[docker.Accounts]:
    with docker.accounts(pg_dsn, redis_url, broker_url,
                         tmp_path_factory.mktemp("compose") / "secrets") as acc:
        yield acc
    # The Celery collector's inspect broadcasts leave kombu keys in the broker's DB.
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def backends_container(engine: docker.Engine, image: docker.Built, accounts: docker.Accounts,
                       tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[docker.Container]:
    checks = tmp_path_factory.mktemp("checks") / "stackmon.yml"
    checks.write_text("services:\n  checks:\n    - {name: postgres-port, type: tcp, "
                      f"address: '{accounts.pg_host_port}'}}\n")
    checks.chmod(0o644)
    model = docker.load_compose(accounts.stackmon_env(checks))
    options = docker.run_options(model, SERVICE, secret_files=accounts.secret_files)
    port = free_port()
    container = docker.run(engine, options, SERVICE, port, "--health-interval=1s",
                           "-e", f"STACKMON_WEB_LISTEN_ADDRESS=127.0.0.1:{port}")
    yield container
    container.remove()


def test_every_collector_succeeds_with_secrets(backends_container: docker.Container,
                                               accounts: docker.Accounts,
                                               redis_url: str, pg_dsn: str) -> None:
    """Every collector 1, logged in with the passwords from /run/secrets/<name>: the
    PostgreSQL role cannot log in without its password, and Redis shows the ACL users."""
    def all_up() -> Samples | None:
        s = backends_container.scrape()
        ok = all(v == 1 for _, v in s.samples["stackmon_scrape_collector_success"])
        return s if ok and s.get("celery_broker_up") == 1 else None
    try:
        s = wait_for(all_up, timeout=30, interval=0.5, what="every collector to succeed")
    except AssertionError:
        raise AssertionError(backends_container.logs()) from None
    collectors = {lbl["collector"] for lbl, _ in s.samples["stackmon_scrape_collector_success"]}
    assert collectors == {"postgres", "redis", "celery", "services"}
    assert (s.get("pg_up"), s.get("redis_up")) == (1, 1)
    assert s.get("stackmon_service_up", service="postgres-port") == 1
    client = redis.Redis.from_url(redis_url)
    try:
        users = {c["user"] for c in client.client_list()}
    finally:
        client.close()
    assert {accounts.redis_user, accounts.broker_user} <= users, users
    from tests.helpers import backends
    rows = backends.pg().sql("SELECT count(*) FROM pg_stat_activity WHERE usename = "
                             f"'{accounts.pg_role}' AND application_name = 'stackmon'")
    assert rows[0][0] >= 1


def test_healthy_at_its_address_from_the_environment(backends_container: docker.Container
                                                     ) -> None:
    status = wait_for(lambda: backends_container.health() != "starting"
                      and backends_container.health(), timeout=60, interval=0.5,
                      what="the first health check")
    assert status == "healthy", backends_container.engine.inspect(SERVICE)["State"]["Health"]


def health_after_first_check(container: docker.Container) -> dict[str, object]:
    wait_for(lambda: container.health() != "starting", timeout=60, interval=0.5,
             what="the first health check")
    health: dict[str, object] = container.engine.inspect(container.name)["State"]["Health"]
    return health


def test_healthy_with_the_address_as_a_flag_only(engine: docker.Engine, image: docker.Built
                                                 ) -> None:
    """Issue 20's case: ``docker run <image> --web.listen-address=127.0.0.1:<port>`` went
    unhealthy while serving; the health check process never sees the command's flags."""
    port = free_port()
    options = docker.RunOptions(["--network", "host"], image.name, [])
    container = docker.run(engine, options, "stackmon-flag", port, "--health-interval=1s",
                           extra_command=[f"--web.listen-address=127.0.0.1:{port}",
                                          "--no-collector.host"])
    try:
        health = health_after_first_check(container)
        assert health["Status"] == "healthy", health
    finally:
        container.remove()


def test_healthy_over_tls_from_the_web_config(engine: docker.Engine, image: docker.Built,
                                              tmp_path: Path) -> None:
    config = tmp_path / "web"
    config.mkdir()
    cert, key, _ = self_signed_cert(config, 30)
    (config / "web.yml").write_text("tls_server_config:\n  cert_file: cert.pem\n"
                                    "  key_file: key.pem\n")
    for path in (cert, key, config / "web.yml"):
        path.chmod(0o644)  # read by uid 10001 through the bind mount (a test key)
    port = free_port()
    options = docker.RunOptions(
        ["--network", "host", "--mount", f"type=bind,source={config},target=/etc/stackmon,"
                                         "readonly"], image.name, [])
    container = docker.run(engine, options, "stackmon-tls", port, "--health-interval=1s",
                           "-e", f"STACKMON_WEB_LISTEN_ADDRESS=0.0.0.0:{port}",
                           "-e", "STACKMON_WEB_CONFIG_FILE=/etc/stackmon/web.yml",
                           extra_command=["--no-collector.host"], scheme="https")
    try:
        health = health_after_first_check(container)
        assert health["Status"] == "healthy", health
        log = health["Log"][-1]  # type: ignore[index]
        assert log["Output"] == f"healthy: https://127.0.0.1:{port}/-/healthy answered 200\n"
    finally:
        container.remove()


def test_stop_and_logs(backends_container: docker.Container, accounts: docker.Accounts
                       ) -> None:
    """``docker stop`` ends it with 0 within 2 s; every log line is one strict logfmt
    record (tests/helpers/logfmt.py); no password appears."""
    backends_container.scrape()
    took, code = backends_container.stop()
    logs = backends_container.logs()
    assert code == 0, logs
    assert took < 2, f"docker stop took {took:.1f} s"
    for password in accounts.passwords.values():
        assert password not in logs
    assert logfmt.bad_lines(logs) == []
