"""exporter/http/text.py must write exactly prometheus_client's text format bytes."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest

from exporter.http.text import generate_text


class Fixed:
    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Any]:
        return self.metrics


def reference(metrics: list[Any]) -> bytes:
    return bytes(generate_latest(Fixed(metrics)))


names = st.from_regex(r"\A[a-z_][a-z0-9_]{0,12}\Z")
label_values = st.text(max_size=12)  # any unicode, quotes, backslashes, newlines
values = st.one_of(st.floats(allow_nan=True), st.integers(-10**12, 10**12).map(float),
                   st.sampled_from([math.inf, -math.inf, 0.0, 1e-9, 123456789.0]))


@st.composite
def families(draw: st.DrawFn) -> list[Metric]:
    out: list[Metric] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        name = draw(names.filter(lambda n: n not in used))
        used.add(name)
        labels = draw(st.lists(names.filter(lambda n: not n.startswith("__") and n != "le"),
                               max_size=3, unique=True))
        kind = draw(st.sampled_from(["gauge", "counter", "histogram", "summary", "untyped"]))
        doc = draw(st.text(max_size=20))
        rows = draw(st.lists(st.tuples(st.lists(label_values, min_size=len(labels),
                                                max_size=len(labels)), values), max_size=3))
        fam: Metric
        if kind == "gauge":
            fam = GaugeMetricFamily(name, doc, labels=labels)
            for lv, v in rows:
                fam.add_metric(lv, v)
        elif kind == "counter":
            fam = CounterMetricFamily(name, doc, labels=labels)
            for lv, v in rows:
                fam.add_metric(lv, abs(v) if not math.isnan(v) else v)
        elif kind == "histogram":
            fam = HistogramMetricFamily(name, doc, labels=labels)
            for lv, v in rows:
                fam.add_metric(lv, [("0.5", 1.0), ("+Inf", 2.0)], sum_value=v)
        elif kind == "summary":
            fam = SummaryMetricFamily(name, doc, labels=labels)
            for lv, v in rows:
                fam.add_metric(lv, count_value=3, sum_value=v)
        else:
            fam = Metric(name, doc, "unknown")
            for lv, v in rows:
                fam.add_sample(name, dict(zip(labels, lv, strict=True)), v)
        out.append(fam)
    return out


@settings(max_examples=300, deadline=None)
@given(families())
def test_same_bytes_as_prometheus_client(metrics: list[Metric]) -> None:
    assert generate_text(Fixed(metrics)) == reference(metrics)


def test_stackmon_families_same_bytes() -> None:
    """A real collector's output (host, on this machine) and the Celery state's."""
    import dataclasses

    from exporter.collectors.celery.events import EventState
    from exporter.collectors.celery.settings import CelerySettings
    from exporter.collectors.host.collector import HostCollector
    from exporter.collectors.host.settings import HostSettings

    host = list(HostCollector(HostSettings()).collect(1e18))
    state = EventState(dataclasses.replace(CelerySettings(), broker_url="redis://x/0"))
    for i in range(50):
        state.handle({"type": "task-sent", "uuid": f"u{i}", "name": f'app.t"{i % 7}\\',
                      "queue": "q\n", "timestamp": 1.0, "hostname": "c@h"})
        state.handle({"type": "task-failed", "uuid": f"u{i}", "hostname": "w@h1",
                      "exception": "ValueError('x')", "timestamp": 2.0})
    celery = state.metrics()
    assert len(host) > 10 and len(celery) > 10
    for metrics in (host, celery):
        assert generate_text(Fixed(metrics)) == reference(metrics)


def test_what_it_does_not_handle_goes_to_prometheus_client() -> None:
    """Timestamps, _created samples, info families and UTF-8 names: the same bytes too,
    through the fallback."""
    stamped = GaugeMetricFamily("a_gauge", "h")
    stamped.add_metric([], 1.0, timestamp=12.5)
    created = CounterMetricFamily("a_counter", "h", labels=["x"], created=100.0)
    created.add_metric(["y"], 3.0, created=100.0)
    info = InfoMetricFamily("build", "h", value={"version": "1"})
    utf8 = GaugeMetricFamily("a.dotted", "h", labels=["é"])
    utf8.add_metric(["v"], 1.0)
    plain = GaugeMetricFamily("plain", "h", value=2.0)
    for odd in (stamped, created, info, utf8):
        metrics = [plain, odd]
        assert generate_text(Fixed(metrics)) == reference(metrics)
    assert b"a_counter_created" in reference([created])


def test_metrics_endpoint_uses_it_for_the_text_format_only(monkeypatch: Any) -> None:
    """/metrics: Prometheus's text format from exporter/http/text.py (same bytes as
    prometheus_client), OpenMetrics still from prometheus_client."""
    from exporter.collectors.base import CollectorSet
    from exporter.http import server

    odd = GaugeMetricFamily("odd", 'a "quoted"\nhelp', labels=["path"])
    odd.add_metric(['C:\\dir\n"x"'], math.nan)
    families: list[Metric] = [odd, CounterMetricFamily("hits", "h", value=3.0)]

    class Fixed(CollectorSet):
        def __init__(self) -> None:
            super().__init__([])

        def collect(self, deadline: float) -> list[Any]:
            return families

    calls: list[int] = []

    def counting(registry: Any) -> bytes:
        calls.append(1)
        return generate_text(registry)

    app = server.App(Fixed())

    def get(accept: str) -> tuple[list[str], bytes]:
        status: list[str] = []
        body = app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "HTTP_ACCEPT": accept},
                   lambda s, h: status.append(s))
        return status, b"".join(body)

    monkeypatch.setattr(server, "generate_text", counting)
    status, text = get("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert status == ["200 OK"] and calls == [1]
    assert text == reference(families)
    _, om = get("application/openmetrics-text;version=1.0.0")
    assert calls == [1] and om.endswith(b"# EOF\n")
