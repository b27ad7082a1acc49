"""A private Docker engine, the images users build, and compose.yaml's options as
``docker run`` flags, for the tests that run the container deployment for real
(DESIGN.md §7, tests/installed/test_docker*.py).

The engine: Debian's ``dockerd`` with its own data root, exec root, pid file and socket,
no bridge, no iptables, containers on ``--network host``. It runs in a mount namespace
of its own (``unshare -m``), where:

* ``/`` is made ``rshared``. Compose's ``stackmon-host`` binds ``/`` with
  ``propagation: rslave``, which Docker refuses on a host whose ``/`` is a private
  mount; this machine is one (no systemd as PID 1, which would make it shared). The
  host's own propagation is left as it is (docs/deployment.md tells users what to do).
* ``/etc/docker``, ``/run/docker`` and ``/run/containerd`` are empty tmpfs (or, where
  missing, their parent gets a throw-away overlay), so dockerd neither reads the
  machine's Docker config nor writes its key file and plugin dir there, and starts its
  own containerd instead of using the machine's.
* every mount dockerd makes (image layers, containers' root filesystems) stays out of
  the machine's mount table and goes when the namespace's last process ends.

Images are cached between runs in one data root, ``/var/cache/stackmon-tests/docker``,
which one suite at a time uses (a lock; a second suite waits). Each image carries its
inputs' hash in a tag (``stackmon-test/stackmon:3f9a0c1e2b4d``): with the same inputs
nothing is built again; otherwise Docker's layer cache still helps.

    with docker.session() as engine:    # or docker.shared_engine() in tests
        engine.run("run", "--rm", "--network", "host", "stackmon:0.1.0", "--version")
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import secrets as random_secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.helpers import backends, roots
from tests.helpers.exporter import REPO, Samples, http_get, wait_for

CACHE = roots.CACHE / "docker"
LOCK_WAIT_SECONDS = 1800  # another suite's run (cold builds included) before we give up
START_TIMEOUT = 60
BUILD_TIMEOUT = 900
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DEMO_DOCKERFILE = REPO / "demo" / "Dockerfile"
TAG_REPO = "stackmon-test"  # tags that carry an input hash: stackmon-test/<name>:<hash>
KEEP_BUILDS = 2  # older hashed builds of an image are removed (with their layers)

# The stand-in for the official python:3.11 slim image (see base_image()).
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3",
                 "ca-certificates", "netbase", "tzdata")
EXTERNALLY_MANAGED = "usr/lib/python3.11/EXTERNALLY-MANAGED"
BASE_RECIPE = 1  # raise when base_image()'s import changes in a way the key misses
BASE_CHANGES = ('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                "ENV LANG=C.UTF-8", 'CMD ["python3"]')

# In the engine's mount namespace, before dockerd starts. $1: a private temp dir,
# $2: the propagation of / there (rshared; rprivate to show what a private / does).
_NAMESPACE_SETUP = r"""
set -eu
mount --make-"$2" /
n=0
for dir in /etc/docker /run/docker /run/containerd; do
    if [ -d "$dir" ]; then
        mount -t tmpfs -o mode=0700 stackmon-test "$dir"
    else
        parent=$(dirname "$dir"); n=$((n + 1))
        mkdir -p "$1/ovl$n/upper" "$1/ovl$n/work"
        mount -t overlay stackmon-test \
            -o "lowerdir=$parent,upperdir=$1/ovl$n/upper,workdir=$1/ovl$n/work" "$parent"
    fi
