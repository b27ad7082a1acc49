#!/usr/bin/env bash
# Benchmark the redis collector against Debian's prometheus-redis-exporter, on a private
# redis-server (never the shared one on 6379), with 10 keys and then 1,000,000 keys.
#
#   BENCH_WORK=/tmp/redis-bench bash bench/redis_bench.sh [scrape_bench.py args]
#
# Writes $BENCH_WORK/redis-{10,1000000}keys.json and .md; the numbers go into
# bench/RESULTS.md by hand.  Everything started here is stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_WORK:-/tmp/stackmon-redis-bench}
HARNESS=${BENCH_HARNESS:-../shared/bench/scrape_bench.py}
mkdir -p "$WORK"
free_port() { .venv/bin/python -c 'from tests.helpers.exporter import free_port; print(free_port())'; }
RPORT=$(free_port); SPORT=$(free_port); XPORT=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK/redis" --enable-debug-command local >"$WORK/redis/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

STACKMON_REDIS_URL="redis://127.0.0.1:$RPORT" .venv/bin/python -m exporter \
    --no-collector.host --web.listen-address="127.0.0.1:$SPORT" >"$WORK/stackmon.log" 2>&1 &
pids+=($!)
/usr/bin/prometheus-redis-exporter -web.listen-address="127.0.0.1:$XPORT" \
    -redis.addr="redis://127.0.0.1:$RPORT" >"$WORK/redis_exporter.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$SPORT/metrics"
wait_http "http://127.0.0.1:$XPORT/metrics"

for keys in 10 1000000; do
    redis-cli -p "$RPORT" flushall >/dev/null
    redis-cli -p "$RPORT" debug populate "$keys" bench: 16 >/dev/null
    echo "== $keys keys: $(redis-cli -p "$RPORT" dbsize)"
    python3 "$HARNESS" --redis-url "redis://127.0.0.1:$RPORT" \
        --json "$WORK/redis-${keys}keys.json" "$@" \
        stackmon="http://127.0.0.1:$SPORT/metrics" \
        redis_exporter="http://127.0.0.1:$XPORT/metrics" | tee "$WORK/redis-${keys}keys.txt"
done
redis-cli -p "$RPORT" flushall >/dev/null
