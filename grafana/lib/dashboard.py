"""Dashboard builders: :class:`Dash` (rows of panels and extra variables), its
``datasource`` / ``job`` / ``instance`` variables, the firing-alerts annotation, the tab
links between stackmon dashboards (by tag), :func:`build_dashboard` (panel ids, grid),
:func:`render` (stable JSON text) and :func:`write` (one ``<slug>.json`` per dashboard).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from grafana.lib.panels import DATASOURCE, P, build_panel

TAG = "stackmon"


@dataclass(frozen=True)
class Var:
    """A query variable beside job and instance: ``label_values(<selector>, <label>)``."""

    name: str
    label: str
    selector: str


@dataclass(frozen=True)
class Dash:
    """A dashboard: uid suffix, title, the metric its variables are read from, rows."""

    slug: str
    title: str
    description: str
    anchor: str
    rows: Sequence[tuple[str, Sequence[P]]]
    extra_vars: Sequence[Var] = ()


def _query_var(name: str, query: str, all_value: str = ".+") -> db.QueryVariable:
    return (db.QueryVariable(name).label(name).datasource(DATASOURCE).query(query)
            .multi(True).include_all(True).all_value(all_value)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))


def _variables(d: Dash) -> list[db.DatasourceVariable | db.QueryVariable]:
    ds = db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    out: list[db.DatasourceVariable | db.QueryVariable] = [ds]
    out.append(_query_var("job", f"label_values({d.anchor}, job)"))
    out.append(_query_var("instance", f'label_values({d.anchor}{{job=~"$job"}}, instance)'))
    for v in d.extra_vars:
        # ".*": "All" also keeps series whose label is empty (a task whose event carried
        # no routing key has queue_name="").
        out.append(_query_var(v.name, f"label_values({v.selector}, {v.label})", ".*"))
    return out


# Firing alerts as annotations: the moment a page started is visible on every graph.
ALERTS_EXPR = 'ALERTS{alertstate="firing", job=~"$job", instance=~"$instance"}'


def _annotations() -> db.AnnotationQuery:
    return (db.AnnotationQuery().name("Firing alerts").datasource(DATASOURCE).enable(True)
            .hide(False).icon_color("red").expr(ALERTS_EXPR))


# Keys of the Prometheus annotation the SDK has no builder for.
ANNOTATION_FORMAT = {"titleFormat": "{{alertname}} ({{severity}})",
                     "textFormat": "{{instance}}", "tagKeys": "alertname,severity",
                     "step": "60s", "useValueForTime": False}


def build_dashboard(d: Dash) -> dm.Dashboard:
    """The dashboard model of ``d``: variables, tab links, rows of panels."""
    b = (db.Dashboard(d.title).uid(f"stackmon-{d.slug}").description(d.description)
         .tags([TAG, d.slug]).readonly().refresh("30s").time("now-1h", "now")
         .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .annotation(_annotations())
         .link(db.DashboardLink("stackmon").type(dm.DashboardLinkType.DASHBOARDS)
               .tags([TAG]).as_dropdown(False).include_vars(True).keep_time(True)))
    for v in _variables(d):
        b = b.with_variable(v)
    panel_id = 1
    for row_title, panels in d.rows:
        b = b.with_row(db.Row(row_title).id(panel_id).collapsed(False))
        panel_id += 1
        for p in panels:
            b = b.with_panel(build_panel(p, panel_id))
            panel_id += 1
    return b.build()


def _with_annotation_format(model: dict[str, Any]) -> dict[str, Any]:
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("expr") == ALERTS_EXPR:
            annotation.update(ANNOTATION_FORMAT)
    return model


def render(d: Dash) -> str:
    """Stable JSON text of ``d`` (sorted keys, two-space indent, final newline)."""
    model = json.loads(json.dumps(build_dashboard(d), cls=JSONEncoder))
    return json.dumps(_with_annotation_format(model), indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def write(dashboards: Iterable[Dash], out_dir: Path) -> list[Path]:
    """Write each dashboard as ``<slug>.json`` into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in dashboards:
        path = out_dir / f"{d.slug}.json"
        path.write_text(render(d))
        paths.append(path)
    return paths
