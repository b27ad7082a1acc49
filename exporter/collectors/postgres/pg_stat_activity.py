"""pg_stat_activity: connections and the oldest open transaction per database and state.

Sample output::

    pg_stat_activity_count{datname="app",server="127.0.0.1:5432",state="idle in transaction"} 2.0
    pg_stat_activity_max_tx_duration{datname="app",server="127.0.0.1:5432",state="active"} 0.013
    pg_stat_activity_client_max_tx_duration_seconds{datname="app",server="127.0.0.1:5432"} 4.2
    pg_stat_activity_slow_queries{datname="app"} 1.0
    pg_stat_activity_slow_query_threshold_seconds 60.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo, gauge
from exporter.metrics import GaugeMetricFamily, Metric

# postgres_exporter's query: every (database, state) pair, zero-filled.
ACTIVITY_SQL = """
SELECT d.datname, s.state, coalesce(a.n, 0)::float8, coalesce(a.max_tx, 0)::float8
FROM pg_database d
CROSS JOIN (VALUES ('active'), ('idle'), ('idle in transaction'),
                   ('idle in transaction (aborted)'), ('fastpath function call'),
                   ('disabled')) AS s(state)
LEFT JOIN (SELECT datname, state, count(*) AS n,
                  max(extract(epoch FROM now() - xact_start)) AS max_tx
           FROM pg_stat_activity GROUP BY datname, state) a
       ON a.datname = d.datname AND a.state = s.state
"""

# Client statements running longer than the threshold. Left out: the exporter's own,
# autovacuum and other background workers (not 'client backend'), and the dump/restore
# tools, whose COPY statements run for as long as the tables are big, by design.
MAINTENANCE_APPLICATIONS = ("pg_dump", "pg_dumpall", "pg_restore")
SLOW_SQL = """
SELECT datname, count(*)::float8 FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND application_name NOT IN ({maintenance})
  AND datname IS NOT NULL AND now() - query_start > make_interval(secs => {{threshold}})
GROUP BY datname
""".format(maintenance=", ".join(f"'{n}'" for n in MAINTENANCE_APPLICATIONS))


# The oldest open transaction of a client per database, without the ones that are long
# by design: autovacuum and other background workers (not 'client backend') and the
# dump/restore tools.  postgres_exporter's pg_stat_activity_max_tx_duration counts them
# all, so an alert on it pages on every nightly pg_dump; PostgresLongRunningTransaction
# uses this one.
CLIENT_TX_SQL = """
SELECT datname, max(extract(epoch FROM now() - xact_start))::float8 FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
  AND application_name NOT IN ({maintenance}) AND datname IS NOT NULL
GROUP BY datname
""".format(maintenance=", ".join(f"'{n}'" for n in MAINTENANCE_APPLICATIONS))


def queries(server: ServerInfo) -> list[PreparedQuery]:
    threshold = float(server.settings.slow_query_threshold_seconds)
    return [PreparedQuery("activity", ACTIVITY_SQL),
            PreparedQuery("slow", SLOW_SQL.format(threshold=repr(threshold))),
            PreparedQuery("client_tx", CLIENT_TX_SQL)]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    if "activity" not in r:
        return []
    labels = ["datname", "server", "state"]
    count = GaugeMetricFamily("pg_stat_activity_count",
                              "Connections per database and state.", labels=labels)
    max_tx = GaugeMetricFamily(
        "pg_stat_activity_max_tx_duration",
        "Age in seconds of the oldest open transaction per database and state.",
        labels=labels)
    for datname, state, n, longest in r["activity"]:
        count.add_metric([datname, server.server, state], n)
        max_tx.add_metric([datname, server.server, state], longest)
    out: list[Metric] = [count, max_tx]
    databases = sorted({str(row[0]) for row in r["activity"]})
    if "client_tx" in r:
        client_tx = GaugeMetricFamily(
            "pg_stat_activity_client_max_tx_duration_seconds",
            "Age of the oldest open client transaction per database, leaving out "
            "autovacuum, background workers and pg_dump/pg_dumpall/pg_restore (0 when none).",
            labels=["datname", "server"])
        oldest = {str(d): float(age) for d, age in r["client_tx"]}
        for datname in databases:
            client_tx.add_metric([datname, server.server], oldest.get(datname, 0.0))
        out.append(client_tx)
    if "slow" in r:
        slow = GaugeMetricFamily("pg_stat_activity_slow_queries",
                                 "Statements running longer than the slow-query threshold.",
                                 labels=["datname"])
        by_db = {str(d): float(n) for d, n in r["slow"]}
        for datname in databases:
            slow.add_metric([datname], by_db.get(datname, 0.0))
        threshold = gauge("pg_stat_activity_slow_query_threshold_seconds",
                          "The configured slow-query threshold.",
                          server.settings.slow_query_threshold_seconds)
        out += [slow, threshold]
    return out
