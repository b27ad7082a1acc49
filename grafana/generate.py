"""Generate stackmon's Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk.

Run ``.venv/bin/python -m grafana.generate`` (or ``make dashboards``) after changing this
file; the JSON files are committed and never edited by hand. A unit test fails when they
differ from what this module produces.

Queries are written with ``{...}`` label matchers (``{}`` for none); :func:`scoped` adds
``job=~"$job", instance=~"$instance"`` to every one of them.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
TAG = "stackmon"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SCOPE = 'job=~"$job", instance=~"$instance"'

GREEN, ORANGE, RED = "green", "orange", "red"

# Threshold steps: (value, colour); the first value is None (the base colour).
Steps = Sequence[tuple[float | None, str]]
OK_ONLY: Steps = [(None, GREEN)]
UP: Steps = [(None, RED), (1, GREEN)]
UP_TEXT = {"0": ("DOWN", RED), "1": ("UP", GREEN)}


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


def scoped(expr: str) -> str:
    """``expr`` with the job and instance matchers added to every label selector."""
    return re.sub(r"\{([^}]*)\}",
                  lambda m: "{" + ", ".join(p for p in (SCOPE, m.group(1).strip()) if p) + "}",
                  expr)


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL (unscoped) and its legend."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class P:
    """A panel: kind is ``ts`` (time series) or ``stat``; w/h in grid units."""

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


def ts(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    return P("ts", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def st(title: str, description: str, unit: str, *queries: Q, **kw: object) -> P:
    kw.setdefault("w", 4)
    kw.setdefault("h", 4)
    return P("stat", title, description, unit, queries, **kw)  # type: ignore[arg-type]


def up(title: str, description: str, q: Q, w: int = 4, down: str = RED) -> P:
    """A stat of a 0/1 up-gauge shown as DOWN (``down``: the alert's colour) / UP (green)."""
    return st(title, description, "none", q, steps=[(None, down), (1, GREEN)],
              mapping={"0": ("DOWN", down), "1": ("UP", GREEN)}, w=w)


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def _targets(queries: Sequence[Q], instant: bool) -> list[Builder[Dataquery]]:
    out: list[Builder[Dataquery]] = []
    for i, q in enumerate(queries):
        t = (prometheus.Dataquery().expr(scoped(q.expr)).legend_format(q.legend)
             .ref_id(chr(ord("A") + i)).datasource(DATASOURCE))
        out.append(t.instant() if instant else t.range())
    return out


def build_panel(p: P, panel_id: int) -> timeseries.Panel | stat.Panel:
    """The SDK builder for ``p``."""
    panel: timeseries.Panel | stat.Panel
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
    else:
        panel = (stat.Panel().graph_mode(cm.BigValueGraphMode.NONE)
                 .color_mode(cm.BigValueColorMode.BACKGROUND)
                 .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))
        if p.text:
            panel = panel.text_mode(cm.BigValueTextMode.NAME)
        if p.mapping:
            panel = panel.mappings([dm.ValueMap(options={
                value: dm.ValueMappingResult(text=text, color=colour, index=i)
                for i, (value, (text, colour)) in enumerate(sorted(p.mapping.items()))})])
        instant = True
    panel = (panel.id(panel_id).title(p.title).description(p.description).unit(p.unit)
             .datasource(DATASOURCE).height(p.h).span(p.w).thresholds(_thresholds(p.steps))
             .targets(_targets(p.queries, instant)))
    if p.max is not None:
        panel = panel.min(0).max(p.max)
    return panel


@dataclass(frozen=True)
class Dash:
    """A dashboard: uid suffix, title, the metric its variables are read from, rows."""

    slug: str
    title: str
    description: str
    anchor: str
    rows: Sequence[tuple[str, Sequence[P]]]


