"""PostgreSQL metrics under postgres_exporter's exact names, labels and types.

One persistent psycopg connection per target (autocommit, ``application_name=stackmon``,
``statement_timeout``, connect timeout).  At connect time every view's query is sent once
as a server-side ``PREPARE``; each scrape then sends all the ``EXECUTE`` statements in a
single simple-query message: one round trip, one transaction, no parse/plan work on the
server.  A watchdog shuts the socket down at the scrape deadline, so a hung server (e.g.
SIGSTOPped) cannot hold the collector; the next scrape reconnects.

The metrics are made in one module per view (``pg_stat_database.py``, ``pg_settings.py``,
...), under postgres_exporter's names, labels and types; this module owns the
connection, the batch and the exporter's own ``pg_up`` / ``pg_exporter_*``.

Sample output::

    pg_up 1.0
    pg_exporter_last_scrape_error 0.0
    pg_exporter_scrapes_total 12.0
    pg_exporter_last_scrape_duration_seconds 0.004
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from exporter.collectors.base import Collector, service_families
from exporter.collectors.postgres import (
    pg_database,
    pg_locks,
    pg_settings,
    pg_stat_activity,
    pg_stat_archiver,
    pg_stat_bgwriter,
    pg_stat_database,
    pg_stat_replication,
    pg_stat_statements,
    pg_stat_user_tables,
    server,
)
from exporter.collectors.postgres.pg_database import TABLES_SQL
from exporter.collectors.postgres.pg_stat_statements import STATEMENTS_EXTENSION_SQL
from exporter.collectors.postgres.server import short_version
from exporter.collectors.postgres.settings import PostgresSettings
from exporter.collectors.postgres.view import PreparedQuery, Results, Rows, ServerInfo
from exporter.errors import SettingError
from exporter.http.exposition import freeze
from exporter.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from exporter.secrets import read_secret_file
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.postgres")

APPLICATION_NAME = "stackmon"
SERVICE = "postgres"
PREPARED_PREFIX = "stackmon_"
MIN_CONNECT_TIMEOUT = 2  # libpq treats 1 as 2

STATEMENT_TIMEOUT_SQL = "SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"

# The views, in batch order.  Each module holds its SQL and turns its rows into metrics;
# grep a metric name to find it.
VIEWS: tuple[View, ...] = (server, pg_settings, pg_stat_activity, pg_database, pg_stat_database,
                           pg_locks, pg_stat_replication, pg_stat_bgwriter, pg_stat_archiver,
                           pg_stat_user_tables, pg_stat_statements)

# SQLSTATE classes meaning "this query cannot work for this role/server", not "down":
# 42 (insufficient privilege, undefined object), 55 (e.g. pg_stat_statements not loaded),
# 0A (feature not supported).
PART_FAILURE_CLASSES = ("42", "55", "0A")


class View(Protocol):
    """A ``pg_*.py`` module: the queries it needs and how its rows become metrics."""

    def queries(self, server: ServerInfo) -> list[PreparedQuery]: ...

    def metrics(self, r: Results, server: ServerInfo) -> list[Metric]: ...


def build_queries(server: ServerInfo) -> list[PreparedQuery]:
    """The queries for one connection, chosen from the server version once."""
    return [q for view in VIEWS for q in view.queries(server)]


def server_label(host: str, port: int | str) -> str:
    """postgres_exporter's ``server`` label: "127.0.0.1:5432", "/run/postgresql:5432"."""
    return f"{host}:{port}"


def sqlstate_class(err: BaseException) -> str:
    state = getattr(err, "sqlstate", None) or ""
    return str(state)[:2]


