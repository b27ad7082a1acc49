"""pg_database: size of every database and its number of user tables.

Sample output::

    pg_database_size_bytes{datname="app",server="127.0.0.1:5432"} 7.9e+06
    pg_database_user_tables{datname="app"} 12.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import GaugeMetricFamily, Metric

# pg_database_size stats every file of every database: by far the most expensive query
# (milliseconds of server CPU with a few thousand relations), so the collector runs it at
# most every database_size_refresh_seconds.  It needs CONNECT on the database (or
# pg_read_all_stats): ask first, so a database we may not see yields no size, not an error.
SIZES_SQL = """
SELECT d.datname,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT')
                 OR pg_has_role('pg_read_all_stats', 'MEMBER')
            THEN pg_database_size(d.oid)::float8 END
FROM pg_database d
"""

# User tables as pg_stat_user_tables counts them, minus toast: one catalog scan.  Also run
# on short connections to other databases (postgres.table_count_databases).
TABLES_SQL = """
SELECT current_database(), count(*)::float8 FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
"""


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("sizes", SIZES_SQL), PreparedQuery("tables", TABLES_SQL)]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    out: list[Metric] = []
    if "sizes" in r:
        size = GaugeMetricFamily("pg_database_size_bytes", "Disk space used by the database.",
                                 labels=["datname", "server"])
        for datname, db_size in r["sizes"]:
            if db_size is not None:
                size.add_metric([datname, server.server], db_size)
        out.append(size)
    if "tables" in r:
        tables = GaugeMetricFamily("pg_database_user_tables",
                                   "User tables (ordinary and partitioned) in the database.",
                                   labels=["datname"])
        for datname, n in r["tables"]:
            tables.add_metric([datname], n)
        out.append(tables)
    return out