def _variables(anchor: str) -> list[db.DatasourceVariable | db.QueryVariable]:
    ds = db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    out: list[db.DatasourceVariable | db.QueryVariable] = [ds]
    for name, query in (("job", f"label_values({anchor}, job)"),
                        ("instance", f'label_values({anchor}{{job=~"$job"}}, instance)')):
        out.append(db.QueryVariable(name).label(name).datasource(DATASOURCE).query(query)
                   .multi(True).include_all(True).all_value(".+")
                   .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                   .sort(dm.VariableSort.ALPHABETICAL_ASC)
                   .current(dm.VariableOption(selected=True, text="All", value="$__all")))
    return out


def build_dashboard(d: Dash) -> dm.Dashboard:
    """The dashboard model of ``d``: variables, tab links, rows of panels."""
    b = (db.Dashboard(d.title).uid(f"stackmon-{d.slug}").description(d.description)
         .tags([TAG, d.slug]).readonly().refresh("30s").time("now-1h", "now")
         .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .link(db.DashboardLink("stackmon").type(dm.DashboardLinkType.DASHBOARDS)
               .tags([TAG]).as_dropdown(False).include_vars(True).keep_time(True)))
    for v in _variables(d.anchor):
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
IDLE = '{mode="idle"}'


def rates(by: str, legend: str, series: Mapping[str, str]) -> list[Q]:
    """One query per counter (rate summed by ``by``), legend ``legend`` + its label."""
    return [Q(rate(metric, by), f"{legend} {label}".strip()) for metric, label in series.items()]


def quantile(q: float, bucket: str, by: str) -> str:
    """The ``q`` quantile of a histogram's ``_bucket`` series, per ``by``."""
    return f"histogram_quantile({q}, {rate(bucket, 'le, ' + by)})"


def rate(metric: str, by: str = "", selector: str = "{}") -> str:
    inner = f"rate({metric}{selector}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else inner


