"""Celery event receiver benchmark: sustained event rate without loss, and memory.

Starts a redis-server of its own (free loopback port, temp dir) and the real exporter
(``python -m exporter``, celery collector only) against it, then publishes Celery
events with Celery's own ``EventDispatcher`` from a separate process: for each task
``task-sent`` (client) then ``task-received``/``task-started``/``task-succeeded`` from
one of 20 workers, over 100 task names, plus one ``worker-heartbeat`` per worker per
second.  The exporter's ``stackmon_celery_events_total`` must reach exactly the number
published (no loss) and ``celery_task_succeeded_total`` must sum to the number of tasks.

    # sustained rate: one step per offered rate, each `--seconds` long
    .venv/bin/python bench/celery_events_bench.py rate --rates 2000,5000,8000,11000 --seconds 20
    # memory: RSS of the exporter every 100,000 events up to 1,000,000
    .venv/bin/python bench/celery_events_bench.py memory --events 1000000 --rate 6000 \
        --keep-running 60

    # in-process: cost of EventState.handle per event and of building/rendering a scrape
    .venv/bin/python bench/celery_events_bench.py state --events 1000000

``--keep-running N`` leaves the exporter up N seconds at the end (its URL is printed) so
that ``scrape_bench.py`` can measure scrapes of the state that is left (100 task names,
20 workers).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = 100
WORKERS = 20
EVENTS_PER_TASK = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise KeyError(name)
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def publish(broker: str, tasks: int, rate: float, start_id: int, out: mp.Queue) -> None:
    """Publish ``tasks`` task lifecycles at ``rate`` events/s (paced in batches)."""
    from celery import Celery

    app = Celery("bench", broker=broker, set_as_current=False)
    with app.connection_for_write() as conn:
        client = app.events.Dispatcher(conn, hostname="client@bench")
        workers = [app.events.Dispatcher(conn, hostname=f"worker{i}@bench")
                   for i in range(WORKERS)]
        sent = 0
        started = time.monotonic()
        next_beat = 0.0
        for n in range(tasks):
            i = start_id + n
            uuid = f"bench-{i}"
            name = f"bench.task{i % TASK_NAMES}"
            worker = workers[i % WORKERS]
            client.send("task-sent", uuid=uuid, name=name, queue="celery", args="()",
                        kwargs="{}", retries=0, eta=None, expires=None,
                        exchange="", routing_key="celery", root_id=uuid, parent_id=None)
            worker.send("task-received", uuid=uuid, name=name, args="()", kwargs="{}",
                        root_id=uuid, parent_id=None, retries=0, eta=None, expires=None)
            worker.send("task-started", uuid=uuid)
            worker.send("task-succeeded", uuid=uuid, result="None", runtime=0.001)
            sent += EVENTS_PER_TASK
            now = time.monotonic() - started
            if now >= next_beat:
                for w in workers:
                    w.send("worker-heartbeat", freq=2.0, active=0, processed=n,
                           sw_ver="5.7.0", sw_sys="Linux")
                sent += WORKERS
                next_beat += 1.0
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.005:
                time.sleep(ahead)
        elapsed = time.monotonic() - started
    out.put((sent, elapsed, time.process_time()))


def _envelope(event: dict[str, object], routing_key: str) -> bytes:
    """One event in kombu's Redis wire format (as EventDispatcher publishes it)."""
    body = base64.b64encode(json.dumps(event).encode()).decode()
    return json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"hostname": event["hostname"]},
        "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "celeryev",
                                                             "routing_key": routing_key},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(event["uuid"])},
    }).encode()


def publish_raw(broker: str, tasks: int, rate: float, start_id: int, out: mp.Queue) -> None:
    """Like ``publish`` but PUBLISHes pre-encoded events pipelined (EventDispatcher is
    the bottleneck above ~3,300 events/s in one process)."""
    import redis

    client = redis.Redis.from_url(broker)
    db = broker.rsplit("/", 1)[1]
    prefix = f"/{db}.celeryev/"
    pid = os.getpid()
    sent = 0
    clock = 0
    started = time.monotonic()
    next_beat = 0.0
    pipe = client.pipeline(transaction=False)

    def add(kind: str, hostname: str, **fields: object) -> None:
        nonlocal sent, clock
        clock += 1
        event = {"hostname": hostname, "utcoffset": 0.0, "pid": pid, "clock": clock,
                 "timestamp": time.time(), "type": kind, **fields}
        key = kind.replace("-", ".")
        pipe.publish(prefix + key, _envelope(event, key))
        sent += 1

    for n in range(tasks):
        i = start_id + n
        uuid = f"bench-{i}"
        name = f"bench.task{i % TASK_NAMES}"
        worker = f"worker{i % WORKERS}@bench"
        add("task-sent", "client@bench", uuid=uuid, name=name, queue="celery", args="()",
            kwargs="{}", retries=0, eta=None, expires=None, exchange="",
            routing_key="celery", root_id=uuid, parent_id=None)
        add("task-received", worker, uuid=uuid, name=name, args="()", kwargs="{}",
            root_id=uuid, parent_id=None, retries=0, eta=None, expires=None)
        add("task-started", worker, uuid=uuid)
        add("task-succeeded", worker, uuid=uuid, result="None", runtime=0.001)
        now = time.monotonic() - started
        if now >= next_beat:
            for w in range(WORKERS):
                add("worker-heartbeat", f"worker{w}@bench", uuid=f"hb-{w}", freq=2.0,
                    active=0, processed=n, sw_ver="5.7.0", sw_sys="Linux")
            next_beat += 1.0
        if n % 50 == 49:
            pipe.execute()
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.005:
                time.sleep(ahead)
    pipe.execute()
    out.put((sent, time.monotonic() - started, time.process_time()))


