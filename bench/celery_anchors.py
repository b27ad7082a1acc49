"""stackmon's Celery collector beside celery-exporter and Flower, on the same event stream.

Benchmark (issue 22).  One command, bounded in time (~10 min with the defaults):

    .venv/bin/python -m bench.celery_anchors --celery-exporter-src DIR

``DIR`` is a checkout of danihodovic/celery-exporter (a source tree or a bare git
directory, whose HEAD is used); it is installed, with Flower from PyPI, in venvs of their
own under ``--work`` (default /tmp/stackmon-celery-anchors, reused when present), never in
the repository.  ``CELERY_EXPORTER_SRC`` may name it instead of the flag.

What it runs, all on 127.0.0.1 and free ports: a private ``redis-server`` (the broker),
and the exporters: stackmon (Celery collector only), celery-exporter (its ``cli.py``) and
Flower (``celery flower``, whose Prometheus metrics are on ``/metrics``).  A publisher
process sends Celery's Redis wire format (kombu's JSON envelope, base64 body, ``PUBLISH``
on ``/0.celeryev/<type>``) from a pool of pre-encoded events, so that the publisher costs
next to nothing and reaches any rate the exporters can take: per task ``task-sent`` from a
client, ``task-received``, ``task-started`` and ``task-succeeded`` from one of 20 workers
(one host each), over 100 task names, plus a ``worker-heartbeat`` per worker per second.
Task ids repeat once the pool is used up, after the earlier task with that id finished.

Phases:

1. **Together** (``--together-rate``, default 2,000 events/s for 10 s): the three watch the
   same stream at once.  Each must count every event; CPU per 1,000 events of each.
2. **Each alone**, the same stream replayed (one exporter at a time: on two shared cores,
   three consumers at once would measure who gets the CPU, not how fast each is):
   - the highest lossless rate: steps of ``--seconds`` (default 5 s) at rising rates
     until one loses events or has not counted them all 1 s after the last publish
     (it fell behind; a backlog is counted up to ``--drain`` s);
   - CPU per 1,000 events at each step, catching up included;
   - RSS after ``--events`` (default 1,000,000) events, sent at 80 % of its lossless rate;
   - then the scrape of that state (100 task names x 20 workers): p50 of 50 keep-alive
     scrapes with gzip, and CPU per scrape.

Counting: stackmon's ``stackmon_celery_events_total`` must equal every event published;
celery-exporter's ``celery_task_*_total`` and Flower's ``flower_events_total`` count task
events only, so they must equal the task events published.  The JSON goes to
``bench/results/celery-anchors.json``; ``bench/plot.py`` draws it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import http.client
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TASK_NAMES = 100
WORKERS = 20
POOL_TASKS = 20_000  # pre-encoded task lifecycles (80,000 events), reused in a cycle
DEFAULT_RATES = "2000,5000,10000,20000,30000,40000,50000,60000,80000,100000,120000"
EXPORTERS = ("stackmon", "celery-exporter", "flower")
# A step counts as lossless when nothing was lost and the exporter had counted everything
# within this long after the last publish (it kept up, rather than living on a backlog
# that Redis buffered for it).
KEPT_UP_LAG_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU of a whole process with ns resolution (its threads, ended ones too); NaN once
    it has exited."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the publisher ------------------------------------------------------------------------

def _publish_command(channel: str, payload: bytes) -> bytes:
    ch = channel.encode()
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ch), ch, len(payload),
                                                                 payload)


def _event(kind: str, hostname: str, clock: int, **fields: object) -> bytes:
    """One event as kombu's Redis transport publishes it (an EventDispatcher's message)."""
    event = {"hostname": hostname, "utcoffset": 0, "pid": 4242, "clock": clock,
             "timestamp": time.time(), "type": kind, **fields}
    routing_key = kind.replace("-", ".")
    envelope = {
        "body": base64.b64encode(json.dumps(event).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {"delivery_mode": 1, "priority": 0, "body_encoding": "base64",
                       "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                       "delivery_tag": f"{hostname}-{clock}"},
    }
    return _publish_command(f"/0.celeryev/{routing_key}", json.dumps(envelope).encode())


def build_pool() -> tuple[list[bytes], list[bytes]]:
    """(task events in publishing order, one heartbeat per worker)."""
    tasks: list[bytes] = []
    clock = 0
    for i in range(POOL_TASKS):
        uuid, name = f"bench-{i}", f"bench.task{i % TASK_NAMES}"
        worker = f"celery@host{i % WORKERS}"
        clock += 4
        tasks += [
            _event("task-sent", "client@bench", clock, uuid=uuid, name=name, queue="celery",
                   args="()", kwargs="{}", retries=0, eta=None, expires=None, exchange="",
                   routing_key="celery", root_id=uuid, parent_id=None),
            _event("task-received", worker, clock + 1, uuid=uuid, name=name, args="()",
                   kwargs="{}", root_id=uuid, parent_id=None, retries=0, eta=None,
                   expires=None),
            _event("task-started", worker, clock + 2, uuid=uuid),
            _event("task-succeeded", worker, clock + 3, uuid=uuid, result="None",
                   runtime=0.001),
        ]
    beats = [_event("worker-heartbeat", f"celery@host{w}", w, freq=2.0, active=0,
                    processed=1, sw_ver="5.7.0", sw_sys="Linux", sw_ident="py-celery")
             for w in range(WORKERS)]
    return tasks, beats


_POOL: tuple[list[bytes], list[bytes]] | None = None  # built once, inherited by fork


def publisher(port: int, rate: float, events: int, offset: int, out: Any) -> None:
    """Send ``events`` task events (plus heartbeats) at ``rate`` events/s on one socket,
    pipelined; report (task events, heartbeats, seconds, CPU seconds)."""
    tasks, beats = _POOL or build_pool()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    cpu0 = time.process_time()
    start = time.monotonic()
    sent = beats_sent = replies = 0
    next_beat = 0.0
    pending = b""
    while sent < events or pending:
        now = time.monotonic() - start
        due = min(events, int(rate * now) + 1)
        parts = []
        if sent < due:
            for n in range(sent, due):
                parts.append(tasks[(offset + n) % len(tasks)])
            sent = due
        if now >= next_beat and sent < events:
            parts += beats
            beats_sent += len(beats)
            next_beat += 1.0
        pending += b"".join(parts)
        with contextlib.suppress(BlockingIOError):
            while pending:
                n = sock.send(pending)
                pending = pending[n:]
        with contextlib.suppress(BlockingIOError):
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    raise SystemExit("redis closed the publisher's connection")
                replies += data.count(b"\r\n")
        time.sleep(0.002)
    elapsed = time.monotonic() - start
    sock.setblocking(True)
    total = sent + beats_sent
    while replies < total:
        replies += sock.recv(1 << 16).count(b"\r\n")
    sock.close()
    out.put((sent, beats_sent, elapsed, time.process_time() - cpu0))


# --- the exporters ---------------------------------------------------------------------------

class Proc:
    """An exporter process; ``counted()`` is what it says it has consumed so far."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int,
                 counter: Callable[[str], float], tmp: Path) -> None:
        self.name, self.port, self.counter = name, port, counter
        self.log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log,
                                     start_new_session=True, cwd=tmp)
        self.conn: http.client.HTTPConnection | None = None

    def scrape(self) -> str:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self.conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if resp.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode()

    def counted(self) -> float:
        """The count on /metrics; a reset or refused connection is tried again (a loaded
        Flask or Tornado server drops one now and then), up to 30 s; 0 once it exited."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.counter(self.scrape())
            except (OSError, http.client.HTTPException):
                if self.proc.poll() is not None:
                    return 0.0
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()


def metric_sum(text: str, names: tuple[str, ...]) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(names):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in names:
                total += float(line.rsplit(" ", 1)[1])
    return total


CE_TASK_COUNTERS = tuple(f"celery_task_{k}_total" for k in (
    "sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected"))


def start(name: str, broker: str, tmp: Path, venvs: dict[str, Path]) -> Proc:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKMON_", "CE_"))}
    if name == "stackmon":
        env.update({"STACKMON_CELERY_BROKER_URL": broker,
                    "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "0",
                    "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": "3600",
                    "STACKMON_CELERY_WORKER_PURGE_SECONDS": "7200",
                    "PYTHONPATH": str(REPO)})
        return Proc(name, [sys.executable, "-m", "exporter", "--no-collector.host",
                           f"--web.listen-address=127.0.0.1:{port}"], env, port,
                    lambda t: metric_sum(t, ("stackmon_celery_events_total",)), tmp)
    if name == "celery-exporter":
        py = venvs[name] / "bin" / "python"
        return Proc(name, [str(py), "-c", "from src.cli import cli; cli(auto_envvar_prefix='CE')",
                           "--broker-url", broker, "--host", "127.0.0.1", "--port", str(port),
                           "--worker-timeout", "3600", "--log-level", "WARNING"], env, port,
                    lambda t: metric_sum(t, CE_TASK_COUNTERS), tmp)
    celery = venvs[name] / "bin" / "celery"
    return Proc(name, [str(celery), "--broker", broker, "flower", "--address=127.0.0.1",
                       f"--port={port}", "--logging=warning"], env, port,
                lambda t: metric_sum(t, ("flower_events_total",)), tmp)


def wait_consuming(procs: list[Proc], redis_port: int, deadline_s: float = 90) -> None:
    """Publish a task now and then until every exporter shows it (its subscription is up)."""
    deadline = time.monotonic() + deadline_s
    base: dict[str, float] = {}
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise SystemExit(f"{p.name} exited; see its log")
            if p.name not in base:
                with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                    base[p.name] = p.counted()
        if len(base) == len(procs):
            run_publisher(redis_port, 50, 4, 0)
            time.sleep(0.5)
            with contextlib.suppress(OSError, http.client.HTTPException):
                if all(p.counted() > base[p.name] for p in procs):
                    return
        time.sleep(0.5)
    raise SystemExit(f"not consuming within {deadline_s:.0f} s: {[p.name for p in procs]}")


def run_publisher(redis_port: int, rate: float, events: int, offset: int
                  ) -> tuple[int, int, float, float]:
    ctx = mp.get_context("fork")  # the publisher inherits the pre-encoded pool
    out: Any = ctx.Queue()
    proc = ctx.Process(target=publisher, args=(redis_port, rate, events, offset, out))
    proc.start()
    result = out.get()
    proc.join()
    return result  # type: ignore[no-any-return]


class Stream:
    """The publisher's position in the pool, shared by every phase."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.offset = 0

    def step(self, procs: list[Proc], rate: float, events: int, drain: float
             ) -> dict[str, dict[str, float]]:
        """Publish, then wait (up to ``drain`` s) until each exporter has counted it all.
        An exporter's CPU is taken when its count is complete (or at the end of the
        wait), so what it did while catching up is in; the count is read by a scrape, a
        few of them (backing off), whose cost is in too."""
        before = {p.name: p.counted() for p in procs}
        cpu0 = {p.name: cpu_seconds(p.proc.pid) for p in procs}
        tasks, beats, seconds, pub_cpu = run_publisher(self.redis_port, rate, events,
                                                       self.offset)
        self.offset += tasks
        want = {p.name: float(tasks + beats if p.name == "stackmon" else tasks)
                for p in procs}
        published = time.monotonic()
        done: dict[str, tuple[float, float, float]] = {}  # name -> (count, lag, cpu s)
        deadline = published + drain
        pause = 0.1
        while len(done) < len(procs):
            for p in procs:
                if p.name in done:
                    continue
                if p.proc.poll() is not None:  # celery-exporter exits when Redis drops it
                    done[p.name] = (0.0, drain, float("nan"))
                    continue
                # The lag is from the last publish to the start of the scrape that saw
                # the count complete: celery-exporter's scrape alone takes ~2 s (two
                # inspect broadcasts), which is not lag in counting.
                asked = time.monotonic()
                n = p.counted() - before[p.name]
                if n >= want[p.name] or time.monotonic() >= deadline:
                    done[p.name] = (n, max(0.0, asked - published),
                                    cpu_seconds(p.proc.pid) - cpu0[p.name])
            time.sleep(pause)
            pause = min(1.0, pause * 2)
        out = {}
        for p in procs:
            n, lag, cpu = done[p.name]
            out[p.name] = {"offered": (tasks + beats) / seconds, "published": want[p.name],
                           "exited": float(p.proc.poll() is not None),
                           "consumed": n, "lost": want[p.name] - n,
                           "drain_lag_s": lag, "kept_up": float(lag <= KEPT_UP_LAG_S),
                           "cpu_ms_per_1k": cpu * 1e6 / max(1.0, want[p.name]),
                           "rss_mb": rss_mb(p.proc.pid) if p.proc.poll() is None else 0.0,
                           "publisher_cpu_s": pub_cpu,
                           "seconds": seconds, "load1": os.getloadavg()[0]}
        return out


