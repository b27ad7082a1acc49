"""PostgreSQL metrics under postgres_exporter's names (rule-abiding forms where needed).

One persistent psycopg connection per target (autocommit, ``application_name=stackmon``,
``statement_timeout``, connect timeout).  At connect time every query below is sent once
as a server-side ``PREPARE``; each scrape then sends all the ``EXECUTE`` statements in a
single simple-query message: one round trip, one transaction, no parse/plan work on the
server.  A watchdog shuts the socket down at the scrape deadline, so a hung server (e.g.
SIGSTOPped) cannot hold the collector; the next scrape reconnects.

Sample output::

    pg_up 1.0
    pg_version_info{short_version="15.20.0",version="PostgreSQL 15.20 ..."} 1.0
    pg_stat_activity_count{datname="app",state="idle in transaction"} 2.0
    pg_stat_activity_max_tx_duration_seconds{datname="app",state="active"} 0.013
    pg_stat_activity_slow_queries{datname="app"} 1.0
    pg_stat_database_xact_commit_total{datname="app"} 51723.0
    pg_database_size_bytes{datname="app"} 7.9e+06
    pg_locks_count{datname="app",mode="exclusivelock"} 1.0
    pg_replication_is_replica 0.0
    pg_stat_replication_lag_bytes{application_name="s1",client_addr="10.0.0.2",state="streaming"} 0
    pg_stat_bgwriter_checkpoints_timed_total 6.0
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from exporter.collectors.base import Collector, service_families
from exporter.collectors.postgres.settings import PostgresSettings
from exporter.errors import SettingError
from exporter.secrets import read_secret_file
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.postgres")

APPLICATION_NAME = "stackmon"
SERVICE = "postgres"
PREPARED_PREFIX = "stackmon_"
MIN_CONNECT_TIMEOUT = 2  # libpq treats 1 as 2

# --- SQL: one named constant per query; all run in one transaction per scrape ---------

SERVER_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS start_time,
       version() AS version,
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
       END::float8 AS replica_lag
"""

# Settings exported in base units (pg_settings gives value + unit).
# pg_settings name -> the metric (postgres_exporter's name: value in base units).
SETTINGS: dict[str, str] = {
    "max_connections": "pg_settings_max_connections",
    "superuser_reserved_connections": "pg_settings_superuser_reserved_connections",
    "shared_buffers": "pg_settings_shared_buffers_bytes",
    "work_mem": "pg_settings_work_mem_bytes",
    "maintenance_work_mem": "pg_settings_maintenance_work_mem_bytes",
    "effective_cache_size": "pg_settings_effective_cache_size_bytes",
    "max_wal_size": "pg_settings_max_wal_size_bytes",
    "checkpoint_timeout": "pg_settings_checkpoint_timeout_seconds",
    "max_wal_senders": "pg_settings_max_wal_senders",
    "max_replication_slots": "pg_settings_max_replication_slots",
    "autovacuum_max_workers": "pg_settings_autovacuum_max_workers",
    "idle_in_transaction_session_timeout":
        "pg_settings_idle_in_transaction_session_timeout_seconds",
}
SETTINGS_SQL = """
SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings
WHERE name IN ({names})
""".format(names=", ".join(f"'{n}'" for n in SETTINGS))

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

STAT_DATABASE_COLUMNS = (
    "numbackends", "xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned",
    "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "conflicts", "temp_files",
    "temp_bytes", "deadlocks", "blk_read_time", "blk_write_time",
)
STAT_DATABASE_COLUMNS_14 = (
    "sessions", "sessions_abandoned", "sessions_fatal", "sessions_killed", "session_time",
    "active_time", "idle_in_transaction_time",
)
DATABASE_SQL = """
SELECT d.datname, {columns}
FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
"""
# pg_database_size stats every file of every database: by far the most expensive query
# (milliseconds of server CPU with a few thousand relations), so it runs at most every
# database_size_refresh_seconds.  It needs CONNECT on the database (or pg_read_all_stats):
# ask first, so a database we may not see yields no size instead of an error.
SIZES_SQL = """
SELECT d.datname,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT')
                 OR pg_has_role('pg_read_all_stats', 'MEMBER')
            THEN pg_database_size(d.oid)::float8 END
FROM pg_database d
"""

