"""The committed Grafana dashboards (grafana/dashboards/*.json) and our checks of
grafana/dashboard-linter's rules on them, for the dashboard tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.helpers.alerts import documented_metrics, metric_names
from tests.helpers.exporter import REPO

DASHBOARD_DIR = REPO / "grafana" / "dashboards"
SLUGS = ("overview", "database", "cache", "celery", "tasks")
TAG = "stackmon"
DATASOURCE_UID = "${datasource}"
COLOURS = ("green", "orange", "red")          # ok, warning, critical
SCOPE_MATCHERS = ('job=~"$job"', 'instance=~"$instance"')
# The Django application's own series (django-prometheus) come from its own scrape
# target, chosen with the app_job / app_instance variables; not stackmon metrics.
APP_PREFIX = "django_"
APP_MATCHERS = ('job=~"$app_job"', 'instance=~"$app_instance"')
APP_METRICS = {
    "django_http_requests_latency_seconds_by_view_method_bucket",
    "django_http_requests_latency_seconds_by_view_method_count",
    "django_http_responses_total_by_status_view_method_total",
}
# Windows a panel may use: the rate window, or the whole range for "over the range" tables.
WINDOWS = ("$__rate_interval", "$__range")

Json = dict[str, Any]


def load() -> dict[str, Json]:
    """Every committed dashboard by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel that is not a row (also those nested in collapsed rows)."""
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def all_ids(dashboard: Json) -> list[int]:
    ids = []
    for p in dashboard.get("panels", []):
        ids.append(p.get("id"))
        ids.extend(q.get("id") for q in p.get("panels", []))
    return ids


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matcher text) of every ``name{...}`` selector of ``expr``."""
    return re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr)


def lint_expr(expr: str) -> list[str]:
    """Problems of one panel query: scoping, rate windows, documented names."""
    problems = []
    names = metric_names(expr)
    if not names:
        problems.append("no metric selected")
    for name in sorted(names - documented_metrics() - APP_METRICS):
        problems.append(f"{name}: not in the metrics reference (docs/)")

    def matchers(name: str) -> tuple[str, ...]:
        return APP_MATCHERS if name.startswith(APP_PREFIX) else SCOPE_MATCHERS

    unscoped = re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}",
                      lambda m: m.group(0) if not all(s in m.group(2)
                                                      for s in matchers(m.group(1)))
                      else "", expr)
    for name in sorted(metric_names(unscoped)):
        problems.append(f"{name}: a selector lacks {', '.join(matchers(name))}")
    windows = re.findall(r"\[([^\]]*)\]", expr)
    for window in windows:
        if window not in WINDOWS:
            problems.append(f"range [{window}] is not [$__rate_interval] or [$__range]")
    if len(re.findall(r"\b(?:rate|irate|increase)\s*\(", expr)) > len(windows):
        problems.append("rate(), irate() or increase() without a range")
    return problems


def lint_panel(panel: Json) -> list[str]:
    """Problems of one panel (datasource, description, unit, thresholds, queries)."""
    where = f"panel {panel.get('id')} {panel.get('title')!r}"
    problems = []
    if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
        problems.append("datasource is not ${datasource}")
    if not str(panel.get("description", "")).strip():
        problems.append("no description")
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if not defaults.get("unit"):
        problems.append("no unit")
    steps = defaults.get("thresholds", {}).get("steps", [])
    if not steps or steps[0].get("value") is not None:
        problems.append("thresholds lack a base step")
    values = [s.get("value") for s in steps[1:]]
    if any(v is None for v in values) or values != sorted(values):
        problems.append("threshold values not increasing")
    if any(s.get("color") not in COLOURS for s in steps):
        problems.append(f"threshold colours not in {COLOURS}")
    if not panel.get("targets"):
        problems.append("no queries")
    for t in panel.get("targets", []):
        if t.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"query {t.get('refId')}: datasource is not ${{datasource}}")
        problems += [f"query {t.get('refId')}: {p}" for p in lint_expr(str(t.get("expr", "")))]
    return [f"{where}: {p}" for p in problems]


def lint_variables(dashboard: Json) -> list[str]:
    """The datasource, job and instance variables of DESIGN §5."""
    problems = []
    by_name = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = by_name.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no datasource variable of prometheus type")
    for name in ("job", "instance"):
        v = by_name.get(name, {})
        want = {"type": "query", "multi": True, "includeAll": True, "allValue": ".+",
                "refresh": 2}
        for key, value in want.items():
            if v.get(key) != value:
                problems.append(f"variable {name}: {key} is {v.get(key)!r}, not {value!r}")
        if v.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"variable {name}: datasource is not ${{datasource}}")
        m = re.fullmatch(r"label_values\((.+),\s*" + name + r"\)", str(v.get("query", "")))
        if not m or not metric_names(m.group(1)) <= documented_metrics():
            problems.append(f"variable {name}: query is not label_values(<documented>, {name})")
    return problems