done
shift 2
exec "$@"
"""


def skip_reason() -> str | None:
    """Why this machine cannot run the Docker tests, or None."""
    reason = roots.skip_reason()
    if reason is not None:
        return reason
    for program in ("dockerd", "docker", "containerd", "runc", "unshare"):
        if shutil.which(program) is None:
            return f"{program} not installed (scripts/test-services.sh installs docker.io)"
    return None


# ---------------------------------------------------------------------------
# The engine


class Engine:
    """One dockerd in its own mount namespace; ``docker()`` runs the CLI against it."""

    def __init__(self, data_root: Path, tmp: Path, root_propagation: str = "rshared") -> None:
        self.data_root = data_root
        self.tmp = tmp
        self.root_propagation = root_propagation
        self.sock = tmp / "docker.sock"
        self.log_path = tmp / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.mnt_ns: str | None = None
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "DOCKER_HOST": f"unix://{self.sock}",
                    "DOCKER_CONFIG": str(tmp / "cli"),  # not /root/.docker
                    "HOME": str(tmp)}

    def start(self) -> Engine:
        (self.tmp / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json
        cmd = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false",
               "--ip6tables=false", f"--data-root={self.data_root}",
               f"--exec-root={self.tmp / 'exec'}", f"--pidfile={self.tmp / 'dockerd.pid'}",
               f"--config-file={self.tmp / 'daemon.json'}", f"-H=unix://{self.sock}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             _NAMESPACE_SETUP, "setup", str(self.tmp), self.root_propagation, *cmd],
            stdout=log, stderr=log, env=self.env, start_new_session=True)
        log.close()

        own_ns = os.readlink("/proc/self/ns/mnt")

        def up() -> bool:
            assert self.proc is not None
            with contextlib.suppress(OSError):  # recorded at once: stop() ends all of it
                ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
                self.mnt_ns = ns if ns != own_ns else self.mnt_ns
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.log()}")
            return self.docker("version", check=False, timeout=10).returncode == 0
        wait_for(up, timeout=START_TIMEOUT, interval=0.2, what="dockerd")
        # A run that died left its containers in the data root: ours alone, under the lock.
        stale = self.docker("ps", "-aq").stdout.split()
        if stale:
            self.docker("rm", "-f", "-v", *stale, timeout=120)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def docker(self, *args: str, check: bool = True, timeout: float = 120,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this engine; raises with its stderr when ``check``."""
        raw = subprocess.run(["docker", *args], env=self.env, input=input,
                             capture_output=True, timeout=timeout, check=False)
        proc = subprocess.CompletedProcess(raw.args, raw.returncode,
                                           raw.stdout.decode(errors="replace"),
                                           raw.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {shlex.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stderr.strip()}")
        return proc

    def stop(self) -> None:
        """Remove every container, stop dockerd (and its containerd), then end whatever
        is left in its mount namespace: nothing of it outlives the run."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.docker("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", "-v", *ids, check=False, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in self._namespace_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def _namespace_pids(self) -> list[int]:
        return namespace_pids(self.mnt_ns) if self.mnt_ns is not None else []

    # -- containers ---------------------------------------------------------------------

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.docker("inspect", name).stdout)
        return data[0]

    def health(self, name: str) -> str:
        """``starting``, ``healthy`` or ``unhealthy`` (``none`` without a healthcheck)."""
        state = self.inspect(name)["State"]
        return str(state.get("Health", {}).get("Status", "none"))

    def logs(self, name: str) -> str:
        proc = self.docker("logs", name, check=False)
        return proc.stdout + proc.stderr

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0


_LOCK = CACHE / "engine.lock"
# "<dockerd pid> <its mount namespace> <its temp dir>" while an engine runs
_RUNNING = CACHE / "engine.running"
_SHARED: dict[str, Any] = {}


def _reap_stale() -> None:
    """End an engine a killed run left behind (its pytest died with SIGKILL): a second
    dockerd must never open the same data root."""
    try:
        pid_text, ns, tmp = _RUNNING.read_text().split()
    except (OSError, ValueError):
        return
    try:
        alive = os.readlink(f"/proc/{int(pid_text)}/ns/mnt") == ns
    except OSError:
        alive = False
    if alive:
        for pid in namespace_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not namespace_pids(ns), timeout=30, what="the stale engine to end")
    if Path(tmp).name.startswith("stackmon-docker-"):
        shutil.rmtree(tmp, ignore_errors=True)
    _RUNNING.unlink(missing_ok=True)


def namespace_pids(ns: str) -> list[int]:
    """The processes in mount namespace ``ns`` (``mnt:[4026532001]``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == ns:
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def session(data_root: Path = CACHE / "data") -> Iterator[Engine]:
    """The engine on the shared cache, held under its lock for as long as it runs
    (another suite's run waits, up to LOCK_WAIT_SECONDS)."""
    reason = skip_reason()
    if reason is not None:
        raise RuntimeError(reason)
    data_root.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        def locked() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        wait_for(locked, timeout=LOCK_WAIT_SECONDS, interval=1,
                 what=f"{_LOCK}, held by another test run")
        _reap_stale()
        tmp = Path(tempfile.mkdtemp(prefix="stackmon-docker-"))
        engine = Engine(data_root, tmp)
        try:
            engine.start()
            assert engine.proc is not None
            _RUNNING.write_text(f"{engine.proc.pid} {engine.mnt_ns} {tmp}\n")
            yield engine
        finally:
            engine.stop()
            _RUNNING.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)


def shared_engine() -> Engine:
    """One engine for the whole test session, started on first use, stopped at exit."""
    if "engine" not in _SHARED:
        ctx = session()
        _SHARED["ctx"] = ctx
        _SHARED["engine"] = ctx.__enter__()
        atexit.register(stop_shared)
    engine: Engine = _SHARED["engine"]
    return engine


def stop_shared() -> None:
    ctx = _SHARED.pop("ctx", None)
    _SHARED.pop("engine", None)
    if ctx is not None:
        ctx.__exit__(None, None, None)


# ---------------------------------------------------------------------------
# Images


def base_image_name(dockerfile: Path) -> str:
    """The image of the Dockerfile's first ``FROM``: ``python:3.11.14-slim-bookworm``."""
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            return image
    raise AssertionError(f"{dockerfile}: no FROM line")


def base_image(engine: Engine, name: str) -> str:
    """A local stand-in for the official ``python:3.11…-slim-bookworm``, tagged ``name``.

    No registry serves images here. The stand-in is a Debian bookworm minbase root
    (``roots.debian_root``) with Debian's ``python3``, ``python3-pip``, ``python3-venv``,
    ``python-is-python3``, ``ca-certificates``, ``netbase`` and ``tzdata``, without
    Debian's ``EXTERNALLY-MANAGED`` marker so that ``pip install`` as root works as in
    the official image, with the official image's ``PATH``, ``LANG`` and ``CMD``.
    How it differs from the official image:

    * Python is Debian's 3.11.2 in ``/usr`` (``/usr/bin/python3``), not 3.11.14 built
      from source in ``/usr/local``; ``python`` comes from ``python-is-python3``.
    * pip is Debian's 23.0.1 (``/usr/bin/pip``), not the newest pip; packages it installs
      as root go to ``/usr/local/lib/python3.11/dist-packages`` and their scripts to
      ``/usr/local/bin`` (the official image: ``site-packages``, same ``bin``).
    * pip trusts Debian's CA bundle (``/etc/ssl/certs``), not certifi's; the root has
      the machine's bundle (tests/helpers/roots.py), so pip gets through its proxy.
    * setuptools 66.1 and wheel 0.38 are Debian's (``/usr/lib/python3/dist-packages``),
      not the official image's own in ``/usr/local``; ``python3-venv`` is Debian's.
    * It is a minbase root: more of Debian's base (``apt``, ``perl-base``, …) than the
      slim image keeps, no ``GPG_KEY``/``PYTHON_VERSION``/``PYTHON_SHA256`` variables.
    """
    root = roots.debian_root("python", BASE_PACKAGES)
    key = hashlib.sha256(f"{root.name}:{BASE_RECIPE}:{BASE_CHANGES}".encode()).hexdigest()[:12]
    hashed = f"{TAG_REPO}/base:{key}"
    if not engine.image_exists(hashed):
        tar = subprocess.run(
            ["tar", "-C", str(root), f"--exclude=./{EXTERNALLY_MANAGED}",
             f"--exclude=./{roots.COMPLETE}", "--numeric-owner", "-c", "."],
            capture_output=True, timeout=300, check=True).stdout
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        engine.docker("import", *changes, "-", hashed, input=tar, timeout=300)
    engine.docker("tag", hashed, name)
    return hashed


def docker_ignored(path: str, patterns: Sequence[str]) -> bool:
    """Whether .dockerignore patterns leave ``path`` out of the build context (last match
    wins, ``!`` re-includes, a pattern matching a directory covers what is inside).

    >>> docker_ignored("exporter/cli.py", ["*", "!exporter/"])
    False
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(_glob_match(prefix, glob) for prefix in prefixes):
            ignored = not negate
    return ignored


def _glob_match(path: str, glob: str) -> bool:
    if glob.startswith("**/"):
        rest = glob[3:]
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), rest) for i in range(len(parts)))
    return fnmatch.fnmatchcase(path, glob)


def ignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def context_files(context: Path) -> list[str]:
    """The files ``docker build`` sends from ``context`` (after .dockerignore), sorted.
    An ignored directory that no ``!`` pattern reaches into is not walked (.venv, .git)."""
    patterns = ignore_patterns(context)
    reopened = [p.removeprefix("!").strip("/") for p in patterns if p.startswith("!")]
    out = []
    for top, dirs, files in os.walk(context):
        rel_top = Path(top).relative_to(context).as_posix()
        prefix = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs
                   if not docker_ignored(prefix + d, patterns)
                   or any(r.startswith(prefix + d + "/") for r in reopened)]
        out += [prefix + f for f in files if not docker_ignored(prefix + f, patterns)]
    return sorted(out)


def build_key(context: Path, dockerfile: Path, base: str) -> str:
    """The hash of what goes into a build: the base image, the Dockerfile, the context."""
    digest = hashlib.sha256(base.encode() + b"\0" + dockerfile.read_bytes())
    for rel in context_files(context):
        path = context / rel
        digest.update(f"\0{rel}\0{path.stat().st_mode & 0o111}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class Built:
    """An image as compose names it (``stackmon:0.1.0``) and its hashed tag."""

    name: str
    hashed: str
    seconds: float  # time spent here: 0-ish when the hashed tag existed


def build_service(engine: Engine, service: str) -> Built:
    """The image compose.yaml names for ``service``, built from the repository's Dockerfile."""
    return build(engine, REPO, DOCKERFILE, load_compose({})["services"][service]["image"])


def build(engine: Engine, context: Path, dockerfile: Path, name: str) -> Built:
    """``docker build`` the way a user does (``docker build -t <name> <context>``), plus
    ``--network host`` (the engine has no bridge), unless the same inputs were built."""
    start = time.monotonic()
    base = base_image(engine, base_image_name(dockerfile))
    short = name.split(":")[0].split("/")[-1]
    hashed = f"{TAG_REPO}/{short}:{build_key(context, dockerfile, base)}"
    if not engine.image_exists(hashed):
        engine.docker("build", "--network", "host", "-f", str(dockerfile), "-t", hashed,
                      str(context), timeout=BUILD_TIMEOUT)
        _prune(engine, f"{TAG_REPO}/{short}", keep=hashed)
    engine.docker("tag", hashed, name)
    return Built(name, hashed, time.monotonic() - start)


def _prune(engine: Engine, repo: str, keep: str) -> None:
    """Drop all but the newest KEEP_BUILDS hashed builds of ``repo`` and dangling layers."""
    rows = engine.docker("image", "ls", repo, "--format", "{{.Repository}}:{{.Tag}}").stdout
    old = [ref for ref in rows.split() if ref != keep][KEEP_BUILDS - 1:]
    if old:
        engine.docker("rmi", *old, check=False)
    engine.docker("image", "prune", "-f", check=False)


# ---------------------------------------------------------------------------
# compose.yaml -> docker run


class ComposeError(AssertionError):
    """compose.yaml holds something this translation does not know: extend it, don't skip."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}``,
    nested in defaults.

    >>> interpolate("${A:-x}:${B-y}:${C:-${D:-z}}:$$A", {"A": "", "B": ""})
    'x::z:$A'
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_substitute(text[i + 2:end], env))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if not m:
                raise ComposeError(f"invalid interpolation at {text[i:]!r}")
            out.append(env.get(m.group(), ""))
            i = m.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text.startswith("${", j):
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ComposeError(f"unclosed ${{ in {text!r}")


def _substitute(expr: str, env: Mapping[str, str]) -> str:
    m = _NAME.match(expr)
    if not m:
        raise ComposeError(f"invalid interpolation ${{{expr}}}")
    name, op = m.group(), expr[m.end():]
    value = env.get(name)
    if not op:
        return value or ""
    for sep in (":-", "-", ":?", "?", ":+", "+"):
        if op.startswith(sep):
            arg = op[len(sep):]
            unset = value is None or (sep.startswith(":") and value == "")
            if sep.endswith("-"):
                return interpolate(arg, env) if unset else str(value)
            if sep.endswith("?"):
                if unset:
                    raise ComposeError(f"required variable {name} is missing: {arg}")
                return str(value)
            return "" if unset else interpolate(arg, env)
    raise ComposeError(f"invalid interpolation ${{{expr}}}")


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(env: Mapping[str, str], path: Path = COMPOSE) -> dict[str, Any]:
    """compose.yaml, parsed and interpolated with exactly ``env`` (as if the shell and
    ``.env`` held those variables and no others)."""
    data: dict[str, Any] = _interpolate_tree(yaml.safe_load(path.read_text()), env)
    return data


# Keys of a service and what running it here does with them.
_IGNORED = {
    "build": "the image is built by build()",
    "image": "the image to run",
    "expose": "no meaning on the host network: the listen address picks the port",
    "depends_on": "the tests start what a service needs first",
    "profiles": "the tests choose the services",
    "networks": "compose's project network does not exist here: see run_options' network",
}


@dataclass
class RunOptions:
    """A service's ``docker run`` flags, its image and its command (the args after it)."""

    flags: list[str]
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, *extra_flags: str, extra_command: Sequence[str] = ()) -> list[str]:
        return ["run", *self.flags, *extra_flags, self.image, *self.command, *extra_command]

    def with_env(self, overrides: Mapping[str, str]) -> RunOptions:
        """The same options with these variables' values replaced (each must be set)."""
        missing = set(overrides) - set(self.env)
        if missing:
            raise ComposeError(f"not in the service's environment: {sorted(missing)}")
        flags = list(self.flags)
        for i in range(len(flags) - 1):
            key = flags[i + 1].partition("=")[0]
            if flags[i] == "-e" and key in overrides:
                flags[i + 1] = f"{key}={overrides[key]}"
        return RunOptions(flags, self.image, list(self.command), {**self.env, **overrides})


