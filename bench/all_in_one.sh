#!/usr/bin/env bash
# bench/all_in_one.sh - one stackmon with host + PostgreSQL + Redis against the three Go
# exporters it replaces (Debian's prometheus-node-exporter, -postgres-exporter and
# -redis-exporter), same backends, same run, 3 runs with the target order rotated.
#   BENCH_WORK=/tmp/allinone-bench bash bench/all_in_one.sh
# Starts its own PostgreSQL 15 (bench data as pg_bench.sh) and redis-server (REDIS_KEYS keys
# via DEBUG POPULATE, as redis_bench.sh) on free loopback ports (bench/lib.sh), never the
# machine's 5432/6379, and stops everything at the end. Prints per run the anchors' summed
# CPU ms/scrape, RSS and seq p50, stackmon's, and the ratios (bench/ratios.py; issue 22:
# CPU <= 0.5x, RSS <= 0.9x), and writes bench/results/ratios-allinone.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The harness's scrape_bench.py: shared/ beside the checkout (or beside a worktree's parent).
BENCH=${BENCH:-$HERE/../shared/bench}
[ -e "$BENCH/scrape_bench.py" ] || BENCH=$HERE/../../shared/bench
WORK=${BENCH_WORK:-/tmp/stackmon-allinone}
N=${N:-200} C=${C:-8} K=${K:-50} REDIS_KEYS=${REDIS_KEYS:-100000}
PY="$HERE/.venv/bin/python"
OUT="$WORK/results"; mkdir -p "$OUT"
source "$HERE/bench/lib.sh"

PIDS=() REDIS_PID=
cleanup() {
  kill "${PIDS[@]}" $REDIS_PID 2>/dev/null || true; wait 2>/dev/null || true
  stop_bench_pg
}
trap cleanup EXIT
start_bench_pg "$WORK"
start_bench_redis "$WORK" "$REDIS_KEYS"

# --- the exporters: the three anchors as host.sh / pg_bench.sh / redis_bench.sh run them --
PN=$(free_port) PP=$(free_port) PR=$(free_port) PS=$(free_port)
PG_DSN="postgresql://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
REDIS_URL="redis://127.0.0.1:$RPORT"
read -r MP FT DD < <("$PY" -c 'from exporter.collectors.host.settings import *; print(FS_MOUNT_POINTS_EXCLUDE, FS_TYPES_EXCLUDE, DISK_DEVICES_EXCLUDE)')
prometheus-node-exporter --web.listen-address=127.0.0.1:$PN \
  --collector.filesystem.mount-points-exclude="$MP" --collector.filesystem.fs-types-exclude="$FT" \
  --collector.diskstats.device-exclude="$DD" >"$OUT/node_exporter.log" 2>&1 &
PIDS+=($!)
DATA_SOURCE_NAME="${PG_DSN}&application_name=postgres_exporter" \
  runuser -u prometheus -- /usr/bin/prometheus-postgres-exporter \
  --web.listen-address=127.0.0.1:$PP >"$OUT/postgres_exporter.log" 2>&1 &
PIDS+=($!)
/usr/bin/prometheus-redis-exporter -web.listen-address="127.0.0.1:$PR" \
  -redis.addr="$REDIS_URL" >"$OUT/redis_exporter.log" 2>&1 &
PIDS+=($!)
# ONE stackmon: host collector (on by default) + postgres + redis.
STACKMON_POSTGRES_DSN="$PG_DSN" STACKMON_REDIS_URL="$REDIS_URL" \
  "$PY" -m exporter --web.listen-address=127.0.0.1:$PS >"$OUT/stackmon.log" 2>&1 &
PIDS+=($!)
for p in $PN $PP $PR $PS; do wait_http "http://127.0.0.1:$p/metrics"; done

TN=node=http://127.0.0.1:$PN/metrics
TP=postgres_exporter=http://127.0.0.1:$PP/metrics
TR=redis_exporter=http://127.0.0.1:$PR/metrics
TS=stackmon=http://127.0.0.1:$PS/metrics
DSN="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres sslmode=disable"
run() {
  local i=$1; shift
  "$PY" "$BENCH/scrape_bench.py" -n "$N" -c "$C" -k "$K" --pg-dsn "$DSN" --redis-url "$REDIS_URL" \
    --json "$OUT/run$i.json" "$@" > "$OUT/run$i.txt" 2> "$OUT/run$i.log"
  echo "== run $i (load $(cut -d' ' -f1 /proc/loadavg))"; cat "$OUT/run$i.txt"
}
run 1 "$TN" "$TP" "$TR" "$TS"
run 2 "$TS" "$TN" "$TP" "$TR"
run 3 "$TR" "$TS" "$TN" "$TP"

# --- stackmon vs the sum of the three anchors, per run and median (CPU, RSS, p50) ---------
cd "$HERE" && "$PY" -m bench.ratios allinone "$OUT"/run{1,2,3}.json