def scrape_cost(p: Proc, scrapes: int = 50) -> dict[str, float]:
    for _ in range(3):
        body = p.scrape()
    cpu0 = cpu_seconds(p.proc.pid)
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        body = p.scrape()
        times.append((time.perf_counter() - t0) * 1000)
    cpu = (cpu_seconds(p.proc.pid) - cpu0) * 1000 / scrapes
    return {"scrape_p50_ms": statistics.median(times), "scrape_cpu_ms": cpu,
            "series": float(sum(1 for line in body.splitlines()
                                if line and not line.startswith("#")))}


# --- setup -------------------------------------------------------------------------------------

def venvs(work: Path, src: str | None) -> dict[str, Path]:
    """celery-exporter from its source and Flower from PyPI, each in its own venv."""
    out = {"celery-exporter": work / "venv-celery-exporter", "flower": work / "venv-flower"}
    if not (out["celery-exporter"] / "bin" / "python").exists():
        if not src:
            raise SystemExit("celery-exporter is not installed yet: give --celery-exporter-src "
                             "DIR (a checkout of danihodovic/celery-exporter)")
        tree = Path(src)
        if not (tree / "pyproject.toml").exists():  # a git directory: take its HEAD
            tree = work / "celery-exporter-src"
            shutil.rmtree(tree, ignore_errors=True)
            tree.mkdir(parents=True)
            archive = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(out["celery-exporter"])], check=True)
        # kombu's Redis transport imports packaging without declaring it (kombu 5.7.0).
        subprocess.run([str(out["celery-exporter"] / "bin" / "pip"), "install", "-q",
                        str(tree), "packaging"], check=True)
    if not (out["flower"] / "bin" / "celery").exists():
        subprocess.run([sys.executable, "-m", "venv", str(out["flower"])], check=True)
        # Celery's redis extra (redis-py) for the Redis broker; Flower does not pull it in.
        subprocess.run([str(out["flower"] / "bin" / "pip"), "install", "-q", "flower",
                        "redis", "packaging"], check=True)
    return out


