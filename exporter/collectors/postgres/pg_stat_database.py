"""pg_stat_database and pg_stat_database_conflicts: every column, as postgres_exporter has them.

Names, types and units are postgres_exporter's: counters without ``_total``, times in
milliseconds, columns it has no type for (sessions, active_time, checksums...) untyped,
the shared-objects row (``datid="0"``, ``datname=""``) included.

Sample output::

    pg_stat_database_xact_commit{datid="5",datname="app",server="127.0.0.1:5432"} 51723.0
    pg_stat_database_numbackends{datid="5",datname="app",server="127.0.0.1:5432"} 3.0
    pg_stat_database_active_time{datid="5",datname="app",server="127.0.0.1:5432"} 643.8
    pg_stat_database_conflicts_confl_lock{datid="5",datname="app",server="127.0.0.1:5432"} 0.0
"""

from __future__ import annotations

from exporter.collectors.base import bare_counter
from exporter.collectors.postgres.view import (
    PreparedQuery,
    Results,
    ServerInfo,
    add,
    untyped,
)
from exporter.metrics import GaugeMetricFamily, Metric

COUNTER, GAUGE, UNTYPED = "counter", "gauge", "untyped"

# column -> (metric name, first server_version_num that has it, type, help)
Column = tuple[str, int, str, str]
STAT_DATABASE_COLUMNS: dict[str, Column] = {
    "numbackends": ("pg_stat_database_numbackends", 0, GAUGE,
        "Backends currently connected to this database."),
    "xact_commit": ("pg_stat_database_xact_commit", 0, COUNTER,
        "Transactions in this database that have been committed."),
    "xact_rollback": ("pg_stat_database_xact_rollback", 0, COUNTER,
        "Transactions in this database that have been rolled back."),
    "blks_read": ("pg_stat_database_blks_read", 0, COUNTER, "Disk blocks read in this database."),
    "blks_hit": ("pg_stat_database_blks_hit", 0, COUNTER,
        "Disk blocks found already in the buffer cache."),
    "tup_returned": ("pg_stat_database_tup_returned", 0, COUNTER,
        "Rows returned by queries in this database."),
    "tup_fetched": ("pg_stat_database_tup_fetched", 0, COUNTER,
        "Rows fetched by queries in this database."),
    "tup_inserted": ("pg_stat_database_tup_inserted", 0, COUNTER,
        "Rows inserted by queries in this database."),
    "tup_updated": ("pg_stat_database_tup_updated", 0, COUNTER,
        "Rows updated by queries in this database."),
    "tup_deleted": ("pg_stat_database_tup_deleted", 0, COUNTER,
        "Rows deleted by queries in this database."),
    "conflicts": ("pg_stat_database_conflicts", 0, COUNTER,
        "Queries canceled by conflicts with recovery (standbys)."),
    "temp_files": ("pg_stat_database_temp_files", 0, COUNTER,
        "Temporary files created by queries in this database."),
    "temp_bytes": ("pg_stat_database_temp_bytes", 0, COUNTER,
        "Bytes written to temporary files by queries."),
    "deadlocks": ("pg_stat_database_deadlocks", 0, COUNTER, "Deadlocks detected in this database."),
    "checksum_failures": ("pg_stat_database_checksum_failures", 120000, UNTYPED,
        "Data page checksum failures (NaN when checksums are off)."),
    "checksum_last_failure": ("pg_stat_database_checksum_last_failure", 120000, UNTYPED,
        "Time of the last checksum failure, seconds since the epoch."),
    "blk_read_time": ("pg_stat_database_blk_read_time", 0, COUNTER,
        "Time spent reading data file blocks, in milliseconds."),
    "blk_write_time": ("pg_stat_database_blk_write_time", 0, COUNTER,
        "Time spent writing data file blocks, in milliseconds."),
    "session_time": ("pg_stat_database_session_time", 140000, UNTYPED,
        "Time spent by sessions, in milliseconds."),
    "active_time": ("pg_stat_database_active_time", 140000, UNTYPED,
        "Time spent executing statements, in milliseconds."),
    "idle_in_transaction_time": ("pg_stat_database_idle_in_transaction_time", 140000, UNTYPED,
        "Time spent idle in transaction, in milliseconds."),
    "sessions": ("pg_stat_database_sessions", 140000, UNTYPED,
        "Sessions established to this database."),
    "sessions_abandoned": ("pg_stat_database_sessions_abandoned", 140000, UNTYPED,
        "Sessions ended because the client went away."),
    "sessions_fatal": ("pg_stat_database_sessions_fatal", 140000, UNTYPED,
        "Sessions ended by fatal errors."),
    "sessions_killed": ("pg_stat_database_sessions_killed", 140000, UNTYPED,
        "Sessions ended by operator intervention."),
    "parallel_workers_to_launch": ("pg_stat_database_parallel_workers_to_launch", 180000, UNTYPED,
        "Parallel workers planned to be launched."),
    "parallel_workers_launched": ("pg_stat_database_parallel_workers_launched", 180000, UNTYPED,
        "Parallel workers launched."),
    "stats_reset": ("pg_stat_database_stats_reset", 0, COUNTER,
        "Time at which these statistics were last reset."),
}
CONFLICT_COLUMNS: dict[str, Column] = {
    "confl_tablespace": ("pg_stat_database_conflicts_confl_tablespace", 0, COUNTER,
        "Queries canceled due to dropped tablespaces."),
    "confl_lock": ("pg_stat_database_conflicts_confl_lock", 0, COUNTER,
        "Queries canceled due to lock timeouts."),
    "confl_snapshot": ("pg_stat_database_conflicts_confl_snapshot", 0, COUNTER,
        "Queries canceled due to old snapshots."),
    "confl_bufferpin": ("pg_stat_database_conflicts_confl_bufferpin", 0, COUNTER,
        "Queries canceled due to pinned buffers."),
    "confl_deadlock": ("pg_stat_database_conflicts_confl_deadlock", 0, COUNTER,
        "Queries canceled due to deadlocks."),
    "confl_active_logicalslot": (
        "pg_stat_database_conflicts_confl_active_logicalslot", 160000, UNTYPED,
        "Uses of logical slots canceled by recovery conflicts."),
}
TIMESTAMP_COLUMNS = ("checksum_last_failure", "stats_reset")