OVERVIEW = Dash(
    "overview", "stackmon / Overview",
    "Hosts and the status of every service stackmon checks.", "stackmon_build_info", [
        ("Services", [
            st("Services up", "stackmon_service_up per service: 1 if the service answered its "
               "check (or its collector reached it) in the last scrape. ServiceDown fires "
               "(critical) when one is 0 for 2 m.", "none",
               Q("stackmon_service_up{}", "{{service}}"), steps=UP, mapping=UP_TEXT, w=12),
            st("Service versions", "stackmon_service_info: version and role each service "
               "reports (value 1).", "none",
               Q("stackmon_service_info{}", "{{service}} {{version}} ({{role}})"),
               text=True, w=12),
            ts("Check duration", "Time each service check took, connect and TLS included "
               "(stackmon_service_check_duration_seconds). ServiceCheckSlow fires (warning) "
               "above 1 s.", "s",
               Q("stackmon_service_check_duration_seconds{}", "{{service}}"),
               steps=above(1)),
            ts("HTTP status code", "Status code of each http check's response; 0 when no "
               "response came (refused, timeout, TLS error).", "none",
               Q("stackmon_service_http_status_code{}", "{{service}}"),
               steps=[(None, RED), (200, GREEN), (400, ORANGE), (500, RED)]),
            st("TLS certificate expires in", "Time left until the notAfter of the "
               "certificate each https check was served "
               "(stackmon_service_tls_cert_expiry_timestamp_seconds - time()). "
               "ServiceTLSCertExpiring fires (warning) below 14 d for 10 m.", "s",
               Q("stackmon_service_tls_cert_expiry_timestamp_seconds{} - time()",
                 "{{service}}"),
               steps=below_warning(14 * 86400), w=12),
            up("nginx up", "nginx_up per nginx check: 1 if its stub_status page was read "
               "and parsed. NginxDown fires (critical) when 0 for 2 m.",
               Q("nginx_up{}", "{{service}}"), w=12),
            ts("nginx connections", "Client connections of each nginx check by state "
               "(nginx_connections_active / reading / writing / waiting).", "short",
               *[Q(f"nginx_connections_{state}{{}}", f"{{{{service}}}} {state}")
                 for state in ("active", "reading", "writing", "waiting")]),
            ts("nginx requests", "Client requests per second of each nginx check "
               "(rate of nginx_http_requests_total).", "reqps",
               Q(rate("nginx_http_requests_total", "job, instance, service"), "{{service}}")),
            ts("Collector success", "stackmon_scrape_collector_success: 1 if the collector "
               "finished in time without error. StackmonCollectorFailing fires (warning) when "
               "0 for 5 m.", "none",
               Q("stackmon_scrape_collector_success{}", "{{collector}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1),
            ts("Collector duration", "Time each collector took in the scrape "
               "(stackmon_scrape_collector_duration_seconds).", "s",
               Q("stackmon_scrape_collector_duration_seconds{}", "{{collector}}")),
        ]),
        ("Host", [
            ts("CPU busy", "1 - idle share of CPU time, averaged over all CPUs. "
               "HostHighCpuUsage fires (warning) above 90 % for 15 m.", "percentunit",
               Q("1 - avg by (job, instance) "
                 f"({rate('node_cpu_seconds_total', selector=IDLE)})",
                 "{{instance}}"), steps=above(0.9), max=1, w=8),
            ts("CPU by mode", "CPU seconds per second by mode, summed over CPUs.", "short",
               Q(rate("node_cpu_seconds_total", "instance, mode", '{mode!="idle"}'),
                 "{{instance}} {{mode}}"), stack=True, w=8),
            ts("Load average", "1, 5 and 15 minute load averages.", "short",
               Q("node_load1{}", "{{instance}} 1m"), Q("node_load5{}", "{{instance}} 5m"),
               Q("node_load15{}", "{{instance}} 15m"), w=8),
            ts("Memory", "Memory used (total - available) and available.", "bytes",
               Q("node_memory_MemTotal_bytes{} - node_memory_MemAvailable_bytes{}",
                 "{{instance}} used"),
               Q("node_memory_MemAvailable_bytes{}", "{{instance}} available"), w=8),
            ts("Memory available", "MemAvailable / MemTotal. HostMemoryAvailableLow fires "
               "(warning) below 10 % for 15 m.", "percentunit",
               Q("node_memory_MemAvailable_bytes{} / node_memory_MemTotal_bytes{}",
                 "{{instance}}"), steps=below_warning(0.1), max=1, w=8),
            ts("Swap used", "Swap in use (SwapTotal - SwapFree).", "bytes",
               Q("node_memory_SwapTotal_bytes{} - node_memory_SwapFree_bytes{}",
                 "{{instance}}"), w=8),
            ts("Filesystem used", "Share of each filesystem not available to users "
               "(1 - avail / size). HostFilesystemFillingUp fires (warning) past 85 % when "
               "it will fill within a day; HostFilesystemAlmostFull (critical) past 95 %.",
               "percentunit",
               Q('1 - node_filesystem_avail_bytes{fstype!=""} '
                 '/ node_filesystem_size_bytes{fstype!=""}', "{{instance}} {{mountpoint}}"),
               steps=above(0.85, 0.95), max=1, w=24),
            ts("Network traffic", "Bytes per second received (+) and transmitted (-) per "
               "interface.", "Bps",
               Q(rate("node_network_receive_bytes_total", "instance, device"),
                 "{{instance}} {{device}} rx"),
               Q(f'-{rate("node_network_transmit_bytes_total", "instance, device")}',
                 "{{instance}} {{device}} tx")),
            ts("Network errors and drops", "Receive/transmit errors and drops per second. "
               "HostNetworkReceiveErrors / HostNetworkTransmitErrors fire (warning) when "
               "errors exceed 1 % of packets for 1 h.", "pps",
               *rates("instance, device", "{{instance}} {{device}}", {
                   "node_network_receive_errs_total": "rx errors",
                   "node_network_transmit_errs_total": "tx errors",
                   "node_network_receive_drop_total": "rx drops",
                   "node_network_transmit_drop_total": "tx drops",
               })),
            ts("Disk throughput", "Bytes per second read (+) and written (-) per device.",
               "Bps",
               Q(rate("node_disk_read_bytes_total", "instance, device"),
                 "{{instance}} {{device}} read"),
               Q(f'-{rate("node_disk_written_bytes_total", "instance, device")}',
                 "{{instance}} {{device}} write"), w=8),
            ts("Disk IOPS", "Completed reads (+) and writes (-) per second.", "iops",
               Q(rate("node_disk_reads_completed_total", "instance, device"),
                 "{{instance}} {{device}} reads"),
               Q(f'-{rate("node_disk_writes_completed_total", "instance, device")}',
                 "{{instance}} {{device}} writes"), w=8),
            ts("Disk busy", "Share of time each device was busy with I/O (100 % on NVMe or "
               "virtio is not saturation: HostDiskIOSaturated watches the queue depth).",
               "percentunit",
               Q(rate("node_disk_io_time_seconds_total", "instance, device"),
                 "{{instance}} {{device}}"), steps=above(0.9), max=1, w=8),
        ]),
    ])

DATABASE = Dash(
    "database", "stackmon / Database", "PostgreSQL servers watched by stackmon.", "pg_up", [
        ("Status", [
            up("PostgreSQL up", "pg_up: 1 if the last scrape could connect and query. "
               "PostgresDown fires (critical) when 0 for 1 m.", Q("pg_up{}", "{{instance}}")),
            st("Version", "Server version (pg_static).", "none",
               Q("pg_static{}", "{{short_version}}"), text=True),
            st("Role", "1 on a standby, 0 on a primary (pg_replication_is_replica).", "none",
               Q("pg_replication_is_replica{}", "{{instance}}"),
               mapping={"0": ("primary", GREEN), "1": ("standby", GREEN)}),
            st("Connections used", "Connections / max_connections. "
               "PostgresTooManyConnections fires (warning) above 80 %.", "percentunit",
               Q("sum by (job, instance) (pg_stat_activity_count{}) "
                 "/ on (job, instance) pg_settings_max_connections{}", "{{instance}}"),
               steps=above(0.8), w=4),
            st("Database size", "Disk space of all databases (pg_database_size_bytes).",
               "bytes", Q("sum by (instance) (pg_database_size_bytes{})", "{{instance}}"),
               w=8),
        ]),
        ("Connections and queries", [
            ts("Connections by state", "Backends per state (pg_stat_activity_count).",
               "short", Q("sum by (instance, state) (pg_stat_activity_count{})",
                          "{{instance}} {{state}}"), stack=True, w=8),
            ts("Oldest transaction", "Age of the oldest open transaction per database. "
               "PostgresLongRunningTransaction fires (warning) above 1 h.", "s",
               Q("max by (instance, datname) (pg_stat_activity_max_tx_duration{})",
                 "{{instance}} {{datname}}"), steps=above(3600), w=8),
            ts("Slow queries", "Client statements running longer than the configured "
               "threshold. PostgresSlowQueries fires (warning) above 0 for 5 m.", "short",
               Q("sum by (instance, datname) (pg_stat_activity_slow_queries{})",
                 "{{instance}} {{datname}}"), steps=above(0.5), w=8),
            ts("Transactions", "Commits and rollbacks per second.", "ops",
               *rates("instance", "{{instance}}", {
                   "pg_stat_database_xact_commit": "commits",
                   "pg_stat_database_xact_rollback": "rollbacks",
               }), w=8),
            ts("Cache hit ratio", "Blocks found in shared buffers / blocks requested. "
               "PostgresCacheHitRatioLow fires (warning) below 90 % for 15 m.", "percentunit",
               Q(f'{rate("pg_stat_database_blks_hit", "instance, datname")} / '
                 f'({rate("pg_stat_database_blks_hit", "instance, datname")} + '
                 f'{rate("pg_stat_database_blks_read", "instance, datname")})',
                 "{{instance}} {{datname}}"), steps=below_warning(0.9), max=1, w=8),
            ts("Rows", "Rows returned, fetched, inserted, updated and deleted per second.",
               "short",
               *rates("instance", "{{instance}}", {
                   "pg_stat_database_tup_returned": "returned",
                   "pg_stat_database_tup_fetched": "fetched",
                   "pg_stat_database_tup_inserted": "inserted",
                   "pg_stat_database_tup_updated": "updated",
                   "pg_stat_database_tup_deleted": "deleted",
               }), w=8),
        ]),
        ("Contention and storage", [
            ts("Deadlocks", "Deadlocks detected in the interval. PostgresDeadlocks fires "
               "(warning) above 5 in 5 m.", "short",
               Q(f"sum by (instance, datname) (increase(pg_stat_database_deadlocks{{}}"
                 f"[{RI}]))", "{{instance}} {{datname}}"), steps=above(5), w=8),
            ts("Locks by mode", "Locks held or awaited per mode (pg_locks_count).", "short",
               Q("sum by (instance, mode) (pg_locks_count{})", "{{instance}} {{mode}}"),
               stack=True, w=8),
            ts("Temporary files", "Bytes per second written to temporary files (work_mem "
               "too small for sorts and hashes).", "Bps",
               Q(rate("pg_stat_database_temp_bytes", "instance, datname"),
                 "{{instance}} {{datname}}"), w=8),
            ts("Database size", "Disk space used per database.", "bytes",
               Q("pg_database_size_bytes{}", "{{instance}} {{datname}}")),
            ts("Conflicts and fatal sessions", "Queries cancelled by recovery conflicts and "
               "sessions ended by fatal errors, per second.", "ops",
               *rates("instance", "{{instance}}", {
                   "pg_stat_database_conflicts": "conflicts",
                   "pg_stat_database_sessions_fatal": "fatal sessions",
               })),
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
            ts("Checkpoints", "Scheduled and requested checkpoints per second.", "ops",
               *rates("instance", "{{instance}}", {
                   "pg_stat_bgwriter_checkpoints_timed_total": "timed",
                   "pg_stat_bgwriter_checkpoints_req_total": "requested",
               }), w=8),
            ts("Buffers written", "Buffers written per second by checkpoints, the "
               "background writer and backends.", "short",
               *rates("instance", "{{instance}}", {
                   "pg_stat_bgwriter_buffers_checkpoint_total": "checkpoint",
                   "pg_stat_bgwriter_buffers_clean_total": "bgwriter",
                   "pg_stat_bgwriter_buffers_backend_total": "backend",
               })),
            ts("Checkpoint time", "Seconds per second spent writing and syncing "
               "checkpoint files (postgres_exporter's counters are in milliseconds).",
               "percentunit",
               *[Q(f"{query.expr} / 1000", query.legend) for query in rates(
                   "instance", "{{instance}}", {
                       "pg_stat_bgwriter_checkpoint_write_time_total": "write",
                       "pg_stat_bgwriter_checkpoint_sync_time_total": "sync",
                   })]),
        ]),
    ])

CACHE = Dash(
    "cache", "stackmon / Cache", "Redis servers watched by stackmon.", "redis_up", [
        ("Status", [
            up("Redis up", "redis_up: 1 if the last scrape succeeded. RedisDown fires "
               "(critical) when 0 for 1 m.", Q("redis_up{}", "{{instance}}")),
            st("Version and role", "redis_version and role (master/slave) from INFO.", "none",
               Q("redis_instance_info{}", "{{redis_version}} {{role}}"), text=True),
            st("Memory used of max", "used_memory / maxmemory (only when maxmemory is set). "
               "RedisMemoryNearMax fires (warning) above 90 %.", "percentunit",
               Q("redis_memory_used_bytes{} / (redis_memory_max_bytes{} > 0)", "{{instance}}"),
               steps=above(0.9)),
            st("Clients", "Client connections (replicas excluded).", "short",
               Q("redis_connected_clients{}", "{{instance}}")),
            st("Uptime", "Seconds since the server started.", "s",
               Q("redis_uptime_in_seconds{}", "{{instance}}")),
            st("Fragmentation", "used_memory_rss / used_memory.", "short",
               Q("redis_mem_fragmentation_ratio{}", "{{instance}}")),
        ]),
        ("Memory and clients", [
            ts("Memory", "Memory used, resident set size and maxmemory (0 = no limit).",
               "bytes",
               Q("redis_memory_used_bytes{}", "{{instance}} used"),
               Q("redis_memory_used_rss_bytes{}", "{{instance}} rss"),
               Q("redis_memory_max_bytes{}", "{{instance}} max"), w=8),
            ts("Clients", "Connected and blocked clients.", "short",
               Q("redis_connected_clients{}", "{{instance}} connected"),
               Q("redis_blocked_clients{}", "{{instance}} blocked"), w=8),
            ts("Rejected connections", "Connections refused because of maxclients. "
               "RedisRejectedConnections fires (critical) on any increase over 5 m.", "short",
               Q(f"increase(redis_rejected_connections_total{{}}[{RI}])", "{{instance}}"),
               steps=[(None, GREEN), (0.5, RED)], w=8),
        ]),
        ("Throughput", [
            ts("Hit rate", "Key lookups that found the key / all lookups.", "percentunit",
               Q(f'{rate("redis_keyspace_hits_total", "instance")} / '
                 f'({rate("redis_keyspace_hits_total", "instance")} + '
                 f'{rate("redis_keyspace_misses_total", "instance")})', "{{instance}}"),
               max=1, w=8),
            ts("Operations", "Commands processed per second.", "ops",
               Q(rate("redis_commands_processed_total", "instance"), "{{instance}}"), w=8),
            ts("Commands by type", "Calls per second per command (top 10).", "ops",
               Q(f'topk(10, {rate("redis_commands_total", "instance, cmd")})',
                 "{{instance}} {{cmd}}"), w=8),
            ts("Network", "Bytes per second read (+) and written (-).", "Bps",
               Q(rate("redis_net_input_bytes_total", "instance"), "{{instance}} in"),
               Q(f'-{rate("redis_net_output_bytes_total", "instance")}', "{{instance}} out"),
               w=8),
            ts("Expired keys", "Keys deleted at their TTL per second.", "ops",
               Q(rate("redis_expired_keys_total", "instance"), "{{instance}}"), w=8),
            ts("Evicted keys", "Keys evicted by maxmemory in the interval. RedisEvictions "
               "fires (warning) on any eviction over 5 m, unless the policy is allkeys-*.",
               "short",
               Q(f"increase(redis_evicted_keys_total{{}}[{RI}])", "{{instance}}"),
               steps=above(0.5), w=8),
            ts("Keys per database", "Keys per database and keys with a TTL.", "short",
               Q("redis_db_keys{}", "{{instance}} {{db}}"),
               Q("redis_db_keys_expiring{}", "{{instance}} {{db}} expiring"), w=24),
        ]),
        ("Persistence and replication", [
            ts("Changes since last save", "Writes since the last RDB save.", "short",
               Q("redis_rdb_changes_since_last_save{}", "{{instance}}"), w=8),
            ts("Slow log", "Entries in the slow log.", "short",
               Q("redis_slowlog_length{}", "{{instance}}"), w=8),
            ts("Connected replicas", "Replicas connected to each primary.", "short",
               Q("redis_connected_slaves{}", "{{instance}}"), w=8),
            ts("Replica link", "On a replica: 1 while the link to the primary is up. "
               "RedisReplicaLinkDown fires (critical) when 0 for 2 m.", "none",
               Q("redis_master_link_up{}", "{{instance}} → {{master_host}}:{{master_port}}"),
               steps=UP, max=1),
            ts("Replica ack lag", "On a primary: seconds since each replica's last ack.",
               "s", Q("redis_connected_slave_lag_seconds{}",
                      "{{instance}} {{slave_ip}}:{{slave_port}}")),
        ]),
    ])

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
            st("Last inspect", "Seconds since the last successful inspect round. "
               "CeleryInspectStale fires (warning) above 10 m.", "s",
               Q("time() - stackmon_celery_inspect_last_success_timestamp_seconds{}",
                 "{{instance}}"), steps=above(600)),
            st("Queued tasks", "Messages waiting in all queues.", "short",
               Q("sum by (instance) (celery_queue_length{})", "{{instance}}")),
            st("Failure ratio", "Failed / (failed + succeeded) tasks per task name. "
               "CeleryTaskFailureRatioHigh fires (warning) above 5 %.", "percentunit",
               Q(f'{rate("celery_task_failed_total", "instance, name")} / '
                 f'({rate("celery_task_failed_total", "instance, name")} + '
                 f'{rate("celery_task_succeeded_total", "instance, name")})', "{{name}}"),
               steps=above(0.05)),
        ]),
        ("Workers", [
            ts("Worker up", "celery_worker_up per worker. CeleryWorkerDown fires (warning) "
               "when 0 for 5 m.", "none",
               Q("celery_worker_up{}", "{{hostname}}"), steps=[(None, ORANGE), (1, GREEN)],
               max=1, w=6),
            ts("Tasks per worker", "Tasks executing (active), prefetched (reserved) and held "
               "with an ETA (scheduled) per worker.", "short",
               Q("celery_worker_tasks_active{}", "{{hostname}} active"),
               Q("celery_worker_tasks_reserved{}", "{{hostname}} reserved"),
               Q("celery_worker_tasks_scheduled{}", "{{hostname}} scheduled"), w=6),
            ts("Queue length", "Messages waiting per queue. CeleryQueueBacklogGrowing fires "
               "(warning) above 100 while not draining.", "short",
               Q("celery_queue_length{}", "{{queue_name}}"), steps=above(100), w=6),
            ts("Consumers per queue", "Workers consuming each queue and their pool processes "
               "(celery_active_worker_count, celery_active_process_count; inspect data).",
               "short", Q("celery_active_worker_count{}", "{{queue_name}} workers"),
               Q("celery_active_process_count{}", "{{queue_name}} processes"), w=6),
        ]),
        ("Tasks", [
            ts("Task events", "Task events per second by state.", "ops",
               *rates("instance", "{{instance}}", {
                   "celery_task_sent_total": "sent",
                   "celery_task_received_total": "received",
                   "celery_task_started_total": "started",
                   "celery_task_succeeded_total": "succeeded",
                   "celery_task_failed_total": "failed",
                   "celery_task_retried_total": "retried",
               })),
            ts("Failures by task", "Failed tasks per second by task name and exception "
               "class.", "ops",
               Q(rate("celery_task_failed_total", "name, exception"),
                 "{{name}} {{exception}}")),
            ts("Task runtime", "p50 and p95 run time of succeeded tasks per task name "
               "(celery_task_runtime).", "s",
               Q(quantile(0.5, "celery_task_runtime_bucket", "name"),
                 "{{name}} p50"),
               Q(quantile(0.95, "celery_task_runtime_bucket", "name"),
                 "{{name}} p95")),
            ts("Queue wait", "p50 and p95 time from sent (or a later ETA) to started per "
               "queue (celery_task_queue_wait_time).", "s",
               Q(quantile(0.5, "celery_task_queue_wait_time_bucket", "queue_name"),
                 "{{queue_name}} p50"),
               Q(quantile(0.95, "celery_task_queue_wait_time_bucket", "queue_name"),
                 "{{queue_name}} p95")),
            ts("Events consumed", "Celery events consumed per second and receiver restarts.",
               "ops",
               Q(rate("stackmon_celery_events_total", "instance"), "{{instance}} events"),
               Q(f"increase(stackmon_celery_events_receiver_restarts_total{{}}[{RI}])",
                 "{{instance}} restarts")),
        ]),
    ])

DASHBOARDS = {d.slug: d for d in (OVERVIEW, DATABASE, CACHE, CELERY)}


def render(d: Dash) -> str:
    """Stable JSON text of ``d`` (sorted keys, two-space indent, final newline)."""
    model = json.loads(json.dumps(build_dashboard(d), cls=JSONEncoder))
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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