LOCK_MODES = (
    "accesssharelock", "rowsharelock", "rowexclusivelock", "shareupdateexclusivelock",
    "sharelock", "sharerowexclusivelock", "exclusivelock", "accessexclusivelock",
    "sireadlock",
)
# Zero-filled per (database, mode) in Python, as postgres_exporter does in SQL.
LOCKS_SQL = """
SELECT d.datname, l.mode, l.n
FROM (SELECT database, lower(mode) AS mode, count(*)::float8 AS n FROM pg_locks
      WHERE database IS NOT NULL GROUP BY 1, 2) l
JOIN pg_database d ON d.oid = l.database
"""

CURRENT_LSN = ("CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
               "ELSE pg_current_wal_lsn() END")
REPLICATION_SQL = f"""
SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),
       pg_wal_lsn_diff({CURRENT_LSN}, replay_lsn)::float8,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
       extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication
"""
SLOTS_SQL = f"""
SELECT slot_name, slot_type, coalesce(database, ''), active,
       pg_wal_lsn_diff({CURRENT_LSN}, restart_lsn)::float8
FROM pg_replication_slots
"""

BGWRITER_COLUMNS = (
    "checkpoints_timed", "checkpoints_req", "checkpoint_write_time", "checkpoint_sync_time",
    "buffers_checkpoint", "buffers_clean", "maxwritten_clean", "buffers_backend",
    "buffers_backend_fsync", "buffers_alloc",
)
BGWRITER_SQL = "SELECT " + ", ".join(f"{c}::float8" for c in BGWRITER_COLUMNS) \
    + " FROM pg_stat_bgwriter"
# PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer and dropped the
# backend-write counters (now in pg_stat_io).
BGWRITER_SQL_17 = """
SELECT c.num_timed::float8, c.num_requested::float8, c.write_time::float8,
       c.sync_time::float8, c.buffers_written::float8, b.buffers_clean::float8,
       b.maxwritten_clean::float8, NULL::float8, NULL::float8, b.buffers_alloc::float8
FROM pg_stat_checkpointer c, pg_stat_bgwriter b
"""

# User tables as pg_stat_user_tables counts them, minus toast: one catalog scan.
TABLES_SQL = """
SELECT current_database(), count(*)::float8 FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
"""

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

# --- Metric tables ------------------------------------------------------------------

# (column, metric name, scale, help); the scale turns milliseconds into seconds.
STAT_DATABASE_METRICS: dict[str, tuple[str, float, str]] = {
    "xact_commit": ("pg_stat_database_xact_commit_total", 1, "Transactions committed."),
    "xact_rollback": ("pg_stat_database_xact_rollback_total", 1, "Transactions rolled back."),
    "blks_read": ("pg_stat_database_blks_read_total", 1, "Disk blocks read."),
    "blks_hit": ("pg_stat_database_blks_hit_total", 1,
                 "Disk blocks found in the buffer cache."),
    "tup_returned": ("pg_stat_database_tup_returned_total", 1, "Rows returned by queries."),
    "tup_fetched": ("pg_stat_database_tup_fetched_total", 1, "Rows fetched by queries."),
    "tup_inserted": ("pg_stat_database_tup_inserted_total", 1, "Rows inserted."),
    "tup_updated": ("pg_stat_database_tup_updated_total", 1, "Rows updated."),
    "tup_deleted": ("pg_stat_database_tup_deleted_total", 1, "Rows deleted."),
    "conflicts": ("pg_stat_database_conflicts_total", 1,
                  "Queries cancelled by recovery conflicts (standbys)."),
    "temp_files": ("pg_stat_database_temp_files_total", 1, "Temporary files created."),
    "temp_bytes": ("pg_stat_database_temp_bytes_total", 1,
                   "Bytes written to temporary files."),
    "deadlocks": ("pg_stat_database_deadlocks_total", 1, "Deadlocks detected."),
    "blk_read_time": ("pg_stat_database_blk_read_time_seconds_total", 1e-3,
                      "Time spent reading blocks (track_io_timing)."),
    "blk_write_time": ("pg_stat_database_blk_write_time_seconds_total", 1e-3,
                       "Time spent writing blocks (track_io_timing)."),
    "sessions": ("pg_stat_database_sessions_total", 1, "Sessions established."),
    "sessions_abandoned": ("pg_stat_database_sessions_abandoned_total", 1,
                           "Sessions ended because the client went away."),
    "sessions_fatal": ("pg_stat_database_sessions_fatal_total", 1,
                       "Sessions ended by fatal errors."),
    "sessions_killed": ("pg_stat_database_sessions_killed_total", 1,
                        "Sessions ended by operator intervention."),
    "session_time": ("pg_stat_database_session_time_seconds_total", 1e-3,
                     "Time spent by sessions."),
    "active_time": ("pg_stat_database_active_time_seconds_total", 1e-3,
                    "Time spent executing statements."),
    "idle_in_transaction_time": ("pg_stat_database_idle_in_transaction_time_seconds_total",
                                 1e-3, "Time spent idle in transaction."),
}

