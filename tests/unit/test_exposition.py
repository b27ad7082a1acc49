"""The fast text encoder writes exactly what prometheus_client's generate_latest writes."""

from __future__ import annotations

import math

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

from exporter.collectors.base import bare_counter
from exporter.collectors.postgres.view import add, untyped
from exporter.http.exposition import freeze, render_text


class Registry:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def families() -> list[Metric]:
    gauge = GaugeMetricFamily("g_odd", 'help with \\ backslash\nand newline "quoted"',
                              labels=["b", "a"])
    gauge.add_metric(['q"uote', "back\\slash"], 1.5)
    gauge.add_metric(["new\nline", ""], math.nan)
    gauge.add_metric(["inf", "x"], math.inf)
    gauge.add_metric(["ninf", "x"], -math.inf)
    gauge.add_metric(["big", "x"], 1.795789067e09)
    gauge.add_metric(["tiny", "x"], 1e-7)
    counter = CounterMetricFamily("c_requests", "Requests.", labels=["code"])
    counter.add_metric(["200"], 3)
    created = CounterMetricFamily("c_created", "With created.", labels=["x"], created=12.0)
    created.add_metric(["1"], 2.0, created=12.0)
    bare = bare_counter("pg_stat_database_xact_commit", "Commits.", ["datid", "datname"])
    add(bare, ["5", "app"], 10)
    add(bare, ["0", ""], None)
    raw = untyped("pg_static", "Version.", ["version"])
    add(raw, ["PostgreSQL 15"], 1)
    hist = HistogramMetricFamily("h_seconds", "Histogram.", labels=["q"])
    hist.add_metric(["a"], [("0.5", 1.0), ("+Inf", 3.0)], 2.5)
    summary = SummaryMetricFamily("s_seconds", "Summary.", count_value=2, sum_value=1.0)
    info = InfoMetricFamily("build", "Build.", value={"version": "1"})
    empty = GaugeMetricFamily("e_empty", "No samples.", labels=["x"])
    stamped = GaugeMetricFamily("t_stamped", "Timestamped.")
    stamped.add_metric([], 1.0, timestamp=1795789067.123)  # fixed: families() is built twice
    plain = GaugeMetricFamily("p_plain", "Plain.")
    plain.add_metric([], 0.0)
    return [gauge, counter, created, bare, raw, hist, summary, info, empty, stamped, plain]


def test_same_bytes_as_prometheus_client() -> None:
    expected = generate_latest(Registry(families()))
    assert render_text(families()) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.floats(allow_nan=True)), max_size=8),
       st.text(max_size=30))
def test_same_bytes_for_any_label_value_and_number(
        rows: list[tuple[str, float]], help_text: str) -> None:
    family = GaugeMetricFamily("g_any", help_text, labels=["v", "w"])
    for i, (value, number) in enumerate(rows):
        family.add_metric([value, str(i)], number)
    expected = generate_latest(Registry([family]))
    assert render_text([family]) == expected


def test_bare_counters_announce_their_own_name() -> None:
    bare = bare_counter("pg_x", "X.", ["a"])
    add(bare, ["1"], 2)
    text = render_text([bare]).decode()
    assert text == '# HELP pg_x X.\n# TYPE pg_x counter\npg_x{a="1"} 2.0\n'


def test_frozen_families_are_rendered_once() -> None:
    original = families()
    frozen = [freeze(f) for f in original]
    assert render_text(frozen) == generate_latest(Registry(original))
    # The text was written at freeze time: a later change is not seen (hence "must not
    # change afterwards"), which is what saves the work on every scrape.
    frozen[-1].samples.clear()
    assert render_text(frozen[-1:]) == b"# HELP p_plain Plain.\n# TYPE p_plain gauge\np_plain 0.0\n"


def test_label_text_cache_follows_the_values() -> None:
    """The label-set text kept between scrapes is keyed by the values: a changed value or
    label order never serves an old text, and the cache stays bounded."""
    from exporter.http import exposition
    from exporter.metrics import GaugeMetricFamily as Gauge

    def text(values: list[str]) -> bytes:
        family = Gauge("x_info", "X.", labels=["b", "a"])
        family.add_metric(values, 1.0)
        return render_text([family])

    assert text(["1", "2"]) == text(["1", "2"])
    assert b'x_info{a="3",b="1"} 1.0' in text(["1", "3"])
    assert b'x_info{a="q\\"",b="1"} 1.0' in text(["1", 'q"'])
    for i in range(exposition.LABEL_CACHE_SIZE + 10):
        text([str(i), "y"])
    assert len(exposition._label_text) <= exposition.LABEL_CACHE_SIZE


def test_own_families_render_as_prometheus_clients() -> None:
    """exporter.metrics' classes give the same samples, and so the same bytes, as
    prometheus_client's (the OpenMetrics encoder takes them too)."""
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    from exporter import metrics as own

    def build(mod: object) -> list[Metric]:
        gauge = mod.GaugeMetricFamily("g", "G.", labels=["a"])  # type: ignore[attr-defined]
        gauge.add_metric(["x"], 2.5e6)
        counter = mod.CounterMetricFamily("c_total", "C.", labels=["a"])  # type: ignore[attr-defined]
        counter.add_metric(["x"], 3, created=1.0)
        hist = mod.HistogramMetricFamily("h", "H.", labels=["q"])  # type: ignore[attr-defined]
        hist.add_metric(["a"], [("0.5", 1.0), ("+Inf", 3.0)], 2.5)
        single = mod.GaugeMetricFamily("u", "U.", value=1)  # type: ignore[attr-defined]
        return [gauge, counter, hist, single]

    import prometheus_client.core as theirs

    mine, ref = build(own), build(theirs)
    assert [m.samples for m in mine] == [m.samples for m in ref]
    assert mine == ref
    assert generate_latest(Registry(mine)) == generate_latest(Registry(ref))  # type: ignore[arg-type]
    assert render_text(mine) == generate_latest(Registry(ref))  # type: ignore[arg-type]
    assert om_latest(Registry(mine)) == om_latest(Registry(ref))  # type: ignore[arg-type]
