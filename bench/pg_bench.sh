#!/usr/bin/env bash
# bench/pg_bench.sh - stackmon's PostgreSQL collector vs Debian's prometheus-postgres-exporter,
# same database, same run, 3 runs with the target order rotated.
#   BENCH_WORK=/tmp/pg-bench-work bash bench/pg_bench.sh
# Needs ../shared/bench (BENCH=...), Debian's postgresql-15 and prometheus-postgres-exporter
# (run as root). Starts its own PostgreSQL 15 cluster on a free loopback port in $WORK
# (never the machine's server), loads the harness's bench data into it (pgbench scale 5 +
# 200 tables, as start_anchors.sh does), starts the two exporters on free ports (postgres_exporter
# exactly as start_anchors.sh runs it) and stops everything at the end.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH=${BENCH:-$HERE/../shared/bench}
WORK=${BENCH_WORK:-/tmp/stackmon-bench}
N=${N:-200} C=${C:-8} K=${K:-50}
PY="$HERE/.venv/bin/python"
mkdir -p "$WORK/results-pg"
source "$HERE/bench/lib.sh"
P1=$(free_port); P2=$(free_port); P3=$(free_port)

# --- a private PostgreSQL 15 with the bench data (bench/lib.sh) -----------------------
A= S= S0=
cleanup() {
  kill $A $S $S0 2>/dev/null || true; wait 2>/dev/null || true
  stop_bench_pg
}
trap cleanup EXIT
start_bench_pg "$WORK"

# --- the exporters ----------------------------------------------------------------------
PG_DSN="postgresql://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
DATA_SOURCE_NAME="${PG_DSN}&application_name=postgres_exporter" \
  runuser -u prometheus -- /usr/bin/prometheus-postgres-exporter \
  --web.listen-address=127.0.0.1:$P1 >"$WORK/results-pg/postgres_exporter.log" 2>&1 &
A=$!
STACKMON_POSTGRES_DSN="$PG_DSN" "$PY" -m exporter --no-collector.host \
  --web.listen-address=127.0.0.1:$P2 >"$WORK/results-pg/stackmon.log" 2>&1 &
S=$!
# The same with pg_database_size on every scrape (database_size_refresh_seconds=0).
STACKMON_POSTGRES_DSN="$PG_DSN" STACKMON_POSTGRES_DATABASE_SIZE_REFRESH_SECONDS=0 \
  "$PY" -m exporter --no-collector.host \
  --web.listen-address=127.0.0.1:$P3 >"$WORK/results-pg/stackmon_size0.log" 2>&1 &
S0=$!
for p in $P1 $P2 $P3; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$p/metrics" && break; sleep 0.1; done
done
T1=postgres_exporter=http://127.0.0.1:$P1/metrics
T2=stackmon=http://127.0.0.1:$P2/metrics
T3=stackmon_size0=http://127.0.0.1:$P3/metrics
DSN="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres sslmode=disable"
run() {
  local i=$1; shift
  "$PY" "$BENCH/scrape_bench.py" -n "$N" -c "$C" -k "$K" \
    --pg-dsn "$DSN" --json "$WORK/results-pg/run$i.json" "$@" \
    > "$WORK/results-pg/run$i.txt" 2> "$WORK/results-pg/run$i.log"
  echo "== run $i"; cat "$WORK/results-pg/run$i.txt"
}
run 1 "$T1" "$T2" "$T3"
run 2 "$T2" "$T3" "$T1"
run 3 "$T3" "$T1" "$T2"
"$PY" "$BENCH/scrape_bench.py" --markdown \
  --report "$WORK"/results-pg/run{1,2,3}.json > "$WORK/results-pg/report.md" 2>&1 || true
cat "$WORK/results-pg/report.md"
