"""The PostgreSQL collector's diagnostics: what the role, the server's configuration and
the database the DSN names must give for every series to be filled, and the fix.

One round trip on the collector's own connection (``PostgresCollector.session``) reads
the facts; the search for pg_stat_statements in other databases (only when it is missing
from the DSN's) opens one short connection per database.  Nothing is written.

Sample findings (``stackmon check``)::

    postgres  pg_monitor       missing  role mon is not a member of ...  GRANT pg_monitor TO mon;
    postgres  track_io_timing  missing  track_io_timing is off ...        track_io_timing = on ...
"""

from __future__ import annotations

from typing import Any

import psycopg

from exporter.checks import Check, Finding, Status
from exporter.collectors.postgres.collector import PostgresCollector

# Families hidden or incomplete without pg_read_all_stats (via pg_monitor): other roles'
# sessions have no state, start times or query; the standbys' lag columns are NULL;
# pg_database_size needs CONNECT on the database otherwise.
ACTIVITY_FAMILIES = ("pg_stat_activity_count", "pg_stat_activity_max_tx_duration",
                     "pg_stat_activity_client_max_tx_duration_seconds",
                     "pg_stat_activity_slow_queries", "pg_database_size_bytes")
REPLICATION_FAMILIES = ("pg_stat_replication_lag_bytes", "pg_stat_replication_write_lag_seconds",
                        "pg_stat_replication_flush_lag_seconds",
                        "pg_stat_replication_replay_lag_seconds")
STATEMENTS_FAMILIES = ("pg_stat_statements_calls_total", "pg_stat_statements_seconds_total",
                       "pg_stat_statements_rows_total")
STATEMENTS_PANELS = ("Database / Top statements",)
ACTIVITY_PANELS = ("Database / Connections used", "Database / Connections by state",
                   "Database / Oldest transaction", "Database / Slow queries",
                   "Database / Idle in transaction", "Database / Database size",
                   "Overview / PostgreSQL connections")

PG_MONITOR = Check(
    "postgres", "pg_monitor", "the role is a member of pg_monitor",
    families=ACTIVITY_FAMILIES + REPLICATION_FAMILIES,
    panels=(*ACTIVITY_PANELS, "Database / Standby lag (bytes)",
            "Database / Standby lag per standby"),
    fixes={"": "GRANT pg_monitor TO {role};"})
REPLICA_STATS = Check(
    "postgres", "replica_pg_read_all_stats",
    "on a standby, the role is a member of pg_read_all_stats",
    families=ACTIVITY_FAMILIES, panels=ACTIVITY_PANELS,
    fixes={"": "-- on the primary: a standby is read-only, the grant reaches it by "
               "replication\nGRANT pg_monitor TO {role};  -- includes pg_read_all_stats"})
TRACK_IO_TIMING = Check(
    "postgres", "track_io_timing", "track_io_timing is on (block read and write times)",
    families=("pg_stat_database_blk_read_time", "pg_stat_database_blk_write_time"),
    fixes={"": "track_io_timing = on  # postgresql.conf, then: SELECT pg_reload_conf();\n"
               "-- or, as a superuser: ALTER SYSTEM SET track_io_timing = on; "
               "SELECT pg_reload_conf();"})
STATEMENTS_PRELOAD = Check(
    "postgres", "pg_stat_statements_preload",
    "pg_stat_statements is in shared_preload_libraries (postgres.stat_statements)",
    families=STATEMENTS_FAMILIES, panels=STATEMENTS_PANELS,
    fixes={"": "shared_preload_libraries = '{libraries}'  # postgresql.conf, then restart "
               "PostgreSQL (a reload is not enough)"})