class _Alarms:
    """One thread that fires every watchdog at its deadline.

    A ``threading.Timer`` per scrape started and cancelled a thread each time: ~0.1 ms of
    CPU a scrape (bench/RESULTS.md, "Changes").  This thread sleeps until the earliest
    deadline armed; a watchdog disarmed before it is dropped when its time comes.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._seq = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, when: float, dog: _Watchdog) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), dog))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="postgres-watchdog",
                                                daemon=True)
                self._thread.start()
            elif when < self._wake_at:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[_Watchdog] = []
            with self._cond:
                now = time.monotonic()
                heap = self._heap
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    dog = heapq.heappop(heap)[2]
                    if not dog.done:
                        due.append(dog)
                self._wake_at = heap[0][0] if heap else math.inf
                if not due:
                    self._cond.wait(None if not heap else self._wake_at - now)
            for dog in due:
                dog.fire()


class _Watchdog:
    """Shuts the connection's socket down at the deadline: a blocked read returns at once.

    ``shutdown`` (not ``close``) leaves the descriptor to psycopg, so no fd can be reused
    under it; the broken connection is replaced on the next scrape.
    """

    alarms = _Alarms()

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self.fired = False
        self.done = False
        self._lock = threading.Lock()

    def __enter__(self) -> _Watchdog:
        self.alarms.arm(self.deadline, self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.done = True

    def fire(self) -> None:
        with self._lock:
            if self.done:
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


class ConnectTimeout(ConnectionError, TimeoutError):
    """Connecting did not finish before the deadline (logged as cause=timeout)."""


def connect_before(conninfo: str, deadline: float) -> psycopg.Connection[Any]:
    """``psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)`` that gives up
    at ``deadline`` (time.monotonic()), to the millisecond.

    libpq's ``connect_timeout`` counts whole seconds, at least 2, per host: with 1.5 s of
    the scrape left it would wait 2 s and the collector would still be connecting at the
    next scrape.  So the connection is polled here (libpq's documented non-blocking
    connect) and dropped when the deadline passes.
    """
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    try:
        with selectors.DefaultSelector() as selector:
            while True:
                if pgconn.status == pq.ConnStatus.BAD:
                    raise psycopg.OperationalError(f"connection is bad: {_pq_error(pgconn)}")
                status = pgconn.connect_poll()
                if status == pq.PollingStatus.OK:
                    break
                if status == pq.PollingStatus.FAILED:
                    raise psycopg.OperationalError(f"connection failed: {_pq_error(pgconn)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("connection timed out at the scrape deadline")
                event = (selectors.EVENT_READ if status == pq.PollingStatus.READING
                         else selectors.EVENT_WRITE)
                # libpq may switch sockets between hosts: register the current one each time.
                selector.register(pgconn.socket, event)
                try:
                    selector.select(left)
                finally:
                    selector.unregister(pgconn.socket)
    except BaseException:
        pgconn.finish()
        raise
    pgconn.nonblocking = 1  # what psycopg.connect leaves
    conn: psycopg.Connection[Any] = psycopg.Connection(pgconn)
    conn.autocommit = True
    conn.prepare_threshold = None
    return conn


def _pq_error(pgconn: pq.abc.PGconn) -> str:
    return pgconn.error_message.decode("utf-8", "replace").strip()


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
        self._parts: list[PreparedQuery] = []
        self._disabled: set[str] = set()  # parts this role/server cannot run
        self._logged: set[str] = set()  # "log once" keys
        self._server: ServerInfo | None = None
        self._scrapes = 0
        self._last_duration = 0.0
        self._sizes: tuple[float, Rows] | None = None  # (when, rows)
        # pg_settings rows and their families, read again only when the server reloads
        # its configuration (pg_conf_load_time changes) or on a new connection.
        self._settings: tuple[float, Rows, list[Metric]] | None = None
        self._lock = threading.Lock()

    # --- connection ---------------------------------------------------------------

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    def _conninfo(self, deadline: float, dbname: str | None = None,
                  timeout_option: bool = True) -> str:
        params = conninfo_to_dict(self.dsn) if self.dsn else {}
        if self.password_file:
            try:
                params["password"] = read_secret_file(self.password_file, "password_file")
            except SettingError as err:
                raise ConnectionError(f"password_file: {err.message}") from None
        # connect_before() enforces the time limit (libpq's counts whole seconds, >= 2):
        # this one only stops a connection left to libpq from waiting forever.
        options = str(params.get("options") or "")
        if timeout_option:
            options = f"{options} -c statement_timeout={self.statement_timeout_ms}".strip()
        params.update(
            application_name=APPLICATION_NAME,
            connect_timeout=str(max(MIN_CONNECT_TIMEOUT, self.settings.connect_timeout_seconds)),
        )
        if options:
            params["options"] = options
        if dbname is not None:
            params["dbname"] = dbname
        return make_conninfo("", **params)

    def _connect_deadline(self, deadline: float) -> float:
        """The scrape deadline, or sooner when ``connect_timeout_seconds`` says so."""
        return min(deadline, time.monotonic() + self.settings.connect_timeout_seconds)

    def _connect(self, deadline: float) -> psycopg.Connection[Any]:
        try:
            conn = connect_before(self._conninfo(deadline, timeout_option=False),
                                  self._connect_deadline(deadline))
        except (psycopg.OperationalError, TimeoutError) as err:
            # Name the target: every /probe target's collector is called "postgres".
            kind = ConnectTimeout if isinstance(err, TimeoutError) else ConnectionError
            raise kind(f"target {self.target}: {err}") from None
        try:
            statements = None
            with _Watchdog(conn.pgconn.socket, deadline):
                # pg_settings_statement_timeout_seconds must show the server's value for
                # this role, not ours: read it before setting our own.
                # One message, one transaction: read, then set.
                with conn.cursor() as cur:
                    cur.execute(f"{STATEMENT_TIMEOUT_SQL}; "
                                f"SET statement_timeout = {self.statement_timeout_ms}")
                    row = cur.fetchone()
                server_timeout = str(row[0]) if row else ""
                if self.settings.stat_statements:
                    row = conn.execute(STATEMENTS_EXTENSION_SQL).fetchone()
                    if row is None:
                        self._log_once("statements-missing",
                                       'collector=postgres target=%s msg="pg_stat_statements '
                                       'is enabled but the extension is not installed in the '
                                       'connected database; skipping it"', self.target)
                    else:
                        statements = (str(row[0]), str(row[1]))
                self._server = ServerInfo(
                    version=conn.info.server_version, settings=self.settings,
                    server=server_label(conn.info.host, conn.info.port), statements=statements,
                    statement_timeout=server_timeout)
                parts = build_queries(self._server)
                self._disabled = set()
                self._settings = None
                self._parts = self._prepare(conn, parts)
                self._check_privileges(conn)
        except BaseException:
            conn.close()
            raise
        log.info('collector=postgres target=%s msg="connected" server_version="%s"', self.target,
                 conn.info.parameter_status("server_version"))
        return conn

    def _prepare(self, conn: psycopg.Connection[Any], parts: list[PreparedQuery]
                 ) -> list[PreparedQuery]:
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

    def _part_failed(self, part: PreparedQuery, err: BaseException) -> None:
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

    # --- diagnostics (checks.py) --------------------------------------------------

    @contextlib.contextmanager
    def session(self, deadline: float) -> Iterator[psycopg.Connection[Any]]:
        """The collector's own connection (opened if needed) for a few queries before
        ``deadline``, under the collector's lock: the diagnostics share it, so the
        exporter still holds one connection per target.  A hung server is cut at the
        deadline, as in a scrape."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._drop()
                self._conn = self._connect(deadline)
            conn = self._conn
            try:
                with _Watchdog(conn.pgconn.socket, deadline):
                    yield conn
            except psycopg.OperationalError:
                self._drop()
                raise

    def connect_to(self, dbname: str, deadline: float) -> psycopg.Connection[Any]:
        """A short connection to another database of this server (the caller closes it)."""
        return connect_before(self._conninfo(deadline, dbname), self._connect_deadline(deadline))

    @property
    def refused_parts(self) -> list[str]:
        """The batch's queries this role or server cannot run (left out of every scrape)."""
        return sorted(self._disabled)

    # --- scrape -------------------------------------------------------------------

    def failure_metrics(self) -> list[Metric]:
        return self._up_metrics(0.0, None) + self._exporter_metrics(error=True)

    def _up_metrics(self, up: float, info: tuple[str, str, str] | None) -> list[Metric]:
        pg_up = GaugeMetricFamily("pg_up", "1 if the last scrape could query PostgreSQL.")
        pg_up.add_metric([], up)
        if info is None:
            return [pg_up, *service_families(SERVICE, up)]
        return [pg_up, *service_families(SERVICE, up, info[1], info[2])]

    def _exporter_metrics(self, error: bool) -> list[Metric]:
        """postgres_exporter's own scrape metrics, which its alerts and dashboards use."""
        last_error = GaugeMetricFamily(
            "pg_exporter_last_scrape_error",
            "1 if the last scrape failed or left out a query that failed, else 0.")
        last_error.add_metric([], 1.0 if error else 0.0)
        scrapes = CounterMetricFamily("pg_exporter_scrapes",
                                      "Times PostgreSQL was scraped for metrics.")
        scrapes.add_metric([], float(self._scrapes))
        duration = GaugeMetricFamily("pg_exporter_last_scrape_duration_seconds",
                                     "Duration of the last successful scrape of PostgreSQL.")
        duration.add_metric([], self._last_duration)
        return [last_error, scrapes, duration]

    def collect(self, deadline: float) -> list[Metric]:
        started = time.monotonic()
        with self._lock:
            self._scrapes += 1
            results = self._query(deadline)
            results["tables"] = results.get("tables", []) + self._extra_tables(results, deadline)
            server_info = self._server
            failed = bool(self._disabled)
            settings = self._settings
        assert server_info is not None
        self._last_duration = time.monotonic() - started
        out: list[Metric] = []
        for view in VIEWS:
            if view is pg_settings and settings is not None:
                out += settings[2]  # built when the rows were read
            else:
                out += view.metrics(results, server_info)
        info = (SERVICE, short_version(server_info.version), server.role(results))
        return out + self._up_metrics(1.0, info) + self._exporter_metrics(error=failed)

    def _query(self, deadline: float) -> Results:
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
                   ) -> Results:
        """Run the batch; sizes and settings come from the last reading while still valid.

        Sizes are re-read every database_size_refresh_seconds.  Settings change only when
        the server reloads its configuration, which moves pg_conf_load_time() (in the
        server query of every batch); then a second round trip re-reads them, once.
        """
        now = time.monotonic()
        fresh = (self._sizes is not None
                 and now - self._sizes[0] < self.settings.database_size_refresh_seconds)
        skip = {"sizes"} if fresh else set()
        if self._settings is not None:
            skip.add("settings")
        parts = [p for p in self._parts if p.name not in self._disabled and p.name not in skip]
        results = self._run_parts(conn, parts, deadline)
        if "sizes" in results:
            self._sizes = (now, results["sizes"])
        elif self._sizes is not None and "sizes" not in self._disabled:
            results["sizes"] = self._sizes[1]
        self._settings_from_cache(conn, results, deadline)
        return results

    def _settings_from_cache(self, conn: psycopg.Connection[Any], results: Results,
                             deadline: float) -> None:
        server_rows = results.get("server")
        if not server_rows:
            self._settings = None
            return
        load_time = float(server_rows[0][server.CONF_LOAD_TIME])
        if "settings" not in results and self._settings is not None:
            if self._settings[0] == load_time:
                results["settings"] = self._settings[1]
                return
            reread = [p for p in self._parts if p.name == "settings"]
            results.update(self._run_parts(conn, reread, deadline))
        if "settings" in results:
            assert self._server is not None
            families = [freeze(f) for f in pg_settings.metrics(results, self._server)]
            self._settings = (load_time, results["settings"], families)

    def _run_parts(self, conn: psycopg.Connection[Any], parts: list[PreparedQuery], deadline: float
                   ) -> Results:
        with _Watchdog(conn.pgconn.socket, deadline) as dog:
            try:
                return self._execute(conn, parts)
            except psycopg.Error as err:
                if dog.fired:
                    raise TimeoutError("deadline exceeded; connection dropped") from None
                if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                    raise
            # One part failed (e.g. a permission revoked): find it, run the rest.
            results: Results = {}
            for part in parts:
                try:
                    results.update(self._execute(conn, [part]))
                except psycopg.Error as err:
                    if sqlstate_class(err) not in PART_FAILURE_CLASSES:
                        raise
                    self._part_failed(part, err)
            return results

    @staticmethod
    def _execute(conn: psycopg.Connection[Any], parts: Sequence[PreparedQuery]
                 ) -> Results:
        """All parts in one simple-query message: one round trip, one transaction."""
        results: Results = {}
        if not parts:
            return results
        with conn.cursor() as cur:
            cur.execute(";".join(f"EXECUTE {PREPARED_PREFIX}{p.name}" for p in parts))
            for i, part in enumerate(parts):
                if i:
                    cur.nextset()
                results[part.name] = list(cur.fetchall())
        return results

    def _extra_databases(self, results: Results) -> list[str]:
        current = {str(r[0]) for r in results.get("tables", [])}
        wanted = [d for d in self.settings.table_count_databases if d not in current]
        cap = self.settings.table_count_discover_max
        if cap:
            # pg_database's names, as the activity query lists them
            names = sorted({str(r[0]) for r in results.get("activity", [])})
            discovered = [n for n in names if n not in ("template0", "template1")
                          and n not in current and n not in wanted]
            wanted += discovered[:max(0, cap - len(wanted))]
        return wanted

    def _extra_tables(self, results: Results, deadline: float) -> Rows:
        """User tables in other databases: one short connection each (not kept)."""
        out = []
        for dbname in self._extra_databases(results):
            if time.monotonic() >= deadline:
                break
            try:
                with connect_before(self._conninfo(deadline, dbname),
                                    self._connect_deadline(deadline)) as conn, \
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
