"""Query a real Prometheus server over its HTTP API."""

from __future__ import annotations

import json
import urllib.parse

from tests.helpers.exporter import http_get


def query(url: str, promql: str) -> list[dict[str, object]]:
    """The instant-query result vector of ``promql`` (an error answer fails the test)."""
    status, _, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result
