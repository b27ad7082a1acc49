"""Static checks of the deployable stack (DESIGN.md §7): no Docker engine or Grafana runs here.

compose.yaml against the Compose Specification schema and docker-compose's own `config`, the
files it mounts, pinned images, secrets only from files, stackmon's env names; hadolint on the
Dockerfile; promtool on prometheus.yml as the container sees it; Grafana provisioning keys.
Each checking helper also gets a small broken input to prove it can fail.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from exporter import cli
from exporter.collectors import COLLECTORS, SECTIONS
from exporter.secrets import has_password
from exporter.settings import ENV_EXTRA, ConfigError, env_settings
from tests.helpers.docker import context_files, docker_ignored
from tests.helpers.exporter import REPO

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"
RULES_DIR = REPO / "prometheus" / "rules"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = REPO / "grafana" / "provisioning" / "dashboards" / "stackmon.yaml"
SECRETS_README = REPO / "secrets" / "README.md"
MAKE_SECRETS = REPO / "scripts" / "make-secrets.sh"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"  # Grafana's default paths.provisioning
RUN_SECRETS = "/run/secrets/"
DATASOURCE_UID = "stackmon-prometheus"
TIMEOUT = 60

Model = dict[str, Any]


def tool(name: str) -> str:
    """A binary of the test extra (beside this Python), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} not found; run: bash scripts/bootstrap.sh test"
    return found


