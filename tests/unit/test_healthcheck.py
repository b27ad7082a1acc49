"""``stackmon healthcheck``: asks /-/healthy where the exporter's settings say it listens
(flags, env, config file; wildcards on loopback; HTTPS from the web config), finds the
exporter of its own container, and answers 0 or 1 with one line."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from exporter import healthcheck, settings
from exporter.collectors.base import CollectorSet
from exporter.http.server import App, Server, make_server
from exporter.http.webconfig import load_web_config
from tests.helpers.exporter import REPO, free_port, wait_for
from tests.helpers.services import self_signed_cert

CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[Server] = []

    def start(address: str, web_config: str | None = None) -> Server:
        app = App(CollectorSet([]), web_config=load_web_config(web_config))
        app.ready.set()
        server = make_server(address, app, load_web_config(web_config).ssl_context)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


class Serve(Protocol):  # the fixture's type
    def __call__(self, address: str, web_config: str | None = None) -> Server: ...


class Run(Protocol):  # the fixture's type
    def __call__(self, args: list[str], env: dict[str, str] | None = None) -> int: ...


@pytest.fixture
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``healthcheck.main`` with a clean environment and an empty /proc (this machine may
    run other exporters, which it would otherwise find and check)."""
    empty = fake_proc(tmp_path_factory.mktemp("empty"), {})

    def call(args: list[str], env: dict[str, str] | None = None) -> int:
        return healthcheck.main(args, {**CLEAN_ENV, **(env or {})}, empty)
    return call


@pytest.mark.parametrize(("listen", "url"), [
    (":9860", "http://127.0.0.1:9860/-/healthy"),
    ("0.0.0.0:9100", "http://127.0.0.1:9100/-/healthy"),
    ("[::]:9100", "http://[::1]:9100/-/healthy"),
    ("127.0.0.2:9100", "http://127.0.0.2:9100/-/healthy"),
    ("[::1]:9100", "http://[::1]:9100/-/healthy"),
    ("localhost:9100", "http://localhost:9100/-/healthy"),
])
def test_wildcards_are_asked_on_loopback(listen: str, url: str) -> None:
    assert healthcheck.target(listen, None).url == url


