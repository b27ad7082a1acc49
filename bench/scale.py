"""How stackmon's cost grows with the work: one subcommand per dimension (benchmark).

Every subcommand starts its own servers (private PostgreSQL cluster, redis-servers, HTTP
test servers: free loopback ports, temp dirs, never the machine's 5432/6379/5672), the
exporters on free ports, grows one dimension with everything else at its default, and
writes ``bench/results/scale-<dimension>.json``; ``bench/plot.py`` draws them.

    nice -n 5 .venv/bin/python -m bench.scale redis-keys       # 10 -> 1,000,000 keys, 1 / 16 DBs
    nice -n 5 .venv/bin/python -m bench.scale redis-targets    # 1 -> 50 targets on /probe
    nice -n 5 .venv/bin/python -m bench.scale redis-prometheus # 1 -> 50 targets, real Prometheus
    nice -n 5 .venv/bin/python -m bench.scale pg-databases     # 1 -> 100 databases
    nice -n 5 .venv/bin/python -m bench.scale pg-tables        # 10 -> 10,000 tables
    nice -n 5 .venv/bin/python -m bench.scale pg-sessions      # 10 -> 1,000 sessions
    nice -n 5 .venv/bin/python -m bench.scale celery-tasks     # 10 -> 1,000 task names
    nice -n 5 .venv/bin/python -m bench.scale celery-workers   # 1 -> 50 simulated, 1/2/4 real
    nice -n 5 .venv/bin/python -m bench.scale celery-events    # 1,000 -> 20,000 events/s
    nice -n 5 .venv/bin/python -m bench.scale celery-queues    # 1 -> 100 queues
    nice -n 5 .venv/bin/python -m bench.scale services         # 1 -> 100 checks, 1/10 hanging
    nice -n 5 .venv/bin/python -m bench.scale all

Figures per point (``--scrapes`` sequential keep-alive scrapes after 3 warm-up ones):
scrape p50/p99 ms (wall clock: noisy on a shared machine), exporter CPU ms per scrape
(utime+stime from /proc/<pid>/stat over all scrapes: robust to other load), series
(sample lines), RSS MB after the scrapes, and the backend's work per scrape: PostgreSQL
transactions (pg_stat_database) and server CPU (every server process, plus the reaped
ones via the postmaster's cutime), Redis commands (INFO commandstats) and server CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.client
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import redis
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")
PG_EXPORTER = shutil.which("prometheus-postgres-exporter")
REDIS_EXPORTER = shutil.which("prometheus-redis-exporter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true (bench code: polling is fine)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # not up yet
            last = err
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}: {last}")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (threads included) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p / 100))]


# --- exporters --------------------------------------------------------------------------

class Exporter:
    """One exporter process on a free loopback port; ``path`` is what a scrape GETs."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 ready_path: str = "/metrics", cwd: Path = REPO,
                 owned: Sequence[Path] = ()) -> None:
        """``owned``: directories removed with the process (its config)."""
        self.name = name
        self.owned = list(owned)
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"scale-{name}-"))
        self.log = open(self.tmp / "log", "wb")  # noqa: SIM115 - owned by the process
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        wait(lambda: self._ready(ready_path), 60, f"{name} on {self.port}")

    def _ready(self, path: str) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name} exited: {(self.tmp / 'log').read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        finally:
            conn.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        for path in [self.tmp, *self.owned]:
            shutil.rmtree(path, ignore_errors=True)


def stackmon(config: dict[str, Any], extra: Sequence[str] = (), code: Path = REPO) -> Exporter:
    """stackmon with only the sections in ``config`` (host off), from this worktree or
    from ``code``, another checkout's root (``python -m exporter`` imports from the cwd)."""
    tmp = Path(tempfile.mkdtemp(prefix="scale-cfg-"))
    cfg = tmp / "stackmon.yml"
    cfg.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
    return Exporter("stackmon", [sys.executable, "-m", "exporter",
                                 "--web.listen-address=127.0.0.1:{port}", "--no-collector.host",
                                 f"--config.file={cfg}", *extra], env, cwd=code,
                    owned=[tmp])


def postgres_exporter(dsn: str, extra: Sequence[str] = ()) -> Exporter:
    assert PG_EXPORTER, "apt-get install prometheus-postgres-exporter"
    env = {"PATH": os.environ.get("PATH", ""), "DATA_SOURCE_NAME": dsn}
    return Exporter("postgres_exporter", [PG_EXPORTER, "--web.listen-address=127.0.0.1:{port}",
                                          *extra], env)


def redis_exporter(url: str | None) -> Exporter:
    assert REDIS_EXPORTER, "apt-get install prometheus-redis-exporter"
    argv = [REDIS_EXPORTER, "-web.listen-address", "127.0.0.1:{port}"]
    if url:
        argv += ["-redis.addr", url]
    else:  # /scrape?target= only: an unreachable default so /metrics stays cheap
        argv += ["-redis.addr", ""]
    return Exporter("redis_exporter", argv, {"PATH": os.environ.get("PATH", "")})


class Scraper:
    """One keep-alive HTTP/1.1 connection asking for gzip, like Prometheus."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path, headers={"Accept-Encoding": "gzip"})  # as Prometheus
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        return body

    def close(self) -> None:
        self.conn.close()


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


# --- backends ---------------------------------------------------------------------------

class Backend:
    """Work done by the backend between two snapshots."""

    def snapshot(self) -> dict[str, float]:
        return {}

    def finish(self, exp: Exporter) -> dict[str, float]:
        """Called after the measured scrapes, before the last snapshot."""
        return {}


class PgBackend(Backend):
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.settle = True

    def finish(self, exp: Exporter) -> dict[str, float]:
        """Stop the exporter and wait until its server processes are gone: a backend
        flushes its statistics when it exits, so the last snapshot needs no idle wait."""
        master = psutil.Process(self._postmaster_pid())
        ports = {c.laddr.port for c in psutil.Process(exp.pid).net_connections("tcp")
                 if c.raddr and c.raddr.port == self.cluster.port}
        mine = []
        for child in master.children():
            with contextlib.suppress(psutil.Error):
                if any(c.raddr and c.raddr.port in ports for c in child.net_connections("tcp")):
                    mine.append(child)
        exp.stop()
        # Gone means reaped by the postmaster, so its CPU is in the postmaster's cutime.
        _, alive = psutil.wait_procs(mine, timeout=30)
        if alive:
            raise SystemExit(f"{exp.name}'s PostgreSQL backends did not exit: {alive}")
        self.settle = False
        return {"exporter_backends": float(len(mine))}

    def _postmaster_pid(self) -> int:
        return int((self.cluster.datadir / "postmaster.pid").read_text().splitlines()[0])

    def snapshot(self) -> dict[str, float]:
        # A backend that flushed its statistics less than 1 s ago (PGSTAT_MIN_INTERVAL)
        # flushes the rest after 10 s idle (PGSTAT_IDLE_INTERVAL): wait that out, unless
        # finish() has stopped the exporter (its backends flushed on exit).
        if self.settle:
            time.sleep(10.5)
        self.settle = True
        with self.cluster.connect() as conn:
            row = conn.execute("SELECT sum(xact_commit + xact_rollback), "
                               "(SELECT count(*) FROM pg_stat_activity "
                               " WHERE backend_type = 'client backend') "
                               "FROM pg_stat_database").fetchone()
        master = psutil.Process(self._postmaster_pid())
        cpu = sum(t.user + t.system + t.children_user + t.children_system
                  for t in [master.cpu_times()])
        for child in master.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                cpu += t.user + t.system
        return {"xacts": float(row[0]), "server_cpu_s": cpu, "client_backends": float(row[1])}


class RedisBackend(Backend):
    def __init__(self, ports: Sequence[int]) -> None:
        self.clients = [redis.Redis(port=p, socket_timeout=10) for p in ports]

    def snapshot(self) -> dict[str, float]:
        calls = cpu = clients = conns = 0.0
        for c in self.clients:
            stats = c.info("commandstats")
            calls += sum(float(v["calls"]) for v in stats.values())
            info = c.info()
            cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            clients += float(info["connected_clients"]) - 1  # minus this connection
            conns += float(info["total_connections_received"])
        # The two INFO calls of this snapshot are subtracted by the caller.
        return {"commands": calls, "server_cpu_s": cpu, "clients_held": clients,
                "connections_opened": conns, "snapshot_commands": 2.0 * len(self.clients)}


def measure(exp: Exporter, paths: Sequence[str], scrapes: int, backend: Backend | None = None,
            timeout: float = 60, samples: Sequence[str] = ()) -> dict[str, float]:
    """``scrapes`` rounds; one round GETs every path once. Figures are per GET, plus the
    sum of each of ``samples`` in the last reply. A PostgreSQL backend stops the exporter
    at the end (``PgBackend.finish``)."""
    scraper = Scraper(exp.port, timeout)
    try:
        body = b""
        for _ in range(3):
            for path in paths:
                body = scraper.get(path)
        before = backend.snapshot() if backend else {}
        cpu0 = proc_cpu_seconds(exp.pid)
        times: list[float] = []
        for _ in range(scrapes):
            for path in paths:
                t0 = time.perf_counter()
                body = scraper.get(path)
                times.append((time.perf_counter() - t0) * 1000)
        cpu1 = proc_cpu_seconds(exp.pid)
        rss, threads = rss_mb(exp.pid), psutil.Process(exp.pid).num_threads()
    finally:
        scraper.close()
    finished = backend.finish(exp) if backend else {}
    after = backend.snapshot() if backend else {}
    n = len(times)
    out = {"p50_ms": statistics.median(times), "p99_ms": pct(times, 99),
           "cpu_ms_per_scrape": (cpu1 - cpu0) * 1000 / n, "series": float(series(body)),
           "series_total": float(series(body)) * len(paths),
           "rss_mb": rss, "scrapes": float(n), "threads": float(threads)}
    text = body.decode()
    for name in samples:
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith((name + "{", name + " "))]
        out[name] = sum(values) if values else float("nan")
    if "xacts" in before:
        # The "before" snapshot's own session counts 2 (measured with nothing else running).
        out["pg_xacts_per_scrape"] = (after["xacts"] - before["xacts"] - 2) / n
        out["pg_server_cpu_ms_per_scrape"] = (after["server_cpu_s"] - before["server_cpu_s"]
                                              ) * 1000 / n
        # The bench's own session, any sessions it holds, and the exporter's (gone now).
        out["pg_client_backends"] = after["client_backends"] + finished["exporter_backends"]
    if "commands" in before:
        out["redis_commands_per_scrape"] = (after["commands"] - before["commands"]
                                            - before["snapshot_commands"]) / n
        out["redis_server_cpu_ms_per_scrape"] = (after["server_cpu_s"] - before["server_cpu_s"]
                                                 ) * 1000 / n
        out["redis_connections_held"] = after["clients_held"]
        out["redis_connections_opened_per_scrape"] = (
            after["connections_opened"] - before["connections_opened"]) / n
    return out


def write(dimension: str, doc: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc.update({"dimension": dimension, "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                  time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0],
                            "python": platform.python_version()}})
    path = RESULTS / f"scale-{dimension}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO)}", flush=True)


def show(label: str, x: int, fig: dict[str, float]) -> None:
    keys = ("p50_ms", "p99_ms", "cpu_ms_per_scrape", "cpu_ms_per_s", "series", "rss_mb",
            "pg_xacts_per_scrape", "pg_server_cpu_ms_per_scrape", "redis_commands_per_scrape",
            "redis_connections_held", "redis_connections_opened_per_scrape")
    print(f"{label:>18} x={x:<8} " + " ".join(f"{k}={fig[k]:.2f}" for k in keys if k in fig),
          flush=True)


# --- Redis ------------------------------------------------------------------------------

@contextlib.contextmanager
def redis_servers(count: int) -> Iterator[list[int]]:
    tmp = Path(tempfile.mkdtemp(prefix="scale-redis-"))
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(count)]
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp), "--databases", "16",
                 "--enable-debug-command", "local"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            wait(redis.Redis(port=port, socket_timeout=2).ping, 30, f"redis {port}")
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_redis_keys(args: argparse.Namespace) -> None:
    """Keys 10 -> 1,000,000 spread over 1 or 16 databases: stackmon and redis_exporter."""
    points: list[dict[str, Any]] = []
    with redis_servers(1) as (port,):
        url = f"redis://127.0.0.1:{port}"
        exporters = [stackmon({"redis": {"url": url}}), redis_exporter(url)]
        backend = RedisBackend([port])
        admin = redis.Redis(port=port, socket_timeout=120)
        try:
            for dbs in (1, 16):
                for keys in args.keys:
                    admin.flushall()
                    # Every database gets keys (at least one), so 16 DBs means 16 keyspaces.
                    for db in range(dbs):
                        conn = redis.Redis(port=port, db=db, socket_timeout=120)
                        conn.execute_command(  # type: ignore[no-untyped-call]
                            "DEBUG", "POPULATE", max(1, keys // dbs), f"k{db}:", 16)
                        conn.close()
                    for exp in exporters:
                        fig = measure(exp, ["/metrics"], args.scrapes, backend)
                        # Both exporters and the loader are connected here: not per exporter.
                        del fig["redis_connections_held"]
                        show(f"{exp.name}/{dbs}db", keys, fig)
                        points.append({"exporter": exp.name, "series_name": f"{dbs} DB",
                                       "x": keys, **fig})
        finally:
            for exp in exporters:
                exp.stop()
    write("redis-keys", {"x_label": "keys", "x_log": True, "points": points})


def bench_redis_targets(args: argparse.Namespace) -> None:
    """1 -> 50 Redis targets, each scraped once per round through /probe (stackmon) and
    /scrape?target= (redis_exporter). Per-probe cost, connections held, memory."""
    points: list[dict[str, Any]] = []
    top = max(args.targets)
    with redis_servers(top) as ports:
        for count in args.targets:
            used = ports[:count]
            config = {"redis": {"targets": [{"name": f"r{i}", "url": f"redis://127.0.0.1:{p}"}
                                            for i, p in enumerate(used)]}}
            variants = [(stackmon(config), [f"/probe?target=r{i}" for i in range(count)])]
            variants.append((redis_exporter(None),
                             [f"/scrape?target=redis://127.0.0.1:{p}" for p in used]))
            backend = RedisBackend(used)
            for exp, paths in variants:
                try:
                    rss0 = rss_mb(exp.pid)
                    # At least 100 probes a point: CPU time comes in 10 ms ticks.
                    fig = measure(exp, paths, max(args.rounds, -(-100 // count)), backend)
                    fig["rss_start_mb"] = rss0
                    # Idle targets: what the exporter burns between probes.
                    cpu0 = proc_cpu_seconds(exp.pid)
                    time.sleep(args.idle_seconds)
                    fig["idle_cpu_ms_per_s"] = ((proc_cpu_seconds(exp.pid) - cpu0) * 1000
                                                / args.idle_seconds)
                    show(exp.name, count, fig)
                    points.append({"exporter": exp.name, "series_name": "per probe",
                                   "x": count, **fig})
                finally:
                    exp.stop()
    write("redis-targets", {"x_label": "Redis targets (each probed once per round)",
                            "x_log": True, "points": points})


# --- Redis through a real Prometheus ------------------------------------------------------

PROMETHEUS = "/usr/bin/prometheus"


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a whole process (all threads, ended ones too) with ns resolution: the
    kernel's per-process CPU clock, the sum /proc/<pid>/stat reports in 10 ms ticks (too
    coarse for a few probes of ~2 ms each). Linux encodes that clock's id from the pid."""
    return time.clock_gettime(((~pid) << 3) | 2)


def prometheus(config: dict[str, Any]) -> Exporter:
    """A real Prometheus on a free port with only ``config`` and its own temp TSDB."""
    tmp = Path(tempfile.mkdtemp(prefix="scale-prom-"))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    return Exporter("prometheus", [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp / 'data'}",
                                   "--web.listen-address=127.0.0.1:{port}"],
                    {"PATH": os.environ.get("PATH", "")}, ready_path="/-/ready", owned=[tmp])


