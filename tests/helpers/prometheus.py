"""Query a real Prometheus server over its HTTP API."""

from __future__ import annotations

import json
import urllib.parse

from tests.helpers.exporter import http_get, wait_for

# Once Prometheus is warm (``warm_up``: a few 1 s scrapes of every target, the worker seen),
# a series a query needs is there within a few scrapes or not at all: a query without data
# fails after this long, not after a minute (one missing series used to cost 60 s a query
# and push a module's later tests out of their time windows).
QUERY_WAIT = 15.0


def query(url: str, promql: str) -> list[dict[str, object]]:
    """The instant-query result vector of ``promql`` (an error answer fails the test)."""
    status, _, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def returns_data(url: str, promql: str, what: str, timeout: float = QUERY_WAIT
                 ) -> list[dict[str, object]]:
    """``query`` until it returns data; fails naming ``what`` after ``timeout``."""
    result: list[dict[str, object]] = wait_for(lambda: query(url, promql), timeout=timeout,
                                               what=what)
    return result


def warm_up(url: str, job: str = "stackmon", scrapes: int = 3, timeout: float = 90.0) -> None:
    """Wait until Prometheus has scraped every target of ``job`` ``scrapes`` times, so a
    rate() over the scrapes has two samples."""
    promql = f'min(count_over_time(up{{job="{job}"}}[5m])) >= {scrapes}'
    wait_for(lambda: query(url, promql), timeout=timeout,
             what=f"{scrapes} scrapes of every {job} target")
