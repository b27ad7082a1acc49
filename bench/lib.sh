# bench/lib.sh - shared setup for the bench scripts (sourced, not run).
# Private backends on free loopback ports, never the machine's 5432/6379:
#   free_port                    -> a free 127.0.0.1 TCP port
#   start_bench_pg DIR           -> PostgreSQL 15 in DIR/pgdata with the harness's bench data
#                                   (pgbench scale 5 + 200 tables, as start_anchors.sh);
#                                   sets PGPORT, PGDATA; stop with stop_bench_pg
#   start_bench_redis DIR KEYS   -> redis-server in DIR/redis, KEYS keys via DEBUG POPULATE
#                                   (as redis_bench.sh); sets RPORT, REDIS_PID
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
as_pg() { runuser -u postgres -- "$@"; }

start_bench_pg() {
  local work=$1
  PGPORT=$(free_port); PGDATA="$work/pgdata"
  rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA" "$work"
  as_pg "$PGBIN/initdb" -D "$PGDATA" --auth=trust -U postgres >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/postgres.log" -w start \
    -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=50" >/dev/null
  local psql=(as_pg "$PGBIN/psql" -qX -h 127.0.0.1 -p "$PGPORT" -U postgres)
  "${psql[@]}" -c 'CREATE DATABASE bench'
  as_pg "$PGBIN/pgbench" -i -s 5 -q -h 127.0.0.1 -p "$PGPORT" -U postgres bench 2>/dev/null
  "${psql[@]}" -d bench <<'SQL'
DO $$
DECLARE i int;
BEGIN
  FOR i IN 1..200 LOOP
    EXECUTE format('CREATE TABLE public.t%s (id serial PRIMARY KEY, k int NOT NULL, v text, created timestamptz DEFAULT now())', lpad(i::text,3,'0'));
    EXECUTE format('CREATE INDEX t%s_k_idx ON public.t%s (k)', lpad(i::text,3,'0'), lpad(i::text,3,'0'));
    EXECUTE format('INSERT INTO public.t%s (k, v) SELECT g %% 97, md5(g::text) FROM generate_series(1, %s) g', lpad(i::text,3,'0'), 200 + (i*37 % 800));
  END LOOP;
END $$;
VACUUM ANALYZE;
SQL
  as_pg "$PGBIN/pgbench" -c 2 -j 1 -T 10 -n -h 127.0.0.1 -p "$PGPORT" -U postgres bench >/dev/null
}

stop_bench_pg() {
  [ -n "${PGDATA:-}" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
}

start_bench_redis() {
  local work=$1 keys=$2
  RPORT=$(free_port); mkdir -p "$work/redis"
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$work/redis" --enable-debug-command local >"$work/redis/log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$RPORT" debug populate "$keys" bench: 16 >/dev/null
}

# Poll URL until it answers (up to 10 s).
wait_http() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
