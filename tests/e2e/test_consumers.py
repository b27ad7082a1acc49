"""Consumers other than the default Prometheus scrape store what Prometheus stores.

- Prometheus 2.42 asks for OpenMetrics first and has no ``scrape_protocols``: one job
  reads the exporter through a proxy that only records the answers' format, another
  through a proxy that rewrites the Accept header to the text format.  Both jobs store
  the same series with the same values.
- VictoriaMetrics (Debian ``victoria-metrics``) scrapes the exporter itself with its own
  parser and stores the same series as Prometheus.
- The remote_write setup of docs/deployment.md ("Long-term storage in VictoriaMetrics"),
  read from that page: an HA pair of Prometheus servers writes into VictoriaMetrics with
  the page's flags; it holds the pair's series once, one sample per scrape interval.
"""

from __future__ import annotations

import math
import re
import shlex
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.helpers.celery import Worker
from tests.helpers.consumers import SeriesId, Server, prometheus, victoria_metrics
from tests.helpers.exporter import REPO, Exporter, Samples, http_get, wait_for
from tests.helpers.openmetrics import CLASSIC_ACCEPT
from tests.helpers.scrape_proxy import ScrapeProxy

DOCS = REPO / "docs" / "deployment.md"
SECTION = "### Long-term storage in VictoriaMetrics"
INTERVAL = "1s"
OM_JOB, CLASSIC_JOB, VM_JOB = "stackmon-om", "stackmon-classic", "stackmon-vm"
# Series a scraper adds about each scrape (not from the body); VictoriaMetrics adds
# scrape_timeout_seconds to Prometheus's five.
SCRAPER_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                  "scrape_samples_post_metric_relabeling", "scrape_series_added",
                  "scrape_timeout_seconds"}


@dataclass
class DocsSetup:
    """docs/deployment.md's remote_write config and VictoriaMetrics command line."""

    prometheus: dict[str, Any]
    vm_flags: list[str]


def docs_setup() -> DocsSetup:
    text = DOCS.read_text()
    section = text[text.index(SECTION) + len(SECTION):]
    section = re.split(r"\n#{2,3} ", section)[0]  # up to the next heading
    blocks = dict(re.findall(r"```(yaml|sh)\n(.*?)```", section, re.S))
    command = shlex.split(blocks["sh"].replace("\\\n", " "), comments=True)
    assert command[0] == "victoria-metrics", command
    return DocsSetup(yaml.safe_load(blocks["yaml"]), command[1:])


def flag_value(flags: list[str], name: str) -> str:
    [value] = [f.split("=", 1)[1] for f in flags if f.startswith(f"-{name}=")]
    return value


@dataclass
class Stores:
    om_proxy: ScrapeProxy
    classic_proxy: ScrapeProxy
    vm: Server
    pair: tuple[Server, Server]  # Prometheus A and B, the HA pair
    external_labels: dict[str, str]
    started: float


