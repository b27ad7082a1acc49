"""The cost floor of a scrape, per collector, and how far stackmon and the anchors are above it.

A *floor exporter* does only the work no exporter can avoid for one scrape, and nothing
else (benchmark; issue 22):

* host: open, read to the end and close the same /proc and /sys files, list the same
  directories and statfs the same mounts as stackmon's host collector (the operations are
  recorded from one real ``HostCollector.collect()`` and replayed by absolute path);
* postgres: send stackmon's steady-state ``EXECUTE`` batch on a connection where the same
  statements are prepared, and let libpq receive every row (``PGconn.get_result``; no row
  is turned into Python objects);
* redis: send the same pipelined commands (``INFO ...``, ``SLOWLOG LEN``, ``SLOWLOG GET 1``)
  on a raw socket and read until every reply has arrived;
* serve: answer each keep-alive ``GET`` by writing the bytes stackmon sent for it (its
  gzipped reply, taken from the stackmon measured beside it) to the socket.

Every exporter -- the floor, stackmon with one collector, its Go anchor -- is scraped the
same way (sequential keep-alive GETs with gzip, like Prometheus), and its CPU per scrape is
read from the kernel's per-process CPU clock (ns resolution, every thread, ended ones too).
Each group runs ``--rounds`` times with the order rotated; the table gives medians and
each exporter's CPU per scrape as a multiple of the floor measured in the same round.

    .venv/bin/python -m bench.floor                      # ~3 min; starts its own servers
    .venv/bin/python -m bench.floor --scrapes 500 --rounds 5 --json bench/results/floor.json

It starts a private PostgreSQL cluster (pgbench scale 5 plus 200 small tables, as
bench/lib.sh) and redis-server (100,000 keys, ``DEBUG POPULATE``) on free loopback ports,
never the machine's 5432/6379, and stops everything at the end.  The floor is measured in
Python, so it includes the interpreter's call overhead per system call (~0.3 µs): it is a
slight over-estimate of what a compiled program would need, and the multiples below are
conservative.  Compressing the reply is not in the floor (its bytes are pre-compressed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale import (  # noqa: E402 - after the path fix, for `python bench/floor.py`
    Exporter,
    Scraper,
    pg_cluster,
    postgres_exporter,
    process_cpu_seconds,
    redis_exporter,
    redis_servers,
    rss_mb,
    series,
)

RESULTS = REPO / "bench" / "results"
GROUPS = ("host", "postgres", "redis", "all")
ANCHORS = {"host": ("node_exporter",), "postgres": ("postgres_exporter",),
           "redis": ("redis_exporter",),
           "all": ("node_exporter", "postgres_exporter", "redis_exporter")}
REDIS_KEYS = 100_000
BENCH_TABLES = 200
NODE_EXPORTER = shutil.which("prometheus-node-exporter")


# --- the floor exporter (runs as its own process: `python -m bench.floor serve ...`) -----

Op = tuple[str, str]  # ("read" | "listdir" | "statfs" | "uname", path)


def record_host_ops() -> list[Op]:
    """The system calls of one host collection, recorded from the real collector."""
    from exporter.collectors.host.collector import HostCollector
    from exporter.collectors.host.settings import HostSettings

    collector = HostCollector(HostSettings())
    collector.collect(float("inf"))  # warm: udev properties and device tables are cached
    ops: list[Op] = []
    dirs: dict[int, str] = {}
    real_open, real_listdir, real_statvfs, real_uname = os.open, os.listdir, os.statvfs, os.uname
    real_close = os.close

    def rec_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
                 ) -> int:
        full = os.path.join(dirs[dir_fd], path) if dir_fd is not None else str(path)
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_DIRECTORY:
            dirs[fd] = full
        else:
            ops.append(("read", full))
        return fd

    def rec_fail(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
                 ) -> int:
        try:
            return rec_open(path, flags, mode, dir_fd=dir_fd)
        except OSError:
            full = os.path.join(dirs[dir_fd], path) if dir_fd is not None else str(path)
            ops.append(("read", full))
            raise

    def rec_listdir(path: Any = ".") -> list[str]:
        ops.append(("listdir", str(path)))
        return real_listdir(path)

    def rec_statvfs(path: Any) -> os.statvfs_result:
        ops.append(("statfs", str(path)))
        return real_statvfs(path)

    def rec_uname() -> os.uname_result:
        ops.append(("uname", ""))
        return real_uname()

    def rec_close(fd: int) -> None:
        dirs.pop(fd, None)
        real_close(fd)

    os.open, os.listdir, os.statvfs, os.uname, os.close = (  # type: ignore[assignment]
        rec_fail, rec_listdir, rec_statvfs, rec_uname, rec_close)
    try:
        collector.filesystem.runner.statfs = rec_statvfs
        collector.collect(float("inf"))
    finally:
        os.open, os.listdir, os.statvfs, os.uname, os.close = (
            real_open, real_listdir, real_statvfs, real_uname, real_close)
        collector.close()
    return ops


def replay_host(ops: Sequence[Op]) -> Callable[[], None]:
    o_open, o_read, o_close, flags = os.open, os.read, os.close, os.O_RDONLY | os.O_CLOEXEC

    def run() -> None:
        for kind, path in ops:
            try:
                if kind == "read":
                    fd = o_open(path, flags)
                    try:
                        while o_read(fd, 65536):
                            pass
                    finally:
                        o_close(fd)
                elif kind == "listdir":
                    os.listdir(path)
                elif kind == "statfs":
                    os.statvfs(path)
                else:
                    os.uname()
            except OSError:
                pass  # an absent source costs its failed open, as in the collector
    return run


def postgres_floor(dsn: str) -> Callable[[], None]:
    """stackmon's steady-state batch on a connection prepared by stackmon's own code."""
    from exporter.collectors.postgres import collector as pg
    from exporter.collectors.postgres.settings import PostgresSettings

    seen: list[str] = []
    real = pg.PostgresCollector._execute

    def spy(conn: Any, parts: Sequence[Any]) -> Any:
        seen[:] = [p.name for p in parts]
        return real(conn, parts)

    pg.PostgresCollector._execute = staticmethod(spy)  # type: ignore[method-assign]
    col = pg.PostgresCollector(PostgresSettings(dsn=dsn), dsn)
    for _ in range(2):  # the second batch is the steady state (settings and sizes cached)
        col.collect(time.monotonic() + 30)
    pg.PostgresCollector._execute = staticmethod(real)  # type: ignore[method-assign]
    assert col._conn is not None
    pgconn = col._conn.pgconn
    query = ";".join(f"EXECUTE {pg.PREPARED_PREFIX}{name}" for name in seen).encode()
    keep = [col]  # the connection lives as long as the floor

    def run() -> None:
        assert keep
        pgconn.send_query(query)
        while pgconn.get_result() is not None:
            pass
    return run


def _skip_reply(buf: bytes, i: int) -> int:
    """Index after the RESP reply at ``buf[i]``, or -1 while incomplete."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        return -1
    kind, head = buf[i:i + 1], buf[i + 1:end]
    i = end + 2
    if kind == b"$":
        n = int(head)
        return i if n < 0 else (i + n + 2 if len(buf) >= i + n + 2 else -1)
    if kind == b"*":
        for _ in range(max(0, int(head))):
            i = _skip_reply(buf, i)
            if i < 0:
                return -1
    return i