def probe_job(name: str, path: str, targets: Sequence[str], port: int) -> dict[str, Any]:
    """The multi-target pattern of README.md: each target becomes ``?target=`` on ``path``
    of the exporter at 127.0.0.1:``port``."""
    return {"job_name": name, "metrics_path": path,
            "static_configs": [{"targets": list(targets)}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{port}"}]}


def prom_query(prom: Exporter, query: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
    conn = http.client.HTTPConnection("127.0.0.1", prom.port, timeout=30)
    try:
        conn.request("GET", "/api/v1/query?" + urllib.parse.urlencode(params))
        doc = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if doc["status"] != "success":
        raise RuntimeError(f"{query}: {doc}")
    return list(doc["data"]["result"])


def targets_scraped(prom: Exporter, jobs: dict[str, int], at: float | None = None,
                    within: float | None = None) -> bool:
    """Every job has a sample of ``up`` for each of its targets (within the ``within`` s
    before ``at`` if given: then no scrape started before ``at`` is still in flight)."""
    for job, count in jobs.items():
        sel = f'up{{job="{job}"}}' if within is None else \
            f'count_over_time(up{{job="{job}"}}[{int(within * 1000)}ms])'
        if len(prom_query(prom, sel, at)) != count:
            return False
    return True


def redis_sockets(pid: int, ports: Sequence[int]) -> int:
    """TCP connections the process holds open to these Redis ports (its own sockets)."""
    wanted = set(ports)
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.raddr and c.raddr.port in wanted and c.status == psutil.CONN_ESTABLISHED)


Samples = dict[str, list[tuple[str, float, float]]]


def window_samples(prom: Exporter, job: str, start: float, end: float) -> Samples:
    """Every sample of up / scrape_duration_seconds / scrape_samples_scraped of ``job``
    whose timestamp (the scrape's start) is in [start, end]: name -> (instance, ts, value)."""
    sel = (f'{{__name__=~"up|scrape_duration_seconds|scrape_samples_scraped",job="{job}"}}'
           f"[{int((end - start) * 1000)}ms]")
    out: Samples = defaultdict(list)
    for s in prom_query(prom, sel, end):
        out[s["metric"]["__name__"]] += [(s["metric"]["instance"], float(ts), float(v))
                                         for ts, v in s["values"]]
    return out


def within(s: Samples, start: float, end: float) -> Samples:
    return {k: [x for x in v if start <= x[1] <= end] for k, v in s.items()}


class ServerCount(NamedTuple):
    """One redis-server's counters and when they were read (wall clock, as Prometheus)."""

    t0: float
    t1: float
    commands: float  # INFO commandstats calls, not counting this read's own
    received: float  # total_connections_received
    clients: float  # connected_clients minus this read's connection
    foreign: int  # clients neither the exporter's nor this read's


def server_counts(clients: Sequence[redis.Redis], pid: int) -> list[ServerCount]:
    """Read every server; ``pid``'s sockets tell its clients from foreign ones (on a shared
    machine another bench's Celery worker or exporter once reached a server of ours
    through a port number it had used before)."""
    # Not CLIENT LIST: it would add its own commandstats series to the exporters' output.
    held: dict[int, int] = defaultdict(int)
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
            held[conn.raddr.port] += 1
    out = []
    for c in clients:
        t0 = time.time()
        calls = sum(float(v["calls"]) for v in c.info("commandstats").values())
        info = c.info()
        port = int(c.connection_pool.connection_kwargs["port"])
        others = float(info["connected_clients"]) - 1
        out.append(ServerCount(t0, time.time(), calls, float(info["total_connections_received"]),
                               others, max(0, int(others) - held[port])))
    return out


# Prometheus may put a sample's timestamp up to 2 ms off the scrape's real start.
TS_SLACK = 0.005


def redis_per_probe(before: Sequence[ServerCount], after: Sequence[ServerCount],
                    probes: Sequence[list[tuple[float, float]]]) -> dict[str, float]:
    """Redis work per probe, exactly: for each server, the probes of its target (start, end
    of each, from Prometheus) that ran wholly between its two reads; a server with a probe
    overlapping one of its reads, or with a foreign client at either, is left out
    (``redis_servers_left_out``)."""
    commands = received = counted = 0.0
    left_out = 0
    for b, a, runs in zip(before, after, probes, strict=True):
        inside = 0
        if b.foreign or a.foreign:
            left_out += 1
            continue
        for ts, dur in runs:
            lo, hi = ts - TS_SLACK, ts + dur + TS_SLACK
            if b.t1 <= lo and hi <= a.t0:
                inside += 1
            elif not (hi <= b.t0 or lo >= a.t1):  # overlaps a read: which side is unknown
                break
        else:
            # The "before" read's two INFO commands are counted by the "after" one's.
            commands += a.commands - b.commands - 2
            received += a.received - b.received
            counted += inside
            continue
        left_out += 1
    return {"redis_commands_per_scrape": commands / counted if counted else float("nan"),
            "redis_connections_opened_per_scrape": received / counted if counted
            else float("nan"),
            "redis_connected_clients": sum(a.clients - a.foreign for a in after),
            "redis_servers_left_out": float(left_out)}


class Probed(NamedTuple):
    """One exporter under Prometheus: its variant name, the targets Prometheus probes on
    it and the ports of the redis-servers only it talks to."""

    variant: str
    exp: Exporter
    targets: list[str]
    ports: list[int]


def bench_redis_prometheus(args: argparse.Namespace) -> None:
    """1 -> 50 Redis targets probed by a real Prometheus every ``--prom-interval`` s:
    stackmon's /probe and redis_exporter's /scrape side by side, each on its own N
    redis-servers (so the servers' counters are each exporter's alone), and at the largest
    size a third stackmon with all N targets configured and one probed (idle targets; its
    probed target is one more server, the others are the first stackmon's servers). Fresh
    processes per size: ``--prom-idle`` s of CPU with nothing scraping them (the baseline
    the per-probe cost is also given above), then Prometheus; once every target has been
    scraped once, a window of ``--prom-window`` s, a multiple of the interval: each target
    is probed the same number of times in it, and a probe in flight at its start is the
    same target's probe in flight at its end, so the CPU cut off at one edge is the CPU
    counted at the other."""
    interval, window = args.prom_interval, args.prom_window
    if window % interval:
        raise SystemExit("--prom-window must be a multiple of --prom-interval")
    points: list[dict[str, Any]] = []
    prom_points: list[dict[str, float]] = []
    top = max(args.prom_targets)

    def targets(ports: Sequence[int]) -> dict[str, Any]:
        return {"redis": {"targets": [{"name": f"r{i}", "url": f"redis://127.0.0.1:{p}"}
                                      for i, p in enumerate(ports)]}}

    with redis_servers(2 * top + 1) as ports:
        for count in args.prom_targets:
            mine, theirs, extra = ports[:count], ports[top:top + count], ports[-1]
            runs: list[Probed] = []
            prom: Exporter | None = None
            clients: list[list[redis.Redis]] = []
            try:
                runs.append(Probed("all probed", stackmon(targets(mine)),
                                   [f"r{i}" for i in range(count)], mine))
                runs.append(Probed("all probed", redis_exporter(None),
                                   [f"redis://127.0.0.1:{p}" for p in theirs], theirs))
                if count == top:
                    runs.append(Probed(f"{count} configured, 1 probed",
                                       stackmon(targets([extra, *mine[1:]])), ["r0"], [extra]))
                rss0 = [rss_mb(r.exp.pid) for r in runs]
                # What each burns with nothing scraping it (stackmon: its server's timers).
                idle0 = [process_cpu_seconds(r.exp.pid) for r in runs]
                time.sleep(args.prom_idle)
                idle = [(process_cpu_seconds(r.exp.pid) - c) / args.prom_idle
                        for r, c in zip(runs, idle0, strict=True)]
                jobs = {f"job{j}": len(r.targets) for j, r in enumerate(runs)}
                prom = prometheus({
                    "global": {"scrape_interval": f"{interval:g}s",
                               "scrape_timeout": f"{min(10, interval):g}s"},
                    "scrape_configs": [probe_job(f"job{j}", "/probe" if r.exp.name == "stackmon"
                                                 else "/scrape", r.targets, r.exp.port)
                                       for j, r in enumerate(runs)]})
                wait(functools.partial(targets_scraped, prom, jobs), interval + 30, "first scrapes")
                clients += [[redis.Redis(port=p, socket_timeout=10) for p in r.ports]
                            for r in runs]
                before = [server_counts(c, r.exp.pid) for c, r in zip(clients, runs, strict=True)]
                cpu0 = [process_cpu_seconds(r.exp.pid) for r in runs]
                prom_cpu0 = process_cpu_seconds(prom.pid)
                start = time.time()
                time.sleep(window)  # the window: Prometheus probes, the bench only waits
                end = time.time()
                cpu1 = [process_cpu_seconds(r.exp.pid) for r in runs]
                prom_cpu1 = process_cpu_seconds(prom.pid)
                after = [server_counts(c, r.exp.pid) for c, r in zip(clients, runs, strict=True)]
                # Held connections, not one of redis_exporter's per-probe ones caught in
                # flight (a few ms every interval/N s): the least of three looks.
                held = [min(redis_sockets(r.exp.pid, r.ports) for _ in range(3)) for r in runs]
                unprobed = [redis_sockets(r.exp.pid, mine[1:]) for r in runs]
                wait(functools.partial(targets_scraped, prom, jobs, after[-1][-1].t1, interval),
                     interval + 10, "the window's last probes to be stored")
                for j, r in enumerate(runs):
                    # From a little before the first read to the last one's end.
                    samples = window_samples(prom, f"job{j}", before[j][0].t0 - 1,
                                             after[j][-1].t1)
                    duration = {(i, ts): v for i, ts, v in samples["scrape_duration_seconds"]}
                    probes: dict[str, list[tuple[float, float]]] = defaultdict(list)
                    for i, ts, _ in samples["up"]:
                        probes[i].append((ts, duration[(i, ts)]))
                    fig = {**window_figures(within(samples, start, end)),
                           "rss_mb": rss_mb(r.exp.pid), "rss_start_mb": rss0[j],
                           "threads": float(psutil.Process(r.exp.pid).num_threads()),
                           "redis_connections_held": float(held[j]),
                           **redis_per_probe(before[j], after[j],
                                             [probes[t] for t in r.targets])}
                    fig["rss_growth_mb"] = fig["rss_mb"] - fig["rss_start_mb"]
                    n = fig["probes"]
                    fig["cpu_ms_per_scrape"] = (cpu1[j] - cpu0[j]) * 1000 / n
                    fig["cpu_ms_per_s"] = (cpu1[j] - cpu0[j]) * 1000 / (end - start)
                    fig["idle_cpu_ms_per_s"] = idle[j] * 1000
                    fig["cpu_ms_per_scrape_above_idle"] = (
                        cpu1[j] - cpu0[j] - idle[j] * (end - start)) * 1000 / n
                    if r.variant != "all probed":
                        # Sockets to the servers of the targets it has but is never asked for.
                        fig["unprobed_connections_held"] = float(unprobed[j])
                    if fig["up_ratio"] != 1:
                        print(f"WARNING {r.exp.name} ({r.variant}): up was 0 on "
                              f"{(1 - fig['up_ratio']) * n:.0f} of {n:.0f} probes", flush=True)
                    show(f"{r.exp.name}/{r.variant}", count, fig)
                    points.append({"exporter": r.exp.name, "series_name": r.variant,
                                   "x": count, **fig})
                prom_fig = {"x": count, "targets": float(sum(jobs.values())),
                            "cpu_ms_per_s": (prom_cpu1 - prom_cpu0) * 1000 / (end - start),
                            "rss_mb": rss_mb(prom.pid)}
                print(f"{'prometheus':>18} x={count:<8} " + " ".join(
                    f"{k}={v:.2f}" for k, v in prom_fig.items() if k != "x"), flush=True)
                prom_points.append(prom_fig)
            finally:
                for c in itertools.chain(*clients):
                    c.close()
                if prom is not None:
                    prom.stop()
                for r in runs:
                    r.exp.stop()
    write("redis-prometheus", {
        "x_label": f"Redis targets (Prometheus, every {interval:g} s)", "x_log": False,
        "window_seconds": window, "scrape_interval_seconds": interval, "points": points,
        "prometheus": prom_points})


def window_figures(s: Samples) -> dict[str, float]:
    """Probes, up, scrape duration and samples per probe from the window's samples."""
    probes = len(s["up"])
    per_target = [sum(1 for i, _, _ in s["up"] if i == t) for t in {i for i, _, _ in s["up"]}]
    durations = [v * 1000 for _, _, v in s["scrape_duration_seconds"]]
    return {"probes": float(probes), "probes_per_target_min": float(min(per_target)),
            "probes_per_target_max": float(max(per_target)),
            "up_ratio": sum(v for _, _, v in s["up"]) / probes,
            "p50_ms": statistics.median(durations), "p99_ms": pct(durations, 99),
            "series": statistics.mean(v for _, _, v in s["scrape_samples_scraped"])}


# --- PostgreSQL ---------------------------------------------------------------------------

@contextlib.contextmanager
def pg_cluster(options: Sequence[str] = ()) -> Iterator[Any]:
    sys.path.insert(0, str(REPO))
    from tests.helpers.pgcluster import Cluster, wait_ready

    # No autovacuum: with 100 databases its workers start every 0.6 s and their
    # transactions and CPU would be counted as the exporter's.
    cluster = Cluster.create(options=["-c autovacuum=off", *options])
    try:
        wait_ready(cluster)
        yield cluster
    finally:
        cluster.destroy()


def pg_dsn(cluster: Any, dbname: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{dbname}?sslmode=disable"


def pg_exporters(cluster: Any, anchor_args: Sequence[str]) -> list[Callable[[], Exporter]]:
    """Starters, so that only the exporter being measured runs (and holds connections)."""
    return [functools.partial(stackmon, {"postgres": {"dsn": pg_dsn(cluster)}}),
            functools.partial(postgres_exporter, pg_dsn(cluster), anchor_args)]


def bench_pg_databases(args: argparse.Namespace) -> None:
    points: list[dict[str, Any]] = []
    with pg_cluster(["-c max_connections=300"]) as cluster:
        made = 1  # postgres
        backend = PgBackend(cluster)
        with cluster.connect() as conn:
            for count in args.databases:
                while made < count:
                    conn.execute(f"CREATE DATABASE bench{made}")
                    made += 1
                for start in pg_exporters(cluster, ["--auto-discover-databases"]):
                    exp = start()
                    try:
                        fig = measure(exp, ["/metrics"], args.scrapes, backend)
                        show(exp.name, count, fig)
                        points.append({"exporter": exp.name, "series_name": "default",
                                       "x": count, **fig})
                    finally:
                        exp.stop()
    write("pg-databases", {"x_label": "databases", "x_log": True, "points": points})


def bench_pg_tables(args: argparse.Namespace) -> None:
    """User tables in the connected database. stackmon's per-table metrics
    (``postgres.user_tables_limit``) at their default cap and uncapped, from this tree or
    from ``--pg-code`` (a checkout that has them); postgres_exporter with the shared
    harness's pg_stat_user_tables queries (its 0.11 has no built-in per-table collector)."""
    points: list[dict[str, Any]] = []
    code = Path(args.pg_code).resolve() if args.pg_code else REPO
    settings_py = (code / "exporter/collectors/postgres/settings.py").read_text()
    has_limit = "user_tables_limit" in settings_py
    variants: list[tuple[str, dict[str, Any]]] = [("default", {})]
    if has_limit:
        variants = [("cap 200 (default)", {}),
                    ("uncapped", {"user_tables_limit": args.uncapped})]
    queries = Path("/work/shared/bench/pg_exporter_queries.yaml")
    with pg_cluster() as cluster:
        backend = PgBackend(cluster)
        made = 0
        with cluster.connect() as conn:
            for count in args.tables:
                # One relation per table (no index, no toast), 1,000 per transaction: each
                # CREATE holds a lock until commit (max_locks_per_transaction).
                while made < count:
                    step = min(count, made + 1000)
                    conn.execute(f"DO $$ BEGIN FOR i IN {made}..{step - 1} LOOP "
                                 "EXECUTE format('CREATE TABLE t%s (id int, v int)', i); "
                                 "END LOOP; END $$")
                    made = step
                conn.execute("ANALYZE")
                exps: list[tuple[str, Callable[[], Exporter]]] = [
                    (name, functools.partial(stackmon, {"postgres": {"dsn": pg_dsn(cluster),
                                                                     **extra}}, code=code))
                    for name, extra in variants]
                if queries.exists():
                    exps.append(("per-table queries", functools.partial(
                        postgres_exporter, pg_dsn(cluster),
                        [f"--extend.query-path={queries}"])))
                for name, start_exp in exps:
                    exp = start_exp()
                    try:
                        # Uncapped 10,000 tables is ~200k series a scrape: fewer scrapes.
                        omitted = "stackmon_postgres_user_tables_omitted"
                        fig = measure(exp, ["/metrics"], min(args.scrapes, 20), backend,
                                      samples=[omitted] if exp.name == "stackmon" else [])
                        if omitted in fig:  # the cap's overflow, as exported
                            fig["tables_omitted"] = fig.pop(omitted)
                        show(f"{exp.name}/{name}", count, fig)
                        points.append({"exporter": exp.name, "series_name": name,
                                       "x": count, **fig})
                    finally:
                        exp.stop()
    write("pg-tables", {"x_label": "user tables", "x_log": True, "points": points,
                        "user_tables_limit_available": has_limit,
                        "code": "this tree" if code == REPO else str(args.pg_code)})


def bench_pg_sessions(args: argparse.Namespace) -> None:
    points: list[dict[str, Any]] = []
    top = max(args.sessions)
    with pg_cluster([f"-c max_connections={top + 50}"]) as cluster:
        backend = PgBackend(cluster)
        held: list[Any] = []
        try:
            for count in args.sessions:
                while len(held) < count:
                    held.append(cluster.connect())
                for start in pg_exporters(cluster, []):
                    exp = start()
                    try:
                        fig = measure(exp, ["/metrics"], args.scrapes, backend)
                        show(exp.name, count, fig)
                        points.append({"exporter": exp.name, "series_name": "idle sessions",
                                       "x": count, **fig})
                    finally:
                        exp.stop()
        finally:
            for conn in held:
                conn.close()
    write("pg-sessions", {"x_label": "idle client sessions", "x_log": True, "points": points})


# --- Celery -------------------------------------------------------------------------------

def _celery_state(task_names: int, workers: int, tasks: int,
                  spread: bool = False) -> tuple[Any, float]:
    """An EventState fed a simulated stream: ``tasks`` tasks over the names and workers
    (sent/received/started/succeeded), one heartbeat per worker; returns it and the
    handle() cost in us/event. Task i runs on worker i % workers, which pins each name to
    one worker when ``workers`` divides ``task_names``; ``spread``: on worker
    (i // task_names) % workers, so every name runs on every worker, as with real workers
    sharing a queue."""
    import dataclasses

    from exporter.collectors.celery.events import EventState
    from exporter.collectors.celery.settings import CelerySettings

    state = EventState(dataclasses.replace(CelerySettings(), broker_url="redis://x/0"))
    events: list[dict[str, Any]] = []
    now = time.time()
    for w in range(workers):
        events.append({"type": "worker-heartbeat", "hostname": f"celery@host{w}",
                       "timestamp": now, "freq": 2.0, "active": 0, "processed": 0})
    for i in range(tasks):
        host = (i // task_names if spread else i) % workers
        uuid, name, worker = f"u{i}", f"bench.task{i % task_names}", f"celery@host{host}"
        events += [
            {"type": "task-sent", "uuid": uuid, "name": name, "queue": "celery",
             "timestamp": now, "hostname": "client@producer"},
            {"type": "task-received", "uuid": uuid, "name": name, "hostname": worker,
             "timestamp": now},
            {"type": "task-started", "uuid": uuid, "hostname": worker, "timestamp": now},
            {"type": "task-succeeded", "uuid": uuid, "hostname": worker, "runtime": 0.01,
             "timestamp": now},
        ]
    t0 = time.process_time()
    for event in events:
        state.handle(event)
    return state, (time.process_time() - t0) / len(events) * 1e6


def _celery_scrape_cost(state: Any, rounds: int) -> dict[str, float]:
    """CPU of building the families and of the text exposition, per scrape."""
    from prometheus_client.registry import CollectorRegistry

    encode = _metrics_encoder()

    class Fixed:
        def __init__(self) -> None:
            self.families: list[Any] = []

        def collect(self) -> list[Any]:
            return self.families

    fixed = Fixed()
    registry = CollectorRegistry()
    registry.register(fixed)
    build: list[float] = []
    render: list[float] = []
    text = b""
    for _ in range(rounds):
        t0 = time.process_time()
        fixed.families = state.metrics()
        t1 = time.process_time()
        text = encode(registry)  # what /metrics does for Prometheus's Accept header
        t2 = time.process_time()
        build.append((t1 - t0) * 1000)
        render.append((t2 - t1) * 1000)
    overflow = dict(state.overflow)
    return {"build_cpu_ms": statistics.median(build), "render_cpu_ms": statistics.median(render),
            "cpu_ms_per_scrape": statistics.median([b + r for b, r in zip(build, render,
                                                                          strict=True)]),
            "p99_ms": pct([b + r for b, r in zip(build, render, strict=True)], 99),
            "series": float(series(text)), "bytes": float(len(text)),
            "rss_mb": rss_mb(os.getpid()),
            **{f"overflow_{k}": float(v) for k, v in overflow.items()}}


def bench_celery_tasks(args: argparse.Namespace) -> None:
    points: list[dict[str, Any]] = []
    for names in args.task_names:
        state, per_event = _celery_state(names, 20, max(args.tasks, names))
        fig = {**_celery_scrape_cost(state, args.rounds), "handle_us_per_event": per_event}
        fig["p50_ms"] = fig["cpu_ms_per_scrape"]
        show("stackmon(in-proc)", names, fig)
        points.append({"exporter": "stackmon", "series_name": "20 workers", "x": names, **fig})
    write("celery-tasks", {"x_label": "task names", "x_log": True, "points": points,
                           "in_process": True})


# In-process series of celery-workers: name -> whether every task name runs on every worker.
SIMULATED_WORKER_SERIES = {"100 task names": False,
                           "100 task names, each on every worker": True}


def bench_celery_workers(args: argparse.Namespace) -> None:
    points: list[dict[str, Any]] = []
    for series_name, spread in SIMULATED_WORKER_SERIES.items():
        for workers in args.workers:
            state, per_event = _celery_state(100, workers, args.tasks, spread)
            fig = {**_celery_scrape_cost(state, args.rounds), "handle_us_per_event": per_event}
            fig["p50_ms"] = fig["cpu_ms_per_scrape"]
            show(f"in-proc/{series_name}", workers, fig)
            points.append({"exporter": "stackmon", "series_name": series_name, "x": workers,
                           **fig})
    if any(count > 0 for count in args.real_workers):
        points += _real_workers(args)
    write("celery-workers", {"x_label": "workers (one host each)", "x_log": True,
                             "points": points,
                             "in_process_series": list(SIMULATED_WORKER_SERIES),
                             "real_tasks": args.real_tasks})


def _families_sum(body: bytes, name: str) -> tuple[float, int]:
    """Sum and number of the samples of ``name`` (any labels) in a text exposition."""
    total, count = 0.0, 0
    prefix = name.encode()
    for line in body.splitlines():
        if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] in (b" ", b"{"):
            total += float(line.rsplit(b" ", 1)[1])
            count += 1
    return total, count


class CeleryWorker:
    """One real ``celery worker -E --pool solo`` of bench/celery_app.py (as
    tests/helpers/celery.py starts them: cleaned env, repo cwd, SIGTERM then SIGKILL)."""

    def __init__(self, broker: str, node: str, tmp: Path) -> None:
        self.node = node
        self.log_path = tmp / f"{node.replace('@', '-')}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
        env["BENCH_CELERY_BROKER"] = broker
        with open(self.log_path, "wb") as log:
            # solo: one process a worker running the tasks itself; prefork -c 1 would add
            # a child per worker and the parent-child pipe per task, on 2 shared cores.
            # No gossip (each worker would consume every other's events) nor mingle (a
            # start-up sync round), like the tests' workers.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-E",
                 "--pool", "solo", "-n", node, "-Q", "celery", "-l", "warning",
                 "--without-gossip", "--without-mingle"],
                stdout=log, stderr=log, env=env, cwd=REPO, start_new_session=True)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"worker {self.node} exited: "
                             f"{self.log_path.read_text(errors='replace')[-2000:]}")

    def terminate(self) -> None:
        """Warm shutdown: SIGTERM (the caller waits with ``join``)."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def join(self) -> None:
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _real_workers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """1, 2, 4 real workers (``--real-workers``) on a private redis-server broker, each on
    a host of its own (``bench@hostN``); two fresh exporters per point (inspect at its
    default; hostname label on and off), ``--real-tasks`` tasks over the 100 names, then
    the usual scrapes of each (Redis figures: the whole broker's, workers included)."""
    from bench.celery_app import TASK_NAMES, make_app

    points: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="scale-celery-workers-"))
    workers: list[CeleryWorker] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        port, = stack.enter_context(redis_servers(1))
        broker = f"redis://127.0.0.1:{port}/0"
        client = make_app(broker)
        try:
            for count in sorted(c for c in args.real_workers if c > 0):
                # Workers are added, never restarted: 1, then 1 more, then 2 more...
                # started together, as they take a few CPU seconds each to import Celery.
                while len(workers) < count:
                    workers.append(CeleryWorker(broker, f"bench@host{len(workers)}", tmp))
                nodes = {w.node for w in workers}

                def pinged(nodes: set[str] = nodes) -> bool:
                    for w in workers:
                        w.check()
                    replies = client.control.ping(timeout=1.0) or []
                    return nodes <= {node for reply in replies for node in reply}

                wait(pinged, 120, f"{count} celery workers")
                # Started after the workers answer, so that their first inspect round (at
                # start, then every 30 s) finds them all. Both exporters get the same
                # events (a broadcast), so one batch of tasks serves the two.
                exps: dict[str, Exporter] = {}
                try:
                    for variant, extra in REAL_WORKER_VARIANTS.items():
                        exps[variant] = stackmon({"celery": {"broker_url": broker, **extra}})
                    points += _real_workers_point(exps, client, port, count, TASK_NAMES, args)
                finally:
                    for exp in exps.values():
                        exp.stop()
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.join()
            client.close()
    return points


