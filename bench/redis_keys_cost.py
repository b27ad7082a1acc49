"""Does the Redis collector's cost grow with the number of keys?  (benchmark, not a test)

Starts a private redis-server on a free port (never the shared one), then alternates
between 10 keys and 1,000,000 keys (DEBUG POPULATE), timing ``RedisCollector.collect``
in-process (no HTTP) and reading Redis's own per-command cost from INFO commandstats.

    .venv/bin/python -m bench.redis_keys_cost [--scrapes 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time

import redis

from exporter.collectors.redis.collector import Endpoint, RedisCollector
from tests.helpers.exporter import free_port, wait_for


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p / 100))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="redis-keys-cost-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", tmp,
                             "--enable-debug-command", "local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = redis.Redis(port=port)
        wait_for(admin.ping, what="redis-server")
        collector = RedisCollector(Endpoint(f"redis://127.0.0.1:{port}", None, None, None, 5))
        print("| keys | round | collect p50 ms | collect p99 ms | Redis usec/scrape "
              "(INFO + SLOWLOG LEN) | commands/scrape | connections opened |")
        print("|---|---|---|---|---|---|---|")
        for rnd in range(1, args.rounds + 1):
            for keys in (10, 1_000_000):
                admin.flushall()
                admin.execute_command("DEBUG", "POPULATE", keys, "bench:", 16)
                assert admin.dbsize() == keys
                for _ in range(20):  # warm up (and open the one connection)
                    collector.collect(time.monotonic() + 5)
                admin.config_resetstat()
                conns = int(admin.info("stats")["total_connections_received"])
                times = []
                for _ in range(args.scrapes):
                    t0 = time.perf_counter()
                    collector.collect(time.monotonic() + 5)
                    times.append((time.perf_counter() - t0) * 1000)
                stats = admin.info("commandstats")
                ours = {k: v for k, v in stats.items() if k in ("cmdstat_info",
                                                                 "cmdstat_slowlog|len")}
                calls = sum(v["calls"] for v in ours.values()) - 1  # minus our INFO stats
                usec = sum(v["usec"] for v in ours.values())
                opened = int(admin.info("stats")["total_connections_received"]) - conns
                print(f"| {keys:,} | {rnd} | {statistics.median(times):.3f} | "
                      f"{pct(times, 99):.3f} | {usec / args.scrapes:.1f} | "
                      f"{calls / args.scrapes:.2f} | {opened} |")
        admin.flushall()
        collector.close()
        admin.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
