"""tests/helpers/docker.py reads compose.yaml as Compose does: its interpolation and the
``docker run`` flags it derives equal those from docker-compose's own resolved model
(``docker-compose config``), for every stackmon service and several ``.env`` files; and
what it cannot translate is an error, never silently dropped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import docker
from tests.helpers.exporter import REPO

SERVICES = ("stackmon", "stackmon-host", "app", "worker")
ENVS = [
    {},
    {"HOST_EXPORTER_ADDRESS": "10.1.2.3", "STACKMON_LOG_LEVEL": "debug",
     "SERVICE_CHECKS_FILE": "/etc/stackmon/checks.yml", "STACKMON_COLLECTORS_CELERY": "false",
     "STACKMON_POSTGRES_DSN": "postgresql://mon@db.internal:5432/postgres"},
    {"STACKMON_REDIS_URL": "", "STACKMON_LOG_LEVEL": ""},  # empty: ":-" takes the default
]


def compose_config(env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """docker-compose's resolved model with exactly ``env`` as its .env file."""
    env_file = tmp / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "docker-compose"), "--project-directory",
         str(REPO), "-f", str(docker.COMPOSE), "--env-file", str(env_file), "--profile",
         "demo", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def unescape(node: Any) -> Any:
    """``config``'s output escapes ``$`` as ``$$`` (so that it reads back the same)."""
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [unescape(v) for v in node]
    if isinstance(node, dict):
        return {k: unescape(v) for k, v in node.items()}
    return node


def seconds(duration: str) -> float:
    """A Go duration as Compose writes it: ``1m0s`` -> 60.0, ``30s`` -> 30.0."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def normalised(flags: list[str]) -> list[str]:
    out = list(flags)
    for i, flag in enumerate(out[:-1]):
        if flag in ("--health-interval", "--health-timeout", "--health-start-period"):
            out[i + 1] = f"{seconds(out[i + 1]):g}s"
    return out


@pytest.mark.parametrize("env", ENVS, ids=["defaults", "set", "empty"])
def test_translation_matches_docker_compose(env: dict[str, str], tmp_path: Path) -> None:
    theirs = unescape(compose_config(env, tmp_path))
    ours = docker.load_compose(env)
    secret_files = {name: REPO / "compose.yaml" for name in ours["secrets"]}  # any file
    for service in SERVICES:
        mine = docker.run_options(ours, service, secret_files=secret_files)
        compose = docker.run_options(theirs, service, secret_files=secret_files)
        assert mine.env == {k: str(v) for k, v in
                            theirs["services"][service].get("environment", {}).items()}
        assert (normalised(mine.flags), mine.image, mine.command) == (
            normalised(compose.flags), compose.image, compose.command), service


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A}", {"A": "1"}, "1"),
    ("$A-$B", {"A": "1"}, "1-"),
    ("${A:-x}", {"A": ""}, "x"),
    ("${A-x}", {"A": ""}, ""),
    ("${A-x}", {}, "x"),
    ("${A:+y}", {"A": "1"}, "y"),
    ("${A:+y}", {"A": ""}, ""),
    ("${A+y}", {"A": ""}, "y"),
    ("${A:-${B:-z}}/$$HOME", {}, "z/$HOME"),
    ("cost $$5", {}, "cost $5"),
])
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert docker.interpolate(text, env) == expected


@pytest.mark.parametrize(("text", "env", "error"), [
    ("${A:?must be set}", {"A": ""}, "required variable A is missing: must be set"),
    ("${A?gone}", {}, "required variable A is missing: gone"),
    ("${A", {}, "unclosed"),
    ("${-A}", {}, "invalid interpolation"),
])
def test_interpolation_errors(text: str, env: dict[str, str], error: str) -> None:
    with pytest.raises(docker.ComposeError, match=error.replace("$", r"\$")):
        docker.interpolate(text, env)


def test_untranslated_options_are_errors() -> None:
    model = docker.load_compose({})
    model["services"]["stackmon"]["ulimits"] = {"nofile": 1024}
    with pytest.raises(docker.ComposeError, match=r"services.stackmon: no docker run "
                                                  r"translation for \['ulimits'\]"):
        docker.run_options(model, "stackmon")
    model = docker.load_compose({})
    model["services"]["stackmon"]["volumes"] = ["data:/var/lib/x"]
    with pytest.raises(docker.ComposeError, match="only host paths"):
        docker.run_options(model, "stackmon")


def test_secrets_are_read_only_binds_under_run_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    options = docker.run_options(docker.load_compose({}), "stackmon",
                                 secret_files={"postgres_password": secret,
                                               "redis_password": secret,
                                               "broker_password": secret})
    mounts = [v for f, v in zip(options.flags, options.flags[1:], strict=False)
              if f == "--mount" and "/run/secrets/" in v]
    assert mounts == [f"type=bind,source={secret},target=/run/secrets/{name},readonly"
                      for name in ("postgres_password", "redis_password", "broker_password")]


def test_host_service_flags() -> None:
    options = docker.run_options(docker.load_compose({}), "stackmon-host")
    flags = " ".join(options.flags)
    assert "--pid host --network host" in flags
    assert "--read-only --tmpfs /tmp --security-opt no-new-privileges:true" in flags
    assert "type=bind,source=/,target=/rootfs,readonly,bind-propagation=rslave" in flags
    assert options.command[-1] == "--web.listen-address=172.17.0.1:9860"
