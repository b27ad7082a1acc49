"""Generate stackmon's Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk.

Run ``.venv/bin/python -m grafana.generate`` (or ``make dashboards``) after changing this
file; the JSON files are committed and never edited by hand. A unit test fails when they
differ from what this module produces.

Queries are written with ``{...}`` label matchers (``{}`` for none); :func:`scoped` adds
``job=~"$job", instance=~"$instance"`` to every one of them (``$app_job`` /
``$app_instance`` for the Django application's own ``django_*`` series, which come from
another scrape target).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
TAG = "stackmon"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SCOPE = 'job=~"$job", instance=~"$instance"'
APP_SCOPE = 'job=~"$app_job", instance=~"$app_instance"'
APP_PREFIX = "django_"

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


def scoped(expr: str) -> str:
    """``expr`` with the job and instance matchers added to every label selector."""
    def add(m: re.Match[str]) -> str:
        name, matchers = m.group(1), m.group(2).strip()
        scope = APP_SCOPE if name.startswith(APP_PREFIX) else SCOPE
        return name + "{" + ", ".join(p for p in (scope, matchers) if p) + "}"
    return re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*|)\{([^}]*)\}", add, expr)


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL (unscoped) and its legend."""

    expr: str
    legend: str = ""


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
    return P("ts", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def st(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
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


RI = "$__rate_interval"
RANGE = "$__range"
IDLE = '{mode="idle"}'
NOT_IDLE = '{mode!="idle"}'
DB = '{datname=~"$db"}'
NOT_LO = '{device!="lo"}'


def rates(by: str, legend: str, series: Mapping[str, str], selector: str = "{}") -> list[Q]:
    """One query per counter (rate summed by ``by``), legend ``legend`` + its label."""
    return [Q(rate(metric, by, selector), f"{legend} {label}".strip())
            for metric, label in series.items()]


def quantile(q: float, bucket: str, by: str, selector: str = "{}") -> str:
    """The ``q`` quantile of a histogram's ``_bucket`` series, per ``by``; ``>= 0`` drops
    the NaN a window without observations gives (no NaN on the panel)."""
    return f"histogram_quantile({q}, {rate(bucket, 'le, ' + by, selector)}) >= 0"


def rate(metric: str, by: str = "", selector: str = "{}", window: str = RI) -> str:
    inner = f"rate({metric}{selector}[{window}])"
    return f"sum by ({by}) ({inner})" if by else inner


def increase(metric: str, by: str, selector: str = "{}", window: str = RANGE) -> str:
    return f"sum by ({by}) (increase({metric}{selector}[{window}]))"


def ratio(part: str, whole: str) -> str:
    """``part / whole``, 0 (not NaN) where ``whole`` is 0: an idle window shows 0 %; and
    0 (not "No data") where ``part`` has no series yet (no 5xx, no failure so far)."""
    return f"({part} or {whole} * 0) / clamp_min({whole}, 1e-9)"


def failure_ratio(failed: str, succeeded: str) -> str:
    """failed / (failed + succeeded) per series, where either side may have no series
    yet (a task that never failed, or never succeeded): the missing side counts 0."""
    return ratio(failed, f"(({failed} or {succeeded} * 0) + ({succeeded} or {failed} * 0))")


CPUS = 'count by (job, instance) (node_cpu_seconds_total{mode="idle"})'
MEM_USED = "1 - node_memory_MemAvailable_bytes{} / node_memory_MemTotal_bytes{}"
ROOT_USED = ('1 - node_filesystem_avail_bytes{mountpoint="/", fstype!=""} '
             '/ node_filesystem_size_bytes{mountpoint="/", fstype!=""}')
PG_CONNECTIONS = ("sum by (job, instance) (pg_stat_activity_count{}) "
                  "/ on (job, instance) pg_settings_max_connections{}")
# Of maxmemory when one is set, else of the host's memory (Redis's default maxmemory 0):
# never "No data" for a running server.
REDIS_MEMORY = ("redis_memory_used_bytes{} / (redis_memory_max_bytes{} > 0) "
                "or redis_memory_used_bytes{} / redis_total_system_memory_bytes{}")
POOL_USE = ("sum by (job, instance) (celery_worker_tasks_active{}) / on (job, instance) "
            "clamp_min(sum by (job, instance) (celery_worker_pool_max_concurrency{}), 1)")
APP = "job, instance, view"

OVERVIEW = Dash(
    "overview", "stackmon / Overview",
    "Hosts and the status of every service stackmon checks.", "stackmon_build_info", [
        ("At a glance", [
            bar("CPU", "Busy share of CPU time, all CPUs (1 - idle). HostHighCpuUsage fires "
                "(warning) above 90 % for 15 m.", "percentunit",
                Q(f"1 - avg by (job, instance) ({rate('node_cpu_seconds_total', selector=IDLE)})",
                  "{{instance}}"), steps=above(0.9)),
            bar("Memory used", "Memory in use: 1 - MemAvailable / MemTotal. HostMemoryAvailableLow "
                "fires (warning) when less than 10 % is available for 15 m.", "percentunit",
                Q(MEM_USED, "{{instance}}"), steps=above(0.9)),
            bar("Swap", "Swap in use: 1 - SwapFree / SwapTotal (0 % on a host without swap). "
                "HostSwapFillingUp fires (warning) above 80 % for 10 m.", "percentunit",
                Q("1 - node_memory_SwapFree_bytes{} / clamp_min(node_memory_SwapTotal_bytes{}, 1)",
                  "{{instance}}"), steps=above(0.8)),
            bar("Root filesystem", "Share of / not available to users (1 - avail / size). "
                "HostFilesystemFillingUp fires (warning) past 85 % when it will fill within a "
                "day; HostFilesystemAlmostFull (critical) past 95 %.", "percentunit",
                Q(ROOT_USED, "{{instance}}"), steps=above(0.85, 0.95)),
            gg("PostgreSQL connections", "Connections / max_connections. "
               "PostgresTooManyConnections fires (warning) above 80 %. Click for the "
               "Database dashboard.", "percentunit", Q(PG_CONNECTIONS, "{{instance}}"),
               steps=above(0.8), links=[detail("database", "Database dashboard")]),
            gg("Redis memory", "used_memory of maxmemory, or of the host's memory when "
               "maxmemory is 0 (no limit). RedisMemoryNearMax and RedisOutOfSystemMemory fire "
               "(warning) above 90 %. Click for the Cache dashboard.", "percentunit",
               Q(REDIS_MEMORY, "{{instance}}"), steps=above(0.9),
               links=[detail("cache", "Cache dashboard")]),
            gg("Celery pool", "Tasks executing / pool processes, over all workers "
               "(celery_worker_tasks_active / celery_worker_pool_max_concurrency); no alert. "
               "Click for the Celery dashboard.", "percentunit",
               Q(POOL_USE, "{{instance}}"), links=[detail("celery", "Celery dashboard")]),
            st("Cores", "CPUs the kernel reports (count of node_cpu_seconds_total idle "
               "series).", "short", Q(CPUS, "{{instance}}"), h=5),
            st("RAM total", "node_memory_MemTotal_bytes.", "bytes",
               Q("node_memory_MemTotal_bytes{}", "{{instance}}"), h=5),
            st("Uptime", "Time since the host booted (time() - node_boot_time_seconds).", "s",
               Q("time() - node_boot_time_seconds{}", "{{instance}}"), h=5),
        ]),
        ("Services", [
            up("PostgreSQL", "stackmon_service_up{service=\"postgres\"}: 1 if the postgres "
               "collector reached the server. PostgresDown fires (critical) when pg_up is 0 "
               "for 1 m. Click for the Database dashboard.",
               Q('stackmon_service_up{service="postgres"}', "{{instance}}"),
               links=[detail("database", "Database dashboard")]),
            up("Redis", "stackmon_service_up{service=\"redis\"}: 1 if the redis collector "
               "reached the server. RedisDown fires (critical) when redis_up is 0 for 1 m. "
               "Click for the Cache dashboard.",
               Q('stackmon_service_up{service="redis"}', "{{instance}}"),
               links=[detail("cache", "Cache dashboard")]),
            up("Celery", "stackmon_service_up{service=\"celery\"}: 1 if the broker answered. "
               "CeleryBrokerDown fires (critical) when celery_broker_up is 0 for 2 m. Click "
               "for the Celery dashboard.",
               Q('stackmon_service_up{service="celery"}', "{{instance}}"),
               links=[detail("celery", "Celery dashboard")]),
            st("Services up", "stackmon_service_up of every configured check (http, tcp, "
               "nginx): 1 if the service answered in the last scrape. ServiceDown fires "
               "(critical) when one is 0 for 2 m.", "none",
               Q('stackmon_service_up{service!~"postgres|redis|celery"}',
                 "{{instance}} {{service}}"), steps=UP, mapping=UP_TEXT, w=12),
            st("Service versions", "stackmon_service_info: version and role each service "
               "reports (value 1).", "none",
               Q("stackmon_service_info{}", "{{instance}} {{service}} {{version}} ({{role}})"),
               text=True, w=12),
            st("TLS certificate expires in", "Time left until the notAfter of the "
               "certificate each https check was served "
               "(stackmon_service_tls_cert_expiry_timestamp_seconds - time()). "
               "ServiceTLSCertExpiring fires (warning) below 14 d for 10 m, "
               "ServiceTLSCertExpiringCritical fires (critical) below 3 d and "
               "ServiceTLSCertExpired fires (critical) once it has expired.", "s",
               Q("stackmon_service_tls_cert_expiry_timestamp_seconds{} - time()",
                 "{{instance}} {{service}}"),
               steps=below(3 * 86400, 14 * 86400), w=12),
            ts("Check duration", "Time each service check took, connect and TLS included "
               "(stackmon_service_check_duration_seconds). ServiceCheckSlow fires (warning) "
               "above 1 s.", "s",
               Q("stackmon_service_check_duration_seconds{}", "{{instance}} {{service}}"),
               steps=above(1)),
            ts("HTTP status code", "Status code of each http check's response; 0 when no "
               "response came (refused, timeout, TLS error).", "none",
               Q("stackmon_service_http_status_code{}", "{{instance}} {{service}}"),
               steps=[(None, RED), (200, GREEN), (400, ORANGE), (500, RED)]),
            up("nginx up", "nginx_up per nginx check: 1 if its stub_status page was read "
               "and parsed. NginxDown fires (critical) when 0 for 2 m.",
               Q("nginx_up{}", "{{instance}} {{service}}"), w=12),
            ts("nginx connections", "Client connections of each nginx check by state "
               "(nginx_connections_active / reading / writing / waiting).", "short",
               *[Q(f"nginx_connections_{state}{{}}", f"{{{{instance}}}} {{{{service}}}} {state}")
                 for state in ("active", "reading", "writing", "waiting")]),
            ts("nginx requests", "Client requests per second of each nginx check "
               "(rate of nginx_http_requests_total).", "reqps",
               Q(rate("nginx_http_requests_total", "job, instance, service"),
                 "{{instance}} {{service}}")),
            ts("Collector success", "stackmon_scrape_collector_success: 1 if the collector "
               "finished in time without error. StackmonCollectorFailing fires (warning) when "
               "0 for 5 m.", "none",
               Q("stackmon_scrape_collector_success{}", "{{instance}} {{collector}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1),
            ts("Collector duration", "Time each collector took in the scrape "
               "(stackmon_scrape_collector_duration_seconds).", "s",
               Q("stackmon_scrape_collector_duration_seconds{}", "{{instance}} {{collector}}")),
        ]),
        ("Host", [
            ts("CPU busy", "1 - idle share of CPU time, averaged over all CPUs. "
               "HostHighCpuUsage fires (warning) above 90 % for 15 m.", "percentunit",
               Q("1 - avg by (job, instance) "
                 f"({rate('node_cpu_seconds_total', selector=IDLE)})",
                 "{{instance}}"), steps=above(0.9), max=1, w=8),
            ts("CPU by mode", "Share of all CPUs' time per mode (idle left out): CPU seconds "
               "per second / number of CPUs.", "percentunit",
               Q(f"{rate('node_cpu_seconds_total', 'job, instance, mode', NOT_IDLE)}"
                 f" / on (job, instance) group_left {CPUS}", "{{instance}} {{mode}}"),
               stack=True, max=1, w=8),
            ts("Load average", "1, 5 and 15 minute load averages and the number of CPUs "
               "(load above it means runnable tasks wait; node-mixin warns above 2 per CPU).",
               "short",
               Q("node_load1{}", "{{instance}} 1m"), Q("node_load5{}", "{{instance}} 5m"),
               Q("node_load15{}", "{{instance}} 15m"), Q(CPUS, "{{instance}} cores"), w=8),
            ts("Load per CPU", "1-minute load average / number of CPUs. HostLoadHigh fires "
               "(warning) above 2 for 15 m.", "short",
               Q(f"node_load1{{}} / on (job, instance) {CPUS}", "{{instance}}"),
               steps=above(2), w=8),
            ts("CPU frequency", "Current frequency per CPU, averaged and the highest "
               "(node_cpu_scaling_frequency_hertz; only where the kernel exposes cpufreq).",
               "hertz",
               Q("avg by (job, instance) (node_cpu_scaling_frequency_hertz{})",
                 "{{instance}} average"),
               Q("max by (job, instance) (node_cpu_scaling_frequency_hertz{})",
                 "{{instance}} max"), w=8),
            ts("Memory", "Memory used (total - available), available and total.", "bytes",
               Q("node_memory_MemTotal_bytes{} - node_memory_MemAvailable_bytes{}",
                 "{{instance}} used"),
               Q("node_memory_MemAvailable_bytes{}", "{{instance}} available"),
               Q("node_memory_MemTotal_bytes{}", "{{instance}} total"), w=8),
            ts("Memory available", "MemAvailable / MemTotal. HostMemoryAvailableLow fires "
               "(warning) below 10 % for 15 m.", "percentunit",
               Q("node_memory_MemAvailable_bytes{} / node_memory_MemTotal_bytes{}",
                 "{{instance}}"), steps=below_warning(0.1), max=1, w=8),
            ts("Swap used", "Swap in use (SwapTotal - SwapFree) and its size.", "bytes",
               Q("node_memory_SwapTotal_bytes{} - node_memory_SwapFree_bytes{}",
                 "{{instance}} used"),
               Q("node_memory_SwapTotal_bytes{}", "{{instance}} total"), w=8),
            ts("Filesystem used", "Share of each filesystem not available to users "
               "(1 - avail / size). HostFilesystemFillingUp fires (warning) past 85 % when "
               "it will fill within a day; HostFilesystemAlmostFull (critical) past 95 %.",
               "percentunit",
               Q('1 - node_filesystem_avail_bytes{fstype!=""} '
                 '/ node_filesystem_size_bytes{fstype!=""}', "{{instance}} {{mountpoint}}"),
               steps=above(0.85, 0.95), max=1, w=8),
            ts("Inodes used", "Share of each filesystem's inodes in use (1 - files_free / "
               "files). HostInodesFillingUp fires (warning) past 80 % when they will run out "
               "within a day; HostInodesAlmostExhausted fires (critical) past 95 %.",
               "percentunit",
               Q('1 - node_filesystem_files_free{fstype!=""} '
                 '/ node_filesystem_files{fstype!=""}', "{{instance}} {{mountpoint}}"),
               steps=above(0.8, 0.95), max=1, w=8),
            ts("Clock offset", "Distance of the system clock from its time source, either "
               "way (|node_timex_offset_seconds|). HostClockSkew fires (warning) beyond 50 ms "
               "while not shrinking.", "s",
               Q("abs(node_timex_offset_seconds{})", "{{instance}}"), steps=above(0.05), w=8),
            ts("Clock synchronised", "1 while the kernel reports the clock synchronised "
               "(node_timex_sync_status). HostClockNotSynchronised fires (warning) when 0 for "
               "5 m and the maximum error reaches 16 s.", "none",
               Q("node_timex_sync_status{}", "{{instance}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            tbl("Disk space", "Size, used (size - free), available to users and used share "
                "per mounted filesystem; the share is coloured at the HostFilesystemFillingUp "
                "(85 %) and HostFilesystemAlmostFull (95 %) thresholds.", "percentunit",
                [("Size", "bytes"), ("Used", "bytes"), ("Available", "bytes"),
                 ("Used %", "percentunit")],
                Q('node_filesystem_size_bytes{fstype!=""}'),
                Q('node_filesystem_size_bytes{fstype!=""} '
                  '- node_filesystem_free_bytes{fstype!=""}'),
                Q('node_filesystem_avail_bytes{fstype!=""}'),
                Q('1 - node_filesystem_avail_bytes{fstype!=""} '
                  '/ node_filesystem_size_bytes{fstype!=""}'),
                steps=above(0.85, 0.95), h=7),
            ts("Network traffic", "Bytes per second received (+) and transmitted (-) per "
               "interface (loopback left out).", "Bps",
               Q(rate("node_network_receive_bytes_total", "job, instance, device", NOT_LO),
                 "{{instance}} {{device}} rx"),
               Q(f'-{rate("node_network_transmit_bytes_total", "job, instance, device", NOT_LO)}',
                 "{{instance}} {{device}} tx"), w=8),
            ts("Network packets", "Packets per second received (+) and transmitted (-) per "
               "interface (loopback left out).", "pps",
               Q(rate("node_network_receive_packets_total", "job, instance, device", NOT_LO),
                 "{{instance}} {{device}} rx"),
               Q(f'-{rate("node_network_transmit_packets_total", "job, instance, device", NOT_LO)}',
                 "{{instance}} {{device}} tx"), w=8),
            ts("Network errors and drops", "Receive/transmit errors and drops per second "
               "(loopback left out). HostNetworkReceiveErrors / HostNetworkTransmitErrors fire "
               "(warning) when errors exceed 1 % of packets for 1 h.", "pps",
               *rates("job, instance, device", "{{instance}} {{device}}", {
                   "node_network_receive_errs_total": "rx errors",
                   "node_network_transmit_errs_total": "tx errors",
                   "node_network_receive_drop_total": "rx drops",
                   "node_network_transmit_drop_total": "tx drops",
               }, NOT_LO), w=8),
            ts("Disk throughput", "Bytes per second read (+) and written (-) per device.",
               "Bps",
               Q(rate("node_disk_read_bytes_total", "job, instance, device"),
                 "{{instance}} {{device}} read"),
               Q(f'-{rate("node_disk_written_bytes_total", "job, instance, device")}',
                 "{{instance}} {{device}} write"), w=8),
            ts("Disk IOPS", "Completed reads (+) and writes (-) per second.", "iops",
               Q(rate("node_disk_reads_completed_total", "job, instance, device"),
                 "{{instance}} {{device}} reads"),
               Q(f'-{rate("node_disk_writes_completed_total", "job, instance, device")}',
                 "{{instance}} {{device}} writes"), w=8),
            ts("Disk busy", "Share of time each device was busy with I/O (100 % on NVMe or "
               "virtio is not saturation: HostDiskIOSaturated watches the queue depth).",
               "percentunit",
               Q(rate("node_disk_io_time_seconds_total", "job, instance, device"),
                 "{{instance}} {{device}}"), steps=above(0.9), max=1, w=8),
        ]),
        ("API (Django application)", [
            ts("Request rate", "Requests per second per Django view, from the application's "
               "own /metrics (django-prometheus: "
               "django_http_requests_latency_seconds_by_view_method).", "reqps",
               Q(rate("django_http_requests_latency_seconds_by_view_method_count", APP),
                 "{{instance}} {{view}}"), w=8),
            ts("5xx ratio", "Responses with a 5xx status / all responses per view "
               "(django_http_responses_total_by_status_view_method); 0 when idle or "
               "without errors.",
               "percentunit",
               Q(ratio(rate("django_http_responses_total_by_status_view_method_total", APP,
                            '{status=~"5.."}'),
                       rate("django_http_responses_total_by_status_view_method_total", APP)),
                 "{{instance}} {{view}}"), max=1, w=8),
            ts("p95 latency", "95th percentile of the response time per view "
               "(django_http_requests_latency_seconds_by_view_method).", "s",
               Q(quantile(0.95, "django_http_requests_latency_seconds_by_view_method_bucket",
                          APP), "{{instance}} {{view}}"), w=8),
        ]),
    ], extra_vars=[
        Var("app_job", "job", "django_http_requests_latency_seconds_by_view_method_count"),
        Var("app_instance", "instance",
            'django_http_requests_latency_seconds_by_view_method_count{job=~"$app_job"}'),
    ])

PG = "job, instance"
PGDB = "job, instance, datname"
STATEMENTS = "job, instance, datname, queryid"
TOP_STATEMENTS = f'topk(10, {increase("pg_stat_statements_seconds_total", STATEMENTS, DB)})'

DATABASE = Dash(
    "database", "stackmon / Database", "PostgreSQL servers watched by stackmon.", "pg_up", [
        ("Status", [
            up("PostgreSQL up", "pg_up: 1 if the last scrape could connect and query. "
               "PostgresDown fires (critical) when 0 for 1 m.", Q("pg_up{}", "{{instance}}")),
            st("Version", "Server version (pg_static).", "none",
               Q("pg_static{}", "{{instance}} {{short_version}}"), text=True),
            st("Role", "1 on a standby, 0 on a primary (pg_replication_is_replica).", "none",
               Q("pg_replication_is_replica{}", "{{instance}}"),
               mapping={"0": ("primary", GREEN), "1": ("standby", GREEN)}),
            st("Connections used", "Connections / max_connections. "
               "PostgresTooManyConnections fires (warning) above 80 %.", "percentunit",
               Q(PG_CONNECTIONS, "{{instance}}"), steps=above(0.8), w=4),
            st("Uptime", "Time since the postmaster started "
               "(time() - pg_postmaster_start_time_seconds). PostgresRestarted fires (warning) "
               "below 5 m.", "s",
               Q("time() - pg_postmaster_start_time_seconds{}", "{{instance}}"),
               steps=below_warning(300)),
            st("Tables", "User tables (ordinary and partitioned) in the selected databases "
               "(pg_database_user_tables).", "short",
               Q(f"sum by ({PG}) (pg_database_user_tables{DB})", "{{instance}}")),
        ]),
        ("Connections and queries", [
            ts("Connections by state", "Backends per state (pg_stat_activity_count).",
               "short", Q(f"sum by ({PG}, state) (pg_stat_activity_count{DB})",
                          "{{instance}} {{state}}"), stack=True, w=8),
            ts("Oldest transaction", "Age of the oldest open client transaction per database "
               "(autovacuum and pg_dump left out). PostgresLongRunningTransaction fires "
               "(warning) above 1 h.", "s",
               Q(f"max by ({PGDB}) (pg_stat_activity_client_max_tx_duration_seconds{DB})",
                 "{{instance}} {{datname}}"), steps=above(3600), w=8),
            ts("Slow queries", "Client statements running longer than the configured "
               "threshold. PostgresSlowQueries fires (warning) above 0 for 5 m.", "short",
               Q(f"sum by ({PGDB}) (pg_stat_activity_slow_queries{DB})",
                 "{{instance}} {{datname}}"), steps=above(0.5), w=8),
            ts("Idle in transaction", "Age of the oldest transaction left idle per database "
               "(pg_stat_activity_max_tx_duration of the idle-in-transaction states). "
               "PostgresIdleInTransaction fires (warning) above 5 m.", "s",
               Q(f"max by ({PGDB}) (pg_stat_activity_max_tx_duration"
                 '{datname=~"$db", state=~"idle in transaction.*"})',
                 "{{instance}} {{datname}}"), steps=above(300), w=8),
            ts("Rollback ratio", "Rolled back / all transactions per database, 0 when idle. "
               "PostgresHighRollbackRatio fires (warning) above 10 % when busy.",
               "percentunit",
               Q(ratio(rate("pg_stat_database_xact_rollback", PGDB, DB),
                       f'({rate("pg_stat_database_xact_rollback", PGDB, DB)} + '
                       f'{rate("pg_stat_database_xact_commit", PGDB, DB)})'),
                 "{{instance}} {{datname}}"), steps=above(0.1), max=1, w=8),
            ts("Transactions", "Commits and rollbacks per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_xact_commit": "commits",
                   "pg_stat_database_xact_rollback": "rollbacks",
               }, DB), w=8),
            ts("Cache hit ratio", "Blocks found in shared buffers / blocks requested. "
               "PostgresCacheHitRatioLow fires (warning) below 90 % for 15 m.", "percentunit",
               Q(f'{rate("pg_stat_database_blks_hit", PGDB, DB)} / '
                 f'({rate("pg_stat_database_blks_hit", PGDB, DB)} + '
                 f'{rate("pg_stat_database_blks_read", PGDB, DB)})',
                 "{{instance}} {{datname}}"), steps=below_warning(0.9), max=1, w=12),
            ts("Rows", "Rows returned, fetched, inserted, updated and deleted per second.",
               "short",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_tup_returned": "returned",
                   "pg_stat_database_tup_fetched": "fetched",
                   "pg_stat_database_tup_inserted": "inserted",
                   "pg_stat_database_tup_updated": "updated",
                   "pg_stat_database_tup_deleted": "deleted",
               }, DB), w=12),
            tbl("Top statements", "The 10 statements with the most execution time in the "
                "selected range, by queryid (pg_stat_statements; only when stackmon's "
                "statements collection is on, the query text is never exported).", "s",
                [("Time", "s"), ("Calls", "short"), ("Mean", "s")],
                Q(TOP_STATEMENTS),
                Q(f'{increase("pg_stat_statements_calls_total", STATEMENTS, DB)} '
                  f"and on ({STATEMENTS}) {TOP_STATEMENTS}"),
                Q(f'{increase("pg_stat_statements_seconds_total", STATEMENTS, DB)} / '
                  f'({increase("pg_stat_statements_calls_total", STATEMENTS, DB)} > 0) '
                  f"and on ({STATEMENTS}) {TOP_STATEMENTS}"), h=8),
        ]),
        ("Contention and storage", [
            ts("Deadlocks", "Deadlocks detected in the interval. PostgresDeadlocks fires "
               "(warning) above 5 in 5 m.", "short",
               Q(f"sum by ({PGDB}) (increase(pg_stat_database_deadlocks{DB}[{RI}]))",
                 "{{instance}} {{datname}}"), steps=above(5), w=8),
            ts("Locks by mode", "Locks held or awaited per mode (pg_locks_count).", "short",
               Q(f"sum by ({PG}, mode) (pg_locks_count{DB})", "{{instance}} {{mode}}"),
               stack=True, w=8),
            ts("Temporary files", "Bytes per second written to temporary files (work_mem "
               "too small for sorts and hashes).", "Bps",
               Q(rate("pg_stat_database_temp_bytes", PGDB, DB),
                 "{{instance}} {{datname}}"), w=8),
            ts("Database size", "Disk space used per database.", "bytes",
               Q(f"pg_database_size_bytes{DB}", "{{instance}} {{datname}}"), w=8),
            ts("Tables per database", "User tables per database (pg_database_user_tables).",
               "short", Q(f"pg_database_user_tables{DB}", "{{instance}} {{datname}}"), w=8),
            ts("Conflicts and fatal sessions", "Queries cancelled by recovery conflicts and "
               "sessions ended by fatal errors, per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_conflicts": "conflicts",
                   "pg_stat_database_sessions_fatal": "fatal sessions",
               }, DB), w=8),
        ]),
        ("Replication and checkpoints", [
            ts("Standby replay lag", "On a standby: seconds since the last replayed "
               "transaction while WAL is pending. PostgresReplicationLagSeconds fires "
               "(warning) above 30 s.", "s",
               Q("pg_replication_lag_seconds{}", "{{instance}}"), steps=above(30), w=8),
            ts("Standby lag (bytes)", "On a primary: WAL bytes each standby has not "
               "replayed. PostgresReplicationLagBytes fires (warning) above 1 GiB.", "bytes",
               Q("pg_stat_replication_lag_bytes{}", "{{instance}} {{application_name}}"),
               steps=above(1024 ** 3), w=8),
            ts("Standby lag per standby", "On a primary: write, flush and replay lag each "
               "standby reports (pg_stat_replication_*_lag_seconds; absent while idle).", "s",
               *[Q(f"pg_stat_replication_{kind}_lag_seconds{{}}",
                   f"{{{{instance}}}} {{{{application_name}}}} {kind}")
                 for kind in ("write", "flush", "replay")], w=8),
            ts("Replication slot retained WAL", "WAL each replication slot keeps from "
               "removal (pg_replication_slot_retained_wal_bytes); a slot nobody consumes "
               "fills the disk. PostgresReplicationSlotWalRetained fires (warning) above 10 GiB.",
               "bytes",
               Q("pg_replication_slot_retained_wal_bytes{}", "{{instance}} {{slot_name}}"),
               steps=above(10 * 1024 ** 3), w=8),
            ts("Replication slots active", "1 while a consumer uses the slot "
               "(pg_replication_slot_active). PostgresReplicationSlotInactive fires "
               "(warning) when 0 for 30 m.", "none",
               Q("pg_replication_slot_active{}", "{{instance}} {{slot_name}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            ts("Checkpoints", "Scheduled and requested checkpoints per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_bgwriter_checkpoints_timed_total": "timed",
                   "pg_stat_bgwriter_checkpoints_req_total": "requested",
               }), w=8),
            ts("Buffers written", "Buffers written per second by checkpoints, the "
               "background writer and backends.", "short",
               *rates(PG, "{{instance}}", {
                   "pg_stat_bgwriter_buffers_checkpoint_total": "checkpoint",
                   "pg_stat_bgwriter_buffers_clean_total": "bgwriter",
                   "pg_stat_bgwriter_buffers_backend_total": "backend",
               })),
            ts("Checkpoint time", "Seconds per second spent writing and syncing "
               "checkpoint files (postgres_exporter's counters are in milliseconds).",
               "percentunit",
               *[Q(f"{query.expr} / 1000", query.legend) for query in rates(
                   PG, "{{instance}}", {
                       "pg_stat_bgwriter_checkpoint_write_time_total": "write",
                       "pg_stat_bgwriter_checkpoint_sync_time_total": "sync",
                   })]),
        ]),
    ], extra_vars=[Var("db", "datname",
                       'pg_database_size_bytes{job=~"$job", instance=~"$instance"}')])