def test_healthy_at_a_non_default_address(run: Run, serve: Serve,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    serve(f"127.0.0.1:{port}")
    assert run([f"--web.listen-address=127.0.0.1:{port}"]) == 0
    assert capsys.readouterr().out == \
        f"healthy: http://127.0.0.1:{port}/-/healthy answered 200\n"


def test_wildcard_listener_is_found_on_loopback(run: Run, serve: Serve) -> None:
    port = free_port()
    serve(f":{port}")
    assert run([f"--web.listen-address=:{port}"]) == 0


def test_address_from_env_and_from_config_file(run: Run, serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    serve(f"127.0.0.1:{port}")
    assert run([], {"STACKMON_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"}) == 0
    config = tmp_path / "stackmon.yml"
    config.write_text(f'web:\n  listen_address: "127.0.0.1:{port}"\n')
    assert run([f"--config.file={config}"]) == 0
    assert run([], {"STACKMON_CONFIG_FILE": str(config)}) == 0


def test_refused_is_unhealthy_with_one_line(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert run([f"--web.listen-address=127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"stackmon healthcheck: unhealthy: http://127.0.0.1:{port}/-/healthy: "
                   "connection refused\n")


def test_an_answer_other_than_200_is_unhealthy(run: Run, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run([f"--web.listen-address=127.0.0.1:{server.server_port}"]) == 1
        assert "/-/healthy answered 503" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_a_hung_server_is_unhealthy_within_the_timeout(run: Run,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    with socket.socket() as listener:  # accepts (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert run(["--timeout=0.3", f"--web.listen-address=127.0.0.1:{port}"]) == 1
    assert "no answer within 0.3 s" in capsys.readouterr().err


def test_tls_from_the_web_config_file(run: Run, serve: Serve, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cert, key, _ = self_signed_cert(tmp_path, 30)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    port = free_port()
    serve(f"127.0.0.1:{port}", str(web))
    args = [f"--web.listen-address=127.0.0.1:{port}"]
    assert run([*args, f"--web.config.file={web}"]) == 0
    assert f"https://127.0.0.1:{port}/-/healthy answered 200" in capsys.readouterr().out
    assert run(args) == 1  # plain HTTP to a TLS server: not what the exporter serves


def test_tls_with_required_client_certificates(run: Run, serve: Serve, tmp_path: Path) -> None:
    """The server wants a client certificate signed by its CA: the health check shows
    the server's own (relative paths resolve beside the web config file)."""
    cert, key, _ = self_signed_cert(tmp_path, 30)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
                   f"  client_ca_file: {cert.name}\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n")
    port = free_port()
    serve(f"127.0.0.1:{port}", str(web))
    assert run([f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"]) == 0


def test_bad_settings_are_unhealthy_with_one_line(run: Run,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--web.listen-address=nonsense"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "web.listen_address" in err, err


def test_help_through_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", "healthcheck", "--help"],
                          capture_output=True, text=True, timeout=30, cwd=REPO, env=CLEAN_ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: stackmon healthcheck [--timeout=SECONDS]")


# ---------------------------------------------------------------------------
# Finding the exporter of this container


def fake_proc(tmp_path: Path, processes: dict[int, tuple[str, list[str], dict[str, str]]],
              own_ns: str = "mnt:[4026532001]") -> Path:
    """A /proc tree: pid -> (mount namespace, argv, environment); an environment with
    the key "!" has no environ file (a process we may not read)."""
    proc = tmp_path / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    (proc / "self" / "ns" / "mnt").symlink_to(own_ns)
    for pid, (ns, argv, env) in processes.items():
        base = proc / str(pid)
        (base / "ns").mkdir(parents=True)
        (base / "ns" / "mnt").symlink_to(ns)
        (base / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if "!" not in env:
            (base / "environ").write_bytes(
                b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
    return proc


OURS, OTHER = "mnt:[4026532001]", "mnt:[4026531840]"
PYTHON = "/usr/local/bin/python3"
SCRIPT = "/usr/local/bin/stackmon"


def test_pid_1_exporter_with_its_flags_and_environment(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        1: (OURS, [PYTHON, SCRIPT, "--web.listen-address=127.0.0.1:9100"],
            {"STACKMON_LOG_LEVEL": "debug", "A": "b=c"}),
        7: (OURS, [PYTHON, SCRIPT, "healthcheck"], {}),  # an earlier check, still running
        42: (OTHER, [PYTHON, SCRIPT, "--web.listen-address=:9860"], {}),
    })
    found = healthcheck.find_exporter(proc)
    assert found == healthcheck.Invocation(["--web.listen-address=127.0.0.1:9100"],
                                           {"STACKMON_LOG_LEVEL": "debug", "A": "b=c"}, 1)


def test_the_only_exporter_of_the_namespace_under_pid_host(tmp_path: Path) -> None:
    """--pid=host: PID 1 is the host's init; other containers' exporters are in other
    mount namespaces; one we may not read is skipped."""
    proc = fake_proc(tmp_path, {
        1: (OTHER, ["/sbin/init"], {}),
        300: (OTHER, [PYTHON, SCRIPT, "--web.listen-address=10.0.0.1:9860"], {}),
        301: (OURS, ["python", "-m", "exporter", "--no-collector.host"], {"!": ""}),
        302: (OURS, ["/usr/local/bin/stackmon", "--web.listen-address=127.0.0.1:9200"], {}),
    })
    found = healthcheck.find_exporter(proc)
    assert found is not None and found.pid == 302 and found.args == [
        "--web.listen-address=127.0.0.1:9200"]


def test_several_exporters_need_flags(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        10: (OURS, [PYTHON, SCRIPT, "--web.listen-address=127.0.0.1:9100"], {}),
        11: (OURS, [PYTHON, "-u", "-m", "exporter"], {}),
    })
    with pytest.raises(settings.ConfigError, match=r"several stackmon processes here "
                                                   r"\(pids 10, 11\)"):
        healthcheck.find_exporter(proc)
    assert healthcheck.find_exporter(fake_proc(tmp_path / "none", {})) is None


@pytest.mark.parametrize(("argv", "args"), [
    ([SCRIPT], []),
    (["stackmon", "--a", "b"], ["--a", "b"]),
    ([PYTHON, "-u", SCRIPT, "--x"], ["--x"]),
    (["python3.11", "-m", "exporter", "--x"], ["--x"]),
    ([PYTHON, SCRIPT, "healthcheck"], None),
    ([PYTHON, "-m", "celery", "worker"], None),
    (["gunicorn", "stackmon"], None),
    ([], None),
])
def test_exporter_args(argv: list[str], args: list[str] | None) -> None:
    assert healthcheck.exporter_args(argv) == args


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare")
                    or not shutil.which("nsenter"),
                    reason="a mount namespace of its own needs root, unshare and nsenter")
def test_finds_the_exporter_in_its_mount_namespace_for_real() -> None:
    """An exporter alone in a new mount namespace, started with its address as a flag
    only; ``stackmon healthcheck`` without arguments, entered into that namespace, finds
    it through the real /proc. Outside (this machine runs other exporters), it does not."""
    port = free_port()
    env = {**CLEAN_ENV, "PYTHONPATH": str(REPO)}
    exporter = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "exporter",
         f"--web.listen-address=127.0.0.1:{port}", "--no-collector.host"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        wait_for(listening, timeout=20, what="the exporter to listen")
        check = subprocess.run(
            ["nsenter", "-t", str(exporter.pid), "-m", sys.executable, "-m", "exporter",
             "healthcheck"], env=env, capture_output=True, text=True, timeout=30, cwd=REPO)
        assert (check.returncode, check.stdout) == (
            0, f"healthy: http://127.0.0.1:{port}/-/healthy answered 200\n"), check.stderr
    finally:
        exporter.terminate()
        exporter.wait(timeout=15)
