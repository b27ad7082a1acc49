"""Start a real stackmon process on a free loopback port and scrape it."""

from __future__ import annotations

import atexit
import fnmatch
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
ALLOWLIST = REPO / "promtool-allowlist.txt"
# Every log file of an exporter this session started: tests/conftest.py holds each line to
# strict logfmt (tests/helpers/logfmt.py) when the session ends.
LOG_FILES: list[Path] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def stop_processes(*procs: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM each process that still runs, then wait; one still there after ``timeout``
    seconds is killed, so a hung child never outlives the test."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_get(url: str, headers: Mapping[str, str] | None = None,
             timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@dataclass
class Samples:
    """Parsed scrape: ``samples[name]`` is a list of (labels, value)."""

    text: str
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Samples:
        out = cls(text)
        # The parser names counter samples "<name>_total" even where the text has no
        # _total (postgres_exporter's pg_stat_database_xact_commit): keep the names written.
        written = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
                   if line and not line.startswith("#")}
        for family in text_string_to_metric_families(text):
            out.types[family.name] = family.type
            for s in family.samples:
                name = s.name
                if name not in written and name.endswith("_total") and name[:-6] in written:
                    name = name[:-6]
                out.samples.setdefault(name, []).append((dict(s.labels), s.value))
        return out

    def get(self, name: str, **labels: str) -> float:
        """The one sample of ``name`` whose labels include ``labels``."""
        found = [v for lbl, v in self.samples.get(name, [])
                 if all(lbl.get(k) == want for k, want in labels.items())]
        if len(found) != 1:
            raise KeyError(f"{name}{labels}: {len(found)} samples match")
        return found[0]

    def has(self, name: str, **labels: str) -> bool:
        return any(all(lbl.get(k) == want for k, want in labels.items())
                   for lbl, _ in self.samples.get(name, []))


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def get(self, path: str = "/metrics", **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, **kw)

    def scrape(self, path: str = "/metrics", headers: Mapping[str, str] | None = None
               ) -> Samples:
        status, _, body = self.get(path, headers=headers)
        assert status == 200, f"{path} answered {status}: {body[:300]!r}"
        return Samples.parse(body.decode())

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_exporter(args: list[str], env: Mapping[str, str] | None = None,
                   port: int | None = None, scheme: str = "http",
                   wait: bool = True) -> Exporter:
    """Run ``python -m exporter`` on a free port; wait for /-/healthy."""
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="stackmon-", suffix=".log")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", *args],
        stdout=log_fd, stderr=log_fd, env=full_env, cwd=REPO)
    os.close(log_fd)
    # Kept for assertions and failure messages while the tests run; removed when they end.
    atexit.register(Path(log_name).unlink, missing_ok=True)
    LOG_FILES.append(Path(log_name))
    exp = Exporter(proc, port, Path(log_name), scheme)
    if wait:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited {proc.returncode}: {exp.logs()}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        try:
            wait_for(healthy, timeout=20, what="exporter to listen")
        except AssertionError:
            exp.stop()
            raise
    return exp


def exporter_fixture(args: list[str], env: Mapping[str, str] | None = None
                     ) -> Iterator[Exporter]:
    exp = start_exporter(args, env)
    try:
        yield exp
    finally:
        exp.stop()


def allowlist() -> set[str]:
    return {line.strip() for line in ALLOWLIST.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def promtool_complaints(text: str) -> list[str]:
    """Lines `promtool check metrics` prints about ``text``, minus the allow-listed names."""
    proc = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60)
    lines = (proc.stdout + proc.stderr).decode().splitlines()
    allowed = allowlist()
    return [line for line in lines if line.strip() and not allowlisted(line.split()[0], allowed)]


def allowlisted(name: str, allowed: set[str]) -> bool:
    """Exact names, or a ``prefix_*`` glob for a family of anchor names that depends on
    the kernel (node_exporter's ``node_memory_*`` follows /proc/meminfo's fields)."""
    return name in allowed or any(fnmatch.fnmatchcase(name, p) for p in allowed if "*" in p)