RD = "job, instance"

CACHE = Dash(
    "cache", "stackmon / Cache", "Redis servers watched by stackmon.", "redis_up", [
        ("Status", [
            up("Redis up", "redis_up: 1 if the last scrape succeeded. RedisDown fires "
               "(critical) when 0 for 1 m.", Q("redis_up{}", "{{instance}}")),
            st("Version and role", "redis_version and role (master/slave) from INFO.", "none",
               Q("redis_instance_info{}", "{{instance}} {{redis_version}} {{role}}"),
               text=True),
            st("Memory used", "used_memory / maxmemory, or / the host's memory when "
               "maxmemory is 0 (no limit, Redis's default). RedisMemoryNearMax and "
               "RedisOutOfSystemMemory fire (warning) above 90 %.", "percentunit",
               Q(REDIS_MEMORY, "{{instance}}"), steps=above(0.9)),
            st("Clients", "Client connections (replicas excluded).", "short",
               Q("redis_connected_clients{}", "{{instance}}")),
            st("Uptime", "Seconds since the server started.", "s",
               Q("redis_uptime_in_seconds{}", "{{instance}}")),
            st("Fragmentation", "used_memory_rss / used_memory.", "short",
               Q("redis_mem_fragmentation_ratio{}", "{{instance}}")),
        ]),
        ("Memory and clients", [
            ts("Memory", "Memory used, resident set size, maxmemory (0 = no limit) and the "
               "host's memory.", "bytes",
               Q("redis_memory_used_bytes{}", "{{instance}} used"),
               Q("redis_memory_used_rss_bytes{}", "{{instance}} rss"),
               Q("redis_memory_max_bytes{}", "{{instance}} max"),
               Q("redis_total_system_memory_bytes{}", "{{instance}} system"), w=8),
            ts("Fragmentation over time", "used_memory_rss / used_memory "
               "(redis_mem_fragmentation_ratio): well above 1 means memory held but unused, "
               "below 1 means swapping.", "short",
               Q("redis_mem_fragmentation_ratio{}", "{{instance}}"), w=8),
            ts("Clients", "Connected and blocked clients.", "short",
               Q("redis_connected_clients{}", "{{instance}} connected"),
               Q("redis_blocked_clients{}", "{{instance}} blocked"), w=8),
            ts("Rejected connections", "Connections refused because of maxclients. "
               "RedisRejectedConnections fires (critical) on any increase over 5 m.", "short",
               Q(f"increase(redis_rejected_connections_total{{}}[{RI}])", "{{instance}}"),
               steps=[(None, GREEN), (0.5, RED)], w=8),
        ]),
        ("Throughput", [
            ts("Hit rate", "Key lookups that found the key / all lookups; 0 when idle.",
               "percentunit",
               Q(ratio(rate("redis_keyspace_hits_total", RD),
                       f'({rate("redis_keyspace_hits_total", RD)} + '
                       f'{rate("redis_keyspace_misses_total", RD)})'), "{{instance}}"),
               max=1, w=8),
            ts("Hits and misses", "Key lookups per second that found the key (hits) and "
               "that did not (misses).", "ops",
               *rates(RD, "{{instance}}", {"redis_keyspace_hits_total": "hits",
                                           "redis_keyspace_misses_total": "misses"}), w=8),
            ts("Operations", "Commands processed per second.", "ops",
               Q(rate("redis_commands_processed_total", RD), "{{instance}}"), w=8),
            ts("Commands by type", "Calls per second per command (top 10).", "ops",
               Q(f'topk(10, {rate("redis_commands_total", f"{RD}, cmd")})',
                 "{{instance}} {{cmd}}"), w=8),
            ts("Latency per command", "Average time per call of each command (time spent / "
               "calls, top 10 by time per call); idle commands are left out.", "s",
               Q(f'topk(10, {rate("redis_commands_duration_seconds_total", f"{RD}, cmd")} / '
                 f'({rate("redis_commands_total", f"{RD}, cmd")} > 0))',
                 "{{instance}} {{cmd}}"), w=8),
            ts("Network", "Bytes per second read (+) and written (-).", "Bps",
               Q(rate("redis_net_input_bytes_total", RD), "{{instance}} in"),
               Q(f'-{rate("redis_net_output_bytes_total", RD)}', "{{instance}} out"),
               w=8),
            ts("Expired keys", "Keys deleted at their TTL per second.", "ops",
               Q(rate("redis_expired_keys_total", RD), "{{instance}}"), w=8),
            ts("Evicted keys", "Keys evicted by maxmemory in the interval. RedisEvictions "
               "fires (warning) on any eviction over 5 m, unless the policy is allkeys-*.",
               "short",
               Q(f"increase(redis_evicted_keys_total{{}}[{RI}])", "{{instance}}"),
               steps=above(0.5), w=8),
            ts("Keys per database", "Keys per database and keys with a TTL.", "short",
               Q("redis_db_keys{}", "{{instance}} {{db}}"),
               Q("redis_db_keys_expiring{}", "{{instance}} {{db}} expiring"), w=8),
        ]),
        ("Persistence and replication", [
            up("Last RDB save", "redis_rdb_last_bgsave_status: 1 if the last background save "
               "succeeded. RedisRdbSaveFailed fires (warning) when 0 for 5 m.",
               Q("redis_rdb_last_bgsave_status{}", "{{instance}}"), w=8, down=ORANGE,
               texts=("FAILED", "OK")),
            ts("Changes since last save", "Writes since the last RDB save.", "short",
               Q("redis_rdb_changes_since_last_save{}", "{{instance}}"), w=8),
            ts("Slow log", "Entries in the slow log.", "short",
               Q("redis_slowlog_length{}", "{{instance}}"), w=8),
            ts("Connected replicas", "Replicas connected to each primary.", "short",
               Q("redis_connected_slaves{}", "{{instance}}"), w=8),
            ts("Replica link", "On a replica: 1 while the link to the primary is up. "
               "RedisReplicaLinkDown fires (critical) when 0 for 2 m.", "none",
               Q("redis_master_link_up{}", "{{instance}} → {{master_host}}:{{master_port}}"),
               steps=UP, max=1, w=8),
            ts("Replica ack lag", "On a primary: seconds since each replica's last ack.",
               "s", Q("redis_connected_slave_lag_seconds{}",
                      "{{instance}} {{slave_ip}}:{{slave_port}}"), w=8),
        ]),
    ])

