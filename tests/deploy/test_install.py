"""The install a user gets is the install that is tested (issue 13, item 1).

The wheel is built the way the Dockerfile's build stage builds it (from the files the image's
build context holds), installed with its runtime dependencies only into a clean venv (no test
tools), and that venv's ``stackmon`` runs every collector against real backends: PostgreSQL,
Redis, Celery on a Redis broker and on RabbitMQ, and service checks. Every
``stackmon_scrape_collector_success`` must be 1 and the log must hold no warning or error.

This is the test that catches a dependency the code (or a library it loads lazily, like
kombu's Redis transport importing ``packaging``) needs but ``pyproject.toml`` does not
declare: the test venv has it through pytest, the user's venv does not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.helpers.exporter import REPO, Exporter, Samples, free_port, wait_for
from tests.helpers.services import TargetServer

DOCKERFILE = REPO / "Dockerfile"
COLLECTORS = ("host", "postgres", "redis", "celery", "services")
# Tools of the test extra that must not be in a runtime install.
TEST_TOOLS = ("pytest", "hypothesis", "mypy", "ruff", "jsonschema")
INSTALL_TIMEOUT = 600
BAD_LINE = re.compile(r"level=(warn|warning|error|critical)\b|Traceback|Error:", re.I)


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                          check=False, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc  # type: ignore[no-any-return]


def build_stage_sources(dockerfile: str) -> list[str]:
    """What the Dockerfile's build stage copies into the image build (its COPY sources).

    >>> build_stage_sources("FROM p AS build\\nCOPY a b ./\\nCOPY c ./c\\nFROM p\\nCOPY d /\\n")
    ['a', 'b', 'c']
    """
    stages = re.split(r"^FROM\s", dockerfile, flags=re.M)
    return [src for line in stages[1].splitlines() if line.startswith("COPY ")
            for src in line.split()[1:-1]]


def test_the_wheel_is_built_from_what_the_image_build_copies() -> None:
    assert build_stage_sources(DOCKERFILE.read_text()) == [
        "pyproject.toml", "README.md", "LICENSE", "exporter"]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps`` of a copy of what the image's build context holds."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in build_stage_sources(DOCKERFILE.read_text()):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)])
    (built,) = out.glob("stackmon-*.whl")
    return built


@pytest.fixture(scope="session")
def runtime_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its runtime dependencies only, once per session
    (pip's own cache makes the install quick after the first run)."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return venv


def test_runtime_install_has_no_test_tools(runtime_venv: Path) -> None:
    listed = run([str(runtime_venv / "bin" / "python"), "-m", "pip", "list",
                  "--format=freeze"]).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "stackmon" in names
    assert names & set(TEST_TOOLS) == set(), "the runtime install pulled in test tools"
    assert (runtime_venv / "bin" / "stackmon").exists()


def test_every_module_imports_in_the_runtime_install(runtime_venv: Path) -> None:
    """Every module of the package, and the broker transports Celery loads lazily."""
    code = (
        "import importlib, pkgutil, exporter\n"
        "for m in pkgutil.walk_packages(exporter.__path__, 'exporter.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import kombu.transport.redis, kombu.transport.pyamqp\n"
        "print(exporter.__file__)\n")
    out = run([str(runtime_venv / "bin" / "python"), "-c", code], cwd=runtime_venv).stdout
    assert out.strip().startswith(str(runtime_venv)), "imported the repo, not the install"


def start_installed(venv: Path, args: list[str], env: Mapping[str, str]) -> Exporter:
    """The installed console script (not ``python -m exporter`` from the repo), run from a
    directory outside the repo so nothing is imported from the working tree."""
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="stackmon-installed-", suffix=".log")
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("STACKMON_", "PYTHON", "VIRTUAL_ENV"))}
    full_env.update(env)
    proc = subprocess.Popen(
        [str(venv / "bin" / "stackmon"), f"--web.listen-address=127.0.0.1:{port}", *args],
        stdout=log_fd, stderr=log_fd, env=full_env, cwd=venv)
    os.close(log_fd)
    exp = Exporter(proc, port, Path(log_name))

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"stackmon exited {proc.returncode}: {exp.logs()}")
        status, _, _ = exp.get("/-/healthy", timeout=5)
        return status == 200
    try:
        wait_for(listening, timeout=30, what="installed stackmon to answer")
    except AssertionError:
        exp.stop()
        exp.log_path.unlink(missing_ok=True)
        raise
    return exp


def all_collectors_succeed(exp: Exporter) -> Samples | None:
    """The scrape once every collector succeeded and the Celery event receiver is up."""
    s = exp.scrape()
    ok = all(s.has("stackmon_scrape_collector_success", collector=c)
             and s.get("stackmon_scrape_collector_success", collector=c) == 1
             for c in COLLECTORS)
    up = s.has("stackmon_celery_events_receiver_up") and \
        s.get("stackmon_celery_events_receiver_up") == 1
    return s if ok and up else None


def bad_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if BAD_LINE.search(line)]


def test_bad_lines_finds_warnings_and_tracebacks() -> None:
    log = ('ts=1 level=info msg="listening"\n'
           'ts=2 level=warning logger=stackmon msg="event receiver lost the broker" '
           'err="No module named \'packaging\'"\nTraceback (most recent call last):\n')
    assert len(bad_lines(log)) == 2


@pytest.fixture(scope="module")
def checks_config(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, redis_url: str
                  ) -> Iterator[Path]:
    """A services config: an HTTP check of a local server and TCP checks of the backends."""
    web = TargetServer()
    pg, cache = urlsplit(pg_dsn), urlsplit(redis_url)
    path = tmp_path_factory.mktemp("install-checks") / "stackmon.yml"
    pg_address = f"{pg.hostname}:{pg.port or 5432}"
    redis_address = f"{cache.hostname}:{cache.port or 6379}"
    path.write_text(
        "services:\n  checks:\n"
        f"    - {{name: web, url: '{web.url('/ok')}'}}\n"
        f"    - {{name: postgres-port, type: tcp, address: '{pg_address}'}}\n"
        f"    - {{name: redis-port, type: tcp, address: '{redis_address}'}}\n")
    try:
        yield path
    finally:
        web.stop()


def run_every_collector(venv: Path, config: Path, backends: dict[str, str]) -> None:
    env = {"STACKMON_POSTGRES_DSN": backends["pg"], "STACKMON_REDIS_URL": backends["redis"],
           "STACKMON_CELERY_BROKER_URL": backends["broker"]}
    exp = start_installed(venv, [f"--config.file={config}"], env)
    try:
        try:
            s = wait_for(lambda: all_collectors_succeed(exp), timeout=60,
                         what="every collector to succeed")
        except AssertionError as err:
            lines = [ln for ln in exp.scrape().text.splitlines()
                     if ln.startswith(("stackmon_scrape_collector_success",
                                       "stackmon_celery_events_receiver_up"))]
            raise AssertionError(f"{err}\n" + "\n".join(lines) + "\nlog:\n"
                                 + exp.logs()[-4000:]) from None
        assert {lbl["collector"] for lbl, _ in s.samples["stackmon_scrape_collector_success"]
                } == set(COLLECTORS)
        assert s.get("pg_up") == 1 and s.get("redis_up") == 1
        assert s.get("celery_broker_up") == 1
        assert s.get("stackmon_service_up", service="web") == 1
        # A second scrape: the collectors keep working on their long-lived connections.
        again = exp.scrape()
        assert [v for _, v in again.samples["stackmon_scrape_collector_success"]] == [1.0] * 5
    finally:
        exp.stop()
        log = exp.logs()
        exp.log_path.unlink(missing_ok=True)
    assert bad_lines(log) == [], log[-4000:]


def test_installed_stackmon_with_a_redis_broker(runtime_venv: Path, checks_config: Path,
                                                pg_dsn: str, redis_url: str,
                                                broker_url: str) -> None:
    try:
        run_every_collector(runtime_venv, checks_config,
                            {"pg": pg_dsn, "redis": redis_url, "broker": broker_url})
    finally:
        # The Celery collector's inspect broadcasts leave kombu keys in its broker DB.
        client = redis.Redis.from_url(broker_url)
        client.flushdb()
        client.close()


def test_installed_stackmon_with_rabbitmq(runtime_venv: Path, checks_config: Path,
                                          pg_dsn: str, redis_url: str, amqp_url: str) -> None:
    run_every_collector(runtime_venv, checks_config,
                        {"pg": pg_dsn, "redis": redis_url, "broker": amqp_url})
