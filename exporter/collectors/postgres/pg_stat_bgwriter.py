"""pg_stat_bgwriter (and pg_stat_checkpointer on 17+) under postgres_exporter's names.

Times are in milliseconds, as postgres_exporter exports them; ``stats_reset_total`` is
the reset time in seconds since the epoch.  PostgreSQL 17 moved the checkpoint counters
to pg_stat_checkpointer and dropped the backend-write counters (now in pg_stat_io): the
moved ones keep their bgwriter names, the dropped ones are left out.

Sample output::

    pg_stat_bgwriter_checkpoints_timed_total{server="127.0.0.1:5432"} 6.0
    pg_stat_bgwriter_checkpoint_write_time_total{server="127.0.0.1:5432"} 35.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import CounterMetricFamily, Metric

# column -> (metric name, help); prometheus_client adds the _total postgres_exporter has
BGWRITER_COLUMNS: dict[str, tuple[str, str]] = {
    "checkpoints_timed": ("pg_stat_bgwriter_checkpoints_timed",
        "Scheduled checkpoints that have been performed."),
    "checkpoints_req": ("pg_stat_bgwriter_checkpoints_req",
        "Requested checkpoints that have been performed."),
    "checkpoint_write_time": ("pg_stat_bgwriter_checkpoint_write_time",
        "Time spent writing checkpoint files to disk, in milliseconds."),
    "checkpoint_sync_time": ("pg_stat_bgwriter_checkpoint_sync_time",
        "Time spent syncing checkpoint files to disk, in milliseconds."),
    "buffers_checkpoint": ("pg_stat_bgwriter_buffers_checkpoint",
        "Buffers written during checkpoints."),
    "buffers_clean": ("pg_stat_bgwriter_buffers_clean",
        "Buffers written by the background writer."),
    "maxwritten_clean": ("pg_stat_bgwriter_maxwritten_clean",
        "Times the background writer stopped a cleaning scan for writing too many buffers."),
    "buffers_backend": ("pg_stat_bgwriter_buffers_backend",
        "Buffers written directly by a backend (before PostgreSQL 17)."),
    "buffers_backend_fsync": ("pg_stat_bgwriter_buffers_backend_fsync",
        "Times a backend had to execute its own fsync call (before PostgreSQL 17)."),
    "buffers_alloc": ("pg_stat_bgwriter_buffers_alloc", "Buffers allocated."),
    "stats_reset": ("pg_stat_bgwriter_stats_reset",
        "Time at which these statistics were last reset."),
}
BGWRITER_SQL = "SELECT " + ", ".join(
    f"extract(epoch FROM {c})::float8" if c == "stats_reset" else f"{c}::float8"
    for c in BGWRITER_COLUMNS) + " FROM pg_stat_bgwriter"
BGWRITER_SQL_17 = """
SELECT c.num_timed::float8, c.num_requested::float8, c.write_time::float8,
       c.sync_time::float8, c.buffers_written::float8, b.buffers_clean::float8,
       b.maxwritten_clean::float8, NULL::float8, NULL::float8, b.buffers_alloc::float8,
       extract(epoch FROM b.stats_reset)::float8
FROM pg_stat_checkpointer c, pg_stat_bgwriter b
"""


def bgwriter_sql(server_version: int) -> str:
    """pg_stat_checkpointer on 17+, pg_stat_bgwriter before."""
    return BGWRITER_SQL_17 if server_version >= 170000 else BGWRITER_SQL


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("bgwriter", bgwriter_sql(server.version))]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    rows = r.get("bgwriter", [])
    out: list[Metric] = []
    if rows:
        for (name, help_text), value in zip(BGWRITER_COLUMNS.values(), rows[0], strict=True):
            if value is None:
                continue
            family = CounterMetricFamily(name, help_text, labels=["server"])
            family.add_metric([server.server], value)
            out.append(family)
    return out