def redis_floor(url: str) -> Callable[[], None]:
    """stackmon's pipelined commands, as its collector packs them, on a raw socket."""
    from exporter.collectors.redis.collector import RedisCollector
    from exporter.collectors.redis.settings import RedisSettings

    col = RedisCollector.from_settings(RedisSettings(url=url), default_timeout=10.0)
    for _ in range(2):
        col.collect(time.monotonic() + 30)
    cmds = col._commands()
    payload = b"".join(col_conn_pack(cmds))
    col.close()
    host, port = url.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = len(cmds)

    def run() -> None:
        sock.sendall(payload)
        buf = b""
        done = i = 0
        while done < n:
            buf += sock.recv(1 << 20)
            while done < n:
                j = _skip_reply(buf, i)
                if j < 0:
                    break
                i, done = j, done + 1
    return run


def col_conn_pack(cmds: Sequence[tuple[str, ...]]) -> list[bytes]:
    """The RESP encoding of ``cmds`` (what redis-py's ``pack_commands`` writes)."""
    out = []
    for cmd in cmds:
        parts = [f"*{len(cmd)}\r\n".encode()]
        for arg in cmd:
            b = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        out.append(b"".join(parts))
    return out


def serve(args: argparse.Namespace) -> None:
    """The floor exporter: the recorded work, then the same bytes, per GET."""
    work: list[Callable[[], None]] = []
    if args.host:
        work.append(replay_host(record_host_ops()))
    if args.pg:
        work.append(postgres_floor(args.pg))
    if args.redis:
        work.append(redis_floor(args.redis))
    reply = Path(args.reply).read_bytes()
    listener = socket.create_server(("127.0.0.1", args.port))
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:  # the client reset the connection
                break
            if not data:
                break
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                for step in work:
                    step()
                conn.sendall(reply)
        conn.close()


