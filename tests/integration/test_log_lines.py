"""A real PostgreSQL failure in the exporter's log: one logfmt line per event, and a
collector failing on every scrape logs once, not once per scrape."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers.exporter import free_port, start_exporter
from tests.unit.test_logs import LOGFMT_LINE

SCRAPES = 5


def test_postgres_multi_line_error_is_one_line_and_logged_once(pg_dsn: str) -> None:
    params = conninfo_to_dict(pg_dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    # Two hosts, the first one closed: libpq reports each attempt on lines of its own
    # (with a tab), and quotes names.
    dsn = make_conninfo("", **{**params, "host": f"{host},{host}",
                               "port": f"{free_port()},{port}",
                               "dbname": "stackmon_no_such_database"})
    exp = start_exporter(["--no-collector.host"], env={"STACKMON_POSTGRES_DSN": dsn})
    try:
        for _ in range(SCRAPES):
            assert exp.scrape().get("pg_up") == 0
    finally:
        exp.stop()
    lines = exp.logs().splitlines()
    failed = [line for line in lines if 'msg="collect failed"' in line]
    assert len(failed) == 1, lines
    assert 'stackmon_no_such_database\\" does not exist' in failed[0]
    assert "Connection refused\\n" in failed[0]  # the first attempt, on the same line
    for line in lines:
        assert line.startswith("ts=") and LOGFMT_LINE.match(line), line
