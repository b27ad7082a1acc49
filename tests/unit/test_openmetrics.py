"""OpenMetrics output: valid for a strict parser, and the same series as the text format."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.collectors.base import bare_counter
from exporter.collectors.postgres.view import add, untyped
from exporter.http.exposition import (
    freeze,
    openmetrics_family,
    render_openmetrics,
    render_text,
)
from exporter.process import ProcessMetrics
from tests.helpers.openmetrics import (
    PROMETHEUS_ACCEPT,
    classic_series,
    openmetrics_series,
    same_values,
    strict_families,
)


def families() -> list[Metric]:
    """One family of every shape the collectors make."""
    bare = bare_counter("pg_stat_database_xact_commit", "Commits.", ["datid", "datname"])
    add(bare, ["5", "app"], 10)
    add(bare, ["0", ""], None)  # NaN: postgres_exporter's value for a NULL column
    empty_bare = bare_counter("redis_total_error_replies", "Error replies.")
    counter = CounterMetricFamily("node_cpu_seconds", "CPU.", labels=["cpu", "mode"])
    counter.add_metric(["0", "idle"], 12.5)
    gauge = GaugeMetricFamily("g_odd", 'help with \\ backslash\nand "quotes"', labels=["v"])
    gauge.add_metric(['q"uote\\back\nline'], math.nan)
    gauge.add_metric(["inf"], math.inf)
    gauge.add_metric(["big"], 1.795789067e09)
    raw = untyped("pg_static", "Version.", ["version"])
    add(raw, ["PostgreSQL 15"], 1)
    hist = HistogramMetricFamily("celery_task_runtime", "Runtime.", labels=["name"])
    hist.add_metric(["t"], [("0.5", 1.0), ("+Inf", 3.0)], 2.5)
    summary = SummaryMetricFamily("s_seconds", "Summary.", count_value=2, sum_value=1.0)
    frozen = freeze(GaugeMetricFamily("pg_settings_max_connections", "Max.", value=100))
    return [bare, empty_bare, counter, gauge, raw, hist, summary, frozen,
            *ProcessMetrics().collect()]


def test_a_strict_parser_accepts_the_body() -> None:
    strict_families(render_openmetrics(families()).decode())


def test_bare_counters_keep_their_sample_names_as_unknown() -> None:
    bare = bare_counter("pg_x", "X.", ["a"])
    add(bare, ["1"], 2)
    assert render_openmetrics([bare]).decode() == (
        '# HELP pg_x X.\n# TYPE pg_x unknown\npg_x{a="1"} 2.0\n# EOF\n')


def test_counters_with_total_stay_counters() -> None:
    counter = CounterMetricFamily("node_intr", "Interrupts.", value=3)
    assert render_openmetrics([counter]).decode() == (
        "# HELP node_intr Interrupts.\n# TYPE node_intr counter\nnode_intr_total 3.0\n# EOF\n")


def test_same_series_and_values_in_both_formats() -> None:
    fams = families()
    classic = classic_series(render_text(fams).decode())
    assert ("pg_stat_database_xact_commit", (("datid", "5"), ("datname", "app"))) in classic
    assert same_values(openmetrics_series(render_openmetrics(fams).decode()), classic)


class Registry:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def client_python(fams: list[Metric], **kw: str) -> bytes:
    """prometheus_client's OpenMetrics encoder, after the bare-counter mapping."""
    return openmetrics_latest(Registry([openmetrics_family(f) for f in fams]), **kw)


def test_same_bytes_as_prometheus_client() -> None:
    fams = families()  # once: the process collector's numbers move
    assert render_openmetrics(fams) == client_python(fams)


@pytest.mark.parametrize("accept", [
    PROMETHEUS_ACCEPT,
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",  # Prometheus 3
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0",
])
def test_every_accept_header_gets_what_prometheus_client_writes(accept: str) -> None:
    encoder, content_type = choose_encoder(accept)
    assert content_type.startswith("application/openmetrics-text")
    fams = families()
    body = render_openmetrics(fams, content_type, encoder)
    assert body == encoder(Registry([openmetrics_family(f) for f in fams]))
    if "escaping=" not in accept or "allow-utf-8" in accept:
        strict_families(body.decode())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.floats(allow_nan=True)), max_size=8))
def test_same_series_for_any_label_value_and_number(rows: list[tuple[str, float]]) -> None:
    bare = bare_counter("pg_any", "Any.", ["v", "i"])
    gauge = GaugeMetricFamily("g_any", "Any.", labels=["v", "i"])
    for i, (value, number) in enumerate(rows):
        add(bare, [value, str(i)], number)
        gauge.add_metric([value, str(i)], number)
    fams: list[Metric] = [bare, gauge]
    body = render_openmetrics(fams)
    assert body == client_python(fams)
    classic = classic_series(render_text(fams).decode())
    assert same_values(openmetrics_series(body.decode()), classic)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_same_bytes_for_any_help_text(help_text: str) -> None:
    fams: list[Metric] = [GaugeMetricFamily("g_help", help_text, value=1.0),
                          bare_counter("pg_help", help_text)]
    assert render_openmetrics(fams) == client_python(fams)


def test_frozen_families_are_written_once() -> None:
    frozen = freeze(GaugeMetricFamily("pg_settings_x", "X.", value=1.0))
    first = render_openmetrics([frozen])
    assert first == client_python([frozen])
    # Written at the first OpenMetrics scrape and kept: a later change is not seen, which
    # is the promise freeze() asks of the collector and what saves the work.
    frozen.samples.clear()
    assert render_openmetrics([frozen]) == first
