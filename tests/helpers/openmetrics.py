"""Read a body the way a strict OpenMetrics consumer does, and compare the series of the
two exposition formats.

``strict_families`` is client_python's OpenMetrics parser (it refuses a counter sample
without ``_total``: ``Clashing name``) plus the one thing it lets through silently: the
same series twice in a row (it keeps the first).
"""

from __future__ import annotations

import gzip
import math

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as classic_families

from tests.helpers.exporter import Exporter

# What Prometheus 2.42 sends: OpenMetrics first (tests/e2e/ checks the real one).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
CLASSIC_ACCEPT = "text/plain;version=0.0.4"

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def _sample_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def strict_families(text: str) -> list[Metric]:
    """Every family of an OpenMetrics body; ValueError on anything the strict parser
    refuses (a family announced twice is a ``Clashing name``, a series split across a
    family ``Invalid metric grouping``), and on the same series written twice in a row,
    which that parser drops without a word."""
    families = list(openmetrics_families(text))
    parsed = sum(len(f.samples) for f in families)
    written = len(_sample_lines(text))
    if parsed != written:
        raise ValueError(f"{written} sample lines but {parsed} distinct series")
    return families


def _series(families: list[Metric]) -> dict[SeriesKey, float]:
    out: dict[SeriesKey, float] = {}
    for family in families:
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def openmetrics_series(text: str) -> dict[SeriesKey, float]:
    """(sample name, labels) -> value of a strictly valid OpenMetrics body."""
    return _series(strict_families(text))


def classic_series(text: str) -> dict[SeriesKey, float]:
    """(sample name, labels) -> value of a text-format (0.0.4) body, under the names
    written (client_python's parser appends ``_total`` to every counter sample)."""
    written = {line.split("{", 1)[0].split(" ", 1)[0] for line in _sample_lines(text)}
    out = {}
    for (name, labels), value in _series(list(classic_families(text))).items():
        if name not in written and name.endswith("_total") and name[:-6] in written:
            name = name[:-6]
        out[(name, labels)] = value
    return out


def same_values(a: dict[SeriesKey, float], b: dict[SeriesKey, float]) -> bool:
    """The same series with the same values (NaN equals NaN)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def scrape_openmetrics(exporter: Exporter, path: str, gzipped: bool) -> str:
    """One body of ``path`` asked for as Prometheus asks, checked to be OpenMetrics."""
    headers = {"Accept": PROMETHEUS_ACCEPT}
    if gzipped:
        headers["Accept-Encoding"] = "gzip"
    status, got, body = exporter.get(path, headers=headers)
    assert status == 200, f"{path}: {status} {body[:300]!r}"
    assert got["Content-Type"].startswith("application/openmetrics-text; version=1.0.0"), got
    assert (got.get("Content-Encoding") == "gzip") == gzipped, got
    return (gzip.decompress(body) if gzipped else body).decode()