def run_options(model: Mapping[str, Any], service: str, *, project_dir: Path = REPO,
                secret_files: Mapping[str, Path] | None = None,
                network: str = "host") -> RunOptions:
    """The ``docker run`` flags that give a container ``service``'s options.

    ``secret_files`` replaces a secret's ``file:`` (the tests do not write ./secrets/);
    mounted as Compose mounts file secrets: a read-only bind at ``/run/secrets/<name>``.
    A service without ``network_mode`` gets ``network`` (compose's project network does
    not exist here).
    """
    spec: dict[str, Any] = dict(model["services"][service])
    flags: list[str] = []
    env: dict[str, str] = {}
    unknown = sorted(set(spec) - set(_IGNORED) - set(_TRANSLATED))
    if unknown:
        raise ComposeError(f"services.{service}: no docker run translation for {unknown}")
    pid = spec.get("pid")
    if pid:
        flags += ["--pid", str(pid)]
    flags += ["--network", str(spec.get("network_mode") or network)]
    if spec.get("restart"):
        flags += ["--restart", str(spec["restart"])]
    if spec.get("user"):
        flags += ["--user", str(spec["user"])]
    if spec.get("read_only"):
        flags.append("--read-only")
    for path in _as_list(spec.get("tmpfs")):
        flags += ["--tmpfs", str(path)]
    for opt in spec.get("security_opt", []):
        flags += ["--security-opt", str(opt)]
    for cap in spec.get("cap_add", []):
        flags += ["--cap-add", str(cap)]
    for cap in spec.get("cap_drop", []):
        flags += ["--cap-drop", str(cap)]
    raw_env = spec.get("environment") or {}
    if isinstance(raw_env, list):
        raw_env = dict(item.partition("=")[::2] for item in raw_env)
    for key, value in sorted(raw_env.items()):
        env[str(key)] = "" if value is None else _scalar(value)
        flags += ["-e", f"{key}={env[str(key)]}"]
    for volume in spec.get("volumes", []):
        flags += ["--mount", _mount(volume, project_dir)]
    for secret in spec.get("secrets", []):
        flags += ["--mount", _secret(model, secret, project_dir, secret_files or {})]
    if "healthcheck" in spec:
        flags += _healthcheck(spec["healthcheck"])
    if spec.get("entrypoint") is not None:
        flags += ["--entrypoint", shlex.join(_as_command(spec["entrypoint"]))]
    command = _as_command(spec.get("command") or [])
    return RunOptions(flags, str(spec["image"]), command, env)


