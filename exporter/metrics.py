"""Metric families: prometheus_client's custom-collector API, without importing it.

``import prometheus_client`` (any submodule) runs its package ``__init__``, which loads its
HTTP exposition and with it ``ssl`` and ``urllib.request``: 12 MB of a 30 MB host-only
exporter (bench/RESULTS.md, "Memory").  These classes have the same names, constructor
arguments, attributes and ``Sample`` fields as ``prometheus_client.core``'s, so its
encoders (OpenMetrics, loaded only when a scrape asks for it) and parser-based tests take
them unchanged; they skip its per-family name validation, which costs CPU on every scrape
for names that are fixed in our code.

Sample use::

    family = GaugeMetricFamily("pg_up", "1 if PostgreSQL answered.")
    family.add_metric([], 1.0)
    family.samples  # [Sample(name='pg_up', labels={}, value=1.0, timestamp=None, ...)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple


class Sample(NamedTuple):
    """One series' value; the fields of prometheus_client's ``Sample``."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: Any = None
    exemplar: Any = None
    native_histogram: Any = None


METRIC_TYPES = frozenset({"counter", "gauge", "summary", "histogram", "gaugehistogram",
                          "unknown", "info", "stateset"})


class Metric:
    """A family: name, HELP, type, unit and its samples (prometheus_client's ``Metric``)."""

    def __init__(self, name: str, documentation: str, typ: str, unit: str = "") -> None:
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if typ == "untyped":
            typ = "unknown"
        if typ not in METRIC_TYPES:
            raise ValueError("Invalid metric type: " + typ)
        self.name = name
        self.documentation = documentation
        self.unit = unit
        self.type = typ
        self.samples: list[Sample] = []
        self._labelnames: tuple[str, ...] = ()

    def add_sample(self, name: str, labels: dict[str, str], value: float,
                   timestamp: Any = None, exemplar: Any = None,
                   native_histogram: Any = None) -> None:
        self.samples.append(Sample(name, labels, value, timestamp, exemplar, native_histogram))

    def __eq__(self, other: object) -> bool:
        # Duck-typed, so a prometheus_client family with the same content compares equal.
        return (all(hasattr(other, a) for a in ("name", "documentation", "type", "unit",
                                                "samples"))
                and self.name == other.name  # type: ignore[attr-defined]
                and self.documentation == other.documentation  # type: ignore[attr-defined]
                and self.type == other.type  # type: ignore[attr-defined]
                and self.unit == other.unit  # type: ignore[attr-defined]
                and self.samples == other.samples)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, like prometheus_client's

    def __repr__(self) -> str:
        return (f"Metric({self.name}, {self.documentation}, {self.type}, {self.unit}, "
                f"{self.samples})")


class _Labelled(Metric):
    def _start(self, labels: Sequence[str] | None, has_value: bool) -> None:
        if labels is not None and has_value:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())


class GaugeMetricFamily(_Labelled):
    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None, unit: str = "") -> None:
        Metric.__init__(self, name, documentation, "gauge", unit)
        self._start(labels, value is not None)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float, timestamp: Any = None) -> None:
        self.samples.append(Sample(self.name, dict(zip(self._labelnames, labels, strict=False)),
                                   value, timestamp))


class CounterMetricFamily(_Labelled):
    """A counter; its samples are named ``<name>_total`` (the family name without it)."""

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None, created: float | None = None,
                 unit: str = "", exemplar: Any = None) -> None:
        if name.endswith("_total"):
            name = name[:-6]
        Metric.__init__(self, name, documentation, "counter", unit)
        self._start(labels, value is not None)
        if value is not None:
            self.add_metric([], value, created, exemplar=exemplar)

    def add_metric(self, labels: Sequence[str], value: float, created: float | None = None,
                   timestamp: Any = None, exemplar: Any = None) -> None:
        lbl = dict(zip(self._labelnames, labels, strict=False))
        self.samples.append(Sample(self.name + "_total", lbl, value, timestamp, exemplar))
        if created is not None:
            self.samples.append(Sample(self.name + "_created", dict(lbl), created, timestamp))


class HistogramMetricFamily(_Labelled):
    def __init__(self, name: str, documentation: str,
                 buckets: Sequence[tuple[str, float]] | None = None,
                 sum_value: float | None = None, labels: Sequence[str] | None = None,
                 unit: str = "") -> None:
        Metric.__init__(self, name, documentation, "histogram", unit)
        if sum_value is not None and buckets is None:
            raise ValueError("sum value cannot be provided without buckets.")
        self._start(labels, buckets is not None)
        if buckets is not None:
            self.add_metric([], buckets, sum_value)

    def add_metric(self, labels: Sequence[str], buckets: Sequence[tuple[str, float]],
                   sum_value: float | None, timestamp: Any = None) -> None:
        """``buckets``: (upper bound as text, cumulative count), sorted, +Inf last."""
        base = list(zip(self._labelnames, labels, strict=False))
        append, bucket_name = self.samples.append, self.name + "_bucket"
        for b in buckets:
            append(Sample(bucket_name, dict([*base, ("le", b[0])]), b[1], timestamp,
                          b[2] if len(b) == 3 else None))
        if float(buckets[0][0]) >= 0 and sum_value is not None:
            append(Sample(self.name + "_count", dict(base), buckets[-1][1], timestamp))
            append(Sample(self.name + "_sum", dict(base), sum_value, timestamp))


INF = math.inf


def go_float(d: float) -> str:
    """A float as Go (and so Prometheus) writes it: ``1.0``, ``+Inf``, ``1.5e+06``.

    >>> go_float(1), go_float(2.5e6), go_float(float("inf"))
    ('1.0', '2.5e+06', '+Inf')
    """
    d = float(d)
    if d == INF:
        return "+Inf"
    if d == -INF:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    # Go switches to exponents sooner than Python (only positive values need it: le).
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
