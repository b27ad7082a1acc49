"""The Prometheus text format (0.0.4), written straight from metric families.

prometheus_client's ``generate_latest`` checks and escapes every metric and label name
for UTF-8 names on every sample (about 3.7 µs a sample here, half the CPU of a
PostgreSQL scrape with its ~300 settings); our names are fixed identifiers, so this
writes each family with plain string joins and gives the same bytes.  A label set's text
(``{a="x",b="y"}``) and a family's HELP/TYPE lines are kept between scrapes, since the
same series come back every time.  Families using OpenMetrics-only features (``_created``
samples, info/stateset types, timestamps) are handed to prometheus_client's encoder
unchanged.  prometheus_client is imported only then, not at start: it loads ``ssl``
(bench/RESULTS.md, "Memory").  tests/unit/test_exposition.py checks the output equals
``generate_latest``'s on a full scrape.

OpenMetrics, which Prometheus asks for first, is written the same way by
``render_openmetrics`` after ``openmetrics_family``: an anchor's counter without
``_total`` is typed ``unknown`` there (see that function).

Sample output::

    # HELP pg_up 1 if the last scrape could query PostgreSQL.
    # TYPE pg_up gauge
    pg_up 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from exporter.metrics import Metric, go_float

FAST_TYPES = {"counter": "counter", "gauge": "gauge", "unknown": "untyped",
              "histogram": "histogram", "summary": "summary"}
OM_SUFFIXES = ("_created", "_gsum", "_gcount")
OM_TYPES = {"counter", "gauge", "unknown", "histogram", "summary"}
OM_EOF = "# EOF\n"
# Name escapings that change even plain ASCII names; "underscores" and "allow-utf-8" leave
# them as they are (every name stackmon writes is a plain identifier).
OM_REWRITING_ESCAPINGS = {"escaping=dots", "escaping=values"}
RENDERED = "stackmon_rendered_text"  # attribute freeze() sets on a family
RENDERED_OPENMETRICS = "stackmon_rendered_openmetrics"  # its OpenMetrics text, once asked
number = go_float  # Go's float formatting, like Prometheus
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Label sets rendered so far, by their (name, value) pairs in the family's order.  Bounded:
# beyond this many distinct sets it starts over, so a huge or churning output costs what
# it did without the cache.
LABEL_CACHE_SIZE = 20_000
_label_text: dict[tuple[tuple[str, str], ...], str] = {}
_header_text: dict[tuple[str, str, str, type], str] = {}  # (name, help, type, name class)


def generate_latest(registry: Any) -> bytes:
    """prometheus_client's text encoder, imported on first use."""
    from prometheus_client.exposition import generate_latest as encode

    return bytes(encode(registry))


def openmetrics_latest(registry: Any, **options: Any) -> bytes:
    """prometheus_client's OpenMetrics encoder, imported on first use."""
    from prometheus_client.openmetrics.exposition import generate_latest as encode

    return bytes(encode(registry, **options))  # type: ignore[no-untyped-call]


class _One:
    """One family as a registry, for prometheus_client's encoder."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


class _Many:
    """A list of families as a registry, for prometheus_client's encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


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
    return generate_latest(_One(family)).decode()


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


def openmetrics_family(family: Metric) -> Metric:
    """``family`` as it goes out in OpenMetrics.

    OpenMetrics names a counter's samples ``<name>_total``, and a strict parser refuses a
    counter sample without it.  The anchors' counters without ``_total``
    (postgres_exporter's ``pg_stat_database_xact_commit``) go out as ``unknown`` instead,
    under their own sample names: the series Prometheus stores, and the names queries
    use, are the same in both formats; only the metadata type reads ``unknown``.  This
    is what the anchors' own Go library (prometheus/common expfmt) does with such a
    counter when it writes OpenMetrics.  Sample output::

        # HELP pg_stat_database_xact_commit Transactions in this database that have been ...
        # TYPE pg_stat_database_xact_commit unknown
        pg_stat_database_xact_commit{datid="5",datname="app",server="db:5432"} 51723.0
    """
    if family.type != "counter" or not any(s.name == family.name for s in family.samples):
        return family
    out = Metric(str(family.name), family.documentation, "unknown", family.unit)
    out.samples = family.samples
    return out


def _openmetrics_simple(family: Metric) -> bool:
    return family.type in OM_TYPES and not any(
        s.timestamp is not None or s.exemplar or s.native_histogram for s in family.samples)


def render_family_openmetrics(family: Metric) -> str:
    """One family in OpenMetrics 1.0 text, without the final ``# EOF``: byte for byte what
    prometheus_client's OpenMetrics encoder writes for ``openmetrics_family(family)``."""
    family = openmetrics_family(family)
    if not _openmetrics_simple(family):
        return openmetrics_latest(_One(family)).decode()[:-len(OM_EOF)]
    name = family.name
    help_text = _label_value(family.documentation)  # OpenMetrics escapes '"' here too
    out = [f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n"]
    if family.unit:
        out.append(f"# UNIT {name} {family.unit}\n")
    append = out.append
    labels_of = _label_text.get  # the same label text as the text format's
    for s in family.samples:
        value = s.value
        text = repr(value) if value.__class__ is float and -1e300 < value < 1e6 else \
            number(value)
        if s.labels:
            items = tuple(s.labels.items())
            append(f"{s.name}{labels_of(items) or _labels(items)} {text}\n")
        else:
            append(f"{s.name} {text}\n")
    return "".join(out)


def _openmetrics_text(family: Metric) -> str:
    if getattr(family, RENDERED, None) is None:
        return render_family_openmetrics(family)
    # A frozen family never changes: its OpenMetrics text is written once as well.
    text: str | None = getattr(family, RENDERED_OPENMETRICS, None)
    if text is None:
        text = render_family_openmetrics(family)
        setattr(family, RENDERED_OPENMETRICS, text)
    return text


def render_openmetrics(families: Iterable[Metric],
                       content_type: str = OPENMETRICS_CONTENT_TYPE,
                       encoder: Callable[[_Many], bytes] = openmetrics_latest) -> bytes:
    """``families`` in OpenMetrics text, as ``choose_encoder`` negotiated it.

    Prometheus asks for OpenMetrics 1.0 first, so this is the body it reads: written here
    (a fifth of prometheus_client's CPU) unless the Accept header asked for a name
    escaping that rewrites plain names (``dots``, ``values``) or another version; then
    ``encoder``, prometheus_client's, writes it.
    """
    params = {p.strip() for p in content_type.split(";")[1:]}
    if "version=1.0.0" in params and not params & OM_REWRITING_ESCAPINGS:
        return ("".join(_openmetrics_text(f) for f in families) + OM_EOF).encode()
    return encoder(_Many([openmetrics_family(f) for f in families]))