_TRANSLATED = {"pid", "network_mode", "restart", "user", "read_only", "tmpfs", "security_opt",
               "cap_add", "cap_drop", "environment", "volumes", "secrets", "healthcheck",
               "entrypoint", "command"}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):  # YAML true -> "true", as Compose writes it
        return "true" if value else "false"
    return str(value)


def _as_command(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _host_path(source: str, project_dir: Path) -> str:
    path = Path(os.path.expanduser(source))
    return str(path if path.is_absolute() else (project_dir / path).resolve())


def _mount(volume: Any, project_dir: Path) -> str:
    if isinstance(volume, str):  # short syntax: SOURCE:TARGET[:MODE]
        parts = volume.split(":")
        if len(parts) < 2 or not parts[0].startswith((".", "/", "~")):
            raise ComposeError(f"volume {volume!r}: only host paths are translated")
        source, target = parts[0], parts[1]
        modes = parts[2].split(",") if len(parts) > 2 else []
        opts = [f"type=bind,source={_host_path(source, project_dir)},target={target}"]
        if "ro" in modes:
            opts.append("readonly")
        opts += [f"bind-propagation={m}" for m in modes
                 if m in ("shared", "rshared", "slave", "rslave", "private", "rprivate")]
        return ",".join(opts)
    if volume.get("type") != "bind":
        raise ComposeError(f"volume {volume!r}: only bind mounts are translated")
    opts = [f"type=bind,source={_host_path(volume['source'], project_dir)},"
            f"target={volume['target']}"]
    if volume.get("read_only"):
        opts.append("readonly")
    propagation = (volume.get("bind") or {}).get("propagation")
    if propagation:
        opts.append(f"bind-propagation={propagation}")
    return ",".join(opts)


def _secret(model: Mapping[str, Any], secret: Any, project_dir: Path,
            secret_files: Mapping[str, Path]) -> str:
    name = secret if isinstance(secret, str) else secret["source"]
    target = name if isinstance(secret, str) else secret.get("target", name)
    if name in secret_files:
        source = str(secret_files[name])
    else:
        defined = model["secrets"][name]
        if "file" not in defined:
            raise ComposeError(f"secrets.{name}: only file secrets are translated")
        source = _host_path(defined["file"], project_dir)
    if not Path(source).is_file():
        raise ComposeError(f"secrets.{name}: {source} does not exist")
    if not target.startswith("/"):
        target = f"/run/secrets/{target}"
    # Compose (without Swarm) bind-mounts the file read-only; uid/gid/mode do not apply.
    return f"type=bind,source={source},target={target},readonly"


def _healthcheck(check: Mapping[str, Any]) -> list[str]:
    if check.get("disable"):
        return ["--no-healthcheck"]
    flags: list[str] = []
    test = check.get("test")
    if test is not None:
        test = [test] if isinstance(test, str) else list(test)
        if test[0] == "NONE":
            return ["--no-healthcheck"]
        if test[0] == "CMD":  # docker run only takes a shell command: the same argv, quoted
            flags += ["--health-cmd", shlex.join(test[1:])]
        elif test[0] == "CMD-SHELL":
            flags += ["--health-cmd", test[1]]
        else:
            flags += ["--health-cmd", " ".join(test)]
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("retries", "--health-retries"),
                      ("start_period", "--health-start-period")):
        if key in check:
            flags += [flag, str(check[key])]
    return flags


