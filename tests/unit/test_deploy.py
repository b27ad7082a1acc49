"""Static checks of the deployable stack (DESIGN.md §7): no Docker engine or Grafana runs here.

compose.yaml against the Compose Specification schema and docker-compose's own `config`, the
files it mounts, pinned images, secrets only from files, stackmon's env names; hadolint on the
Dockerfile; promtool on prometheus.yml as the container sees it; Grafana provisioning keys.
Each checking helper also gets a small broken input to prove it can fail.
"""

from __future__ import annotations

import copy
import fnmatch
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


def missing_sources(model: Model, repo: Path) -> list[str]:
    """Build contexts, Dockerfiles and bind-mount sources that are not files in the repo."""
    problems = []
    for name, service in model["services"].items():
        build = service.get("build")
        if build:
            context = Path(build["context"])
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no Dockerfile in {context}")
        for volume in service.get("volumes", []):
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            if not source.is_relative_to(repo) or not source.exists():
                problems.append(f"{name}: bind source {source} is not in the repo")
    return problems


def test_every_mount_and_build_context_exists(model: Model) -> None:
    assert missing_sources(model, REPO) == []
    binds = [v for s in model["services"].values() for v in s.get("volumes", [])
             if v["type"] == "bind"]
    assert len(binds) == 4, "prometheus.yml, rules, grafana provisioning and dashboards"


def test_missing_sources_reports_absent_files(model: Model, tmp_path: Path) -> None:
    broken = copy.deepcopy(model)
    broken["services"]["grafana"]["volumes"][0]["source"] = str(REPO / "grafana" / "nope")
    broken["services"]["stackmon"]["build"]["context"] = str(tmp_path)
    assert len(missing_sources(broken, REPO)) == 2


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


def test_services_restart_check_health_and_keep_data(model: Model) -> None:
    services = model["services"]
    assert set(services) == {"stackmon", "prometheus", "grafana", "postgres", "redis"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        if service.get("build"):
            assert "\nHEALTHCHECK " in DOCKERFILE.read_text(), f"{name}: image healthcheck"
        else:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    data = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana",
            "postgres": "/var/lib/postgresql/data", "redis": "/data"}
    for name, target in data.items():
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes[target]["type"] == "volume", f"{name}: data in a named volume"
        assert volumes[target]["source"] in model["volumes"]


def test_only_grafana_is_published_on_loopback(model: Model) -> None:
    published = {name: s["ports"] for name, s in model["services"].items() if s.get("ports")}
    assert list(published) == ["grafana"]
    (port,) = published["grafana"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "3000", 3000)


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
    assert re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?", by_word["FROM"][0])
    user = by_word["USER"][-1].split(":")[0]
    assert user not in ("root", "0") and steps.index(("USER", by_word["USER"][-1])) > max(
        i for i, (word, _) in enumerate(steps) if word == "RUN"), "USER after the last RUN"
    assert any("pip install --no-cache-dir ." in run for run in by_word["RUN"])
    assert by_word["EXPOSE"] == ["9860"]
    assert json.loads(by_word["ENTRYPOINT"][0]) == ["stackmon"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "stackmon" in project["scripts"]
    (check,) = by_word["HEALTHCHECK"]
    assert "http://127.0.0.1:9860/-/healthy" in check and "curl" not in check
    assert any("org.opencontainers.image.title" in label for label in by_word["LABEL"])


def test_instructions_join_continuations() -> None:
    text = "FROM a:1\n# note\nRUN one \\\n    two\nUSER 1\n"
    assert instructions(text) == [("FROM", "a:1"), ("RUN", "one two"), ("USER", "1")]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore patterns leave ``path`` out of the build context (last match
    wins, ``!`` re-includes, a pattern matching a directory covers what is inside)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_docker_ignored_follows_last_match() -> None:
    assert docker_ignored("exporter/cli.py", ["*"])
    assert not docker_ignored("exporter/cli.py", ["*", "!exporter/"])
    assert docker_ignored("exporter/__pycache__/x.pyc", ["*", "!exporter/", "**/__pycache__"])


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [src for word, args in instructions(DOCKERFILE.read_text()) if word == "COPY"
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


def test_prometheus_scrapes_the_compose_exporter(model: Model) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    assert targets == ["stackmon:9860"]
    host, port = targets[0].split(":")
    assert port in model["services"][host]["expose"]


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


def test_readme_deployment_section_names_the_pinned_images(model: Model) -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("## Deployment (compose)")
    section = text[start:text.index("\n## ", start + 5)]
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    for name, service in model["services"].items():
        image = froms[0] if service.get("build") else service["image"]
        assert f"`{image}`" in section, f"{name}: README names another image than {image}"
    assert "bash scripts/make-secrets.sh" in section and "docker compose" in section
