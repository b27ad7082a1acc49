"""Every query of every dashboard panel, and every variable's query, returns data from a
real Prometheus scraping the full exporter: the dashboards ask for series stackmon
actually serves, with labels that exist."""

from __future__ import annotations

import re

import pytest

from tests.helpers.celery import Worker
from tests.helpers.dashboards import concrete, load, panels
from tests.helpers.exporter import wait_for
from tests.helpers.prometheus import query

DASHBOARDS = load()

# (dashboard, panel title): why its series do not exist in the full fixture.
SKIP = {
    ("database", "Standby lag (bytes)"):
        "pg_stat_replication_lag_bytes: only on a primary with a streaming standby",
    ("cache", "Memory used of max"):
        "the shared Redis has no maxmemory and must not be reconfigured",
    ("cache", "Replica link"): "redis_master_link_up: only on a Redis replica",
    ("cache", "Replica ack lag"):
        "redis_connected_slave_lag_seconds: only on a primary with replicas",
}

TARGETS = [(slug, p["title"], t["refId"], t["expr"])
           for slug, d in DASHBOARDS.items() for p in panels(d) for t in p["targets"]]


def test_skip_names_real_panels() -> None:
    titles = {(slug, title) for slug, title, _, _ in TARGETS}
    assert sorted(set(SKIP) - titles) == []
    assert len(SKIP) <= 6, "keep the skip list small"


@pytest.mark.parametrize(("slug", "title", "ref", "expr"),
                         [t for t in TARGETS if (t[0], t[1]) not in SKIP],
                         ids=lambda v: re.sub(r"\W+", "_", str(v))[:40])
def test_panel_query_returns_data(prometheus: str, celery_worker: Worker, slug: str,
                                  title: str, ref: str, expr: str) -> None:
    promql = concrete(expr)
    wait_for(lambda: query(prometheus, promql), timeout=60,
             what=f"{slug} / {title} / {ref}: {promql}")


@pytest.mark.parametrize("slug", sorted(DASHBOARDS))
def test_variable_queries_return_data(prometheus: str, celery_worker: Worker,
                                      slug: str) -> None:
    for v in DASHBOARDS[slug]["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
        assert m, v["query"]
        selector, label = concrete(m.group(1)), m.group(2)

        def series(s: str = selector) -> list[dict[str, object]]:
            return query(prometheus, s)

        result = wait_for(series, timeout=60, what=selector)
        assert all(label in r["metric"] for r in result), (label, result)
