"""pg_locks: locks held or awaited per database and mode, zero-filled, the exporter's own
left out.

Sample output::

    pg_locks_count{datname="app",mode="exclusivelock",server="127.0.0.1:5432"} 1.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import GaugeMetricFamily, Metric

LOCK_MODES = (
    "accesssharelock", "rowsharelock", "rowexclusivelock", "shareupdateexclusivelock",
    "sharelock", "sharerowexclusivelock", "exclusivelock", "accessexclusivelock",
    "sireadlock",
)
# Zero-filled per (database, mode) in Python, as postgres_exporter does in SQL.  The
# exporter's own backend is left out: the batch is one transaction, so the
# AccessShareLocks of the views read before pg_locks are still held here (an idle server
# showed 6 locks against postgres_exporter's 1, the lock of its own pg_locks query).
# IS DISTINCT FROM keeps the locks of prepared transactions, whose pid is NULL.
LOCKS_SQL = """
SELECT d.datname, l.mode, l.n
FROM (SELECT database, lower(mode) AS mode, count(*)::float8 AS n FROM pg_locks
      WHERE database IS NOT NULL AND pid IS DISTINCT FROM pg_backend_pid()
      GROUP BY 1, 2) l
JOIN pg_database d ON d.oid = l.database
"""


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("locks", LOCKS_SQL)]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    if "locks" not in r:
        return []
    counts = {(str(d), str(m)): float(n) for d, m, n in r["locks"]}
    # Every database postgres_exporter lists: pg_database, as the activity query has it.
    databases = sorted({str(row[0]) for row in r.get("activity", [])} | {d for d, _ in counts})
    locks = GaugeMetricFamily("pg_locks_count", "Locks held or awaited, per database and mode.",
                              labels=["datname", "mode", "server"])
    for datname in databases:
        for mode in LOCK_MODES:
            locks.add_metric([datname, mode, server.server], counts.get((datname, mode), 0.0))
    return [locks]