# ---------------------------------------------------------------------------
# Containers


@dataclass
class Container:
    """A running container whose stackmon (or demo app) listens on 127.0.0.1:``port``."""

    engine: Engine
    name: str
    port: int
    scheme: str = "http"

    def url(self, path: str = "/metrics") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def get(self, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url(path), timeout=30)

    def scrape(self) -> Samples:
        status, _, body = self.get("/metrics")
        assert status == 200, f"{self.name}: /metrics answered {status}: {body[:300]!r}"
        return Samples.parse(body.decode())

    def logs(self) -> str:
        return self.engine.logs(self.name)

    def health(self) -> str:
        return self.engine.health(self.name)

    def stop(self, timeout: int = 10) -> tuple[float, int]:
        """``docker stop``: (seconds it took, the container's exit code)."""
        start = time.monotonic()
        self.engine.docker("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        took = time.monotonic() - start
        return took, int(self.engine.inspect(self.name)["State"]["ExitCode"])

    def remove(self) -> None:
        self.engine.docker("rm", "-f", "-v", self.name, check=False)


def run(engine: Engine, options: RunOptions, name: str, port: int, *extra_flags: str,
        extra_command: Sequence[str] = (), path: str | None = "/-/healthy",
        scheme: str = "http") -> Container:
    """``docker run -d`` with a service's options; waits until ``path`` answers on
    127.0.0.1:``port`` (or fails with the container's logs when it exits); with no
    ``path``, returns once it runs."""
    engine.docker("rm", "-f", name, check=False)
    engine.docker(*options.argv("-d", "--name", name, *extra_flags,
                                extra_command=extra_command))
    container = Container(engine, name, port, scheme)

    def serving() -> bool:
        state = engine.inspect(name)["State"]
        if not state["Running"]:
            raise AssertionError(f"{name} exited {state['ExitCode']}:\n{container.logs()}")
        if path is None:
            return True
        with contextlib.suppress(OSError):
            return container.get(path)[0] < 500 if scheme == "http" else bool(
                _tls_get(container.url(path)))
        return False
    wait_for(serving, timeout=60, interval=0.2, what=f"{name} to serve {path}")
    return container


def _tls_get(url: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return int(resp.status)


# ---------------------------------------------------------------------------
# The suite's servers, with passwords


@dataclass
class Accounts:
    """Accounts with passwords on the suite's private PostgreSQL and Redis, and the files
    compose's secrets would hold (``secrets/<name>``: a 0700 directory, 0644 files, as
    scripts/make-secrets.sh makes them)."""

    pg_role: str
    redis_user: str
    broker_user: str
    passwords: dict[str, str]  # secret name -> password
    secret_files: dict[str, Path]
    pg_host_port: str  # 127.0.0.1:23817
    redis_host_port: str
    broker_db: str

    def stackmon_env(self, checks_file: Path) -> dict[str, str]:
        """What a user puts in .env for compose's ``stackmon`` to watch these servers
        (docs/deployment.md, Compose): their addresses and the service checks file."""
        return {
            "STACKMON_POSTGRES_DSN":
                f"postgresql://{self.pg_role}@{self.pg_host_port}/postgres?sslmode=disable",
            "STACKMON_REDIS_URL": f"redis://{self.redis_user}@{self.redis_host_port}/0",
            "STACKMON_CELERY_BROKER_URL":
                f"redis://{self.broker_user}@{self.redis_host_port}/{self.broker_db}",
            "SERVICE_CHECKS_FILE": str(checks_file),
        }


PG_ROLE = "stackmon_docker"
REDIS_USER = "stackmon-docker"
BROKER_USER = "stackmon-broker"


@contextlib.contextmanager
def accounts(pg_dsn: str, redis_url: str, broker_url: str, secrets_dir: Path
             ) -> Iterator[Accounts]:
    """A PostgreSQL role that must log in with its password (scram-sha-256, as
    tests/integration/test_postgres_cluster.py does), a Redis ACL user with the rules
    docs/redis.md gives and a broker user (as tests/integration/test_redis_auth.py does),
    each with a random password. Removed afterwards."""
    passwords = {name: "Pw-" + random_secrets.token_urlsafe(18)
                 for name in ("postgres_password", "redis_password", "broker_password")}
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    files = {}
    for name, password in passwords.items():
        files[name] = secrets_dir / name
        files[name].write_text(password + "\n")
        files[name].chmod(0o644)
    cluster = backends.pg()
    hba = cluster.datadir / "pg_hba.conf"
    original_hba = hba.read_text()
    hba.write_text(f"host all {PG_ROLE} 127.0.0.1/32 scram-sha-256\n" + original_hba)
    cluster.sql(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{passwords['postgres_password']}' "
                "IN ROLE pg_monitor")
    cluster.sql("SELECT pg_reload_conf()")
    admin = redis.Redis.from_url(redis_url)
    acl = re.search(r"^ACL SETUSER stackmon on >\S+ (.+)$",
                    (REPO / "docs" / "redis.md").read_text(), re.M)
    assert acl, "docs/redis.md has no ACL SETUSER stackmon line"
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", REDIS_USER, "on", f">{passwords['redis_password']}",
        *acl.group(1).split())
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", BROKER_USER, "on", f">{passwords['broker_password']}",
        "~*", "&*", "+@all")
    try:
        yield Accounts(PG_ROLE, REDIS_USER, BROKER_USER, passwords, files,
                       pg_dsn.split("@", 1)[1].split("/", 1)[0],
                       redis_url.split("//", 1)[1].split("/", 1)[0],
                       broker_url.rsplit("/", 1)[1])
    finally:
        hba.write_text(original_hba)
        cluster.sql("SELECT pg_reload_conf()")
        cluster.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE usename = '{PG_ROLE}'")
        cluster.sql(f"DROP ROLE IF EXISTS {PG_ROLE}")
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "DELUSER", REDIS_USER, BROKER_USER)
        admin.close()