# --- the bench ------------------------------------------------------------------------------

def fill_postgres(cluster: Any) -> None:
    """bench/lib.sh's data: pgbench scale 5 plus 200 small tables with an index each."""
    from tests.helpers.pgcluster import run_pg

    cluster.sql("CREATE DATABASE bench")
    run_pg([str(cluster.bin_dir / "pgbench"), "-i", "-s", "5", "-q", "-h", "127.0.0.1", "-p",
            str(cluster.port), "-U", "postgres", "bench"], timeout=300)
    cluster.sql(f"""DO $$ DECLARE i int; BEGIN FOR i IN 1..{BENCH_TABLES} LOOP
      EXECUTE format('CREATE TABLE public.t%s (id serial PRIMARY KEY, k int NOT NULL, v text)',
                     lpad(i::text,3,'0'));
      EXECUTE format('CREATE INDEX t%s_k_idx ON public.t%s (k)', lpad(i::text,3,'0'),
                     lpad(i::text,3,'0'));
      EXECUTE format('INSERT INTO public.t%s (k, v) SELECT g %% 97, md5(g::text)
                      FROM generate_series(1, %s) g', lpad(i::text,3,'0'), 200 + (i*37 % 800));
    END LOOP; END $$""", "bench")
    cluster.sql("VACUUM ANALYZE", "bench")


def node_exporter() -> Exporter:
    from exporter.collectors.host.settings import (
        DISK_DEVICES_EXCLUDE,
        FS_MOUNT_POINTS_EXCLUDE,
        FS_TYPES_EXCLUDE,
    )
    assert NODE_EXPORTER, "apt-get install prometheus-node-exporter"
    return Exporter("node_exporter", [
        NODE_EXPORTER, "--web.listen-address=127.0.0.1:{port}",
        f"--collector.filesystem.mount-points-exclude={FS_MOUNT_POINTS_EXCLUDE}",
        f"--collector.filesystem.fs-types-exclude={FS_TYPES_EXCLUDE}",
        f"--collector.diskstats.device-exclude={DISK_DEVICES_EXCLUDE}"],
        {"PATH": os.environ.get("PATH", "")})