class Bench:
    """A private redis-server and the exporter on it; ``run`` publishes one step.
    Also used by ``bench.scale celery-events``; ``close`` stops both (also after a
    failed start)."""

    exporter: subprocess.Popen[bytes] | None = None

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="stackmon-celery-bench-")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
        env.update({
            "STACKMON_CELERY_BROKER_URL": self.broker,
            "STACKMON_CELERY_INSPECT_INTERVAL_SECONDS": "0",
            "STACKMON_CELERY_WORKER_HEARTBEAT_TIMEOUT_SECONDS": "3600",
            "STACKMON_CELERY_WORKER_PURGE_SECONDS": "7200",
        })
        self.log = open(Path(self.tmp) / "exporter.log", "wb")  # noqa: SIM115
        wait(lambda: socket.create_connection(("127.0.0.1", self.redis_port)), 15, "redis")
        self.exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{self.port}",
             "--no-collector.host"], env=env, cwd=REPO, stdout=self.log, stderr=self.log)
        wait(lambda: metric(scrape(self.url), "stackmon_celery_events_receiver_up") == 1,
             30, "event receiver")
        self.next_id = 0

    def totals(self) -> tuple[float, float, float]:
        text = scrape(self.url)
        try:
            succeeded = metric(text, "celery_task_succeeded_total")
        except KeyError:
            succeeded = 0.0
        return (metric(text, "stackmon_celery_events_total"), succeeded,
                metric(text, "stackmon_celery_events_receiver_restarts_total"))

    publisher = staticmethod(publish_raw)

    def redis_cpu(self) -> float:
        """redis-server's CPU seconds so far (INFO cpu)."""
        import redis

        with redis.Redis(port=self.redis_port) as client:
            info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def run(self, tasks: int, rate: float) -> dict[str, float]:
        """Publish ``tasks`` lifecycles at ``rate`` events/s and wait for the exporter to
        count them. The CPU figures are over the publishing window, in which nothing
        scrapes the exporter: its receiver's cost at that rate."""
        assert self.exporter is not None
        events0, succeeded0, restarts0 = self.totals()
        out: mp.Queue = mp.Queue()
        proc = mp.Process(target=self.publisher, args=(self.broker, tasks, rate, self.next_id, out))
        cpu0, redis0 = cpu_seconds(self.exporter.pid), self.redis_cpu()
        waited0 = runqueue_wait_seconds(self.exporter.pid)
        proc.start()
        sent, elapsed, publisher_cpu = out.get()
        cpu1, redis1 = cpu_seconds(self.exporter.pid), self.redis_cpu()
        waited1 = runqueue_wait_seconds(self.exporter.pid)
        proc.join()
        published_at = time.monotonic()
        in_window = self.totals()[0] - events0  # consumed by the end of the window
        self.next_id += tasks
        want = events0 + sent
        deadline = published_at + 60
        events = last = events0
        lag = 0.0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            events, succeeded, restarts = self.totals()
            if events > last:  # the drain lag: until the last event counted
                last, lag = events, time.monotonic() - published_at
            if events >= want:
                break
            if time.monotonic() - published_at - lag > 5:
                break  # nothing for 5 s: the rest is lost (the subscriber was dropped)
            # A scrape of this state costs the exporter ~25 ms of CPU under the GIL that
            # the receiver then lacks: scrape at most a quarter of the time while it drains.
            time.sleep(max(0.05, 3 * (time.monotonic() - t0)))
        events, succeeded, restarts = self.totals()
        return {"offered": sent / elapsed, "published": sent, "consumed": events - events0,
                "lost": want - events, "succeeded": succeeded - succeeded0, "tasks": tasks,
                "drain_lag_s": lag, "restarts": restarts, "seconds": elapsed,
                "restarts_step": restarts - restarts0, "exporter_cpu_s": cpu1 - cpu0,
                "consumed_in_window": in_window, "publisher_cpu_s": publisher_cpu,
                "redis_cpu_s": redis1 - redis0, "rss_mb": rss_mb(self.exporter.pid),
                "exporter_runqueue_wait_s": waited1 - waited0}

    def close(self, keep: float = 0) -> None:
        if keep and self.exporter is not None:
            print(f"exporter left running for {keep:.0f}s at {self.url} "
                  f"(pid {self.exporter.pid})", flush=True)
            time.sleep(keep)
        for proc in (self.exporter, getattr(self, "redis", None)):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def state_bench(events: int) -> None:
    """In-process: EventState.handle cost per event, and the scrape's two halves."""
    import dataclasses

    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    sys.path.insert(0, str(REPO))
    from exporter.collectors.celery.events import EventState
    from exporter.collectors.celery.settings import CelerySettings

    state = EventState(dataclasses.replace(CelerySettings(), broker_url="redis://x/0"))
    batch = []
    for i in range(events // EVENTS_PER_TASK):
        # One worker per host: hostname labels are hosts (celery-exporter), so 20 of them.
        uuid, name, worker = f"u{i}", f"bench.task{i % TASK_NAMES}", f"w@host{i % WORKERS}"
        batch += [
            {"type": "task-sent", "uuid": uuid, "name": name, "queue": "celery",
             "timestamp": 1.0, "hostname": "client@b"},
            {"type": "task-received", "uuid": uuid, "name": name, "hostname": worker,
             "timestamp": 1.0},
            {"type": "task-started", "uuid": uuid, "hostname": worker, "timestamp": 1.1},
            {"type": "task-succeeded", "uuid": uuid, "hostname": worker, "runtime": 0.01},
        ]
    start = time.perf_counter()
    for event in batch:
        state.handle(event)
    per_event = (time.perf_counter() - start) / len(batch) * 1e6
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        families = state.metrics()
    build = (time.perf_counter() - start) / rounds * 1000

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families

    registry = CollectorRegistry()
    registry.register(Fixed())  # type: ignore[arg-type]
    start = time.perf_counter()
    for _ in range(rounds):
        text = generate_latest(registry)
    render = (time.perf_counter() - start) / rounds * 1000
    samples = sum(len(f.samples) for f in families)
    print(f"EventState.handle: {per_event:.2f} us/event over {len(batch)} events")
    print(f"state.metrics(): {build:.1f} ms, generate_latest: {render:.1f} ms "
          f"({samples} samples, {len(text)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("rate", "memory", "state"))
    parser.add_argument("--rates", default="2000,5000,8000,11000")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=6000)
    parser.add_argument("--keep-running", type=float, default=0)
    parser.add_argument("--publisher", choices=("raw", "dispatcher"), default="raw",
                        help="raw: pipelined PUBLISH of Celery's wire format (default); "
                        "dispatcher: celery's EventDispatcher.send (slower)")
    args = parser.parse_args()
    if args.mode == "state":
        state_bench(args.events)
        return
    bench = Bench()
    if args.publisher == "dispatcher":
        bench.publisher = staticmethod(publish)  # type: ignore[assignment]
    try:
        print(f"exporter pid {bench.exporter.pid}, RSS at start {rss_mb(bench.exporter.pid):.1f} "
              "MB", flush=True)
        if args.mode == "rate":
            print("| offered events/s | published | consumed | lost | tasks | succeeded counted "
                  "| drain lag after last publish (s) | receiver restarts |")
            print("|---|---|---|---|---|---|---|---|")
            for rate in (float(r) for r in args.rates.split(",")):
                tasks = int(rate * args.seconds / EVENTS_PER_TASK)
                r = bench.run(tasks, rate)
                print(f"| {r['offered']:.0f} | {r['published']:.0f} | {r['consumed']:.0f} | "
                      f"{r['lost']:.0f} | {r['tasks']:.0f} | {r['succeeded']:.0f} | "
                      f"{r['drain_lag_s']:.2f} | {r['restarts']:.0f} |", flush=True)
        else:
            step = 100_000
            print("| events consumed | RSS MB |")
            print("|---|---|")
            done = 0
            while done < args.events:
                tasks = step // EVENTS_PER_TASK
                r = bench.run(tasks, args.rate)
                if r["lost"]:
                    print(f"LOSS: {r}")
                done += int(r["consumed"])
                print(f"| {done} | {rss_mb(bench.exporter.pid):.1f} |", flush=True)
            events, succeeded, restarts = bench.totals()
            print(f"total events {events:.0f}, succeeded {succeeded:.0f}, "
                  f"restarts {restarts:.0f}")
    finally:
        bench.close(args.keep_running)


if __name__ == "__main__":
    main()
