"""The Prometheus text format (0.0.4), written straight from metric families.

prometheus_client's ``generate_latest`` checks and escapes every metric and label name
for UTF-8 names on every sample (about 3.7 µs a sample here, half the CPU of a
PostgreSQL scrape with its ~300 settings); our names are fixed identifiers, so this
writes each family with plain string joins and gives the same bytes.  A label set's text
(``{a="x",b="y"}``) is kept between scrapes, since the same series come back every
time.  Families using OpenMetrics-only features (``_created`` samples, info/stateset
types, timestamps) are handed to prometheus_client's encoder unchanged (imported then,
not at start: it loads ``ssl``).  tests/unit/test_exposition.py checks the output equals
``generate_latest``'s on a full scrape.

Sample output::

    # HELP pg_up 1 if the last scrape could query PostgreSQL.
    # TYPE pg_up gauge
    pg_up 1.0
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.metrics import Metric, go_float

FAST_TYPES = {"counter": "counter", "gauge": "gauge", "unknown": "untyped",
              "histogram": "histogram", "summary": "summary"}
OM_SUFFIXES = ("_created", "_gsum", "_gcount")
RENDERED = "stackmon_rendered_text"  # attribute freeze() sets on a family
number = go_float  # Go's float formatting, like Prometheus
# Label sets rendered so far, by their (name, value) pairs in the family's order.  Bounded:
# beyond this many distinct sets it starts over, so a huge or churning output costs what
# it did without the cache.
LABEL_CACHE_SIZE = 20_000
_label_text: dict[tuple[tuple[str, str], ...], str] = {}
_header_text: dict[tuple[str, str, str, type], str] = {}  # (name, help, type, name class)


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


def _labels(items: tuple[tuple[str, str], ...]) -> str:
    text = _label_text.get(items)
    if text is None:
        if len(_label_text) >= LABEL_CACHE_SIZE:
            _label_text.clear()
        text = _label_text[items] = "{" + ",".join(
            f'{k}="{_label_value(v)}"' for k, v in sorted(items)) + "}"
    return text


def _fallback(family: Metric) -> str:
    from prometheus_client.exposition import generate_latest

    return generate_latest(_One(family)).decode()  # type: ignore[arg-type]


def _header(family: Metric) -> str:
    """The HELP and TYPE lines, kept between scrapes: a host scrape has ~240 families,
    most of one sample, where writing them cost more than writing the samples."""
    name = family.name
    key = (name, family.documentation, family.type, name.__class__)
    text = _header_text.get(key)
    if text is None:
        if family.type == "counter":
            name = name + "_total"  # a postgres_exporter counter's name keeps its own
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if len(_header_text) >= LABEL_CACHE_SIZE:
            _header_text.clear()
        text = _header_text[key] = (f"# HELP {name} {help_text}\n"
                                    f"# TYPE {name} {FAST_TYPES[family.type]}\n")
    return text


def render_family(family: Metric) -> str:
    """One family in the text format."""
    if family.type not in FAST_TYPES:
        return _fallback(family)
    out = [_header(family)]
    append = out.append
    labels_of = _label_text.get
    for s in family.samples:
        sname, value = s.name, s.value
        if s.timestamp is not None or sname.endswith(OM_SUFFIXES):
            return _fallback(family)
        # repr() is Go's format for floats below 1e6 (go_float for the rest, NaN, ints).
        text = repr(value) if value.__class__ is float and -1e300 < value < 1e6 else \
            number(value)
        if s.labels:
            items = tuple(s.labels.items())
            append(f"{sname}{labels_of(items) or _labels(items)} {text}\n")
        else:
            append(f"{sname} {text}\n")
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