def lint_dashboard(dashboard: Json) -> list[str]:
    """Dashboard-level rules plus every panel's and variable's."""
    problems = []
    if dashboard.get("editable") is not False:
        problems.append("editable is not false")
    if dashboard.get("refresh") != "30s":
        problems.append("refresh is not 30s")
    if not str(dashboard.get("uid", "")).startswith("stackmon-"):
        problems.append("uid is not stackmon-…")
    if TAG not in dashboard.get("tags", []):
        problems.append(f"not tagged {TAG}")
    ids = all_ids(dashboard)
    if None in ids or len(ids) != len(set(ids)):
        problems.append(f"panel ids missing or not unique: {ids}")
    for p in dashboard.get("panels", []):
        pos = p.get("gridPos", {})
        if pos.get("x", 0) + pos.get("w", 0) > 24:
            problems.append(f"panel {p.get('id')} is wider than the grid")
    problems += lint_variables(dashboard)
    for p in panels(dashboard):
        problems += lint_panel(p)
    return problems


def link_problems(dashboards: dict[str, Json]) -> list[str]:
    """Each dashboard links to every other one (by tag or by /d/<uid> url)."""
    problems = []
    for name, d in dashboards.items():
        reached: set[str] = set()
        for link in d.get("links", []):
            if link.get("type") == "dashboards":
                tags = set(link.get("tags", []))
                hits = {o for o, od in dashboards.items() if tags and tags <= set(od["tags"])}
                if not hits:
                    problems.append(f"{name}: link tags {sorted(tags)} match no dashboard")
                reached |= hits
            else:
                uid = str(link.get("url", "")).removeprefix("/d/").split("/")[0]
                hits = {o for o, od in dashboards.items() if od.get("uid") == uid}
                if not hits:
                    problems.append(f"{name}: link {link.get('url')!r} resolves to nothing")
                reached |= hits
        missing = set(dashboards) - {name} - reached
        if missing:
            problems.append(f"{name}: no link to {sorted(missing)}")
    return problems


GRAFANA_VARIABLES = {"job": ".+", "instance": ".+", "db": ".*", "queue_name": ".*",
                     "task": ".*", "app_job": ".*", "app_instance": ".*",
                     "__rate_interval": "15s", "__range": "1h"}


def concrete(expr: str, rate_interval: str = "15s", **chosen: str) -> str:
    """``expr`` with the Grafana variables replaced by values a plain Prometheus accepts
    (all jobs and instances unless ``chosen``, fixed windows); an unknown variable raises."""
    values = {**GRAFANA_VARIABLES, "__rate_interval": rate_interval, **chosen}

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def instance_problems(panel: Json) -> list[str]:
    """With two exporters behind one dashboard no series may hide which one it came from:
    every aggregation keeps ``instance`` (``by`` lists it) and every legend shows it."""
    where = f"panel {panel.get('id')} {panel.get('title')!r}"
    problems = []
    for t in panel.get("targets", []):
        expr = str(t.get("expr", ""))
        for labels in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            if "instance" not in {label.strip() for label in labels.split(",")}:
                problems.append(f"query {t.get('refId')}: by ({labels}) drops instance")
        if re.search(r"\b(?:sum|avg|max|min|count)\s*\(", expr):
            problems.append(f"query {t.get('refId')}: aggregation without by (…instance…)")
        if panel.get("type") != "table" and "{{instance}}" not in str(t.get("legendFormat")):
            problems.append(f"query {t.get('refId')}: legend lacks {{{{instance}}}}")
    return [f"{where}: {p}" for p in problems]


def data_links(dashboard: Json) -> Iterator[tuple[str, str]]:
    """(panel title, url) of every data link of every panel."""
    for p in panels(dashboard):
        for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", []):
            yield p["title"], str(link.get("url", ""))


def data_link_problems(dashboards: dict[str, Json]) -> list[str]:
    """Every data link opens a shipped dashboard (``/d/<uid>``) for the clicked series'
    own job and instance, keeping the time range."""
    uids = {d.get("uid") for d in dashboards.values()}
    problems = []
    for name, d in dashboards.items():
        for title, url in data_links(d):
            uid = url.removeprefix("/d/").split("?")[0].split("/")[0]
            if not url.startswith("/d/") or uid not in uids:
                problems.append(f"{name} / {title}: {url!r} opens no shipped dashboard")
            for part in ("var-job=${__field.labels.job}",
                         "var-instance=${__field.labels.instance}", "${__url_time_range}"):
                if part not in url:
                    problems.append(f"{name} / {title}: {url!r} lacks {part}")
    return problems
