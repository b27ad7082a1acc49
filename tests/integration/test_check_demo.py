"""``stackmon check`` against the compose demo's configuration prints all ok, without
Docker: the demo's services run as real local processes configured as compose.yaml
configures them, and both exporters' settings are read from compose.yaml itself.

What is read from ``docker-compose config`` (demo profile, defaults interpolated):

* postgres: the server options of its ``command`` (``-c track_io_timing=on``) and a
  password for the superuser ``postgres``, required on TCP (scram), as the image's
  entrypoint sets up with ``POSTGRES_PASSWORD_FILE``;
* redis: the ``redis-server`` arguments of its ``command`` (``--appendonly yes``,
  ``--requirepass`` with the secret);
* worker and beat: their ``command`` and ``environment``, started through the demo
  image's entrypoint (demo/docker-entrypoint.py puts the secrets into the URLs);
* app and nginx: the Django app (``runserver``: the image's gunicorn is not installed
  here) behind nginx with demo/nginx.conf (``proxy_pass`` to the app's port);
* stackmon: its ``command`` and ``environment``, the mounted deploy/compose/stackmon-demo.yml;
* stackmon-host: its ``command`` and its volumes (the host's /proc, /sys and / bind-mounted
  read-only, / with rslave propagation) in a mount namespace of its own, in the host's
  PID and network namespaces (``pid: host``, ``network_mode: host``), as uid 10001 (the
  image's user).

Differences from compose, none of them seen by the checks: service names resolve to
127.0.0.1 and free ports instead of a Docker network; the container paths (/host/proc,
/rootfs, /run/secrets, /etc/stackmon) live under a temp dir; PostgreSQL is Debian's 15
(the image: 17.6), Redis and nginx Debian's; the processes run from this checkout's
virtualenv rather than the images; no Docker seccomp profile (Docker's default one
allows adjtimex and clock_adjtime, which the timex check needs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.check import check_command, run_command
from tests.helpers.exporter import REPO, free_port, http_get, stop_processes, wait_for
from tests.helpers.pgcluster import Cluster
from tests.helpers.redis_server import RedisServer
from tests.helpers.services import NGINX

pytest.importorskip("django_prometheus", reason="the demo extra is not installed")

COMPOSE = REPO / "compose.yaml"
SECRETS = "/run/secrets/"
IMAGE_UID = "10001"  # the stackmon image's USER (Dockerfile)


def compose_model(tmp: Path) -> dict[str, Any]:
    """The stack as docker-compose resolves it: demo profile, defaults interpolated."""
    tool = Path(sys.executable).parent / "docker-compose"
    env_file = tmp / "empty.env"
    env_file.write_text("")
    proc = subprocess.run([str(tool) if tool.exists() else "docker-compose",
                           "--project-directory", str(REPO), "-f", str(COMPOSE),
                           "--env-file", str(env_file), "--profile", "demo", "config",
                           "--format", "json"], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp)},
                          check=False)
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


@dataclass
class Platform:
    """The demo's services as local processes; ``addresses`` maps compose's host:port."""

    tmp: Path
    model: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster: Cluster | None = None
    redis: RedisServer | None = None

    def service(self, name: str) -> dict[str, Any]:
        svc: dict[str, Any] = self.model["services"][name]
        return svc

    def secret_file(self, container_path: str) -> str:
        """A /run/secrets/<name> path as a local file holding that secret."""
        name = container_path.removeprefix(SECRETS)
        path = self.tmp / "secrets" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(self.secrets[name] + "\n")
        return str(path)

    def local(self, text: str) -> str:
        """compose's host:port (postgres:5432) and /run/secrets paths, as run here."""
        for remote, here in self.addresses.items():
            text = text.replace(remote, here)
        return re.sub(r"/run/secrets/\w+", lambda m: self.secret_file(m.group(0)), text)

    def env(self, name: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("STACKMON_", "DEMO_"))}
        base.update({k: self.local(str(v))
                     for k, v in (self.service(name).get("environment") or {}).items()})
        return base

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=log,
                                           start_new_session=True))
        log.close()

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        stop_processes(*reversed(self.procs))
        if self.redis is not None:
            self.redis.cleanup()
        if self.cluster is not None:
            self.cluster.destroy()


