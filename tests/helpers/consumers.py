"""Real consumers of the exporter's bodies for the e2e tests: a Prometheus server with a
config of the test's making, and VictoriaMetrics (Debian ``victoria-metrics``), each in a
temp dir on a free loopback port, and the series they stored.

Both answer the Prometheus HTTP API (``/api/v1/series``, ``/api/v1/query``), so one
function reads the series of either.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.exporter import free_port, http_get, stop_processes, wait_for

PROMETHEUS = shutil.which("prometheus")
VICTORIA_METRICS = shutil.which("victoria-metrics")

# A series: its labels, without the ones the scrape config sets (job, instance).
SeriesId = frozenset[tuple[str, str]]
TARGET_LABELS = ("job", "instance")


@dataclass
class Server:
    """A Prometheus or VictoriaMetrics process this test owns."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str | Sequence[str]) -> object:
        query = urllib.parse.urlencode(params, doseq=True)
        status, _, body = http_get(f"{self.url}{path}?{query}")
        assert status == 200, f"{self.name} {path}: {status} {body[:500]!r}"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]

    def series(self, match: str, start: float, end: float) -> set[SeriesId]:
        """Every series matching ``match`` with a sample in [start, end]."""
        data = self.api("/api/v1/series", **{"match[]": match, "start": f"{start:.3f}",
                                              "end": f"{end:.3f}"})
        assert isinstance(data, list)
        return {frozenset((k, v) for k, v in labels.items() if k not in TARGET_LABELS)
                for labels in data}

    def stop(self) -> None:
        stop_processes(self.proc)


def _start(name: str, args: list[str], root: Path, ready: str) -> Server:
    log_path = root / f"{name}.log"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    port = args[-1].rsplit(":", 1)[1]
    server = Server(name, proc, f"http://127.0.0.1:{port}", log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.returncode}: {server.logs()[-2000:]}")
        return http_get(server.url + ready, timeout=2)[0] == 200
    try:
        wait_for(up, timeout=60, what=f"{name} to be ready")
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def prometheus(root: Path, config: str) -> Iterator[Server]:
    """Prometheus with ``config`` (prometheus.yml text), its data under ``root``."""
    if PROMETHEUS is None:
        raise AssertionError("prometheus is not installed; run scripts/test-services.sh")
    root.mkdir(parents=True, exist_ok=True)
    (root / "prometheus.yml").write_text(config)
    server = _start("prometheus", [
        PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{free_port()}"], root, "/-/ready")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def victoria_metrics(root: Path, flags: Sequence[str] = (),
                     scrape_config: str | None = None) -> Iterator[Server]:
    """Single-node VictoriaMetrics with ``flags``, scraping what ``scrape_config`` (a
    prometheus.yml-style text) lists, if given; remote_write goes to
    ``<url>/api/v1/write``.  Queries see samples at once (``-search.latencyOffset=0s``;
    its default hides the last 30 s)."""
    if VICTORIA_METRICS is None:
        raise AssertionError("victoria-metrics is not installed; run scripts/test-services.sh")
    root.mkdir(parents=True, exist_ok=True)
    args = [VICTORIA_METRICS, f"-storageDataPath={root / 'data'}",
            "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN", *flags]
    if scrape_config is not None:
        (root / "scrape.yml").write_text(scrape_config)
        args.append(f"-promscrape.config={root / 'scrape.yml'}")
    args.append(f"-httpListenAddr=127.0.0.1:{free_port()}")
    server = _start("victoria-metrics", args, root, "/health")
    try:
        yield server
    finally:
        server.stop()
