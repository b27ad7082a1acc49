"""The celery config section: secrets, password file, validation, collector switch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import cli, settings
from exporter.collectors import enabled
from tests.helpers.exporter import REPO

PW = "pa55-Wörd/with:odd@chars"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_broker_url_refused_on_the_command_line() -> None:
    proc = run(["--celery.broker-url=redis://:hunter2hunter@127.0.0.1:6379/0"], {})
    assert proc.returncode == 2
    assert "hunter2hunter" not in proc.stderr
    assert "STACKMON_CELERY_BROKER_URL" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_password_file_goes_into_the_url_and_is_a_secret(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PW + "\n")
    cfg = cli.parse([], {"STACKMON_CELERY_BROKER_URL": "amqp://app@rabbit:5672/vh",
                         "STACKMON_CELERY_BROKER_PASSWORD_FILE": str(secret)})
    url = cfg.celery.url()
    assert url.startswith("amqp://app:") and url.endswith("@rabbit:5672/vh")
    from urllib.parse import unquote, urlsplit
    assert unquote(urlsplit(url).password or "") == PW
    assert PW in cfg.secrets()
    assert "celery" in [spec.name for spec in enabled(cfg)]


def test_password_inside_the_url_is_registered_for_redaction() -> None:
    cfg = cli.parse([], {"STACKMON_CELERY_BROKER_URL": "redis://:p%40ss@127.0.0.1:6379/0"})
    assert "p@ss" in cfg.secrets() and "p%40ss" in cfg.secrets()


def test_collector_off_without_broker_url() -> None:
    cfg = cli.parse([], {})
    assert "celery" not in [spec.name for spec in enabled(cfg)]


@pytest.mark.parametrize(("env", "needle"), [
    ({"STACKMON_CELERY_BROKER_URL": "http://x/"}, "celery.broker_url"),
    ({"STACKMON_CELERY_BROKER_URL": "redis://localhost/0",
      "STACKMON_CELERY_BROKER_PASSWORD_FILE": "/nonexistent/pw"}, "not found"),
    ({"STACKMON_CELERY_BROKER_PASSWORD_FILE": "/etc/hostname"}, "needs celery.broker_url"),
    ({"STACKMON_CELERY_BROKER_URL": "redis://localhost/0",
      "STACKMON_CELERY_RUNTIME_BUCKETS": "1,0.5"}, "increasing"),
    ({"STACKMON_CELERY_BROKER_URL": "redis://localhost/0",
      "STACKMON_CELERY_QUEUE_WAIT_BUCKETS": "1,abc"}, "a number"),
    ({"STACKMON_CELERY_BROKER_URL": "redis://localhost/0",
      "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": "60",
      "STACKMON_CELERY_WORKER_PURGE_SECONDS": "30"}, "worker_purge_seconds"),
    ({"STACKMON_CELERY_BROKER_URL": "redis://localhost/0",
      "STACKMON_CELERY_MAX_TASK_NAMES": "0"}, "max_task_names"),
])
def test_bad_values_are_one_clear_error(env: dict[str, str], needle: str) -> None:
    with pytest.raises(settings.ConfigError) as err:
        cli.parse([], env)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)