def start_postgres(p: Platform) -> None:
    command = [str(a) for a in p.service("postgres").get("command") or []]
    assert command[:1] == ["postgres"], command
    options = [f"-c {command[i + 1]}" for i, a in enumerate(command) if a == "-c"]
    p.cluster = cluster = Cluster.create(options)
    password = p.secrets["postgres_password"]
    cluster.sql(f"ALTER ROLE postgres PASSWORD '{password}'")
    # From here on only with the password, as stackmon and the demo connect.
    # The image's initdb with a password: password (scram) authentication over TCP.
    hba = Path(cluster.datadir) / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    cluster.sql("SELECT pg_reload_conf()")
    p.addresses["postgres:5432"] = f"127.0.0.1:{cluster.port}"


def start_redis(p: Platform) -> None:
    command = [str(a) for a in p.service("redis")["command"]]
    # compose runs the script with $$ as $; "$(cat /run/secrets/x)" is the secret x.
    script = command[command.index("-c") + 1].replace("$$", "$")
    script = re.sub(r'"\$\(cat /run/secrets/(\w+)\)"',
                    lambda m: shlex.quote(p.secrets[m.group(1)]), script)
    words = shlex.split(script)
    args = words[words.index("redis-server") + 1:]
    assert args[args.index("--requirepass") + 1] == p.secrets["redis_password"], args
    assert "--appendonly" in args, args
    p.redis = RedisServer(*args).start()
    p.addresses["redis:6379"] = f"127.0.0.1:{p.redis.port}"


def start_celery(p: Platform, name: str) -> None:
    command = [p.local(str(a)).replace("/tmp/", f"{p.tmp}/")
               for a in p.service(name)["command"]]
    assert command[0] == "celery", command
    entrypoint = [sys.executable, str(REPO / "demo" / "docker-entrypoint.py")]
    p.spawn(name, [*entrypoint, sys.executable, "-m", *command], p.env(name))


def start_app_and_nginx(p: Platform) -> None:
    port = free_port()
    env = p.env("app")
    entrypoint = [sys.executable, str(REPO / "demo" / "docker-entrypoint.py")]
    p.spawn("app", [*entrypoint, sys.executable, "-m", "demo.manage", "runserver",
                    "--noreload", f"127.0.0.1:{port}"], env)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=60,
                 interval=0.3, what="the demo app")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{p.log('app')}") from None
    p.addresses["app:8000"] = f"127.0.0.1:{port}"
    nginx_port = free_port()
    server = (REPO / "demo" / "nginx.conf").read_text()
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{nginx_port};")
    server = server.replace("http://app:8000", f"http://127.0.0.1:{port}")
    ndir = p.tmp / "nginx"
    ndir.mkdir()
    (ndir / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {ndir}/nginx.pid;\nevents {{}}\n"
        f"http {{ access_log off; client_body_temp_path {ndir}/body; proxy_temp_path "
        f"{ndir}/proxy; fastcgi_temp_path {ndir}/f; uwsgi_temp_path {ndir}/u; "
        f"scgi_temp_path {ndir}/s;\n{server}\n}}\n")
    p.spawn("nginx", [NGINX, "-p", str(ndir), "-c", str(ndir / "nginx.conf"), "-e",
                      str(ndir / "error.log")], dict(os.environ))
    p.addresses["nginx:8080"] = f"127.0.0.1:{nginx_port}"
    wait_for(lambda: http_get(f"http://127.0.0.1:{nginx_port}/healthz")[0] == 200,
             timeout=30, what="nginx in front of the app")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("compose-demo")
    model = compose_model(tmp)
    p = Platform(tmp, model, secrets={name: f"pw-{name}-{uuid.uuid4().hex[:8]}"
                                      for name in model["secrets"]})
    # As scripts/make-secrets.sh: the broker is the demo Redis, one password for both.
    p.secrets["broker_password"] = p.secrets["redis_password"]
    try:
        start_postgres(p)
        start_redis(p)
        start_app_and_nginx(p)
        start_celery(p, "worker")
        start_celery(p, "beat")
        assert p.redis is not None
        broker = p.redis.client(password=p.secrets["redis_password"], db=1)
        try:
            wait_for(lambda: broker.keys("_kombu.binding.celery*"), timeout=60, interval=0.3,
                     what="the demo worker on its broker")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{p.log('worker')}") from None
        yield p
    finally:
        p.stop()


def stackmon_config(p: Platform, container_path: str) -> str:
    """The file compose mounts at ``container_path``, with compose's addresses made local."""
    for volume in p.service("stackmon")["volumes"]:
        if volume["target"] == container_path:
            local = p.tmp / Path(container_path).name
            local.write_text(p.local(Path(volume["source"]).read_text()))
            return str(local)
    raise AssertionError(f"compose mounts nothing at {container_path}")