def stackmon_for(group: str, dsn: str, url: str, code: Path) -> Exporter:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
    argv = [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:{port}"]
    if group in ("postgres", "all"):
        env["STACKMON_POSTGRES_DSN"] = dsn
    if group in ("redis", "all"):
        env["STACKMON_REDIS_URL"] = url
    if group not in ("host", "all"):
        argv.append("--no-collector.host")
    return Exporter(f"stackmon-{group}", argv, env, cwd=code)


def floor_for(group: str, dsn: str, url: str, reply: bytes) -> Exporter:
    tmp = Path(tempfile.mkdtemp(prefix="floor-reply-"))
    (tmp / "reply").write_bytes(reply)
    argv = [sys.executable, "-m", "bench.floor", "serve", "--port", "{port}",
            "--reply", str(tmp / "reply")]
    if group in ("host", "all"):
        argv.append("--host")
    if group in ("postgres", "all"):
        argv += ["--pg", dsn]
    if group in ("redis", "all"):
        argv += ["--redis", url]
    return Exporter(f"floor-{group}", argv, dict(os.environ), owned=[tmp])


def http_reply(port: int) -> bytes:
    """The whole HTTP reply (status, headers, gzipped body) a keep-alive GET gets."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                     b"Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
    # The floor keeps the connection open (HTTP/1.1 default): no "Connection: close".
    return head + b"\r\n\r\n" + body


def cpu_per_scrape(exp: Exporter, scrapes: int) -> dict[str, float]:
    scraper = Scraper(exp.port)
    try:
        for _ in range(3):
            body = scraper.get("/metrics")
        cpu0 = process_cpu_seconds(exp.pid)
        t0 = time.perf_counter()
        for _ in range(scrapes):
            body = scraper.get("/metrics")
        wall = time.perf_counter() - t0
        cpu1 = process_cpu_seconds(exp.pid)
    finally:
        scraper.close()
    return {"cpu_ms": (cpu1 - cpu0) * 1000 / scrapes, "wall_ms": wall * 1000 / scrapes,
            "series": float(series(body)), "rss_mb": rss_mb(exp.pid)}


@contextlib.contextmanager
def running(starters: Sequence[Callable[[], Exporter]]) -> Iterator[list[Exporter]]:
    exps: list[Exporter] = []
    try:
        for start in starters:
            exps.append(start())
        yield exps
    finally:
        for exp in exps:
            exp.stop()


def bench(args: argparse.Namespace) -> dict[str, Any]:
    code = Path(args.code).resolve()
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {g: [] for g in args.groups}
    with pg_cluster() as cluster, redis_servers(1) as (rport,):
        fill_postgres(cluster)
        import redis

        redis.Redis(port=rport).execute_command("DEBUG", "POPULATE", REDIS_KEYS, "bench:", 16)
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=disable"
        url = f"redis://127.0.0.1:{rport}"
        anchors: dict[str, Callable[[], Exporter]] = {
            "node_exporter": node_exporter,
            "postgres_exporter": lambda: postgres_exporter(dsn),
            "redis_exporter": lambda: redis_exporter(url)}
        for group in args.groups:
            with running([lambda g=group: stackmon_for(g, dsn, url, code),
                          *(anchors[a] for a in ANCHORS[group])]) as exps:
                reply = http_reply(exps[0].port)
                floors_of = [functools.partial(floor_for, group, dsn, url, reply),
                             functools.partial(floor_for, "serve", dsn, url, reply)]
                with running(floors_of) as floors:
                    targets = [*floors, *exps]
                    for r in range(args.rounds):
                        order = targets[r % len(targets):] + targets[:r % len(targets)]
                        figures = {exp.name: cpu_per_scrape(exp, args.scrapes) for exp in order}
                        rounds[group].append(figures)
                        show(group, r, figures)
    return {"rounds": rounds, "scrapes": args.scrapes,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0],
                        "python": platform.python_version()}}


def show(group: str, r: int, figures: dict[str, dict[str, float]]) -> None:
    cells = " ".join(f"{name}={f['cpu_ms']:.3f}" for name, f in figures.items())
    print(f"{group:>8} round {r + 1}: CPU ms/scrape {cells} (load {os.getloadavg()[0]:.1f})",
          flush=True)


def _group_row(group: str, rounds: list[dict[str, dict[str, float]]]) -> str:
    anchors = ANCHORS[group]
    floor_name, stack_name = f"floor-{group}", f"stackmon-{group}"

    def cpu(r: dict[str, dict[str, float]], names: Sequence[str]) -> float:
        return sum(r[n]["cpu_ms"] for n in names)

    def med(fn: Callable[[dict[str, dict[str, float]]], float]) -> float:
        return statistics.median(fn(r) for r in rounds)

    floor = med(lambda r: cpu(r, [floor_name]))
    write = med(lambda r: cpu(r, ["floor-serve"]))
    stack = med(lambda r: cpu(r, [stack_name]))
    anchor = med(lambda r: cpu(r, anchors))
    s_mult = med(lambda r: cpu(r, [stack_name]) / cpu(r, [floor_name]))
    a_mult = med(lambda r: cpu(r, anchors) / cpu(r, [floor_name]))
    ratio = med(lambda r: cpu(r, [stack_name]) / cpu(r, anchors))
    last = rounds[-1]
    a_series = sum(last[a]["series"] for a in anchors)
    label = group if group != "all" else "host + postgres + redis"
    return (f"| {label} | {floor:.2f} | {write:.2f} | {stack:.2f} | {s_mult:.1f}x | "
            f"{anchor:.2f} | {a_mult:.1f}x | {ratio:.2f} | "
            f"{last[stack_name]['series']:.0f} / {a_series:.0f} |")


def summary(doc: dict[str, Any]) -> str:
    """The markdown table: medians over rounds, multiples of the same round's floor."""
    lines = ["| collector | floor: work + write, CPU ms | of which writing the bytes | "
             "stackmon CPU ms | stackmon / floor | anchor(s) CPU ms | anchor(s) / floor | "
             "stackmon / anchor(s) | series stackmon / anchor(s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [_group_row(group, rounds) for group, rounds in doc["rounds"].items() if rounds]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    srv = sub.add_parser("serve", help="run one floor exporter (used by the bench)")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--reply", required=True)
    srv.add_argument("--host", action="store_true")
    srv.add_argument("--pg")
    srv.add_argument("--redis")
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", default=",".join(GROUPS),
                        type=lambda s: [g for g in s.split(",") if g])
    parser.add_argument("--code", default=str(REPO),
                        help="the stackmon checkout to measure (default: this one)")
    parser.add_argument("--json", default=str(RESULTS / "floor.json"))
    parser.add_argument("--summary", metavar="JSON", help="print the table of a saved run")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args)
        return
    if args.summary:
        print(summary(json.loads(Path(args.summary).read_text())))
        return
    started = time.monotonic()
    doc = bench(args)
    doc["seconds"] = time.monotonic() - started
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print(summary(doc))
    print(f"\n{doc['seconds']:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
