"""Panel builders: :class:`P` (one panel) and its shorthands ``ts`` (time series), ``st``
(stat), ``bar`` (bar gauge), ``gg`` (gauge), ``tbl`` (table) and ``up`` (a 0/1 up-gauge as
DOWN / UP); threshold steps coloured ok / warning / critical at an alert's thresholds
(``above``, ``below_warning``, ``below``); data links to another stackmon dashboard
(``detail``); and :func:`build_panel`, the grafana-foundation-sdk builder of a ``P``.

    >>> above(0.8, 0.95)
    [(None, 'green'), (0.8, 'orange'), (0.95, 'red')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from grafana.lib.promql import Q, scoped

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

GREEN, ORANGE, RED = "green", "orange", "red"

# Threshold steps: (value, colour); the first value is None (the base colour).
Steps = Sequence[tuple[float | None, str]]
OK_ONLY: Steps = [(None, GREEN)]
UP: Steps = [(None, RED), (1, GREEN)]
UP_TEXT = {"0": ("DOWN", RED), "1": ("UP", GREEN)}

# Data links keep the selected time range and point at one exporter's target.
_TARGET_VARS = "var-job=${__field.labels.job}&var-instance=${__field.labels.instance}"


def detail(slug: str, label: str = "") -> tuple[str, str]:
    """A data link (title, url) to dashboard ``stackmon-<slug>`` for the clicked series."""
    title = label or f"Open stackmon / {slug}"
    return title, f"/d/stackmon-{slug}?{_TARGET_VARS}&${{__url_time_range}}"


def above(warning: float | None = None, critical: float | None = None) -> Steps:
    """Green, turning orange at ``warning`` and red at ``critical`` (alerts fire above)."""
    steps: list[tuple[float | None, str]] = [(None, GREEN)]
    if warning is not None:
        steps.append((warning, ORANGE))
    if critical is not None:
        steps.append((critical, RED))
    return steps


def below_warning(value: float) -> Steps:
    """Orange below ``value``, green from it on (a warning alert fires below)."""
    return [(None, ORANGE), (value, GREEN)]


def below(critical: float, warning: float) -> Steps:
    """Red below ``critical``, orange below ``warning``, green from it on."""
    return [(None, RED), (critical, ORANGE), (warning, GREEN)]


@dataclass(frozen=True)
class P:
    """A panel: kind is ``ts`` (time series), ``stat``, ``gauge``, ``bar`` (bar gauge) or
    ``table`` (instant queries merged into one row per series); w/h in grid units."""

    kind: str
    title: str
    description: str
    unit: str
    queries: Sequence[Q]
    steps: Steps = field(default_factory=lambda: OK_ONLY)
    w: int = 12
    h: int = 8
    stack: bool = False
    max: float | None = None
    mapping: Mapping[str, tuple[str, str]] | None = None  # value -> (text, colour)
    text: bool = False
    links: Sequence[tuple[str, str]] = ()  # data links: (title, url)
    # table: one (header, unit) per query; the thresholds colour the columns whose
    # unit is the panel's ``unit``.
    columns: Sequence[tuple[str, str]] = ()
    hide: Sequence[str] = ()  # table: label columns left out


def ts(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    """A time series of range queries, half the width by default."""
    return P("ts", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def st(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    """A stat of the last value, coloured background, 4 x 4 by default."""
    kw.setdefault("w", 4)
    kw.setdefault("h", 4)
    return P("stat", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def bar(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    """A horizontal bar gauge (the spec's progress bar), 0 to ``max`` (default 1)."""
    kw.setdefault("w", 6)
    kw.setdefault("h", 5)
    kw.setdefault("max", 1)
    return P("bar", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def gg(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    """A round gauge, 0 to ``max`` (default 1)."""
    kw.setdefault("w", 4)
    kw.setdefault("h", 5)
    kw.setdefault("max", 1)
    return P("gauge", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def tbl(title: str, description: str, unit: str, columns: Sequence[tuple[str, str]],
        *queries: Q, **kw: object) -> P:
    """A table of instant queries, one (header, unit) column per query, full width."""
    kw.setdefault("w", 24)
    return P("table", title, description, unit, queries, columns=columns,
             **kw)  # type: ignore[arg-type]


def up(title: str, description: str, q: Q, w: int = 4, down: str = RED,
       links: Sequence[tuple[str, str]] = (), texts: tuple[str, str] = ("DOWN", "UP")) -> P:
    """A stat of a 0/1 up-gauge shown as DOWN (``down``: the alert's colour) / UP (green)."""
    return st(title, description, "none", q, steps=[(None, down), (1, GREEN)],
              mapping={"0": (texts[0], down), "1": (texts[1], GREEN)}, w=w, links=links)


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def _targets(queries: Sequence[Q], instant: bool, as_table: bool = False
             ) -> list[Builder[Dataquery]]:
    out: list[Builder[Dataquery]] = []
    for i, q in enumerate(queries):
        t = (prometheus.Dataquery().expr(scoped(q.expr)).legend_format(q.legend)
             .ref_id(chr(ord("A") + i)).datasource(DATASOURCE))
        if as_table:
            t = t.format(pm.PromQueryFormat.TABLE)
        out.append(t.instant() if instant else t.range())
    return out


def _data_links(links: Sequence[tuple[str, str]]) -> list[Builder[dm.DashboardLink]]:
    return [db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url)
            for title, url in links]


Panel = (timeseries.Panel | stat.Panel | gauge.Panel | bargauge.Panel | table.Panel)


def _table(p: P) -> table.Panel:
    """Instant queries merged on their labels; the value columns renamed and unit-typed."""
    values = ["Value"] if len(p.queries) == 1 else [
        f"Value #{chr(ord('A') + i)}" for i in range(len(p.queries))]
    rename = {v: header for v, (header, _) in zip(values, p.columns, strict=True)}
    panel = (table.Panel().cell_height(cm.TableCellHeight.SM)
             .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {name: True for name in ("Time", "job", *p.hide)},
                 "renameByName": rename})))
    for header, unit in p.columns:
        props = [dm.DynamicConfigValue(id_val="unit", value=unit)]
        if unit == p.unit and len(p.steps) > 1:
            props.append(dm.DynamicConfigValue(
                id_val="custom.cellOptions", value={"type": "color-background",
                                                    "mode": "basic"}))
        panel = panel.override_by_name(header, props)
    return panel


