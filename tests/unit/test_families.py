"""Shared families: one declaration of stackmon_service_up / _info for every collector,
and merge_families refusing what would make the exposition ambiguous."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from exporter.collectors.base import (
    SERVICE_INFO,
    SERVICE_UP,
    DuplicateSeriesError,
    merge_families,
    service_families,
)
from exporter.metrics import CounterMetricFamily, GaugeMetricFamily
from tests.helpers.exporter import REPO


def test_merge_joins_one_family_from_several_collectors() -> None:
    merged = merge_families([*service_families("postgres", 1.0, "15.4", "primary"),
                             *service_families("redis", 0.0)])
    assert [f.name for f in merged] == ["stackmon_service_up", "stackmon_service_info"]
    up = merged[0]
    assert up.documentation == SERVICE_UP[1]
    assert [(s.labels["service"], s.value) for s in up.samples] == [("postgres", 1.0),
                                                                   ("redis", 0.0)]
    assert merged[1].samples[0].labels == {"service": "postgres", "version": "15.4",
                                           "role": "primary"}


def test_merge_refuses_another_help_text() -> None:
    other = GaugeMetricFamily(SERVICE_UP[0], "something else", labels=["service"])
    other.add_metric(["celery"], 1.0)
    with pytest.raises(DuplicateSeriesError, match="stackmon_service_up: declared as"):
        merge_families([*service_families("redis", 1.0), other])


def test_merge_refuses_another_type() -> None:
    counter = CounterMetricFamily("x", "X.", labels=["a"])
    counter.add_metric(["1"], 1.0)
    gauge = GaugeMetricFamily("x", "X.", labels=["a"])
    gauge.add_metric(["2"], 1.0)
    with pytest.raises(DuplicateSeriesError, match="declared as counter"):
        merge_families([counter, gauge])


def test_merge_refuses_a_series_exported_twice() -> None:
    with pytest.raises(DuplicateSeriesError, match=r"stackmon_service_up\{'service': 'redis'\}"):
        merge_families([*service_families("redis", 1.0), *service_families("redis", 0.0)])


def test_merge_refuses_a_third_family_repeating_the_first_ones_series() -> None:
    """The series of a shared name are indexed when its second family arrives, and
    every later family is checked against all of them."""
    with pytest.raises(DuplicateSeriesError, match=r"\{'service': 'postgres'\}: exported"):
        merge_families([*service_families("postgres", 1.0), *service_families("redis", 1.0),
                        *service_families("postgres", 0.0)])


class _Untouchable:
    """A sample whose labels must not be read."""

    name = "big_series"

    @property
    def labels(self) -> dict[str, str]:
        raise AssertionError("merge_families indexed a family nobody else declares")


def test_merge_leaves_the_samples_of_an_unshared_family_alone() -> None:
    """A set entry for every sample of every family made a 200,000-series scrape cost
    2.4 s of CPU instead of 1.0 s; a family whose name is unique is passed through as is."""
    big = GaugeMetricFamily("big_series", "B.", labels=["table"])
    big.samples.extend([_Untouchable()] * 3)  # type: ignore[list-item]
    merged = merge_families([big, *service_families("redis", 1.0),
                             *service_families("postgres", 1.0)])
    assert merged[0] is big and len(big.samples) == 3
    assert [s.labels["service"] for s in merged[1].samples] == ["redis", "postgres"]


def test_no_collector_declares_the_service_families_itself() -> None:
    """Only base.py spells the shared family names (docstrings with sample output aside)."""
    names = {SERVICE_UP[0], SERVICE_INFO[0]}
    for path in sorted((Path(REPO) / "exporter" / "collectors").rglob("*.py")):
        if path.name == "base.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in names
                    and id(node) not in docstrings):
                raise AssertionError(f"{path}: declares {node.value} (use service_families)")