def test_backends_exporter_prints_all_ok(platform: Platform) -> None:
    svc = platform.service("stackmon")
    args = [str(a) for a in svc["command"]]
    args = [f"--config.file={stackmon_config(platform, a.split('=', 1)[1])}"
            if a.startswith("--config.file=") else a for a in args]
    env = {k: platform.local(str(v)) for k, v in svc["environment"].items()}
    env["STACKMON_LOG_LEVEL"] = "warning"
    run = run_command(check_command(["--format", "json", *args]), env)
    assert run.code == 0, run.explain()
    assert {k: f["status"] for k, f in run.findings.items()} == {
        k: "ok" for k in run.findings}, run.explain()
    checked = {(c, n) for c, n, _ in run.findings}
    assert {("postgres", "track_io_timing"), ("postgres", "pg_monitor"),
            ("redis", "slowlog"), ("redis", "config_get"), ("celery", "task_events"),
            ("celery", "inspect"), ("celery", "events"), ("services", "collect")} <= checked
    # The text table of the same run, for the eye: every row ok.
    table = run_command(check_command(args), env, parse=False)
    assert table.code == 0 and table.stdout.rstrip().splitlines()[-1].endswith(" ok"), table


def test_host_exporter_prints_all_ok(platform: Platform,
                                    request: pytest.FixtureRequest) -> None:
    """stackmon-host as compose runs it: the host's trees bind-mounted where its command
    says, read-only, the host's PID and network namespaces, the image's unprivileged user."""
    svc = platform.service("stackmon-host")
    assert (svc.get("pid"), svc.get("network_mode")) == ("host", "host")
    # The container's paths under a directory every user may enter (uid 10001 must reach
    # them, as / in the container; pytest's temp dirs are root's only).
    root = Path(tempfile.mkdtemp(prefix="stackmon-container-"))
    root.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    steps = []
    for volume in svc["volumes"]:
        target = root / volume["target"].lstrip("/")
        steps.append(f"mkdir -p {shlex.quote(str(target))} && mount --rbind "
                     f"{shlex.quote(volume['source'])} {shlex.quote(str(target))}")
        if (volume.get("bind") or {}).get("propagation") == "rslave":
            steps.append(f"mount --make-rslave {shlex.quote(str(target))}")
        if volume.get("read_only"):
            steps.append(f"mount -o remount,bind,ro {shlex.quote(str(target))}")
    args = []
    for a in map(str, svc["command"]):
        name, _, value = a.partition("=")
        if name.startswith("--path."):
            a = f"{name}={root}{value}"  # the container path, under the temp root
        args.append(a)
    assert shutil.which("setpriv"), "setpriv (util-linux) runs the check as the image's uid"
    inner = shlex.join(["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}",
                        "--clear-groups", "--", *check_command(["--format", "json", *args])])
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    env["STACKMON_LOG_LEVEL"] = "warning"
    run = run_command(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       " && ".join([*steps, f"exec {inner}"])], env)
    assert run.code == 0, run.explain()
    assert {k: f["status"] for k, f in run.findings.items()} == {
        ("host", name, ""): "ok" for name in ("collect", "procfs", "rootfs", "timex")}, \
        run.explain()
    assert f"{root}/host/proc" in run.finding("host", "procfs")["detail"] or \
        "host's PID namespace" in run.finding("host", "procfs")["detail"]


def test_the_demo_without_its_postgres_command_is_missing_io_timing(platform: Platform
                                                                   ) -> None:
    """The check above can fail: the demo's server started without compose's ``command``
    (the postgres image's defaults) has track_io_timing off, and the check says so."""
    cluster = platform.cluster
    assert cluster is not None
    compose_options = list(cluster.options)
    assert "-c track_io_timing=on" in compose_options
    cluster.stop()
    cluster.options = [o for o in compose_options if "track_io_timing" not in o]
    cluster.start()
    try:
        svc = platform.service("stackmon")
        env = {k: platform.local(str(v)) for k, v in svc["environment"].items()}
        run = run_command(check_command(["--format", "json", "--no-collector.host",
                                         "--no-collector.celery"]), env)
        assert run.code == 1 and run.status("postgres", "track_io_timing") == "missing", \
            run.explain()
    finally:
        cluster.stop()
        cluster.options = compose_options
        cluster.start()