BGWRITER_METRICS: dict[str, tuple[str, float, str]] = {
    "checkpoints_timed": ("pg_stat_bgwriter_checkpoints_timed_total", 1,
                          "Scheduled checkpoints performed."),
    "checkpoints_req": ("pg_stat_bgwriter_checkpoints_req_total", 1,
                        "Requested checkpoints performed."),
    "checkpoint_write_time": ("pg_stat_bgwriter_checkpoint_write_time_seconds_total", 1e-3,
                              "Time spent writing checkpoint files to disk."),
    "checkpoint_sync_time": ("pg_stat_bgwriter_checkpoint_sync_time_seconds_total", 1e-3,
                             "Time spent syncing checkpoint files to disk."),
    "buffers_checkpoint": ("pg_stat_bgwriter_buffers_checkpoint_total", 1,
                           "Buffers written during checkpoints."),
    "buffers_clean": ("pg_stat_bgwriter_buffers_clean_total", 1,
                      "Buffers written by the background writer."),
    "maxwritten_clean": ("pg_stat_bgwriter_maxwritten_clean_total", 1,
                         "Times the background writer stopped for writing too many buffers."),
    "buffers_backend": ("pg_stat_bgwriter_buffers_backend_total", 1,
                        "Buffers written directly by backends (before PostgreSQL 17)."),
    "buffers_backend_fsync": ("pg_stat_bgwriter_buffers_backend_fsync_total", 1,
                              "Backend fsync calls (before PostgreSQL 17)."),
    "buffers_alloc": ("pg_stat_bgwriter_buffers_alloc_total", 1, "Buffers allocated."),
}

# pg_settings units -> factor to seconds or bytes.
UNIT_FACTORS: dict[str, tuple[float, str]] = {
    "ms": (1e-3, "_seconds"), "s": (1.0, "_seconds"), "min": (60.0, "_seconds"),
    "h": (3600.0, "_seconds"), "d": (86400.0, "_seconds"),
    "B": (1.0, "_bytes"), "kB": (1024.0, "_bytes"), "MB": (1024.0**2, "_bytes"),
    "GB": (1024.0**3, "_bytes"), "TB": (1024.0**4, "_bytes"),
    "8kB": (8192.0, "_bytes"), "16MB": (16 * 1024.0**2, "_bytes"),
}

# SQLSTATE classes meaning "this part cannot work for this role/server", not "down":
# 42 (insufficient privilege, undefined object), 55 (e.g. pg_stat_statements not loaded),
# 0A (feature not supported).
PART_FAILURE_CLASSES = ("42", "55", "0A")


@dataclass(frozen=True)
class Part:
    """One prepared query of the per-scrape batch."""

    name: str
    sql: str


def short_version(server_version: int) -> str:
    """150020 -> "15.20.0" (postgres_exporter's short_version); 90624 -> "9.6.24"."""
    major = server_version // 10000
    if major >= 10:
        return f"{major}.{server_version % 10000}.0"
    return f"{major}.{server_version // 100 % 100}.{server_version % 100}"


def bgwriter_sql(server_version: int) -> str:
    """pg_stat_checkpointer on 17+, pg_stat_bgwriter before."""
    return BGWRITER_SQL_17 if server_version >= 170000 else BGWRITER_SQL


def database_columns(server_version: int) -> tuple[str, ...]:
    return STAT_DATABASE_COLUMNS + (STAT_DATABASE_COLUMNS_14 if server_version >= 140000
                                    else ())