# The exporter's settings per real-workers series: the default (celery-exporter's labels:
# the executing host on every task series), and one task series per name and queue.
REAL_WORKER_VARIANTS: dict[str, dict[str, Any]] = {
    "real workers": {},
    "real workers, task_hostname_label off": {"task_hostname_label": False},
}


def _scrape_sums(exp: Exporter, names: Sequence[str]) -> dict[str, tuple[float, int]]:
    scraper = Scraper(exp.port)
    try:
        body = scraper.get("/metrics")
    finally:
        scraper.close()
    return {name: _families_sum(body, name) for name in names}


def _real_workers_point(exps: dict[str, Exporter], client: Any, port: int, count: int,
                        names: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    def ready(exp: Exporter) -> bool:
        got = _scrape_sums(exp, ["stackmon_celery_events_receiver_up", "celery_worker_up",
                                 "celery_worker_pool_info"])
        return (got["stackmon_celery_events_receiver_up"][0] == 1
                and got["celery_worker_up"][0] == count
                and got["celery_worker_pool_info"][1] == count)

    for exp in exps.values():
        wait(functools.partial(ready, exp), 60,
             f"exporter seeing {count} workers (events and inspect)")
    with client.producer_or_acquire() as producer:
        for i in range(args.real_tasks):
            client.send_task(f"bench.task{i % names}", args=(i,), producer=producer)

    def done(exp: Exporter) -> bool:
        got = _scrape_sums(exp, ["celery_task_succeeded_total", "celery_task_sent_total"])
        return (got["celery_task_succeeded_total"][0] >= args.real_tasks
                and got["celery_task_sent_total"][0] >= args.real_tasks)

    out: list[dict[str, Any]] = []
    for variant, exp in exps.items():
        wait(functools.partial(done, exp), 120, f"{args.real_tasks} tasks succeeded")
        scraper = Scraper(exp.port)
        try:
            body = scraper.get("/metrics")
        finally:
            scraper.close()
        fig: dict[str, Any] = measure(exp, ["/metrics"], args.scrapes, RedisBackend([port]))
        fig["workers_up"] = _families_sum(body, "celery_worker_up")[0]
        fig["tasks_succeeded"] = _families_sum(body, "celery_task_succeeded_total")[0]
        # (name, host) pairs with a succeeded series: tasks spread over the workers' hosts.
        fig["succeeded_series"] = float(_families_sum(body, "celery_task_succeeded_total")[1])
        fig["task_hosts"] = float(len({
            line.split(b'hostname="', 1)[1].split(b'"', 1)[0]
            for line in body.splitlines() if line.startswith(b"celery_task_succeeded_total{")}))
        show(f"{exp.name}/{variant}", count, fig)
        out.append({"exporter": exp.name, "series_name": variant, "x": count, **fig})
    return out


def bench_celery_queues(args: argparse.Namespace) -> None:
    """The real exporter on a private Redis broker with N configured queues."""
    points: list[dict[str, Any]] = []
    with redis_servers(1) as (port,):
        broker = f"redis://127.0.0.1:{port}/0"
        backend = RedisBackend([port])
        client = redis.Redis(port=port)
        for count in args.queues:
            queues = [f"q{i}" for i in range(count)]
            for q in queues:
                client.delete(q)
                client.rpush(q, *[b"x"] * 3)
            exp = stackmon({"celery": {"broker_url": broker, "queues": queues,
                                       "inspect_interval_seconds": 0}})
            try:
                fig = measure(exp, ["/metrics"], args.scrapes, backend)
                show(exp.name, count, fig)
                points.append({"exporter": exp.name, "series_name": "Redis broker",
                               "x": count, **fig})
            finally:
                exp.stop()
    write("celery-queues", {"x_label": "queues", "x_log": True, "points": points})


def bench_celery_events(args: argparse.Namespace) -> None:
    """Offered event rates (``--event-rates``), ``--event-seconds`` each, into the real
    exporter's receiver on a private redis-server (bench/celery_events_bench.py's Bench:
    20 workers, 100 task names, a pipelined raw publisher in a process of its own)."""
    from bench.celery_events_bench import EVENTS_PER_TASK, Bench

    points: list[dict[str, Any]] = []
    bench = Bench()
    assert bench.exporter is not None
    try:
        for rate in args.event_rates:
            r = bench.run(int(rate * args.event_seconds / EVENTS_PER_TASK), rate)
            window, cpu, consumed = r["seconds"], r["exporter_cpu_s"], r["consumed_in_window"]
            fig = {
                "offered": float(rate), "achieved_rate": r["offered"],
                "published": r["published"], "consumed": r["consumed"], "lost": r["lost"],
                "lost_pct": 100 * r["lost"] / r["published"],
                "drain_lag_s": r["drain_lag_s"],
                # Over the publishing window (no scrapes in it): the receiver's cost.
                "exporter_cpu_pct": 100 * cpu / window,
                "exporter_cpu_ms_per_1k_events": cpu * 1e6 / consumed if consumed else 0.0,
                "consumed_rate_in_window": consumed / window,
                "publisher_cpu_pct": 100 * r["publisher_cpu_s"] / window,
                "redis_cpu_pct": 100 * r["redis_cpu_s"] / window,
                # Runnable but not running (other processes had both cores).
                "exporter_runqueue_wait_pct": 100 * r["exporter_runqueue_wait_s"] / window,
                "rss_mb": r["rss_mb"], "receiver_restarts": r["restarts_step"],
                "seconds": window,
            }
            print(f"celery-events x={rate:<6} " + " ".join(
                f"{k}={v:.2f}" for k, v in fig.items() if k != "offered"), flush=True)
            points.append({"exporter": "stackmon", "series_name": "raw publisher",
                           "x": rate, **fig})
    finally:
        bench.close()
    write("celery-events", {"x_label": "offered events/s", "points": points,
                            "event_seconds": args.event_seconds})


def _lean_text(families: Sequence[Any]) -> bytes:
    """A plain text-format 0.0.4 encoder, for comparison only (the technique of the
    pgdropin branch's exporter/http/exposition.py): legacy ASCII names as stackmon makes
    them, so names are not re-checked per sample and label values are escaped only when
    they need it. Checked below to give generate_latest's exact bytes."""
    from prometheus_client.utils import floatToGoString

    value: Callable[[float], str] = floatToGoString
    out: list[str] = []
    for f in families:
        name, kind = f.name, {"unknown": "untyped"}.get(f.type, f.type)
        if kind == "counter":
            name += "_total"
        doc = f.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for s in f.samples:
            if s.labels:
                labels = ",".join(
                    f'{k}="{v}"' if not ('"' in v or "\\" in v or "\n" in v) else
                    f'{k}="' + v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
                    + '"' for k, v in sorted(s.labels.items()))
                out.append(f"{s.name}{{{labels}}} {value(s.value)}\n")
            else:
                out.append(f"{s.name} {value(s.value)}\n")
    return "".join(out).encode()


def _metrics_encoder() -> Callable[[Any], bytes]:
    """What /metrics uses for Prometheus's text format in this tree: our own writer once
    it has landed (exporter/http/exposition.py), else prometheus_client's."""
    import importlib

    try:
        render_text = importlib.import_module("exporter.http.exposition").render_text
    except ImportError:
        from prometheus_client.exposition import generate_latest

        return lambda registry: bytes(generate_latest(registry))
    return lambda registry: bytes(render_text(list(registry.collect())))


class _Fixed:
    """A collector that returns the families it was given (to time the encoders alone)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def _cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        runs.append((time.process_time() - t0) * 1000)
    return statistics.median(runs)


def _encoder_point(state: Any, rounds: int) -> dict[str, float]:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    from prometheus_client.registry import CollectorRegistry

    families = state.metrics()
    registry = CollectorRegistry()
    registry.register(_Fixed(families))
    text: bytes = generate_latest(registry)
    assert _lean_text(families) == text, "the lean encoder must write the same bytes"
    return {"series": float(series(text)), "bytes": float(len(text)),
            "build_cpu_ms": _cpu_ms(state.metrics, rounds),
            "text_cpu_ms": _cpu_ms(lambda: generate_latest(registry), rounds),
            "openmetrics_cpu_ms": _cpu_ms(lambda: om_latest(registry), rounds),  # type: ignore[no-untyped-call]
            "lean_cpu_ms": _cpu_ms(lambda: _lean_text(families), rounds),
            "gzip5_cpu_ms": _cpu_ms(lambda: gzip.compress(text, compresslevel=5), rounds),
            "gzip1_cpu_ms": _cpu_ms(lambda: gzip.compress(text, compresslevel=1), rounds)}


def bench_encoder(args: argparse.Namespace) -> None:
    """Where a large output's time goes: building the families, prometheus_client's text
    and OpenMetrics encoders, a lean encoder, gzip (level 5 as the server). In-process,
    on the Celery state of ``--task-names`` names (20 workers)."""
    points: list[dict[str, Any]] = []
    for names in args.task_names:
        state, _ = _celery_state(names, 20, max(args.tasks, names))
        fig = _encoder_point(state, args.rounds)
        print(f"encoder x={names} " + " ".join(f"{k}={v:.1f}" for k, v in fig.items()),
              flush=True)
        points.append({"exporter": "stackmon", "series_name": "celery state", "x": names,
                       **fig})
    write("encoder", {"x_label": "task names (20 workers)", "in_process": True,
                      "points": points})


# --- Services ------------------------------------------------------------------------------

def bench_services(args: argparse.Namespace) -> None:
    """N http checks against one threaded test server; every tenth one hangs."""
    sys.path.insert(0, str(REPO))
    from tests.helpers.services import TargetServer

    points: list[dict[str, Any]] = []
    server = TargetServer()
    try:
        for count in args.checks:
            checks = []
            for i in range(count):
                path = "/hang" if i % 10 == 9 else "/ok"
                checks.append({"name": f"svc{i}", "type": "http", "url": server.url(path),
                               "timeout_seconds": args.check_timeout})
            exp = stackmon({"services": {"checks": checks}})
            try:
                # Every scrape waits out the hanging checks' timeout: fewer of them.
                fig = measure(exp, ["/metrics"], min(args.scrapes, 20))
                fig["hanging"] = float(count // 10)
                show(exp.name, count, fig)
                points.append({"exporter": exp.name, "series_name": "a tenth hanging",
                               "x": count, **fig})
            finally:
                exp.stop()
    finally:
        server.release.set()
        server.stop()
    write("services", {"x_label": "http checks", "x_log": True, "points": points,
                       "check_timeout_seconds": args.check_timeout})


DIMENSIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "redis-keys": bench_redis_keys, "redis-targets": bench_redis_targets,
    "redis-prometheus": bench_redis_prometheus,
    "pg-databases": bench_pg_databases, "pg-tables": bench_pg_tables,
    "pg-sessions": bench_pg_sessions, "celery-tasks": bench_celery_tasks,
    "celery-workers": bench_celery_workers, "celery-queues": bench_celery_queues,
    "celery-events": bench_celery_events,
    "services": bench_services, "encoder": bench_encoder,
}


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dimension", nargs="+", choices=[*DIMENSIONS, "all"])
    ap.add_argument("--scrapes", type=int, default=50, help="scrapes per point")
    ap.add_argument("--rounds", type=int, default=10,
                    help="redis-targets: rounds over all targets; celery: scrapes")
    ap.add_argument("--keys", type=ints, default=[10, 1000, 100_000, 1_000_000])
    ap.add_argument("--targets", type=ints, default=[1, 5, 10, 25, 50])
    ap.add_argument("--idle-seconds", type=float, default=10.0,
                    help="redis-targets: idle window after the probes")
    ap.add_argument("--prom-targets", type=ints, default=[1, 10, 50],
                    help="redis-prometheus: Redis targets per size")
    ap.add_argument("--prom-window", type=float, default=60.0,
                    help="redis-prometheus: measured seconds per size (multiple of interval)")
    ap.add_argument("--prom-interval", type=float, default=15.0,
                    help="redis-prometheus: Prometheus scrape_interval in seconds")
    ap.add_argument("--prom-idle", type=float, default=5.0,
                    help="redis-prometheus: seconds of no-scrape CPU baseline per size")
    ap.add_argument("--databases", type=ints, default=[1, 10, 30, 100])
    ap.add_argument("--tables", type=ints, default=[10, 100, 1000, 10_000])
    ap.add_argument("--uncapped", type=int, default=100_000,
                    help="pg-tables: user_tables_limit of the uncapped variant")
    ap.add_argument("--pg-code", help="pg-tables: root of a checkout with per-table metrics "
                    "(e.g. `git archive pgdropin | tar -x -C DIR`), default this tree")
    ap.add_argument("--sessions", type=ints, default=[10, 100, 300, 1000])
    ap.add_argument("--task-names", type=ints, default=[10, 100, 300, 500, 1000])
    ap.add_argument("--workers", type=ints, default=[1, 5, 20, 50])
    ap.add_argument("--tasks", type=int, default=20_000, help="celery: simulated tasks")
    ap.add_argument("--real-workers", type=ints, default=[1, 2, 4],
                    help="celery-workers: real `celery worker` processes (0: none)")
    ap.add_argument("--real-tasks", type=int, default=2000,
                    help="celery-workers: tasks sent through the real workers")
    ap.add_argument("--event-rates", type=ints,
                    default=[1000, 2000, 5000, 10_000, 15_000, 20_000],
                    help="celery-events: offered events/s, one step each")
    ap.add_argument("--event-seconds", type=float, default=8.0,
                    help="celery-events: length of each step")
    ap.add_argument("--queues", type=ints, default=[1, 10, 30, 100])
    ap.add_argument("--checks", type=ints, default=[1, 10, 30, 100])
    ap.add_argument("--check-timeout", type=float, default=1.0,
                    help="services: timeout_seconds of every check")
    args = ap.parse_args(argv)
    todo = list(DIMENSIONS) if "all" in args.dimension else args.dimension
    for name in todo:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        DIMENSIONS[name](args)
        print(f"== {name} took {time.monotonic() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
