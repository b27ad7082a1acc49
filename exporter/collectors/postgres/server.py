"""The server itself: version (``pg_static``), start time, standby state.

Sample output::

    pg_static{server="127.0.0.1:5432",short_version="15.20.0",version="PostgreSQL 15.20 ..."} 1.0
    pg_postmaster_start_time_seconds 1.7e+09
    pg_replication_is_replica 0.0
    pg_replication_lag_seconds 0.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import (
    PreparedQuery,
    Results,
    ServerInfo,
    add,
    gauge,
    untyped,
)
from exporter.metrics import Metric

SERVER_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS start_time,
       version() AS version,
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
       END::float8 AS replica_lag,
       extract(epoch FROM pg_conf_load_time())::float8 AS conf_load_time
"""
CONF_LOAD_TIME = 4  # column of SERVER_SQL: settings change only when this does


def short_version(server_version: int) -> str:
    """150020 -> "15.20.0" (postgres_exporter's short_version); 90624 -> "9.6.24"."""
    major = server_version // 10000
    if major >= 10:
        return f"{major}.{server_version % 10000}.0"
    return f"{major}.{server_version // 100 % 100}.{server_version % 100}"


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("server", SERVER_SQL)]


def role(r: Results) -> str:
    """"primary", "replica", or "unknown" when the server query did not run."""
    rows = r.get("server")
    if not rows:
        return "unknown"
    return "replica" if rows[0][0] else "primary"


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    rows = r.get("server")
    version_text = ""
    out: list[Metric] = []
    if rows:
        in_recovery, start_time, version_text, replica_lag, _ = rows[0]
        out += [
            gauge("pg_postmaster_start_time_seconds",
                  "Time the postmaster started, seconds since the epoch.", start_time),
            gauge("pg_replication_is_replica", "1 if the server is a standby (in recovery).",
                  1.0 if in_recovery else 0.0),
            gauge("pg_replication_lag_seconds",
                  "Standby: seconds since the last replayed transaction when WAL is pending "
                  "replay (0 when caught up or on a primary).", replica_lag),
        ]
    static = untyped("pg_static", "Version string as reported by postgres.",
                     ["server", "short_version", "version"])
    add(static, [server.server, short_version(server.version), str(version_text)], 1.0)
    return [static, *out]