def versions(envs: dict[str, Path]) -> dict[str, str]:
    out = {}
    for name, pkg in (("celery-exporter", "prometheus-exporter-celery"), ("flower", "flower")):
        r = subprocess.run([str(envs[name] / "bin" / "python"), "-c",
                            f"import importlib.metadata as m; print(m.version('{pkg}'))"],
                           capture_output=True, text=True)
        out[name] = r.stdout.strip()
    return out


@contextlib.contextmanager
def redis_server(tmp: Path) -> Any:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port)).close()
                break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def show(phase: str, figures: dict[str, dict[str, float]]) -> None:
    for name, f in figures.items():
        print(f"{phase:>10} {name:>16}: offered {f['offered']:8.0f}/s lost {f['lost']:8.0f} "
              f"lag {f['drain_lag_s']:5.2f} s CPU {f['cpu_ms_per_1k']:7.1f} ms/1k events "
              f"RSS {f['rss_mb']:6.1f} MB (load {f['load1']:.1f})", flush=True)


def save(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    global _POOL
    _POOL = build_pool()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    envs = venvs(work, args.celery_exporter_src)
    tmp = Path(tempfile.mkdtemp(prefix="celery-anchors-", dir=work))
    doc: dict[str, Any] = {"versions": versions(envs), "together": {}, "alone": {},
                           "settings": {k: v for k, v in vars(args).items()
                                        if k != "celery_exporter_src"}}
    broker = "redis://127.0.0.1:{port}/0"
    with redis_server(tmp) as rport:
        url = broker.format(port=rport)
        stream = Stream(rport)
        # 1. together, the same stream at once
        procs = [start(n, url, tmp, envs) for n in args.exporters]
        try:
            wait_consuming(procs, rport)
            figures = stream.step(procs, args.together_rate,
                                  int(args.together_rate * args.together_seconds), args.drain)
            show("together", figures)
            doc["together"] = figures
        finally:
            for p in procs:
                p.stop()
        # 2. each alone: ceiling, memory after N events, scrape of that state
        for name in args.exporters:
            p = start(name, url, tmp, envs)
            try:
                wait_consuming([p], rport)
                steps = []
                best = 0.0
                for rate in args.rates:
                    f = stream.step([p], rate, int(rate * args.seconds), args.drain)[name]
                    show(f"{rate:.0f}/s", {name: f})
                    steps.append(f)
                    if f["lost"] > 0 or not f["kept_up"]:
                        break
                    best = f["offered"]
                restarted = p.proc.poll() is not None
                if restarted:  # it exited when it fell behind: start it again
                    print(f"{'':>10} {name:>16}: exited at {steps[-1]['offered']:,.0f}/s "
                          "(Redis dropped it); started again", flush=True)
                    p.stop()
                    p = start(name, url, tmp, envs)
                    wait_consuming([p], rport)
                # memory after --events (this process's): at half the lossless rate
                consumed = 0.0 if restarted else sum(s["consumed"] for s in steps)
                rate = max(args.rates[0], 0.5 * best)
                rss = rss_mb(p.proc.pid)
                while consumed < args.events and p.proc.poll() is None:
                    rss = rss_mb(p.proc.pid)
                    chunk = int(min(args.events - consumed, rate * 30))
                    f = stream.step([p], rate, chunk, args.drain)[name]
                    consumed += f["consumed"]
                    print(f"{'memory':>10} {name:>16}: {consumed:,.0f} events, RSS "
                          f"{f['rss_mb']:.1f} MB, lost {f['lost']:.0f}", flush=True)
                exited = p.proc.poll() is not None
                if exited:  # dropped by Redis in the memory run: its last RSS, no scrape
                    print(f"{'':>10} {name:>16}: exited in the memory run", flush=True)
                    p.stop()
                    p = start(name, url, tmp, envs)
                    wait_consuming([p], rport)
                    # the state the scrape is measured on: every task name and worker
                    stream.step([p], rate, TASK_NAMES * WORKERS * 20, args.drain)
                else:
                    rss = rss_mb(p.proc.pid)
                doc["alone"][name] = {"steps": steps, "lossless_events_per_s": best,
                                      "exited": any(x.get("exited") for x in steps),
                                      "exited_in_memory_run": exited,
                                      "events": consumed, "rss_mb": rss, **scrape_cost(p)}
                print(f"{'alone':>10} {name:>16}: lossless {best:,.0f}/s, RSS "
                      f"{doc['alone'][name]['rss_mb']:.1f} MB after {consumed:,.0f} events, "
                      f"scrape p50 {doc['alone'][name]['scrape_p50_ms']:.1f} ms", flush=True)
            finally:
                p.stop()
            save(args, {**doc, "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                time.gmtime()), "partial": True})
    shutil.rmtree(tmp, ignore_errors=True)
    return doc


def summary(doc: dict[str, Any]) -> str:
    lines = ["| exporter | highest lossless events/s | CPU ms per 1,000 events (together) | "
             "CPU ms per 1,000 events (alone, at the lossless rate) | RSS MB after events | "
             "scrape p50 ms | scrape CPU ms | series |", "|---|---|---|---|---|---|---|---|"]
    for name, a in doc["alone"].items():
        t = doc["together"].get(name, {})
        ok = [s for s in a["steps"] if s["lost"] <= 0 and s.get("kept_up", 1)]
        alone_cpu = ok[-1]["cpu_ms_per_1k"] if ok else float("nan")
        version = doc["versions"].get(name, "")
        label = f"{name} {version}".strip()
        lines.append(f"| {label} | {a['lossless_events_per_s']:,.0f} | "
                     f"{t.get('cpu_ms_per_1k', float('nan')):.1f} | {alone_cpu:.1f} | "
                     f"{a['rss_mb']:.1f} (after {a['events']:,.0f}) | {a['scrape_p50_ms']:.1f} | "
                     f"{a['scrape_cpu_ms']:.1f} | {a['series']:.0f} |")
    lost = {n: f["lost"] for n, f in doc["together"].items()}
    lines.append(f"\nTogether at {next(iter(doc['together'].values()))['offered']:,.0f} "
                 f"events/s, events lost: {lost}" if doc["together"] else "")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celery-exporter-src", default=os.environ.get("CELERY_EXPORTER_SRC"))
    parser.add_argument("--work", default=os.environ.get("BENCH_WORK",
                                                         "/tmp/stackmon-celery-anchors"))
    parser.add_argument("--exporters", default=",".join(EXPORTERS),
                        type=lambda s: [e for e in s.split(",") if e])
    parser.add_argument("--rates", default=DEFAULT_RATES,
                        type=lambda s: [float(r) for r in s.split(",")])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--together-rate", type=float, default=2000.0)
    parser.add_argument("--together-seconds", type=float, default=10.0)
    parser.add_argument("--json", default=str(RESULTS / "celery-anchors.json"))
    parser.add_argument("--summary", metavar="JSON", help="print the table of a saved run")
    args = parser.parse_args()
    if args.summary:
        print(summary(json.loads(Path(args.summary).read_text())))
        return
    started = time.monotonic()
    doc = run(args)
    doc.update({"seconds": time.monotonic() - started,
                "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0],
                            "python": platform.python_version()}})
    save(args, doc)
    print(summary(doc))
    print(f"\n{doc['seconds']:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
