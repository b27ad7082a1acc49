"""The Database dashboard (stackmon-database): PostgreSQL servers."""

from __future__ import annotations

from grafana.dashboards_src.shared import PG_CONNECTIONS
from grafana.lib.dashboard import Dash, Var
from grafana.lib.panels import GREEN, ORANGE, above, below_warning, st, tbl, ts, up
from grafana.lib.promql import RI, Q, increase, rate, rates, ratio

DB = '{datname=~"$db"}'
PG = "job, instance"
PGDB = "job, instance, datname"
STATEMENTS = "job, instance, datname, queryid"
TOP_STATEMENTS = f'topk(10, {increase("pg_stat_statements_seconds_total", STATEMENTS, DB)})'

DATABASE = Dash(
    "database", "stackmon / Database", "PostgreSQL servers watched by stackmon.", "pg_up", [
        ("Status", [
            up("PostgreSQL up", "pg_up: 1 if the last scrape could connect and query. "
               "PostgresDown fires (critical) when 0 for 1 m.", Q("pg_up{}", "{{instance}}")),
            st("Version", "Server version (pg_static).", "none",
               Q("pg_static{}", "{{instance}} {{short_version}}"), text=True),
            st("Role", "1 on a standby, 0 on a primary (pg_replication_is_replica).", "none",
               Q("pg_replication_is_replica{}", "{{instance}}"),
               mapping={"0": ("primary", GREEN), "1": ("standby", GREEN)}),
            st("Connections used", "Connections / max_connections. "
               "PostgresTooManyConnections fires (warning) above 80 %.", "percentunit",
               Q(PG_CONNECTIONS, "{{instance}}"), steps=above(0.8), w=4),
            st("Uptime", "Time since the postmaster started "
               "(time() - pg_postmaster_start_time_seconds). PostgresRestarted fires (warning) "
               "below 5 m.", "s",
               Q("time() - pg_postmaster_start_time_seconds{}", "{{instance}}"),
               steps=below_warning(300)),
            st("Tables", "User tables (ordinary and partitioned) in the selected databases "
               "(pg_database_user_tables).", "short",
               Q(f"sum by ({PG}) (pg_database_user_tables{DB})", "{{instance}}")),
        ]),
        ("Connections and queries", [
            ts("Connections by state", "Backends per state (pg_stat_activity_count).",
               "short", Q(f"sum by ({PG}, state) (pg_stat_activity_count{DB})",
                          "{{instance}} {{state}}"), stack=True, w=8),
            ts("Oldest transaction", "Age of the oldest open client transaction per database "
               "(autovacuum and pg_dump left out). PostgresLongRunningTransaction fires "
               "(warning) above 1 h.", "s",
               Q(f"max by ({PGDB}) (pg_stat_activity_client_max_tx_duration_seconds{DB})",
                 "{{instance}} {{datname}}"), steps=above(3600), w=8),
            ts("Slow queries", "Client statements running longer than the configured "
               "threshold. PostgresSlowQueries fires (warning) above 0 for 5 m.", "short",
               Q(f"sum by ({PGDB}) (pg_stat_activity_slow_queries{DB})",
                 "{{instance}} {{datname}}"), steps=above(0.5), w=8),
            ts("Idle in transaction", "Age of the oldest transaction left idle per database "
               "(pg_stat_activity_max_tx_duration of the idle-in-transaction states). "
               "PostgresIdleInTransaction fires (warning) above 5 m.", "s",
               Q(f"max by ({PGDB}) (pg_stat_activity_max_tx_duration"
                 '{datname=~"$db", state=~"idle in transaction.*"})',
                 "{{instance}} {{datname}}"), steps=above(300), w=8),
            ts("Rollback ratio", "Rolled back / all transactions per database, 0 when idle. "
               "PostgresHighRollbackRatio fires (warning) above 10 % when busy.",
               "percentunit",
               Q(ratio(rate("pg_stat_database_xact_rollback", PGDB, DB),
                       f'({rate("pg_stat_database_xact_rollback", PGDB, DB)} + '
                       f'{rate("pg_stat_database_xact_commit", PGDB, DB)})'),
                 "{{instance}} {{datname}}"), steps=above(0.1), max=1, w=8),
            ts("Transactions", "Commits and rollbacks per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_xact_commit": "commits",
                   "pg_stat_database_xact_rollback": "rollbacks",
               }, DB), w=8),
            ts("Cache hit ratio", "Blocks found in shared buffers / blocks requested. "
               "PostgresCacheHitRatioLow fires (warning) below 90 % for 15 m.", "percentunit",
               Q(f'{rate("pg_stat_database_blks_hit", PGDB, DB)} / '
                 f'({rate("pg_stat_database_blks_hit", PGDB, DB)} + '
                 f'{rate("pg_stat_database_blks_read", PGDB, DB)})',
                 "{{instance}} {{datname}}"), steps=below_warning(0.9), max=1, w=12),
            ts("Rows", "Rows returned, fetched, inserted, updated and deleted per second.",
               "short",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_tup_returned": "returned",
                   "pg_stat_database_tup_fetched": "fetched",
                   "pg_stat_database_tup_inserted": "inserted",
                   "pg_stat_database_tup_updated": "updated",
                   "pg_stat_database_tup_deleted": "deleted",
               }, DB), w=12),
            tbl("Top statements", "The 10 statements with the most execution time in the "
                "selected range, by queryid (pg_stat_statements; only when stackmon's "
                "statements collection is on, the query text is never exported).", "s",
                [("Time", "s"), ("Calls", "short"), ("Mean", "s")],
                Q(TOP_STATEMENTS),
                Q(f'{increase("pg_stat_statements_calls_total", STATEMENTS, DB)} '
                  f"and on ({STATEMENTS}) {TOP_STATEMENTS}"),
                Q(f'{increase("pg_stat_statements_seconds_total", STATEMENTS, DB)} / '
                  f'({increase("pg_stat_statements_calls_total", STATEMENTS, DB)} > 0) '
                  f"and on ({STATEMENTS}) {TOP_STATEMENTS}"), h=8),
        ]),
        ("Contention and storage", [
            ts("Deadlocks", "Deadlocks detected in the interval. PostgresDeadlocks fires "
               "(warning) above 5 in 5 m.", "short",
               Q(f"sum by ({PGDB}) (increase(pg_stat_database_deadlocks{DB}[{RI}]))",
                 "{{instance}} {{datname}}"), steps=above(5), w=8),
            ts("Locks by mode", "Locks held or awaited per mode (pg_locks_count).", "short",
               Q(f"sum by ({PG}, mode) (pg_locks_count{DB})", "{{instance}} {{mode}}"),
               stack=True, w=8),
            ts("Temporary files", "Bytes per second written to temporary files (work_mem "
               "too small for sorts and hashes).", "Bps",
               Q(rate("pg_stat_database_temp_bytes", PGDB, DB),
                 "{{instance}} {{datname}}"), w=8),
            ts("Database size", "Disk space used per database.", "bytes",
               Q(f"pg_database_size_bytes{DB}", "{{instance}} {{datname}}"), w=8),
            ts("Tables per database", "User tables per database (pg_database_user_tables).",
               "short", Q(f"pg_database_user_tables{DB}", "{{instance}} {{datname}}"), w=8),
            ts("Conflicts and fatal sessions", "Queries cancelled by recovery conflicts and "
               "sessions ended by fatal errors, per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_database_conflicts": "conflicts",
                   "pg_stat_database_sessions_fatal": "fatal sessions",
               }, DB), w=8),
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
            ts("Standby lag per standby", "On a primary: write, flush and replay lag each "
               "standby reports (pg_stat_replication_*_lag_seconds; absent while idle).", "s",
               *[Q(f"pg_stat_replication_{kind}_lag_seconds{{}}",
                   f"{{{{instance}}}} {{{{application_name}}}} {kind}")
                 for kind in ("write", "flush", "replay")], w=8),
            ts("Replication slot retained WAL", "WAL each replication slot keeps from "
               "removal (pg_replication_slot_retained_wal_bytes); a slot nobody consumes "
               "fills the disk. PostgresReplicationSlotWalRetained fires (warning) above 10 GiB.",
               "bytes",
               Q("pg_replication_slot_retained_wal_bytes{}", "{{instance}} {{slot_name}}"),
               steps=above(10 * 1024 ** 3), w=8),
            ts("Replication slots active", "1 while a consumer uses the slot "
               "(pg_replication_slot_active). PostgresReplicationSlotInactive fires "
               "(warning) when 0 for 30 m.", "none",
               Q("pg_replication_slot_active{}", "{{instance}} {{slot_name}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            ts("Checkpoints", "Scheduled and requested checkpoints per second.", "ops",
               *rates(PG, "{{instance}}", {
                   "pg_stat_bgwriter_checkpoints_timed_total": "timed",
                   "pg_stat_bgwriter_checkpoints_req_total": "requested",
               }), w=8),
            ts("Buffers written", "Buffers written per second by checkpoints, the "
               "background writer and backends.", "short",
               *rates(PG, "{{instance}}", {
                   "pg_stat_bgwriter_buffers_checkpoint_total": "checkpoint",
                   "pg_stat_bgwriter_buffers_clean_total": "bgwriter",
                   "pg_stat_bgwriter_buffers_backend_total": "backend",
               })),
            ts("Checkpoint time", "Seconds per second spent writing and syncing "
               "checkpoint files (postgres_exporter's counters are in milliseconds).",
               "percentunit",
               *[Q(f"{query.expr} / 1000", query.legend) for query in rates(
                   PG, "{{instance}}", {
                       "pg_stat_bgwriter_checkpoint_write_time_total": "write",
                       "pg_stat_bgwriter_checkpoint_sync_time_total": "sync",
                   })]),
        ]),
    ], extra_vars=[Var("db", "datname",
                       'pg_database_size_bytes{job=~"$job", instance=~"$instance"}')])