STAT_DATABASE_SQL = """
SELECT datid::text, coalesce(datname, ''), {columns} FROM pg_stat_database
"""
CONFLICTS_SQL = """
SELECT datid::text, coalesce(datname, ''), {columns} FROM pg_stat_database_conflicts
"""


def columns(table: dict[str, Column], server_version: int) -> list[str]:
    """The columns this server has, in the table's order."""
    return [c for c, (_, since, _, _) in table.items() if server_version >= since]


def _select(names: list[str]) -> str:
    return ", ".join(f"extract(epoch FROM {c})::float8" if c in TIMESTAMP_COLUMNS
                     else f"{c}::float8" for c in names)


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [
        PreparedQuery("database", STAT_DATABASE_SQL.format(
            columns=_select(columns(STAT_DATABASE_COLUMNS, server.version)))),
        PreparedQuery("conflicts", CONFLICTS_SQL.format(
            columns=_select(columns(CONFLICT_COLUMNS, server.version)))),
    ]


def _families(rows: list[tuple[object, ...]], table: dict[str, Column],
              server: ServerInfo) -> list[Metric]:
    names = columns(table, server.version)
    labels = ["datid", "datname", "server"]
    families: list[Metric] = []
    for column in names:
        name, _, kind, help_text = table[column]
        if kind == GAUGE:
            families.append(GaugeMetricFamily(name, help_text, labels=labels))
            families[-1]._labelnames = tuple(labels)
        elif kind == COUNTER:
            families.append(bare_counter(name, help_text, labels))
        else:
            families.append(untyped(name, help_text, labels))
    for row in rows:
        key = [str(row[0]), str(row[1]), server.server]
        for family, value in zip(families, row[2:], strict=True):
            add(family, key, value)
    return families


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    out: list[Metric] = []
    if "database" in r:
        out += _families(r["database"], STAT_DATABASE_COLUMNS, server)
    if "conflicts" in r:
        out += _families(r["conflicts"], CONFLICT_COLUMNS,
                         server)
    return out