STATEMENTS_EXTENSION = Check(
    "postgres", "pg_stat_statements_extension",
    "the pg_stat_statements extension exists in the database the DSN names",
    families=STATEMENTS_FAMILIES, panels=STATEMENTS_PANELS,
    fixes={"": "-- in database {database} (the one postgres.dsn names), as a superuser:\n"
               "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
           "not_available": "apt-get install postgresql-contrib  # the server lacks the "
                            "extension's files; then, in database {database}:\n"
                            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"})

CHECKS = (PG_MONITOR, REPLICA_STATS, TRACK_IO_TIMING, STATEMENTS_PRELOAD, STATEMENTS_EXTENSION)

# Everything the checks need, in one round trip.  shared_preload_libraries is visible in
# pg_settings only to superusers and pg_read_all_settings (pg_monitor): NULL otherwise.
FACTS_SQL = """
SELECT quote_ident(current_user), current_database(),
       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
       pg_has_role('pg_monitor', 'MEMBER'), pg_has_role('pg_read_all_stats', 'MEMBER'),
       pg_is_in_recovery(),
       (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'),
       (SELECT setting FROM pg_settings WHERE name = 'track_io_timing'),
       (SELECT quote_ident(n.nspname) FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')
"""
OTHER_DATABASES_SQL = """
SELECT datname FROM pg_database
WHERE datallowconn AND NOT datistemplate AND datname <> current_database() ORDER BY datname
"""
EXTENSION_HERE_SQL = "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
# Databases searched for the extension when the DSN's lacks it (one connection each).
MAX_DATABASES_SEARCHED = 20
NOT_LOADED = "55000"  # "pg_stat_statements must be loaded via shared_preload_libraries"


def diagnose(collector: PostgresCollector, deadline: float) -> list[Finding]:
    with collector.session(deadline) as conn:
        row = conn.execute(FACTS_SQL).fetchone()
        assert row is not None
        (role, database, superuser, monitor, read_all_stats, standby, preload, io_timing,
         schema, available) = row
        loaded = _loaded(conn, schema) if preload is None and schema else None
        others = (conn.execute(OTHER_DATABASES_SQL).fetchall()
                  if collector.settings.stat_statements and not schema else [])
    refused = collector.refused_parts
    out: list[Finding] = []
    if standby:
        out.append(_replica(role, superuser, read_all_stats))
    else:
        out.append(_monitor(role, superuser, monitor, refused))
    if io_timing == "on":
        out.append(TRACK_IO_TIMING.finding(Status.OK, "track_io_timing is on"))
    else:
        out.append(TRACK_IO_TIMING.finding(
            Status.MISSING, f"track_io_timing is {io_timing or 'unknown'}: "
            "pg_stat_database_blk_read_time and _blk_write_time stay 0"))
    if collector.settings.stat_statements:
        out.append(_preload(preload, loaded))
        out.append(_extension(collector, database, schema is not None, bool(available),
                              [str(r[0]) for r in others], deadline))
    return out


def _monitor(role: str, superuser: bool, monitor: bool, refused: list[str]) -> Finding:
    if superuser:
        return PG_MONITOR.finding(Status.OK, f"role {role} is a superuser")
    if monitor:
        return PG_MONITOR.finding(Status.OK, f"role {role} is a member of pg_monitor")
    detail = (f"role {role} is not a member of pg_monitor: other roles' sessions have no "
              "state or transaction age, standbys' lag is hidden, and sizes of databases "
              "without CONNECT are left out")
    if refused:
        detail += f"; queries refused: {', '.join(refused)}"
    return PG_MONITOR.finding(Status.MISSING, detail, role=role)


def _replica(role: str, superuser: bool, read_all_stats: bool) -> Finding:
    if superuser or read_all_stats:
        return REPLICA_STATS.finding(
            Status.OK, f"standby; role {role} " + ("is a superuser" if superuser else
                                                   "is a member of pg_read_all_stats"))
    return REPLICA_STATS.finding(
        Status.MISSING, f"this server is a standby and role {role} is not a member of "
        "pg_read_all_stats: other sessions have no state or transaction age, and sizes of "
        "databases without CONNECT are left out", role=role)


def _loaded(conn: psycopg.Connection[Any], schema: str) -> bool | None:
    """Whether pg_stat_statements is loaded, asked of the extension itself (for a role
    that may not read shared_preload_libraries); None when it cannot tell."""
    try:
        conn.execute(f"SELECT 1 FROM {schema}.pg_stat_statements(false) LIMIT 1").fetchall()
        return True
    except psycopg.Error as err:
        return False if getattr(err, "sqlstate", None) == NOT_LOADED else None


def _preload(preload: str | None, loaded: bool | None) -> Finding:
    if preload is not None:
        libraries = [lib.strip() for lib in preload.split(",") if lib.strip()]
        if "pg_stat_statements" in libraries:
            return STATEMENTS_PRELOAD.finding(
                Status.OK, f"shared_preload_libraries = '{preload}'")
        wanted = ",".join([*libraries, "pg_stat_statements"])
        return STATEMENTS_PRELOAD.finding(
            Status.MISSING, f"shared_preload_libraries = '{preload}' lacks pg_stat_statements",
            libraries=wanted)
    if loaded:
        return STATEMENTS_PRELOAD.finding(Status.OK, "pg_stat_statements answers (loaded)")
    if loaded is False:
        return STATEMENTS_PRELOAD.finding(
            Status.MISSING, "pg_stat_statements is not loaded via shared_preload_libraries",
            libraries="<the current list>,pg_stat_statements")
    return STATEMENTS_PRELOAD.finding(
        Status.UNKNOWN, "the role may not read shared_preload_libraries (grant pg_monitor) "
        "and the extension is not in the DSN's database to ask")


def _extension(collector: PostgresCollector, database: str, here: bool, available: bool,
               others: list[str], deadline: float) -> Finding:
    name = _ident(database)
    if here:
        return STATEMENTS_EXTENSION.finding(Status.OK, f"installed in database {name}")
    if not available:
        return STATEMENTS_EXTENSION.finding(
            Status.MISSING, "the server has no pg_stat_statements extension files",
            cause="not_available", database=name)
    found, searched = [], 0
    for dbname in others[:MAX_DATABASES_SEARCHED]:
        try:
            with collector.connect_to(dbname, deadline) as conn:
                searched += 1
                if conn.execute(EXTENSION_HERE_SQL).fetchone():
                    found.append(_ident(dbname))
        except (psycopg.Error, OSError):
            continue  # no CONNECT there: not searched
    where = (f"installed in database {', '.join(found)}, not in {name} (the database "
             "postgres.dsn names, the only one stackmon reads it from)" if found else
             f"not installed in {name} (the database postgres.dsn names) nor in the "
             f"{searched} other database(s) searched")
    return STATEMENTS_EXTENSION.finding(Status.MISSING, where, database=name)


def _ident(name: str) -> str:
    """A database name as SQL writes it: ``app``, ``"My DB"``."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'