def compose(path: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """docker-compose (no engine needed for `config`) with a clean environment and .env."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    return subprocess.run(
        [tool("docker-compose"), "--project-directory", str(path.parent), "-f", str(path),
         "--env-file", str(env_file), *args],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose-env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def model(empty_env_file: Path) -> Model:
    """The stack as docker-compose resolves it, demo profile included, defaults interpolated."""
    proc = compose(COMPOSE, empty_env_file, "--profile", "demo", "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data: Model = json.loads(proc.stdout)
    return data


@pytest.fixture(scope="module")
def raw_compose() -> Model:
    data: Model = yaml.safe_load(COMPOSE.read_text())
    return data


# ---------------------------------------------------------------------------
# compose.yaml: Compose Specification


@pytest.fixture(scope="module")
def compose_schema() -> Model:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    data: Model = json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))
    return data


def schema_errors(doc: Any, schema: Model) -> list[str]:
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(doc))


def test_compose_matches_the_compose_specification(raw_compose: Model,
                                                   compose_schema: Model) -> None:
    assert compose_schema["$id"] == "compose_spec.json"
    assert schema_errors(raw_compose, compose_schema) == []


@pytest.mark.parametrize(("where", "key", "value"), [
    ((), "servics", {}),                                        # misspelt top-level key
    (("services", "stackmon"), "enviroment", {}),               # misspelt service key
    (("services", "grafana"), "restart", ["always"]),           # wrong type
    (("services", "grafana", "healthcheck"), "retries", [3]),   # wrong type
    (("secrets", "postgres_password"), "path", "./x"),          # unknown secret key
])
def test_schema_rejects_unknown_keys_and_wrong_types(
        raw_compose: Model, compose_schema: Model, where: tuple[str, ...], key: str,
        value: Any) -> None:
    doc = copy.deepcopy(raw_compose)
    node = doc
    for part in where:
        node = node[part]
    node[key] = value
    assert schema_errors(doc, compose_schema) != []


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]])
def test_docker_compose_config_accepts_the_stack(empty_env_file: Path,
                                                 profile: list[str]) -> None:
    proc = compose(COMPOSE, empty_env_file, *profile, "config", "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.parametrize(("text", "complaint"), [
    ("services:\n  a:\n    image: x:1\n    secrets: [nope]\n", "undefined secret"),
    ("services:\n  a:\n    image: x:1\n    depends_on: [b]\n", "undefined service"),
    ("services:\n  a:\n    image: x:1\n    bogus: 1\n", "bogus"),
])
def test_docker_compose_config_rejects_broken_stacks(tmp_path: Path, empty_env_file: Path,
                                                     text: str, complaint: str) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    proc = compose(path, empty_env_file, "config", "--quiet")
    assert proc.returncode != 0
    assert complaint in proc.stderr


# ---------------------------------------------------------------------------
# What compose mounts and builds from


# The host paths a host-view exporter may mount (node_exporter's container deployment).
HOST_MOUNTS = {"/proc": "/host/proc", "/sys": "/host/sys", "/": "/rootfs"}


def missing_sources(model: Model, repo: Path) -> list[str]:
    """Build contexts, Dockerfiles and bind-mount sources that are not files in the repo
    (a host-PID service may also mount the host's /proc, /sys and / where node_exporter's
    container guide puts them)."""
    problems = []
    for name, service in model["services"].items():
        host_view = service.get("pid") == "host"
        build = service.get("build")
        if build:
            context = Path(build["context"])
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no Dockerfile in {context}")
        for volume in service.get("volumes", []):
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            if host_view and HOST_MOUNTS.get(str(source)) == volume["target"]:
                continue
            if not source.is_relative_to(repo) or not source.exists():
                problems.append(f"{name}: bind source {source} is not in the repo")
    return problems


def test_every_mount_and_build_context_exists(model: Model) -> None:
    missing = missing_sources(model, REPO)
    assert missing == []
    binds = {(name, v["target"]) for name, s in model["services"].items()
             for v in s.get("volumes", []) if v["type"] == "bind"}
    assert binds == {
        ("stackmon", "/etc/stackmon/stackmon.yml"),
        ("stackmon-host", "/host/proc"), ("stackmon-host", "/host/sys"),
        ("stackmon-host", "/rootfs"),
        ("prometheus", "/etc/prometheus/prometheus.yml"), ("prometheus", "/etc/prometheus/rules"),
        ("alertmanager", "/etc/alertmanager/alertmanager.yml"),
        ("grafana", "/etc/grafana/provisioning"),
        ("grafana", "/var/lib/grafana/dashboards/stackmon"),
        ("nginx", "/etc/nginx/conf.d/default.conf"),
    }


def test_missing_sources_reports_absent_files(model: Model, tmp_path: Path) -> None:
    before = len(missing_sources(model, REPO))
    broken = copy.deepcopy(model)
    broken["services"]["grafana"]["volumes"][0]["source"] = str(REPO / "grafana" / "nope")
    broken["services"]["stackmon"]["build"]["context"] = str(tmp_path)
    broken["services"]["stackmon"]["volumes"].append(
        {"type": "bind", "source": "/proc", "target": "/host/proc"})  # not a host-PID service
    assert len(missing_sources(broken, REPO)) == before + 3


def secret_files(model: Model) -> dict[str, Path]:
    return {name: Path(s["file"]) for name, s in model["secrets"].items()}


def test_secret_files_are_git_ignored_and_documented(model: Model) -> None:
    files = secret_files(model)
    assert set(files) == {"postgres_password", "redis_password", "broker_password",
                          "grafana_admin_password"}
    readme = SECRETS_README.read_text()
    for name, path in files.items():
        assert path.parent == REPO / "secrets", name
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)],
                                 timeout=TIMEOUT, check=False)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
        assert f"`{path.name}`" in readme, f"{path.name} is not in secrets/README.md"
    tracked = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q",
                              str(SECRETS_README)], timeout=TIMEOUT, check=False)
    assert tracked.returncode == 1, "secrets/README.md must stay tracked"


def test_make_secrets_creates_every_secret_file(model: Model, tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(MAKE_SECRETS, tmp_path / "scripts")
    subprocess.run(["bash", str(tmp_path / "scripts" / MAKE_SECRETS.name)], check=True,
                   capture_output=True, timeout=TIMEOUT)
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    made = {}
    for path in secret_files(model).values():
        copy_ = tmp_path / path.relative_to(REPO)
        made[copy_] = copy_.read_text()
        assert len(made[copy_].strip()) >= 20, f"{copy_.name}: expected a random password"
        assert stat.S_IMODE(copy_.stat().st_mode) == 0o644, copy_.name
    subprocess.run(["bash", str(tmp_path / "scripts" / MAKE_SECRETS.name)], check=True,
                   capture_output=True, timeout=TIMEOUT)
    assert {p: p.read_text() for p in made} == made, "a second run must keep existing files"


# ---------------------------------------------------------------------------
# Images


def unpinned(image: str) -> str | None:
    """Why an image reference is not pinned to a version, or None when it is."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image}: no tag"
    tag = last.rsplit(":", 1)[1]
    if tag in ("", "latest", "stable", "main", "master", "edge"):
        return f"{image}: floating tag {tag!r}"
    if not re.search(r"\d", tag):
        return f"{image}: tag {tag!r} names no version"
    return None


@pytest.mark.parametrize(("image", "pinned"), [
    ("postgres", False), ("postgres:latest", False), ("registry:5000/team/app", False),
    ("grafana/grafana:main", False), ("prom/prometheus:v3.5.0", True),
    ("registry:5000/team/app:1.2", True), (f"app@sha256:{'0' * 64}", True),
])
def test_unpinned_recognises_floating_references(image: str, pinned: bool) -> None:
    assert (unpinned(image) is None) is pinned


def test_every_image_is_pinned(model: Model) -> None:
    images = {name: s.get("image", "") for name, s in model["services"].items()}
    assert [unpinned(i) for i in images.values() if unpinned(i)] == []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert images["stackmon"] == f"stackmon:{project['version']}"
    assert images["grafana"].startswith("grafana/grafana:11.6."), "dashboards target 11.6"
    assert images["prometheus"].startswith("prom/prometheus:v")
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert froms and [unpinned(i) for i in froms if unpinned(i)] == []


# ---------------------------------------------------------------------------
# Secrets and stackmon's settings

SECRET_NAME = re.compile(r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL", re.I)


def plaintext_secrets(env: dict[str, str]) -> list[str]:
    """Variables that hold a secret themselves instead of naming a file with it."""
    problems = []
    for name, value in env.items():
        by_file = name.endswith("_FILE") or name.endswith("__FILE")
        if SECRET_NAME.search(name) and not by_file:
            problems.append(f"{name}: a secret value; use a *_FILE variable and a secret")
        elif has_password(str(value)):
            problems.append(f"{name}: a password inside the value")
        elif by_file and not str(value).startswith(RUN_SECRETS):
            problems.append(f"{name}: expected a file under {RUN_SECRETS}")
    return problems


@pytest.mark.parametrize("env", [
    {"GF_SECURITY_ADMIN_PASSWORD": "admin"},
    {"POSTGRES_PASSWORD": "postgres"},
    {"STACKMON_REDIS_PASSWORD": "x"},
    {"STACKMON_REDIS_URL": "redis://:hunter2@redis:6379/0"},
    {"STACKMON_POSTGRES_DSN": "host=db user=stackmon password=hunter2"},
    {"STACKMON_CELERY_BROKER_URL": "amqp://guest:guest@rabbit:5672//"},
    {"STACKMON_POSTGRES_PASSWORD_FILE": "/etc/passwords/pg"},
])
def test_plaintext_secrets_are_recognised(env: dict[str, str]) -> None:
    assert plaintext_secrets(env) != []


def test_no_plaintext_secret_in_any_service(model: Model) -> None:
    for name, service in model["services"].items():
        assert plaintext_secrets(service.get("environment") or {}) == [], name
        for arg in service.get("command") or []:
            assert not has_password(arg), name
    text = COMPOSE.read_text()
    for path in secret_files(model).values():
        secret = path.read_text().strip() if path.exists() else ""
        assert not secret or secret not in text, f"{path.name}'s value is in compose.yaml"


def unmounted_secret_files(service: Model) -> list[str]:
    """*_FILE values under /run/secrets/ that name no secret the service mounts."""
    mounted = {s["target"] for s in service.get("secrets") or []}
    return [f"{name}={value}" for name, value in (service.get("environment") or {}).items()
            if str(value).startswith(RUN_SECRETS) and value not in mounted]


def test_secret_file_settings_name_mounted_secrets(model: Model) -> None:
    used = set()
    for name, service in model["services"].items():
        assert unmounted_secret_files(service) == [], name
        used |= {s["source"] for s in service.get("secrets") or []}
    assert used == set(model["secrets"]), "a declared secret no service uses"
    broken = copy.deepcopy(model["services"]["stackmon"])
    broken["secrets"] = broken["secrets"][1:]
    assert unmounted_secret_files(broken) == [
        "STACKMON_POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password"]


def known_settings() -> set[str]:
    return set(env_settings(SECTIONS, [spec.name for spec in COLLECTORS])) | set(ENV_EXTRA)


def unknown_settings(env: dict[str, str]) -> list[str]:
    known = known_settings()
    return sorted(name for name in env if name not in known)


def test_unknown_settings_are_recognised() -> None:
    env = {"STACKMON_POSTGRES_PASSWORDFILE": "/run/secrets/x", "STACKMON_REDIS_PASS": "/x",
           "STACKMON_LOG_LEVEL": "info", "STACKMON_COLLECTORS_NGINX": "true"}
    assert unknown_settings(env) == ["STACKMON_COLLECTORS_NGINX", "STACKMON_POSTGRES_PASSWORDFILE",
                                     "STACKMON_REDIS_PASS"]


def stackmon_env_with_files(model: Model, tmp_path: Path) -> dict[str, str]:
    """stackmon's environment with each /run/secrets/ file replaced by a temp file."""
    env = {}
    for name, value in model["services"]["stackmon"]["environment"].items():
        value = str(value)
        if value.startswith(RUN_SECRETS):
            local = tmp_path / value.removeprefix(RUN_SECRETS)
            local.write_text("not-the-real-password\n")
            value = str(local)
        env[name] = value
    return env


def test_stackmon_env_names_are_real_settings(model: Model, tmp_path: Path) -> None:
    env = model["services"]["stackmon"]["environment"]
    assert all(name.startswith("STACKMON_") for name in env)
    assert unknown_settings(env) == []
    cfg = cli.parse([], stackmon_env_with_files(model, tmp_path))
    assert cfg.postgres.dsn == env["STACKMON_POSTGRES_DSN"]
    assert cfg.redis.url == env["STACKMON_REDIS_URL"]
    assert cfg.celery.broker_password_file is not None
    assert {name: cfg.collectors[name] for name in ("postgres", "redis", "celery")} == {
        "postgres": True, "redis": True, "celery": True}


def test_the_exporter_refuses_a_misspelt_setting(model: Model, tmp_path: Path) -> None:
    env = stackmon_env_with_files(model, tmp_path)
    env["STACKMON_REDIS_PASSWORDFILE"] = env.pop("STACKMON_REDIS_PASSWORD_FILE")
    with pytest.raises(ConfigError, match="unknown variable"):
        cli.parse([], env)


# ---------------------------------------------------------------------------
# Services: health, restarts, data, ports, Grafana login


DEMO_SERVICES = {"postgres", "redis", "app", "nginx", "worker", "beat"}
STACK_SERVICES = {"stackmon", "stackmon-host", "prometheus", "alertmanager", "grafana"}


def image_dockerfile(model: Model, name: str) -> Path | None:
    """The Dockerfile that builds a service's image (itself or a service with that image)."""
    image = model["services"][name].get("image")
    for service in model["services"].values():
        build = service.get("build")
        if build and (service is model["services"][name] or service.get("image") == image):
            return Path(build["context"]) / build.get("dockerfile", "Dockerfile")
    return None


def test_services_restart_check_health_and_keep_data(model: Model) -> None:
    services = model["services"]
    assert set(services) == STACK_SERVICES | DEMO_SERVICES
    assert {n for n, s in services.items() if "demo" in (s.get("profiles") or [])} == \
        DEMO_SERVICES
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
            assert not service["healthcheck"].get("disable"), name
        else:
            dockerfile = image_dockerfile(model, name)
            assert dockerfile and "\nHEALTHCHECK " in dockerfile.read_text(), \
                f"{name}: no healthcheck in compose nor in its image"
    data = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana",
            "alertmanager": "/alertmanager",
            "postgres": "/var/lib/postgresql/data", "redis": "/data"}
    for name, target in data.items():
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes[target]["type"] == "volume", f"{name}: data in a named volume"
        assert volumes[target]["source"] in model["volumes"]


def test_only_grafana_and_the_demo_nginx_are_published_on_loopback(model: Model) -> None:
    published = {name: s["ports"] for name, s in model["services"].items() if s.get("ports")}
    assert sorted(published) == ["grafana", "nginx"]
    (port,) = published["grafana"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "3000", 3000)
    (port,) = published["nginx"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)


def test_grafana_requires_login(model: Model) -> None:
    grafana = model["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] in {s["target"] for s in grafana["secrets"]}


# ---------------------------------------------------------------------------
# Dockerfile


def hadolint(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """hadolint with default rules: no config file from the user's home or the cwd."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "XDG_CONFIG_HOME": str(home)}
    return subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=home, env=env, check=False)


def test_hadolint_prints_nothing(tmp_path: Path) -> None:
    proc = hadolint(DOCKERFILE, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install .\nCMD stackmon\n")
    proc = hadolint(bad, tmp_path)
    assert proc.returncode != 0
    for rule in ("DL3006", "DL3042", "DL3025"):
        assert rule in proc.stdout


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_runs_stackmon_unprivileged_with_a_healthcheck() -> None:
    steps = instructions(DOCKERFILE.read_text())
    by_word: dict[str, list[str]] = {}
    for word, args in steps:
        by_word.setdefault(word, []).append(args)
    for image in by_word["FROM"]:
        assert re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?( AS \w+)?", image)
    user = by_word["USER"][-1].split(":")[0]
    assert user not in ("root", "0") and steps.index(("USER", by_word["USER"][-1])) > max(
        i for i, (word, _) in enumerate(steps) if word == "RUN"), "USER after the last RUN"
    # Multi-stage: the build stage makes the wheel, the image installs only that wheel
    # (with its runtime dependencies), as tests/deploy/test_install.py does.
    build, runtime = stages(steps)
    assert any(args.startswith("pip wheel --no-cache-dir --no-deps") for word, args in build
               if word == "RUN")
    assert ("COPY", "--from=build /wheels /wheels") in runtime
    installs = [args for word, args in runtime if word == "RUN" and "pip install" in args]
    assert installs == ["pip install --no-cache-dir /wheels/stackmon-*.whl && rm -rf /wheels"]
    assert by_word["EXPOSE"] == ["9860"]
    assert json.loads(by_word["ENTRYPOINT"][0]) == ["stackmon"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "stackmon" in project["scripts"]
    # The health check follows the exporter's listen address and TLS (the subcommand reads
    # the running exporter's settings; tests/installed/test_docker.py runs it for real).
    (check,) = by_word["HEALTHCHECK"]
    assert json.loads(check.split(" CMD ", 1)[1]) == ["stackmon", "healthcheck"]
    assert any("org.opencontainers.image.title" in label for label in by_word["LABEL"])


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, split at FROM."""
    out: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            out.append([])
        out[-1].append(step)
    return out


def test_stages_split_at_from() -> None:
    steps = instructions("FROM a:1 AS build\nRUN x\nFROM a:1\nCOPY --from=build /w /w\n")
    assert stages(steps) == [[("FROM", "a:1 AS build"), ("RUN", "x")],
                             [("FROM", "a:1"), ("COPY", "--from=build /w /w")]]


def test_instructions_join_continuations() -> None:
    text = "FROM a:1\n# note\nRUN one \\\n    two\nUSER 1\n"
    assert instructions(text) == [("FROM", "a:1"), ("RUN", "one two"), ("USER", "1")]


def test_docker_ignored_follows_last_match() -> None:
    assert docker_ignored("exporter/cli.py", ["*"])
    assert not docker_ignored("exporter/cli.py", ["*", "!exporter/"])
    assert docker_ignored("exporter/__pycache__/x.pyc", ["*", "!exporter/", "**/__pycache__"])


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [src for word, args in instructions(DOCKERFILE.read_text())
              if word == "COPY" and not args.startswith("--from=")
              for src in args.split()[:-1]]
    assert "exporter" in copied and "pyproject.toml" in copied
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in copied, "pip install . reads the readme named in pyproject.toml"
    for src in copied:
        assert (REPO / src).exists(), src
        assert not docker_ignored(src, patterns), f"{src} is left out by .dockerignore"
    for module in (REPO / "exporter").rglob("*.py"):
        assert not docker_ignored(str(module.relative_to(REPO)), patterns), module
    for heavy in (".venv", ".git", "tests", "secrets/grafana_admin_password"):
        assert docker_ignored(heavy, patterns), f"{heavy} should stay out of the image"


# ---------------------------------------------------------------------------
# Prometheus


def container_to_host(path: str, mounts: list[Model]) -> Path | None:
    """The repo path behind a container path, through the longest matching bind mount."""
    best: tuple[int, Path] | None = None
    for mount in mounts:
        target = mount["target"].rstrip("/")
        inside = path == target or path.startswith(target + "/")
        if mount["type"] == "bind" and inside and (best is None or len(target) > best[0]):
            best = (len(target), Path(mount["source"]) / path[len(target):].lstrip("/"))
    return best[1] if best else None


def test_container_to_host_maps_the_longest_mount() -> None:
    mounts = [{"type": "bind", "target": "/etc/p", "source": "/repo/a"},
              {"type": "bind", "target": "/etc/p/rules", "source": "/repo/rules"},
              {"type": "volume", "target": "/data", "source": "data"}]
    assert container_to_host("/etc/p/rules/x.yml", mounts) == Path("/repo/rules/x.yml")
    assert container_to_host("/etc/p/p.yml", mounts) == Path("/repo/a/p.yml")
    assert container_to_host("/etc/pp/p.yml", mounts) is None
    assert container_to_host("/data/x", mounts) is None


def promtool_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "check", "config", str(config)], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


def test_prometheus_config_as_mounted_passes_promtool(model: Model, tmp_path: Path) -> None:
    """The full check (rules included, which --syntax-only skips) on prometheus.yml with
    the container paths it names replaced by the repo files compose mounts there."""
    prometheus = model["services"]["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in prometheus["command"])
    assert container_to_host(flags["config.file"], prometheus["volumes"]) == PROMETHEUS_YML
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    mapped = [container_to_host(glob, prometheus["volumes"]) for glob in config["rule_files"]]
    assert None not in mapped, "a rule_files entry outside the mounted directories"
    config["rule_files"] = [str(path) for path in mapped]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    proc = promtool_check(local)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = sorted(RULES_DIR.glob("*.yml"))
    assert rules
    for path in rules:
        assert f"Checking {path}" in proc.stdout, f"{path.name} is not loaded by prometheus.yml"


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(up[\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"rule_files: ['{tmp_path}/*.yml']\n")
    assert promtool_check(config).returncode != 0


HOST_GATEWAY = "host.docker.internal"


def listen_port(service: Model) -> str | None:
    """The port a host-network service's stackmon listens on (--web.listen-address)."""
    for arg in service.get("command") or []:
        if str(arg).startswith("--web.listen-address="):
            return str(arg).rsplit(":", 1)[1]
    return None


def unreachable_targets(model: Model, prometheus_config: Model) -> list[str]:
    """Scrape and Alertmanager targets that name no compose service exposing that port (or,
    for host.docker.internal, no host-network service listening there)."""
    services = model["services"]
    prometheus = services["prometheus"]
    targets = [(job["job_name"], t) for job in prometheus_config["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [("alertmanager", t) for am in prometheus_config["alerting"]["alertmanagers"]
                for sc in am["static_configs"] for t in sc["targets"]]
    problems = []
    for job, target in targets:
        host, _, port = target.rpartition(":")
        if host == HOST_GATEWAY:
            mapped = any(str(e).replace("=", ":") == f"{HOST_GATEWAY}:host-gateway"
                         for e in prometheus.get("extra_hosts") or [])
            listening = [n for n, s in services.items()
                         if s.get("network_mode") == "host" and listen_port(s) == port]
            if not (mapped and listening):
                problems.append(f"{job}: {target}: no host-network service on port {port}")
        elif host not in services or port not in (services[host].get("expose") or []):
            problems.append(f"{job}: {target}: no compose service {host} exposing {port}")
    return problems


def test_prometheus_scrapes_services_that_exist_in_compose(model: Model) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert unreachable_targets(model, config) == []
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"stackmon", "stackmon-host", "demo"}


@pytest.mark.parametrize(("job", "target"), [
    ("stackmon", "stackmon:9861"), ("stackmon", "exporter:9860"),
    ("stackmon-host", "host.docker.internal:9100"), ("alerting", "alertmanager:9094"),
])
def test_unreachable_targets_are_found(model: Model, job: str, target: str) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    if job == "alerting":
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [target]
    else:
        for sc in config["scrape_configs"]:
            if sc["job_name"] == job:
                sc["static_configs"][0]["targets"] = [target]
    assert len(unreachable_targets(model, config)) == 1


# ---------------------------------------------------------------------------
# Grafana provisioning


def only_entry(doc: Model, key: str) -> tuple[list[str], Model | None]:
    """Problems with a provisioning file's apiVersion, and its one entry under ``key``."""
    problems = [] if doc.get("apiVersion") == 1 else ["apiVersion: expected 1"]
    entries = doc.get(key) or []
    if len(entries) != 1:
        return [*problems, f"{key}: expected exactly one entry"], None
    entry: Model = entries[0]
    return problems, entry


def datasource_problems(doc: Model, scrape_interval: str, services: Model) -> list[str]:
    """What Grafana needs of the provisioned Prometheus data source, and what we pin."""
    problems, ds = only_entry(doc, "datasources")
    if ds is None:
        return problems
    for key in ("name", "type", "uid", "url", "access"):
        if not ds.get(key):
            problems.append(f"{key}: missing")
    if ds.get("type") != "prometheus":
        problems.append("type: expected prometheus")
    if ds.get("uid") != DATASOURCE_UID:
        problems.append(f"uid: expected {DATASOURCE_UID} (dashboards refer to it)")
    if ds.get("access") != "proxy":
        problems.append("access: expected proxy (the browser cannot reach prometheus)")
    if ds.get("isDefault") is not True:
        problems.append("isDefault: expected true")
    url = urlsplit(str(ds.get("url", "")))
    if url.scheme != "http" or url.hostname not in services:
        problems.append("url: expected http://<a compose service>:<port>")
    elif str(url.port) not in (services[url.hostname].get("expose") or []):
        problems.append(f"url: port {url.port} is not exposed by {url.hostname}")
    if (ds.get("jsonData") or {}).get("timeInterval") != scrape_interval:
        problems.append(f"jsonData.timeInterval: expected the scrape interval {scrape_interval}")
    return problems


def provider_problems(doc: Model, dashboards_target: str) -> list[str]:
    problems, provider = only_entry(doc, "providers")
    if provider is None:
        return problems
    if not provider.get("name"):
        problems.append("name: missing")
    if provider.get("type") != "file":
        problems.append("type: expected file")
    if provider.get("folder") != "stackmon":
        problems.append("folder: expected stackmon")
    if provider.get("allowUiUpdates") is not False:
        problems.append("allowUiUpdates: expected false (the JSON files are generated)")
    if (provider.get("options") or {}).get("path") != dashboards_target:
        problems.append(f"options.path: expected {dashboards_target}, where compose mounts "
                        "grafana/dashboards")
    return problems


def grafana_mount(model: Model, source: Path) -> str:
    (target,) = [v["target"] for v in model["services"]["grafana"]["volumes"]
                 if v["type"] == "bind" and Path(v["source"]) == source]
    return str(target)


@pytest.fixture(scope="module")
def scrape_interval() -> str:
    return str(yaml.safe_load(PROMETHEUS_YML.read_text())["global"]["scrape_interval"])


def test_grafana_provisioning_is_mounted_where_grafana_reads_it(model: Model) -> None:
    assert grafana_mount(model, REPO / "grafana" / "provisioning") == GRAFANA_PROVISIONING
    assert "GF_PATHS_PROVISIONING" not in model["services"]["grafana"]["environment"]
    assert (REPO / "grafana" / "dashboards").is_dir()


def test_datasource_provisioning(model: Model, scrape_interval: str) -> None:
    doc = yaml.safe_load(DATASOURCES.read_text())
    assert scrape_interval == "15s"
    assert datasource_problems(doc, scrape_interval, model["services"]) == []


def test_dashboard_provider_provisioning(model: Model) -> None:
    doc = yaml.safe_load(PROVIDERS.read_text())
    target = grafana_mount(model, REPO / "grafana" / "dashboards")
    assert provider_problems(doc, target) == []


def mutations(doc: Model, edits: list[tuple[tuple[str, ...], Any]]) -> Iterator[Model]:
    """One copy of ``doc`` per edit; None as the value deletes the key."""
    for path, value in edits:
        changed = copy.deepcopy(doc)
        node = changed
        for part in path[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        yield changed


def test_datasource_problems_are_found(model: Model, scrape_interval: str) -> None:
    doc = yaml.safe_load(DATASOURCES.read_text())
    edits: list[tuple[tuple[str, ...], Any]] = [
        (("apiVersion",), None), (("datasources", "0", "uid"), None),
        (("datasources", "0", "type"), "loki"), (("datasources", "0", "access"), "direct"),
        (("datasources", "0", "url"), "http://localhost:9090"),
        (("datasources", "0", "url"), "http://prometheus:9091"),
        (("datasources", "0", "jsonData", "timeInterval"), "30s"),
        (("datasources", "0", "isDefault"), None), (("datasources", "0", "name"), None),
    ]
    for changed in mutations(doc, edits):
        assert datasource_problems(changed, scrape_interval, model["services"]) != [], changed


def test_provider_problems_are_found(model: Model) -> None:
    doc = yaml.safe_load(PROVIDERS.read_text())
    target = grafana_mount(model, REPO / "grafana" / "dashboards")
    edits: list[tuple[tuple[str, ...], Any]] = [
        (("apiVersion",), 2), (("providers", "0", "type"), "url"),
        (("providers", "0", "options", "path"), "/var/lib/grafana/dashboards"),
        (("providers", "0", "allowUiUpdates"), True), (("providers", "0", "folder"), "General"),
        (("providers", "0", "name"), None),
    ]
    for changed in mutations(doc, edits):
        assert provider_problems(changed, target) != [], changed


def test_deployment_docs_name_the_pinned_images(model: Model) -> None:
    text = (REPO / "docs" / "deployment.md").read_text()
    start = text.index("## Compose")
    section = text[start:text.index("\n## ", start + 5)]
    for name, service in model["services"].items():
        dockerfile = image_dockerfile(model, name)
        image = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)[-1] \
            if dockerfile else service["image"]
        assert f"`{image}`" in section, f"{name}: docs/deployment.md lacks {image}"
    assert "bash scripts/make-secrets.sh" in section and "docker compose" in section


# ---------------------------------------------------------------------------
# The host from a container (stackmon-host) and the demo platform

DEMO_DIR = REPO / "demo"
DEMO_CONFIG = REPO / "deploy" / "compose" / "stackmon-demo.yml"
HOST_FLAGS = {"--path.procfs": "/proc", "--path.sysfs": "/sys", "--path.rootfs": "/"}


def test_host_exporter_sees_the_host(model: Model) -> None:
    """node_exporter's container deployment: host PID namespace and network, the host's
    /proc, /sys and / read-only, and the --path.* flags pointing at them."""
    host = model["services"]["stackmon-host"]
    assert (host.get("pid"), host.get("network_mode")) == ("host", "host")
    mounts = {v["source"]: v for v in host["volumes"]}
    flags = dict(str(a).split("=", 1) for a in host["command"] if str(a).startswith("--"))
    for flag, source in HOST_FLAGS.items():
        assert mounts[source]["read_only"] is True, source
        assert mounts[source]["target"] == flags[flag], flag
    assert mounts["/"]["bind"]["propagation"] == "rslave"
    assert not host.get("ports") and not host.get("secrets")
    assert model["services"]["stackmon"]["command"][0] == "--no-collector.host"


def test_host_exporter_flags_are_real_settings(model: Model) -> None:
    args = [str(a) for a in model["services"]["stackmon-host"]["command"]]
    env = {k: str(v) for k, v in model["services"]["stackmon-host"]["environment"].items()}
    assert unknown_settings(env) == []
    cfg = cli.parse(args, env)
    assert cfg.web.listen_address.endswith(":9860")
    host = cfg.sections["host"]
    assert (host.procfs, host.sysfs, host.rootfs) == ("/host/proc", "/host/sys", "/rootfs")


def test_demo_services_config_loads_and_checks_compose_services(model: Model) -> None:
    """The mounted service checks are valid stackmon config and point at demo services."""
    cfg = cli.parse([f"--config.file={DEMO_CONFIG}", "--no-collector.host"], {})
    checks = {c.name: c for c in cfg.services.checks}
    assert set(checks) == {"django", "nginx", "postgres-port", "redis-port"}
    services = model["services"]
    for check in checks.values():
        where = check.url or f"tcp://{check.address}"
        parts = urlsplit(where)
        assert parts.hostname in DEMO_SERVICES, check.name
        assert str(parts.port) in (services[parts.hostname].get("expose") or []), check.name
    assert urlsplit(checks["django"].url).path == "/healthz"
    assert checks["nginx"].type == "nginx"
    assert urlsplit(checks["nginx"].url).path == "/stub_status"


def nginx_locations(text: str) -> dict[str, str]:
    """``location`` blocks of an nginx server file: {path: body}."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r"location\s+(?:=\s+)?(\S+)\s*\{([^}]*)\}", text)}


def test_nginx_serves_stub_status_and_proxies_the_app(model: Model) -> None:
    locations = nginx_locations((DEMO_DIR / "nginx.conf").read_text())
    assert "stub_status;" in locations["/stub_status"]
    assert "deny all;" in locations["/stub_status"]
    (upstream,) = re.findall(r"proxy_pass\s+http://([^;/]+);", locations["/"])
    host, port = upstream.split(":")
    assert port in model["services"][host]["expose"]
    listen = re.search(r"listen\s+(\d+);", (DEMO_DIR / "nginx.conf").read_text())
    assert listen and listen.group(1) in model["services"]["nginx"]["expose"]


def nginx_test(server_conf: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a server file inside a minimal main config. The upstream host is a
    compose service name, resolved when nginx loads the config, so it becomes loopback."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx not installed (scripts/test-services.sh installs it)")
    (tmp_path / "default.conf").write_text(re.sub(r"http://\w+:", "http://127.0.0.1:",
                                                  server_conf))
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  include {tmp_path}/default.conf;\n}}\n")
    return subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(main)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_nginx_accepts_the_demo_config(tmp_path: Path) -> None:
    proc = nginx_test((DEMO_DIR / "nginx.conf").read_text(), tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_nginx_refuses_a_broken_config(tmp_path: Path) -> None:
    text = (DEMO_DIR / "nginx.conf").read_text().replace("stub_status;", "stub_statuss;")
    assert nginx_test(text, tmp_path).returncode != 0


def test_nginx_locations_parse() -> None:
    text = "server { location = /a { stub_status; } location / { proxy_pass http://x:1; } }"
    assert nginx_locations(text) == {"/a": " stub_status; ", "/": " proxy_pass http://x:1; "}


def test_demo_app_runs_the_django_project(model: Model) -> None:
    services = model["services"]
    dockerfile = (DEMO_DIR / "Dockerfile").read_text()
    assert "demo.wsgi:application" in dockerfile
    for name in ("worker", "beat"):
        assert services[name]["image"] == services["app"]["image"]
        assert services[name]["command"][:3] == ["celery", "-A", "demo.celery_app:app"]
    assert services["worker"]["command"][3:5] == ["worker", "-E"]
    # A healthcheck skips the image's ENTRYPOINT, which puts the broker password in the URL.
    (entrypoint,) = re.findall(r"^ENTRYPOINT\s+(.+)$", dockerfile, re.M)
    assert services["worker"]["healthcheck"]["test"][1:3] == json.loads(entrypoint)
    assert services["beat"]["command"][3] == "beat"
    env = services["app"]["environment"]
    assert {"DEMO_POSTGRES_DSN", "DEMO_REDIS_URL", "DEMO_BROKER_URL"} <= set(env)
    broker = urlsplit(env["DEMO_BROKER_URL"])
    stackmon_broker = urlsplit(services["stackmon"]["environment"]["STACKMON_CELERY_BROKER_URL"])
    assert (broker.hostname, broker.path) == (stackmon_broker.hostname, stackmon_broker.path), \
        "stackmon watches the broker the demo's worker uses"
    settings = DEMO_DIR / "settings.py"
    text = settings.read_text()
    for name in ("DEMO_POSTGRES_DSN", "DEMO_REDIS_URL", "DEMO_BROKER_URL", "DEMO_ALLOWED_HOSTS"):
        assert name in text, f"demo/settings.py does not read {name}"


def test_demo_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    proc = hadolint(DEMO_DIR / "Dockerfile", tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    froms = re.findall(r"^FROM\s+(\S+)", (DEMO_DIR / "Dockerfile").read_text(), re.M)
    assert froms and [unpinned(i) for i in froms if unpinned(i)] == []


def test_demo_build_context_leaves_out_bytecode(tmp_path: Path) -> None:
    """COPY . ./demo takes the whole context: a checkout's __pycache__ stays out."""
    context = tmp_path / "demo"
    shutil.copytree(DEMO_DIR, context)
    (context / "__pycache__").mkdir(exist_ok=True)
    (context / "__pycache__" / "views.cpython-311.pyc").write_bytes(b"")
    (context / "settings.pyc").write_bytes(b"")
    sent = context_files(context)
    assert "views.py" in sent and "docker-entrypoint.py" in sent
    assert [f for f in sent if "__pycache__" in f or f.endswith(".pyc")] == []


def test_demo_entrypoint_puts_password_files_into_urls(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p@ss/w:rd\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "DEMO_POSTGRES_DSN": "postgresql://postgres@db:5432/app",
           "DEMO_POSTGRES_PASSWORD_FILE": str(secret),
           "DEMO_REDIS_URL": "redis://cache:6379/0", "DEMO_REDIS_PASSWORD_FILE": str(secret),
           "DEMO_BROKER_URL": "redis://cache:6379/1"}
    proc = subprocess.run(
        [sys.executable, str(DEMO_DIR / "docker-entrypoint.py"), sys.executable, "-c",
         "import os; print(os.environ['DEMO_POSTGRES_DSN'], os.environ['DEMO_REDIS_URL'], "
         "os.environ['DEMO_BROKER_URL'], 'DEMO_REDIS_PASSWORD_FILE' in os.environ)"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=True)
    assert proc.stdout.split() == ["postgresql://postgres:p%40ss%2Fw%3Ard@db:5432/app",
                                   "redis://:p%40ss%2Fw%3Ard@cache:6379/0",
                                   "redis://cache:6379/1", "False"]