CW = "job, instance"
TASK = "job, instance, name"
TQ = '{name=~"$task", queue_name=~"$queue_name"}'
QN = '{queue_name=~"$queue_name"}'
RUNTIME = "celery_task_runtime"
QUEUE_WAIT = "celery_task_queue_wait_time"
CELERY_VARS = [
    Var("queue_name", "queue_name",
        'celery_queue_length{job=~"$job", instance=~"$instance"}'),
    Var("task", "name", 'celery_task_received_total{job=~"$job", instance=~"$instance"}'),
]
TASK_LINK = ("Open this task", "/d/stackmon-tasks?var-job=${__field.labels.job}"
             "&var-instance=${__field.labels.instance}&var-task=${__field.labels.name}"
             "&${__url_time_range}")


def task_states(by: str, legend: str, selector: str = TQ) -> list[Q]:
    """Task events per second by state (celery_task_<state>_total), summed by ``by``."""
    return rates(by, legend, {f"celery_task_{state}_total": state for state in (
        "sent", "received", "started", "succeeded", "failed", "retried", "revoked",
        "rejected")}, selector)


def quantiles(histogram: str, by: str, legend: str) -> list[Q]:
    return [Q(quantile(q, f"{histogram}_bucket", by, TQ), f"{legend} p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


FAILURE_RATIO = failure_ratio(rate("celery_task_failed_total", TASK, TQ),
                              rate("celery_task_succeeded_total", TASK, TQ))

CELERY = Dash(
    "celery", "stackmon / Celery", "Celery brokers, workers and tasks watched by stackmon.",
    "celery_broker_up", [
        ("Status", [
            up("Broker up", "celery_broker_up: 1 if the broker answered this scrape. "
               "CeleryBrokerDown fires (critical) when 0 for 2 m.",
               Q("celery_broker_up{}", "{{instance}}")),
            st("Workers online", "Workers up (celery_workers). CeleryNoWorkers fires "
               "(critical) at 0.", "short", Q("celery_workers{}", "{{instance}}"),
               steps=UP),
            up("Event receiver", "stackmon_celery_events_receiver_up: 1 while the event "
               "receiver consumes from the broker. CeleryEventsReceiverDown fires (warning) "
               "when 0 for 5 m.", Q("stackmon_celery_events_receiver_up{}", "{{instance}}"),
               down=ORANGE),
            st("Last inspect", "Time since the last successful inspect round (no value "
               "while inspect is off or has not succeeded yet). CeleryInspectStale fires "
               "(warning) above 10 m.", "s",
               Q("time() - (stackmon_celery_inspect_last_success_timestamp_seconds{} > 0)",
                 "{{instance}}"), steps=above(600)),
            st("Queued tasks", "Messages waiting in the selected queues.", "short",
               Q(f"sum by ({CW}) (celery_queue_length{QN})", "{{instance}}")),
            st("Failure ratio", "Failed / (failed + succeeded) tasks per task name, 0 when a "
               "task had no completions. CeleryTaskFailureRatioHigh fires (warning) above "
               "5 %.", "percentunit", Q(FAILURE_RATIO, "{{instance}} {{name}}"),
               steps=above(0.05), links=[TASK_LINK]),
        ]),
        ("Workers", [
            ts("Worker up", "celery_worker_up per worker. CeleryWorkerDown fires (warning) "
               "when 0 for 5 m.", "none",
               Q("celery_worker_up{}", "{{instance}} {{hostname}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            ts("Tasks per worker", "Tasks executing (active), prefetched (reserved) and held "
               "with an ETA (scheduled) per worker.", "short",
               Q("celery_worker_tasks_active{}", "{{instance}} {{hostname}} active"),
               Q("celery_worker_tasks_reserved{}", "{{instance}} {{hostname}} reserved"),
               Q("celery_worker_tasks_scheduled{}", "{{instance}} {{hostname}} scheduled"),
               w=8),
            ts("Queue length", "Messages waiting per queue. CeleryQueueBacklogGrowing fires "
               "(warning) above 100 while not draining.", "short",
               Q(f"celery_queue_length{QN}", "{{instance}} {{queue_name}}"),
               steps=above(100), w=8),
            ts("Consumers per queue", "Workers consuming each queue and their pool processes "
               "(celery_active_worker_count, celery_active_process_count; inspect data).",
               "short", Q(f"celery_active_worker_count{QN}", "{{instance}} {{queue_name}} workers"),
               Q(f"celery_active_process_count{QN}", "{{instance}} {{queue_name}} processes"),
               w=6),
            ts("Pool size", "Pool processes (or threads) per worker host "
               "(celery_worker_pool_max_concurrency, from inspect stats).", "short",
               Q("celery_worker_pool_max_concurrency{}", "{{instance}} {{hostname}}"), w=6),
            ts("Pool use", "Tasks executing / pool size per worker host: at 100 % new tasks "
               "wait in the queue.", "percentunit",
               Q("celery_worker_tasks_active{} / (celery_worker_pool_max_concurrency{} > 0)",
                 "{{instance}} {{hostname}}"), max=1, w=6),
            ts("Registered tasks", "Task types each worker host has registered (inspect "
               "registered).", "short",
               Q("celery_worker_tasks_registered{}", "{{instance}} {{hostname}}"), w=6),
        ]),
        ("Tasks", [
            ts("Task events", "Task events per second by state (sent, received, started, "
               "succeeded, failed, retried, revoked, rejected).", "ops",
               *task_states(CW, "{{instance}}")),
            ts("Failures by task", "Failed tasks per second by task name and exception "
               "class.", "ops",
               Q(rate("celery_task_failed_total", f"{TASK}, exception", TQ),
                 "{{instance}} {{name}} {{exception}}"), links=[TASK_LINK]),
            ts("Task runtime", "p50, p95 and p99 run time of succeeded tasks per task name "
               f"({RUNTIME}).", "s", *quantiles(RUNTIME, TASK, "{{instance}} {{name}}")),
            ts("Queue wait", "p50, p95 and p99 time from sent (or a later ETA) to started "
               "per task name "
               f"({QUEUE_WAIT}).", "s", *quantiles(QUEUE_WAIT, TASK, "{{instance}} {{name}}")),
            ts("Revoked and rejected", "Tasks revoked (cancelled) and rejected by workers "
               "per second.", "ops",
               *rates(CW, "{{instance}}", {"celery_task_revoked_total": "revoked",
                                           "celery_task_rejected_total": "rejected"}, TQ)),
            ts("Events consumed", "Celery events consumed per second and receiver restarts.",
               "ops",
               Q(rate("stackmon_celery_events_total", CW), "{{instance}} events"),
               Q(f"increase(stackmon_celery_events_receiver_restarts_total{{}}[{RI}])",
                 "{{instance}} restarts")),
        ]),
        ("Over the selected range", [
            tbl("Top failing tasks", "The 10 task names with the most failures in the "
                "selected range (increase of celery_task_failed_total); click a row for the "
                "task's dashboard.", "short", [("Failures", "short")],
                Q(f'topk(10, {increase("celery_task_failed_total", TASK, TQ)} > 0)'),
                links=[TASK_LINK], w=12),
            tbl("Slowest tasks", "The 10 task names with the longest mean run time in the "
                "selected range, with their p95 and number of runs "
                f"({RUNTIME}).", "s", [("Mean", "s"), ("p95", "s"), ("Runs", "short")],
                Q(f'topk(10, {increase(f"{RUNTIME}_sum", TASK, TQ)} / '
                  f'({increase(f"{RUNTIME}_count", TASK, TQ)} > 0))'),
                Q(f"histogram_quantile(0.95, "
                  f'{increase(f"{RUNTIME}_bucket", f"le, {TASK}", TQ)}) >= 0'),
                Q(f'{increase(f"{RUNTIME}_count", TASK, TQ)} > 0'),
                links=[TASK_LINK], w=12),
        ]),
    ], extra_vars=CELERY_VARS)

TASKS = Dash(
    "tasks", "stackmon / Celery tasks",
    "One Celery task (or several): rate, failures by exception, run time and queue wait.",
    "celery_broker_up", [
        ("Task", [
            st("Failure ratio", "Failed / (failed + succeeded) of the selected tasks, 0 when "
               "a task had no completions. CeleryTaskFailureRatioHigh fires (warning) above "
               "5 %.", "percentunit", Q(FAILURE_RATIO, "{{instance}} {{name}}"),
               steps=above(0.05), w=8),
            st("Succeeded in range", "Completions of the selected tasks in the selected "
               "range.", "short",
               Q(increase("celery_task_succeeded_total", TASK, TQ), "{{instance}} {{name}}"),
               w=8),
            st("Failed in range", "Failures of the selected tasks in the selected range.",
               "short",
               Q(increase("celery_task_failed_total", TASK, TQ), "{{instance}} {{name}}"),
               w=8),
            ts("Rate by state", "Task events per second of the selected tasks by state.",
               "ops", *task_states(TASK, "{{instance}} {{name}}")),
            ts("Failures by exception", "Failures per second of the selected tasks by "
               "exception class.", "ops",
               Q(rate("celery_task_failed_total", f"{TASK}, exception", TQ),
                 "{{instance}} {{name}} {{exception}}")),
            ts("Retries, revocations and rejections", "Retries, revocations and rejections "
               "per second of the selected tasks.", "ops",
               *rates(TASK, "{{instance}} {{name}}", {
                   "celery_task_retried_total": "retried",
                   "celery_task_revoked_total": "revoked",
                   "celery_task_rejected_total": "rejected"}, TQ)),
            tbl("Failures by exception in range", "Failures of the selected tasks per "
                "exception class in the selected range.", "short", [("Failures", "short")],
                Q(f'{increase("celery_task_failed_total", f"{TASK}, exception", TQ)} > 0'),
                w=12),
            ts("Runtime", f"p50, p95 and p99 run time of succeeded tasks ({RUNTIME}).", "s",
               *quantiles(RUNTIME, TASK, "{{instance}} {{name}}")),
            ts("Queue wait", "p50, p95 and p99 time from sent (or a later ETA) to started "
               f"({QUEUE_WAIT}).",
               "s", *quantiles(QUEUE_WAIT, TASK, "{{instance}} {{name}}")),
        ]),
    ], extra_vars=CELERY_VARS)

DASHBOARDS = {d.slug: d for d in (OVERVIEW, DATABASE, CACHE, CELERY, TASKS)}


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


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every dashboard as ``<slug>.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for slug, d in DASHBOARDS.items():
        path = out_dir / f"{slug}.json"
        path.write_text(render(d))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    for path in write_all(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
