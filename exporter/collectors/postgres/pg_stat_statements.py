"""pg_stat_statements: totals of the top queries by execution time (opt-in).

Sample output::

    pg_stat_statements_calls_total{datname="app",queryid="-4021",user="app"} 120.0
    pg_stat_statements_seconds_total{datname="app",queryid="-4021",user="app"} 1.5
    pg_stat_statements_rows_total{datname="app",queryid="-4021",user="app"} 120.0
"""

from __future__ import annotations

import re

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import CounterMetricFamily, Metric

# Run once per connection: where the extension lives and its version.
STATEMENTS_EXTENSION_SQL = """
SELECT quote_ident(n.nspname), e.extversion FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'
"""
# pg_stat_statements(false) skips reading the query texts file; rows of one query
# (top-level or nested) are summed.  Extension 1.8 renamed total_time.
STATEMENTS_SQL = """
SELECT r.rolname, d.datname, s.queryid::text, sum(s.calls)::float8,
       (sum(s.{time_column}) / 1000)::float8, sum(s.rows)::float8
FROM {schema}.pg_stat_statements(false) s
JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid
WHERE s.queryid IS NOT NULL
GROUP BY 1, 2, 3 ORDER BY 5 DESC LIMIT {limit}
"""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def queries(server: ServerInfo) -> list[PreparedQuery]:
    if server.statements is None:
        return []
    schema, version = server.statements
    time_column = "total_exec_time" if _version_tuple(version) >= (1, 8) else "total_time"
    return [PreparedQuery("statements", STATEMENTS_SQL.format(
        schema=schema, time_column=time_column,
        limit=int(server.settings.stat_statements_limit)))]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    if "statements" not in r:
        return []
    labels = ["user", "datname", "queryid"]
    calls = CounterMetricFamily("pg_stat_statements_calls",
                                "Times the statement was executed.", labels=labels)
    seconds = CounterMetricFamily("pg_stat_statements_seconds",
                                  "Time spent executing the statement.", labels=labels)
    rows = CounterMetricFamily("pg_stat_statements_rows",
                               "Rows retrieved or affected by the statement.", labels=labels)
    for user, datname, queryid, n_calls, total_seconds, n_rows in r["statements"]:
        key = [str(user), str(datname), str(queryid)]
        calls.add_metric(key, n_calls)
        seconds.add_metric(key, total_seconds)
        rows.add_metric(key, n_rows)
    return [calls, seconds, rows]
