"""pg_stat_archiver: WAL archiving, as postgres_exporter exports it.

Sample output::

    pg_stat_archiver_archived_count{server="127.0.0.1:5432"} 0.0
    pg_stat_archiver_failed_count{server="127.0.0.1:5432"} 0.0
    pg_stat_archiver_last_archive_age{server="127.0.0.1:5432"} NaN
"""

from __future__ import annotations

from exporter.collectors.base import bare_counter
from exporter.collectors.postgres.view import (
    NAN,
    PreparedQuery,
    Results,
    ServerInfo,
    add,
)
from exporter.metrics import GaugeMetricFamily, Metric

ARCHIVER_SQL = """
SELECT archived_count::float8, failed_count::float8,
       extract(epoch FROM now() - last_archived_time)::float8
FROM pg_stat_archiver
"""


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("archiver", ARCHIVER_SQL)]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    rows = r.get("archiver")
    if not rows:
        return []
    archived, failed, age = rows[0]
    archived_count = bare_counter("pg_stat_archiver_archived_count",
                                  "WAL files that have been successfully archived.",
                                  ["server"])
    add(archived_count, [server.server], archived)
    failed_count = bare_counter("pg_stat_archiver_failed_count",
                                "Failed attempts for archiving WAL files.", ["server"])
    add(failed_count, [server.server], failed)
    last_age = GaugeMetricFamily(
        "pg_stat_archiver_last_archive_age",
        "Seconds since the last WAL segment was successfully archived (NaN: never).",
        labels=["server"])
    last_age.add_metric([server.server], NAN if age is None else float(age))
    return [archived_count, failed_count, last_age]