def build_panel(p: P, panel_id: int) -> Panel:
    """The SDK builder for ``p``."""
    panel: Panel
    instant = True
    if p.kind == "ts":
        panel = timeseries.Panel().fill_opacity(10).show_points(cm.VisibilityMode.NEVER)
        panel = panel.legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                             .placement(cm.LegendPlacement.BOTTOM).show_legend(True)
                             .calcs(["lastNotNull", "max"]))
        if len(p.steps) > 1:  # an alerted quantity: draw its thresholds
            panel = panel.thresholds_style(cb.GraphThresholdsStyleConfig()
                                           .mode(cm.GraphThresholdsStyleMode.DASHED))
        if p.stack:
            panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        instant = False
    elif p.kind == "stat":
        panel = (stat.Panel().graph_mode(cm.BigValueGraphMode.NONE)
                 .color_mode(cm.BigValueColorMode.BACKGROUND)
                 .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
        if p.text:
            panel = panel.text_mode(cm.BigValueTextMode.NAME)
        if p.mapping:
            panel = panel.mappings([dm.ValueMap(options={
                value: dm.ValueMappingResult(text=text, color=colour, index=i)
                for i, (value, (text, colour)) in enumerate(sorted(p.mapping.items()))})])
    elif p.kind == "gauge":
        panel = (gauge.Panel().show_threshold_markers(True)
                 .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
    elif p.kind == "bar":
        panel = (bargauge.Panel().display_mode(cm.BarGaugeDisplayMode.GRADIENT)
                 .orientation(cm.VizOrientation.HORIZONTAL).show_unfilled(True)
                 .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
    elif p.kind == "table":
        panel = _table(p)
    else:
        raise ValueError(f"panel {p.title!r}: unknown kind {p.kind!r}")
    panel = (panel.id(panel_id).title(p.title).description(p.description).unit(p.unit)
             .datasource(DATASOURCE).height(p.h).span(p.w).thresholds(_thresholds(p.steps))
             .targets(_targets(p.queries, instant, as_table=p.kind == "table")))
    if p.max is not None:
        panel = panel.min(0).max(p.max)
    if p.links:
        panel = panel.data_links(_data_links(p.links))
    return panel
