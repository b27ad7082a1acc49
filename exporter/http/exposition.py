"""The Prometheus text format (0.0.4), written straight from metric families.

prometheus_client's ``generate_latest`` checks and escapes every metric and label name
for UTF-8 names on every sample (about 3.7 µs a sample here, half the CPU of a
PostgreSQL scrape with its ~300 settings); our names are fixed identifiers, so this
writes each family with plain string joins and gives the same bytes.  Families using
OpenMetrics-only features (``_created`` samples, info/stateset types, timestamps) are
handed to prometheus_client's encoder unchanged.  tests/unit/test_exposition.py checks
the output equals ``generate_latest``'s on a full scrape.

Sample output::

    # HELP pg_up 1 if the last scrape could query PostgreSQL.
    # TYPE pg_up gauge
    pg_up 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

FAST_TYPES = {"counter": "counter", "gauge": "gauge", "unknown": "untyped",
              "histogram": "histogram", "summary": "summary"}
OM_SUFFIXES = ("_created", "_gsum", "_gcount")
RENDERED = "stackmon_rendered_text"  # attribute freeze() sets on a family
number = cast(Callable[[float], str], floatToGoString)  # Go's float formatting, like Prometheus


class _One:
    """One family as a registry, for prometheus_client's encoder."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _simple(family: Metric) -> bool:
    return family.type in FAST_TYPES and not any(
        s.timestamp is not None or s.name.endswith(OM_SUFFIXES) for s in family.samples)


def render_family(family: Metric) -> str:
    """One family in the text format."""
    if not _simple(family):
        return generate_latest(_One(family)).decode()
    name = family.name
    if family.type == "counter":
        name = name + "_total"  # a postgres_exporter counter's name keeps its own
    help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out = [f"# HELP {name} {help_text}\n# TYPE {name} {FAST_TYPES[family.type]}\n"]
    for s in family.samples:
        if s.labels:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(s.labels.items()))
            out.append(f"{s.name}{{{labels}}} {number(s.value)}\n")
        else:
            out.append(f"{s.name} {number(s.value)}\n")
    return "".join(out)


def freeze(family: Metric) -> Metric:
    """Render ``family`` once, for a collector that serves the same object every scrape.

    The PostgreSQL collector keeps its ~300 pg_settings families until the server reloads
    its configuration; their text is then written once, not on every scrape.  The family
    must not change afterwards.
    """
    setattr(family, RENDERED, render_family(family))
    return family


def render_text(families: Iterable[Metric]) -> bytes:
    """``families`` in the text format, byte for byte what ``generate_latest`` writes."""
    return "".join(getattr(f, RENDERED, None) or render_family(f) for f in families).encode()
