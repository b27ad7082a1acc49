#!/usr/bin/env bash
# Host-only benchmark: stackmon (host collector) vs Debian's node_exporter, same run.
#   bash bench/host.sh            # writes bench/out/host-run{1,2,3}.{txt,json}, then the
#                                 # ratios (bench/ratios.py -> bench/results/ratios-host.json)
# Needs ../shared/bench/scrape_bench.py (SHARED_BENCH to override) and
# prometheus-node-exporter. Both exporters get the same filesystem/disk exclusions.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED_BENCH=${SHARED_BENCH:-../shared/bench}
[ -e "$SHARED_BENCH/scrape_bench.py" ] || SHARED_BENCH=../../shared/bench
OUT=bench/out; mkdir -p "$OUT"
N=${N:-300} C=${C:-8} K=${K:-50}
NODE_PORT=${NODE_PORT:-19100} STACKMON_PORT=${STACKMON_PORT:-19860}
PY=.venv/bin/python
read -r MP FT DD < <($PY -c 'from exporter.collectors.host.settings import *; print(FS_MOUNT_POINTS_EXCLUDE, FS_TYPES_EXCLUDE, DISK_DEVICES_EXCLUDE)')

prometheus-node-exporter --web.listen-address=127.0.0.1:$NODE_PORT \
  --collector.filesystem.mount-points-exclude="$MP" --collector.filesystem.fs-types-exclude="$FT" \
  --collector.diskstats.device-exclude="$DD" >/dev/null 2>&1 &
NODE_PID=$!
.venv/bin/stackmon --web.listen-address=127.0.0.1:$STACKMON_PORT >/dev/null 2>&1 &
STACKMON_PID=$!
trap 'kill $NODE_PID $STACKMON_PID 2>/dev/null || true' EXIT
for port in $NODE_PORT $STACKMON_PORT; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.1; done
done
A=node=http://127.0.0.1:$NODE_PORT/metrics
B=stackmon=http://127.0.0.1:$STACKMON_PORT/metrics
run() {
  local i=$1; shift
  $PY "$SHARED_BENCH/scrape_bench.py" -n "$N" -c "$C" -k "$K" \
    --pid node=$NODE_PID --pid stackmon=$STACKMON_PID \
    --json "$OUT/host-run$i.json" "$@" > "$OUT/host-run$i.txt" 2> "$OUT/host-run$i.log"
  echo "== run $i"; cat "$OUT/host-run$i.txt"
}
run 1 "$A" "$B"
run 2 "$B" "$A"
run 3 "$A" "$B"
$PY -m bench.ratios host "$OUT"/host-run{1,2,3}.json   # issue 22: CPU <= 0.45x, RSS <= 1.2x