def build_parts(server_version: int, slow_threshold: float,
                statements: tuple[str, str] | None, limit: int) -> list[Part]:
    """The queries for one connection, chosen from the server version once."""
    columns = database_columns(server_version)
    parts = [
        Part("server", SERVER_SQL),
        Part("settings", SETTINGS_SQL),
        Part("activity", ACTIVITY_SQL),
        Part("slow", SLOW_SQL.format(threshold=repr(float(slow_threshold)))),
        Part("sizes", SIZES_SQL),
        Part("database", DATABASE_SQL.format(
            columns=", ".join(f"s.{c}::float8" for c in columns))),
        Part("locks", LOCKS_SQL),
        Part("replication", REPLICATION_SQL),
        Part("slots", SLOTS_SQL),
        Part("bgwriter", bgwriter_sql(server_version)),
        Part("tables", TABLES_SQL),
    ]
    if statements is not None:
        schema, version = statements
        time_column = "total_exec_time" if _version_tuple(version) >= (1, 8) else "total_time"
        parts.append(Part("statements", STATEMENTS_SQL.format(
            schema=schema, time_column=time_column, limit=int(limit))))
    return parts


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def setting_metric(name: str, setting: str, unit: str, vartype: str
                   ) -> tuple[str, float] | None:
    """pg_settings row -> (metric name, value in base units); None when not numeric."""
    if vartype == "bool":
        return f"pg_settings_{name}", 1.0 if setting == "on" else 0.0
    if vartype not in ("integer", "real"):
        return None
    try:
        value = float(setting)
    except ValueError:
        return None
    factor, suffix = UNIT_FACTORS.get(unit, (1.0, ""))
    if value < 0:  # -1 = disabled: keep it as is, like postgres_exporter
        factor = 1.0
    return f"pg_settings_{name}{suffix}", value * factor


def sqlstate_class(err: BaseException) -> str:
    state = getattr(err, "sqlstate", None) or ""
    return str(state)[:2]


class _Watchdog:
    """Shuts the connection's socket down at the deadline: a blocked read returns at once.

    ``shutdown`` (not ``close``) leaves the descriptor to psycopg, so no fd can be reused
    under it; the broken connection is replaced on the next scrape.
    """

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                sock = socket.socket(fileno=os.dup(self.fd))
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()
            except OSError:
                pass


