"""Per-scrape cost of the postgres collector against one database, per user_tables_limit.

    .venv/bin/python -m bench.pg_many_tables "host=127.0.0.1 port=PORT user=postgres dbname=many"

Runs the collector in-process (collect + text encoding), 30 scrapes per limit, and reads
the exporter's CPU (process time) and its server backend's CPU (/proc/<pid>/stat, so run
it as root on the database's host). Sample output::

    user_tables_limit=200: samples=4716 wall 47.8 ms, exporter CPU 18.4 ms, server CPU 18.3 ms
"""

from __future__ import annotations

import sys
import time

import psycopg

from exporter import cli
from exporter.collectors.postgres.collector import PostgresCollector, build
from exporter.http.exposition import render_text

SCRAPES = 30
CLOCK_TICKS = 100  # USER_HZ


def backend_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(dsn: str, limit: str) -> str:
    cfg = cli.parse([], {"STACKMON_POSTGRES_DSN": dsn,
                         "STACKMON_POSTGRES_USER_TABLES_LIMIT": limit})
    (collector,) = build(cfg.postgres, cfg.scrape)
    assert isinstance(collector, PostgresCollector)
    try:
        collector.collect(time.monotonic() + 30)  # connect, prepare, first sizes
        with psycopg.connect(dsn, autocommit=True) as admin:
            row = admin.execute("SELECT pid FROM pg_stat_activity "
                                "WHERE application_name = 'stackmon'").fetchone()
        assert row is not None, "the collector's session is not visible"
        pid = int(row[0])
        server0, cpu0, wall0 = backend_cpu_seconds(pid), time.process_time(), time.perf_counter()
        body = b""
        for _ in range(SCRAPES):
            body = render_text(collector.collect(time.monotonic() + 30))
        server1, cpu1, wall1 = backend_cpu_seconds(pid), time.process_time(), time.perf_counter()
    finally:
        collector.close()
    samples = body.count(b"\n") - body.count(b"# ")
    return (f"user_tables_limit={limit}: samples={samples} "
            f"wall {1000 * (wall1 - wall0) / SCRAPES:.1f} ms, "
            f"exporter CPU {1000 * (cpu1 - cpu0) / SCRAPES:.1f} ms, "
            f"server CPU {1000 * (server1 - server0) / SCRAPES:.1f} ms")


def main() -> None:
    for limit in ("0", "200", "10000"):
        print(measure(sys.argv[1], limit), flush=True)


if __name__ == "__main__":
    main()