def prometheus_config(docs: DocsSetup, vm: Server, om: ScrapeProxy,
                      classic: ScrapeProxy) -> str:
    """The docs' prometheus.yml with this test's addresses, interval and jobs."""
    config = docs.prometheus
    config["global"].update(scrape_interval=INTERVAL, scrape_timeout=INTERVAL)
    for remote in config["remote_write"]:
        url = urllib.parse.urlsplit(remote["url"])
        remote["url"] = url._replace(netloc=urllib.parse.urlsplit(vm.url).netloc).geturl()
    config["scrape_configs"] = [
        {"job_name": OM_JOB, "static_configs": [{"targets": [om.address]}]},
        {"job_name": CLASSIC_JOB, "static_configs": [{"targets": [classic.address]}]}]
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def stores(full_exporter: Exporter, celery_worker: Worker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    root = tmp_path_factory.mktemp("consumers")
    docs = docs_setup()
    # The page sets the dedup window to the pair's scrape interval; so does the test.
    assert flag_value(docs.vm_flags, "dedup.minScrapeInterval") == \
        docs.prometheus["global"]["scrape_interval"]
    flags = [f"-dedup.minScrapeInterval={INTERVAL}" if f.startswith("-dedup.") else f
             for f in docs.vm_flags
             if not f.startswith(("-storageDataPath=", "-httpListenAddr="))]
    om_proxy = ScrapeProxy(full_exporter.url)
    classic_proxy = ScrapeProxy(full_exporter.url, accept=CLASSIC_ACCEPT)
    vm_scrape = yaml.safe_dump({
        "global": {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL},
        "scrape_configs": [{"job_name": VM_JOB, "static_configs": [
            {"targets": [full_exporter.url.removeprefix("http://")]}]}]})
    try:
        with victoria_metrics(root / "vm", flags, vm_scrape) as vm:
            config = prometheus_config(docs, vm, om_proxy, classic_proxy)
            with prometheus(root / "a", config) as a, prometheus(root / "b", config) as b:
                yield Stores(om_proxy, classic_proxy, vm, (a, b),
                             dict(docs.prometheus["global"]["external_labels"]), time.time())
    finally:
        om_proxy.stop()
        classic_proxy.stop()


def scraped(server: Server, job: str, times: int) -> bool:
    """``server`` has scraped ``job`` successfully at least ``times`` times."""
    result = server.api("/api/v1/query",
                        query=f'count_over_time(up{{job="{job}"}}[5m]) >= {times} '
                              f'and up{{job="{job}"}} == 1')
    return bool(result["result"])  # type: ignore[index]


def name_of(series: SeriesId) -> str:
    return dict(series)["__name__"]


def diff(a: set[SeriesId], b: set[SeriesId]) -> str:
    def show(s: set[SeriesId]) -> list[str]:
        return sorted(str(dict(x)) for x in s)[:10]
    return f"only in the first: {show(a - b)}; only in the second: {show(b - a)}"


def samples(server: Server, job: str, window: str, at: float) -> dict[SeriesId, list[float]]:
    """Every raw sample of ``job``'s series in the ``window`` before ``at``."""
    data: Any = server.api("/api/v1/query", query=f'{{job="{job}"}}[{window}]',
                           time=f"{at:.3f}")
    return {frozenset((k, v) for k, v in r["metric"].items() if k not in ("job", "instance")):
            [float(v) for _, v in r["values"]] for r in data["result"]}


def nan_only(server: Server, job: str, since: float, at: float) -> set[SeriesId]:
    """``job``'s series whose every sample since ``since`` is NaN.

    VictoriaMetrics drops NaN samples on ingestion ("NaN means no value", its author in
    VictoriaMetrics/VictoriaMetrics#261), so it never holds these series; the anchors
    send the same NaNs (postgres_exporter for NULL columns, e.g. checksum_failures)."""
    window = f"{math.ceil(at - since)}s"
    return {k for k, v in samples(server, job, window, at).items()
            if all(math.isnan(x) for x in v)}


def same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def only(found: dict[SeriesId, list[float]], name: str) -> list[float]:
    [values] = [v for k, v in found.items() if name_of(k) == name]
    return values


def sent_up_to(server: Server) -> float:
    """The newest sample time ``server`` has sent through remote_write."""
    status, _, body = http_get(server.url + "/metrics")
    assert status == 200
    sent = Samples.parse(body.decode()).samples[
        "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"]
    return max(v for _, v in sent)


def test_prometheus_reads_each_format(stores: Stores) -> None:
    a, _ = stores.pair
    wait_for(lambda: scraped(a, OM_JOB, 3) and scraped(a, CLASSIC_JOB, 3), timeout=60,
             what="both jobs scraped")
    # Prometheus asked for OpenMetrics first and got it on one job, the text format on
    # the other.
    assert stores.om_proxy.accepts[0].startswith("application/openmetrics-text;version=1.0.0")
    assert {t.split(";")[0] for t in stores.om_proxy.content_types} == {
        "application/openmetrics-text"}
    assert {t.split(";")[0] for t in stores.classic_proxy.content_types} == {"text/plain"}


def test_same_series_and_values_under_either_format(stores: Stores) -> None:
    a, _ = stores.pair
    wait_for(lambda: scraped(a, OM_JOB, 5) and scraped(a, CLASSIC_JOB, 5), timeout=60,
             what="both jobs scraped 5 times")
    now = time.time()
    om = a.series(f'{{job="{OM_JOB}"}}', stores.started, now)
    classic = a.series(f'{{job="{CLASSIC_JOB}"}}', stores.started, now)
    assert om == classic, diff(om, classic)
    assert {name_of(s) for s in om} >= {"pg_stat_database_xact_commit", "node_cpu_seconds_total",
                                         "redis_total_error_replies", "celery_task_runtime_bucket"}
    # Values: every series that held one value through the window, in both jobs.
    om_values = samples(a, OM_JOB, "5s", now)
    classic_values = samples(a, CLASSIC_JOB, "5s", now)
    steady = [k for k in om_values.keys() & classic_values.keys()
              if len(set(om_values[k])) == 1 and len(set(classic_values[k])) == 1]
    assert len(steady) > 300, len(steady)
    differ = [(dict(k), om_values[k][0], classic_values[k][0]) for k in steady
              if not same(om_values[k][0], classic_values[k][0])]
    assert differ == []


def test_victoriametrics_scrape_stores_what_prometheus_stores(stores: Stores) -> None:
    a, _ = stores.pair
    wait_for(lambda: scraped(stores.vm, VM_JOB, 8) and scraped(a, OM_JOB, 8), timeout=60,
             what="VictoriaMetrics and Prometheus scraped 8 times")
    # A window both were scraping in: the exporter's series change while it starts (a
    # service's version label is "unknown" until it has been reached).
    now = time.time()
    vm = {k for k in samples(stores.vm, VM_JOB, "4s", now) if name_of(k) not in SCRAPER_SERIES}
    prom = {k for k, v in samples(a, OM_JOB, "4s", now).items()
            if name_of(k) not in SCRAPER_SERIES and not all(math.isnan(x) for x in v)}
    assert len(prom) > 500, len(prom)
    assert vm == prom, diff(vm, prom)


def test_remote_write_from_the_docs_into_victoriametrics(stores: Stores) -> None:
    a, b = stores.pair
    wait_for(lambda: scraped(a, OM_JOB, 5) and scraped(b, OM_JOB, 5), timeout=60,
             what="the pair scraped 5 times")
    end = time.time()
    # remote_write sends in batches (every 5 s at most by default).
    wait_for(lambda: all(sent_up_to(s) > end + 1 for s in (a, b)), timeout=60,
             interval=0.5, what="both members to have sent their samples up to now")
    jobs = f'{{job=~"{OM_JOB}|{CLASSIC_JOB}"}}'
    want = a.series(jobs, stores.started, end) - nan_only(a, OM_JOB, stores.started, end)
    ext = frozenset(stores.external_labels.items())
    got = stores.vm.series(jobs, stores.started, end)
    assert [dict(s) for s in got if not ext <= s] == []  # the pair's external labels
    assert {s - ext for s in got} == want, diff({s - ext for s in got}, want)
    # Both members wrote every series; VictoriaMetrics keeps one sample per interval.
    counts = [len(only(samples(s, OM_JOB, "10s", end), "pg_up")) for s in (a, b)]
    stored = only(samples(stores.vm, OM_JOB, "10s", end), "pg_up")
    assert min(counts) - 1 <= len(stored) <= max(counts) + 1, (counts, len(stored))