class PostgresCollector(Collector):
    """One PostgreSQL server: connections, activity, sizes, locks, replication, bgwriter."""

    name = "postgres"

    def __init__(self, settings: PostgresSettings, dsn: str | None,
                 password_file: str | None = None, statement_timeout: float = 10.0,
                 target: str = "default") -> None:
        self.settings = settings
        self.dsn = dsn or ""
        self.password_file = password_file
        self.statement_timeout_ms = max(1, int(statement_timeout * 1000))
        self.target = target
        self._conn: psycopg.Connection[Any] | None = None
        self._parts: list[Part] = []
        self._disabled: set[str] = set()  # parts this role/server cannot run
        self._logged: set[str] = set()  # "log once" keys
        self._version = 0
        self._sizes: tuple[float, list[tuple[Any, ...]]] | None = None  # (when, rows)
        self._lock = threading.Lock()

    # --- connection ---------------------------------------------------------------

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    def _conninfo(self, deadline: float, dbname: str | None = None) -> str:
        params = conninfo_to_dict(self.dsn) if self.dsn else {}
        if self.password_file:
            try:
                params["password"] = read_secret_file(self.password_file, "password_file")
            except SettingError as err:
                raise ConnectionError(f"password_file: {err.message}") from None
        remaining = max(0.0, deadline - time.monotonic())
        timeout = max(MIN_CONNECT_TIMEOUT,
                      math.ceil(min(self.settings.connect_timeout_seconds, remaining)))
        options = str(params.get("options") or "")
        params.update(
            application_name=APPLICATION_NAME,
            connect_timeout=str(timeout),
            options=f"{options} -c statement_timeout={self.statement_timeout_ms}".strip(),
        )
        if dbname is not None:
            params["dbname"] = dbname
        return make_conninfo("", **params)

    def _connect(self, deadline: float) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo(deadline), autocommit=True,
                                   prepare_threshold=None)
        except psycopg.OperationalError as err:
            # Name the target: every /probe target's collector is called "postgres".
            raise ConnectionError(f"target {self.target}: {err}") from None
        try:
            self._version = conn.info.server_version
            statements = None
            with _Watchdog(conn.pgconn.socket, deadline):
                if self.settings.stat_statements:
                    row = conn.execute(STATEMENTS_EXTENSION_SQL).fetchone()
                    if row is None:
                        self._log_once("statements-missing",
                                       'collector=postgres target=%s msg="pg_stat_statements '
                                       'is enabled but the extension is not installed in the '
                                       'connected database; skipping it"', self.target)
                    else:
                        statements = (str(row[0]), str(row[1]))
                parts = build_parts(self._version, self.settings.slow_query_threshold_seconds,
                                    statements, self.settings.stat_statements_limit)
                self._disabled = set()
                self._parts = self._prepare(conn, parts)
                self._check_privileges(conn)
        except BaseException:
            conn.close()
            raise
        log.info('collector=postgres target=%s msg="connected" server_version=%s', self.target,
                 conn.info.parameter_status("server_version"))
        return conn

    def _prepare(self, conn: psycopg.Connection[Any], parts: list[Part]) -> list[Part]:
        """PREPARE every part in one message; on failure, one by one, keeping the good ones."""
        try:
            conn.execute(";".join(f"PREPARE {PREPARED_PREFIX}{p.name} AS {p.sql}"
                                  for p in parts))
            return parts
        except psycopg.Error as err:
            if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                raise
        # The parts before the failing one stay prepared (PREPARE is not transactional):
        # drop them, or preparing them again fails with "already exists" (42P05).
        conn.execute("DEALLOCATE ALL")
        good = []
        for part in parts:
            try:
                conn.execute(f"PREPARE {PREPARED_PREFIX}{part.name} AS {part.sql}")
                good.append(part)
            except psycopg.Error as err:
                if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                    raise
                self._part_failed(part, err)
        return good

    def _part_failed(self, part: Part, err: BaseException) -> None:
        self._disabled.add(part.name)
        state = str(getattr(err, "sqlstate", "") or type(err).__name__)
        hint = ("grant pg_monitor to the role" if state == "42501"
                else "not available on this server")
        self._log_once(f"part-{part.name}",
                       'collector=postgres target=%s msg="cannot query %s; its metrics are '
                       'left out (%s)" sqlstate=%s', self.target, part.name, hint, state)

    def _check_privileges(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT pg_has_role('pg_read_all_stats', 'MEMBER')").fetchone()
        if row is not None and not row[0]:
            self._log_once("privileges",
                           'collector=postgres target=%s msg="the role is not a member of '
                           'pg_monitor/pg_read_all_stats: other roles\' sessions show no '
                           'state or durations, replication lag is hidden and sizes of '
                           'databases without CONNECT are left out"', self.target)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- scrape -------------------------------------------------------------------

    def failure_metrics(self) -> list[Metric]:
        return self._up_metrics(0.0, None)

    def _up_metrics(self, up: float, info: tuple[str, str, str] | None) -> list[Metric]:
        pg_up = GaugeMetricFamily("pg_up", "1 if the last scrape could query PostgreSQL.")
        pg_up.add_metric([], up)
        if info is None:
            return [pg_up, *service_families(SERVICE, up)]
        return [pg_up, *service_families(SERVICE, up, info[1], info[2])]

    def collect(self, deadline: float) -> list[Metric]:
        with self._lock:
            results = self._query(deadline)
            extra_tables = self._extra_tables(results, deadline)
        return self._metrics(results, extra_tables)

    def _query(self, deadline: float) -> dict[str, list[tuple[Any, ...]]]:
        reused = self._conn is not None and not self._conn.closed
        if not reused:
            self._drop()
            self._conn = self._connect(deadline)
        assert self._conn is not None
        try:
            return self._run_batch(self._conn, deadline)
        except psycopg.OperationalError:
            broken = self._conn is None or self._conn.broken or self._conn.closed
            self._drop()
            if not (reused and broken) or time.monotonic() >= deadline:
                raise
            # The server restarted or dropped an idle session: one fresh try.
            self._conn = self._connect(deadline)
            return self._run_batch(self._conn, deadline)
        except Exception:
            self._drop()
            raise

    def _run_batch(self, conn: psycopg.Connection[Any], deadline: float
                   ) -> dict[str, list[tuple[Any, ...]]]:
        """Run the batch; sizes come from the last reading while it is fresh enough."""
        now = time.monotonic()
        fresh = (self._sizes is not None
                 and now - self._sizes[0] < self.settings.database_size_refresh_seconds)
        parts = [p for p in self._parts if p.name not in self._disabled
                 and not (p.name == "sizes" and fresh)]
        results = self._run_parts(conn, parts, deadline)
        if "sizes" in results:
            self._sizes = (now, results["sizes"])
        elif self._sizes is not None and "sizes" not in self._disabled:
            results["sizes"] = self._sizes[1]
        return results

    def _run_parts(self, conn: psycopg.Connection[Any], parts: list[Part], deadline: float
                   ) -> dict[str, list[tuple[Any, ...]]]:
        with _Watchdog(conn.pgconn.socket, deadline) as dog:
            try:
                return self._execute(conn, parts)
            except psycopg.Error as err:
                if dog.fired:
                    raise TimeoutError("deadline exceeded; connection dropped") from None
                if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                    raise
            # One part failed (e.g. a permission revoked): find it, run the rest.
            results: dict[str, list[tuple[Any, ...]]] = {}
            for part in parts:
                try:
                    results.update(self._execute(conn, [part]))
                except psycopg.Error as err:
                    if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                        raise
                    self._part_failed(part, err)
            return results

    @staticmethod
    def _execute(conn: psycopg.Connection[Any], parts: Sequence[Part]
                 ) -> dict[str, list[tuple[Any, ...]]]:
        """All parts in one simple-query message: one round trip, one transaction."""
        results: dict[str, list[tuple[Any, ...]]] = {}
        if not parts:
            return results
        with conn.cursor() as cur:
            cur.execute(";".join(f"EXECUTE {PREPARED_PREFIX}{p.name}" for p in parts))
            for i, part in enumerate(parts):
                if i:
                    cur.nextset()
                results[part.name] = list(cur.fetchall())
        return results

    def _extra_databases(self, results: dict[str, list[tuple[Any, ...]]]) -> list[str]:
        current = {str(r[0]) for r in results.get("tables", [])}
        wanted = [d for d in self.settings.table_count_databases if d not in current]
        cap = self.settings.table_count_discover_max
        if cap:
            names = sorted(str(r[0]) for r in results.get("database", []))
            discovered = [n for n in names if n not in ("template0", "template1")
                          and n not in current and n not in wanted]
            wanted += discovered[:max(0, cap - len(wanted))]
        return wanted

    def _extra_tables(self, results: dict[str, list[tuple[Any, ...]]], deadline: float
                      ) -> list[tuple[str, float]]:
        """User tables in other databases: one short connection each (not kept)."""
        out = []
        for dbname in self._extra_databases(results):
            if time.monotonic() >= deadline:
                break
            try:
                with psycopg.connect(self._conninfo(deadline, dbname), autocommit=True,
                                     prepare_threshold=None) as conn, \
                        _Watchdog(conn.pgconn.socket, deadline):
                    row = conn.execute(TABLES_SQL).fetchone()
                if row is not None:
                    out.append((dbname, float(row[1])))
            except (psycopg.Error, OSError) as err:
                self._log_once(f"tables-{dbname}",
                               'collector=postgres target=%s msg="cannot count tables in a '
                               'database; left out" datname="%s" err=%s', self.target,
                               dbname, getattr(err, "sqlstate", None) or type(err).__name__)
        return out

    # --- metrics ------------------------------------------------------------------

    def _metrics(self, r: dict[str, list[tuple[Any, ...]]],
                 extra_tables: list[tuple[str, float]]) -> list[Metric]:
        out: list[Metric] = []
        server = r.get("server", [])
        role = "unknown"
        version_text = ""
        if server:
            in_recovery, start_time, version_text, replica_lag = server[0]
            role = "replica" if in_recovery else "primary"
            out.append(_gauge("pg_postmaster_start_time_seconds",
                              "Time the postmaster started, seconds since the epoch.",
                              start_time))
            out.append(_gauge("pg_replication_is_replica",
                              "1 if the server is a standby (in recovery).",
                              1.0 if in_recovery else 0.0))
            out.append(_gauge("pg_replication_lag_seconds",
                              "Standby: seconds since the last replayed transaction when "
                              "WAL is pending replay (0 when caught up or on a primary).",
                              replica_lag))
        version = GaugeMetricFamily("pg_version_info", "PostgreSQL server version.",
                                    labels=["version", "short_version"])
        version.add_metric([str(version_text), short_version(self._version)], 1.0)
        out.append(version)
        out.extend(self._up_metrics(1.0, (SERVICE, short_version(self._version), role)))

        for name, setting, unit, vartype in r.get("settings", []):
            converted = setting_metric(str(name), str(setting), str(unit), str(vartype))
            metric = SETTINGS.get(str(name))
            # A unit the table does not expect (a future version) must not mislabel.
            if converted is not None and converted[0] == metric:
                out.append(_gauge(metric, f"Server setting {name}.", converted[1]))

        out.extend(self._activity(r))
        out.extend(self._databases(r, extra_tables))
        out.extend(self._locks(r))
        out.extend(self._replication(r))
        out.extend(self._bgwriter(r))
        out.extend(self._statements(r))
        return out

    def _activity(self, r: dict[str, list[tuple[Any, ...]]]) -> list[Metric]:
        if "activity" not in r:
            return []
        count = GaugeMetricFamily(
            "pg_stat_activity_count", "Connections per database and state.",
            labels=["datname", "state"])
        max_tx = GaugeMetricFamily(
            "pg_stat_activity_max_tx_duration_seconds",
            "Age of the oldest open transaction per database and state.",
            labels=["datname", "state"])
        for datname, state, n, longest in r["activity"]:
            count.add_metric([datname, state], n)
            max_tx.add_metric([datname, state], longest)
        out: list[Metric] = [count, max_tx]
        if "slow" in r:
            slow = GaugeMetricFamily(
                "pg_stat_activity_slow_queries",
                "Statements running longer than the slow-query threshold.", labels=["datname"])
            by_db = {str(d): float(n) for d, n in r["slow"]}
            for datname in sorted({str(row[0]) for row in r["activity"]}):
                slow.add_metric([datname], by_db.get(datname, 0.0))
            threshold = _gauge("pg_stat_activity_slow_query_threshold_seconds",
                               "The configured slow-query threshold.",
                               self.settings.slow_query_threshold_seconds)
            out += [slow, threshold]
        return out

    def _databases(self, r: dict[str, list[tuple[Any, ...]]],
                   extra_tables: list[tuple[str, float]]) -> list[Metric]:
        out: list[Metric] = []
        if "sizes" in r:
            size = GaugeMetricFamily("pg_database_size_bytes", "Disk space used by the database.",
                                     labels=["datname"])
            for datname, db_size in r["sizes"]:
                if db_size is not None:
                    size.add_metric([datname], db_size)
            out.append(size)
        if "database" in r:
            columns = database_columns(self._version)
            backends = GaugeMetricFamily("pg_stat_database_numbackends",
                                         "Backends connected to the database.",
                                         labels=["datname"])
            counters = {c: CounterMetricFamily(STAT_DATABASE_METRICS[c][0],
                                               STAT_DATABASE_METRICS[c][2], labels=["datname"])
                        for c in columns if c in STAT_DATABASE_METRICS}
            for row in r["database"]:
                datname, values = row[0], row[1:]
                for column, value in zip(columns, values, strict=True):
                    if value is None:
                        continue
                    if column == "numbackends":
                        backends.add_metric([datname], value)
                    else:
                        counters[column].add_metric([datname],
                                                    value * STAT_DATABASE_METRICS[column][1])
            out += [backends, *counters.values()]
        if "tables" in r or extra_tables:
            tables = GaugeMetricFamily("pg_database_user_tables",
                                       "User tables (ordinary and partitioned) in the database.",
                                       labels=["datname"])
            for datname, n in [*r.get("tables", []), *extra_tables]:
                tables.add_metric([datname], n)
            out.append(tables)
        return out

    def _locks(self, r: dict[str, list[tuple[Any, ...]]]) -> list[Metric]:
        if "locks" not in r:
            return []
        counts = {(str(d), str(m)): float(n) for d, m, n in r["locks"]}
        databases = sorted({str(row[0]) for row in r.get("activity", r.get("database", []))}
                           | {d for d, _ in counts})
        locks = GaugeMetricFamily("pg_locks_count", "Locks held or awaited, per database and mode.",
                                  labels=["datname", "mode"])
        for datname in databases:
            for mode in LOCK_MODES:
                locks.add_metric([datname, mode], counts.get((datname, mode), 0.0))
        return [locks]

    def _replication(self, r: dict[str, list[tuple[Any, ...]]]) -> list[Metric]:
        out: list[Metric] = []
        if "replication" in r:
            labels = ["application_name", "client_addr", "state"]
            families = [
                GaugeMetricFamily("pg_stat_replication_lag_bytes",
                                  "WAL bytes the standby has not replayed yet.", labels=labels),
                GaugeMetricFamily("pg_stat_replication_write_lag_seconds",
                                  "Standby write lag.", labels=labels),
                GaugeMetricFamily("pg_stat_replication_flush_lag_seconds",
                                  "Standby flush lag.", labels=labels),
                GaugeMetricFamily("pg_stat_replication_replay_lag_seconds",
                                  "Standby replay lag.", labels=labels),
            ]
            # Two standbys may share a name and address: keep the worst value.
            worst: dict[tuple[int, tuple[str, str, str]], float] = {}
            for row in r["replication"]:
                key = (str(row[0]), str(row[1]), str(row[2]))
                for i, value in enumerate(row[3:]):
                    if value is None:
                        continue
                    worst[(i, key)] = max(worst.get((i, key), value), float(value))
            for (i, key), value in sorted(worst.items()):
                families[i].add_metric(list(key), value)
            out += families
        if "slots" in r:
            labels = ["slot_name", "slot_type", "database"]
            active = GaugeMetricFamily("pg_replication_slot_active",
                                       "1 if a consumer is connected to the slot.",
                                       labels=labels)
            retained = GaugeMetricFamily("pg_replication_slot_retained_wal_bytes",
                                         "WAL bytes the slot keeps from being removed.",
                                         labels=labels)
            for name, kind, database, is_active, retained_bytes in r["slots"]:
                slot = [str(name), str(kind), str(database)]
                active.add_metric(slot, 1.0 if is_active else 0.0)
                if retained_bytes is not None:
                    retained.add_metric(slot, retained_bytes)
            out += [active, retained]
        return out

    def _bgwriter(self, r: dict[str, list[tuple[Any, ...]]]) -> list[Metric]:
        rows = r.get("bgwriter", [])
        out: list[Metric] = []
        if rows:
            for column, value in zip(BGWRITER_COLUMNS, rows[0], strict=True):
                if value is None:
                    continue
                name, scale, help_text = BGWRITER_METRICS[column]
                family = CounterMetricFamily(name, help_text)
                family.add_metric([], value * scale)
                out.append(family)
        return out

    def _statements(self, r: dict[str, list[tuple[Any, ...]]]) -> list[Metric]:
        if "statements" not in r:
            return []
        labels = ["user", "datname", "queryid"]
        calls = CounterMetricFamily("pg_stat_statements_calls_total",
                                    "Times the statement was executed.", labels=labels)
        seconds = CounterMetricFamily("pg_stat_statements_seconds_total",
                                      "Time spent executing the statement.", labels=labels)
        rows = CounterMetricFamily("pg_stat_statements_rows_total",
                                   "Rows retrieved or affected by the statement.", labels=labels)
        for user, datname, queryid, n_calls, total_seconds, n_rows in r["statements"]:
            key = [str(user), str(datname), str(queryid)]
            calls.add_metric(key, n_calls)
            seconds.add_metric(key, total_seconds)
            rows.add_metric(key, n_rows)
        return [calls, seconds, rows]


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    family.add_metric([], float(value))
    return family


def build(settings: PostgresSettings, scrape: ScrapeSettings) -> list[Collector]:
    """What plain /metrics serves: the default DSN.

    Without one, nothing when named targets exist, else libpq's defaults (PGHOST...).
    """
    if settings.dsn is None and settings.targets:
        return []
    return [PostgresCollector(settings, settings.dsn, settings.password_file,
                              scrape.timeout_seconds)]


def probes(settings: PostgresSettings, scrape: ScrapeSettings) -> dict[str, list[Collector]]:
    """One collector per named target for /probe?target=<name>."""
    return {t.name: [PostgresCollector(settings, t.dsn, t.password_file,
                                       scrape.timeout_seconds, target=t.name)]
            for t in settings.targets}
