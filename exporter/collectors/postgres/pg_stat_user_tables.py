"""pg_stat_user_tables: per-table activity and vacuum state of the connected database.

postgres_exporter's default ``stat_user_tables`` collector, names, types and labels
(``datname``, ``schemaname``, ``relname``; plus ``server`` so joins with
``pg_settings_*`` on ``server``, as postgres_mixin does, match).  Only the
``postgres.user_tables_limit`` largest tables (by pg_class.relpages, the planner's size
estimate, no file access) are exported, so a database with 10,000 tables costs one
catalog scan and that many rows; 0 turns the view off.  How many tables the cap left
out is ``stackmon_postgres_user_tables_omitted`` (stackmon's own), so a capped view is
never mistaken for a complete one.  Never-vacuumed/analyzed tables report 0 for the
``last_*`` times, as postgres_exporter does.

Sample output::

    pg_stat_user_tables_n_dead_tup{datname="app",relname="orders",...} 12.0
    pg_stat_user_tables_seq_scan{datname="app",relname="orders",...} 3.0
    pg_stat_user_tables_last_autovacuum{datname="app",relname="orders",...} 1.7e+09
    stackmon_postgres_user_tables_omitted{datname="app",server="db:5432"} 9800.0
"""

from __future__ import annotations

from exporter.collectors.base import bare_counter
from exporter.collectors.postgres.view import (
    PreparedQuery,
    Results,
    ServerInfo,
    add,
)
from exporter.metrics import GaugeMetricFamily, Metric

COUNTER, GAUGE, TIME = "counter", "gauge", "time"
# column -> (metric name, type, help)
USER_TABLE_COLUMNS: dict[str, tuple[str, str, str]] = {
    "seq_scan": ("pg_stat_user_tables_seq_scan", COUNTER,
        "Sequential scans initiated on this table."),
    "seq_tup_read": ("pg_stat_user_tables_seq_tup_read", COUNTER,
        "Live rows fetched by sequential scans."),
    "idx_scan": ("pg_stat_user_tables_idx_scan", COUNTER, "Index scans initiated on this table."),
    "idx_tup_fetch": ("pg_stat_user_tables_idx_tup_fetch", COUNTER,
        "Live rows fetched by index scans."),
    "n_tup_ins": ("pg_stat_user_tables_n_tup_ins", COUNTER, "Rows inserted."),
    "n_tup_upd": ("pg_stat_user_tables_n_tup_upd", COUNTER, "Rows updated."),
    "n_tup_del": ("pg_stat_user_tables_n_tup_del", COUNTER, "Rows deleted."),
    "n_tup_hot_upd": ("pg_stat_user_tables_n_tup_hot_upd", COUNTER,
        "Rows HOT updated (no separate index update required)."),
    "n_live_tup": ("pg_stat_user_tables_n_live_tup", GAUGE, "Estimated number of live rows."),
    "n_dead_tup": ("pg_stat_user_tables_n_dead_tup", GAUGE, "Estimated number of dead rows."),
    "n_mod_since_analyze": ("pg_stat_user_tables_n_mod_since_analyze", GAUGE,
        "Estimated rows modified since the last analyze."),
    "last_vacuum": ("pg_stat_user_tables_last_vacuum", TIME,
        "Last manual vacuum, seconds since the epoch (0: never)."),
    "last_autovacuum": ("pg_stat_user_tables_last_autovacuum", TIME,
        "Last autovacuum, seconds since the epoch (0: never)."),
    "last_analyze": ("pg_stat_user_tables_last_analyze", TIME,
        "Last manual analyze, seconds since the epoch (0: never)."),
    "last_autoanalyze": ("pg_stat_user_tables_last_autoanalyze", TIME,
        "Last autoanalyze, seconds since the epoch (0: never)."),
    "vacuum_count": ("pg_stat_user_tables_vacuum_count", COUNTER,
        "Times this table has been manually vacuumed."),
    "autovacuum_count": ("pg_stat_user_tables_autovacuum_count", COUNTER,
        "Times this table has been vacuumed by autovacuum."),
    "analyze_count": ("pg_stat_user_tables_analyze_count", COUNTER,
        "Times this table has been manually analyzed."),
    "autoanalyze_count": ("pg_stat_user_tables_autoanalyze_count", COUNTER,
        "Times this table has been analyzed by autovacuum."),
}
# pg_indexes_size / pg_table_size, in this order after the columns
SIZE_METRICS: dict[str, str] = {
    "pg_stat_user_tables_index_size_bytes": "Disk space used by the table's indexes.",
    "pg_stat_user_tables_table_size_bytes":
        "Disk space used by the table (with TOAST, without indexes).",
}

# The largest tables are picked from pg_class first; then the view is read for each of
# them alone (LATERAL ... OFFSET 0 keeps the planner from joining the whole view, whose
# GROUP BY would otherwise compute the statistics of every table), so statistics and
# sizes (a stat per file) are computed only for the exported rows.  The window count is
# taken before LIMIT, in the same scan: every user table, for the omitted count.
USER_TABLES_SQL = """
WITH largest AS (
  SELECT c.oid, count(*) OVER () AS total
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  ORDER BY c.relpages DESC, c.oid LIMIT {limit})
SELECT current_database(), s.schemaname, s.relname, {columns},
       pg_indexes_size(s.relid)::float8, pg_table_size(s.relid)::float8, l.total::float8
FROM largest l
CROSS JOIN LATERAL (SELECT * FROM pg_stat_user_tables u WHERE u.relid = l.oid OFFSET 0) s
"""


def queries(server: ServerInfo) -> list[PreparedQuery]:
    limit = int(server.settings.user_tables_limit)
    if limit <= 0:
        return []
    columns = ", ".join(
        f"coalesce(extract(epoch FROM s.{c}), 0)::float8" if kind == TIME
        else f"s.{c}::float8" for c, (_, kind, _) in USER_TABLE_COLUMNS.items())
    return [PreparedQuery("user_tables", USER_TABLES_SQL.format(limit=limit,
                                                                columns=columns))]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    if "user_tables" not in r:
        return []
    labels = ["datname", "schemaname", "relname", "server"]
    families: list[Metric] = []
    for name, kind, help_text in USER_TABLE_COLUMNS.values():
        if kind == COUNTER:
            families.append(bare_counter(name, help_text, labels))
        else:
            families.append(GaugeMetricFamily(name, help_text, labels=labels))
    for name, help_text in SIZE_METRICS.items():
        families.append(GaugeMetricFamily(name, help_text, labels=labels))
    for family in families:
        family._labelnames = tuple(labels)
    rows = r["user_tables"]
    for row in rows:
        key = [str(row[0]), str(row[1]), str(row[2]), server.server]
        for family, value in zip(families, row[3:-1], strict=True):
            add(family, key, value)
    omitted = GaugeMetricFamily(
        "stackmon_postgres_user_tables_omitted",
        "User tables of the connected database left out of pg_stat_user_tables_* by "
        "postgres.user_tables_limit (the smallest ones).", labels=["datname", "server"])
    if rows:
        omitted.add_metric([str(rows[0][0]), server.server], float(rows[0][-1]) - len(rows))
    families.append(omitted)
    return families
