"""What a host-only exporter loads: bench/RESULTS.md ("Memory") measured each import.

prometheus_client (its package import loads its HTTP exposition, urllib and ssl: 12 MB),
ssl itself (5 MB), hashlib's OpenSSL (3.7 MB), importlib.metadata (4.6 MB) and PyYAML
(1.7 MB) must stay out of a process that serves host metrics without TLS, auth or a
config file; each is loaded when a feature needs it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.exporter import REPO

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;escaping=underscores,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=1.0.0;escaping=underscores;q=0.5,*/*;q=0.1")
PROBE = """
import json, sys
from exporter import cli
from exporter.collectors.host.collector import HostCollector
from exporter.collectors.host.settings import HostSettings
from exporter.collectors.base import CollectorSet
from exporter.http.server import App
from exporter.process import ProcessMetrics
app = App(CollectorSet([HostCollector(HostSettings())], extras=[ProcessMetrics().collect]))
headers = {}
body = app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "HTTP_ACCEPT_ENCODING": "gzip",
            "HTTP_ACCEPT": __ACCEPT__}, lambda status, h: headers.update(h))
ssl = sys.modules.get("ssl")
print(json.dumps({"modules": sorted(sys.modules), "ssl": type(ssl).__name__ if ssl else None,
                  "bytes": len(b"".join(body)), "type": headers["Content-Type"],
                  "gzip": headers.get("Content-Encoding")}))
"""


def probe(code: str = PROBE, accept: str = "") -> dict[str, object]:
    code = code.replace("__ACCEPT__", repr(accept))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("accept", ["", "text/plain;version=0.0.4;q=1,*/*;q=0.1",
                                    PROMETHEUS_ACCEPT])
def test_host_scrape_loads_no_heavy_module(accept: str) -> None:
    """Nor does a scrape in OpenMetrics, which Prometheus asks for first."""
    seen = probe(accept=accept)
    modules = set(seen["modules"])  # type: ignore[arg-type]
    assert seen["bytes"] > 1000
    assert seen["gzip"] == "gzip"
    assert str(seen["type"]).startswith(
        "application/openmetrics-text" if "openmetrics" in accept else "text/plain")
    heavy = {"prometheus_client", "_ssl", "_hashlib", "yaml", "importlib.metadata",
             "urllib.request", "psycopg", "redis", "celery"}
    assert not heavy & modules, heavy & modules
    assert seen["ssl"] == "_DeferredModule"  # http.client imported it; nothing used it


def test_deferred_ssl_loads_on_first_use() -> None:
    seen = probe("""
import json, sys, importlib.util
import exporter, http.client
import ssl
assert importlib.util.find_spec("ssl").name == "ssl"  # libraries may ask before using it
ctx = ssl.create_default_context()
from ssl import SSLContext
print(json.dumps({"modules": [], "ssl": type(sys.modules["ssl"]).__name__,
                  "same": isinstance(ctx, SSLContext) and isinstance(ctx, ssl.SSLContext),
                  "bytes": 0}))
""")
    assert seen["ssl"] == "module"
    assert seen["same"] is True


def test_process_metrics_match_prometheus_client() -> None:
    """Same families, HELP, types and order as prometheus_client's ProcessCollector (then
    the Go exporters' process_virtual_memory_max_bytes, tests/unit/test_process.py)."""
    from prometheus_client.process_collector import ProcessCollector

    from exporter.process import ProcessMetrics

    mine = [m for m in ProcessMetrics().collect()
            if m.name != "process_virtual_memory_max_bytes"]
    theirs = list(ProcessCollector(registry=None).collect())
    assert [(m.name, m.documentation, m.type) for m in mine] == \
        [(m.name, m.documentation, m.type) for m in theirs]
    values = {m.name: m.samples[0].value for m in mine}
    ref = {m.name: m.samples[0].value for m in theirs}
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert values[name] == ref[name]
    assert abs(values["process_resident_memory_bytes"] - ref["process_resident_memory_bytes"]) \
        < 20e6


def test_malloc_arenas_limited_unless_the_user_chose() -> None:
    from exporter import process

    seen = probe("""
import json, os
os.environ.pop("MALLOC_ARENA_MAX", None)
from exporter.process import limit_malloc_arenas
first = limit_malloc_arenas()
os.environ["MALLOC_ARENA_MAX"] = "4"
print(json.dumps({"modules": [], "ssl": None, "bytes": 0, "set": first,
                  "user": limit_malloc_arenas()}))
""")
    assert seen["set"] is True  # glibc (Debian)
    assert seen["user"] is False
    assert process.MALLOC_ARENAS == 2


@pytest.mark.parametrize("accept", [
    "", "*/*", PROMETHEUS_ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1",
    "application/openmetrics-text", "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=bogus",
    "application/openmetrics-text;version=0.0.1,text/plain",
    "application/openmetrics-text;version=2.0.0", "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=values", "application/json, text/html",
    " application/openmetrics-text ; version=1.0.0 ;q=0.9",
])
def test_negotiation_as_prometheus_clients(accept: str) -> None:
    """Where negotiate() answers itself, it answers what choose_encoder would; the rest it
    leaves to it."""
    from prometheus_client.exposition import choose_encoder, generate_latest

    from exporter.http.server import negotiate

    chosen = negotiate(accept)
    encoder, content_type = choose_encoder(accept)
    if chosen is None:
        return
    assert chosen[1] == content_type
    assert (chosen[0] == "text") == (encoder is generate_latest)


def test_version_is_pyprojects() -> None:
    """exporter.__version__ is a constant (no importlib.metadata at start): the same as
    pyproject.toml's, which packaging, the image tag and the docs read."""
    import tomllib

    import exporter

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert exporter.__version__ == project["version"]
