#!/usr/bin/env bash
# Start whatever the tests need that is not already running; safe to run again.
# PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379, RabbitMQ 127.0.0.1:5672, plus the
# binaries tests start themselves (promtool/prometheus, node_exporter, nginx).
set -euo pipefail

need_apt=()
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need_apt+=(prometheus-node-exporter)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "test-services: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 120); do port_open "$1" && return 0; sleep 0.5; done
    echo "test-services: $2 did not come up on port $1" >&2; return 1
}

if ! port_open 5432; then
    echo "test-services: starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    wait_port 5432 PostgreSQL
fi
# Tests connect as postgres over loopback without a password (trust), as on CI machines.
# A fresh Debian cluster asks for a password there: allow loopback only, once.
if ! psql "host=127.0.0.1 user=postgres dbname=postgres connect_timeout=5" -Atc 'select 1' \
        >/dev/null 2>&1 </dev/null; then
    hba=$(runuser -u postgres -- psql -Atc 'show hba_file' 2>/dev/null || true)
    if [ -n "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust # stackmon tests' "$hba"; then
        echo "test-services: allowing passwordless loopback connections for the tests"
        sed -i '1i host all all 127.0.0.1/32 trust # stackmon tests\nhost all all ::1/128 trust # stackmon tests' "$hba"
        runuser -u postgres -- psql -Atc 'select pg_reload_conf()' >/dev/null
    fi
fi
if ! port_open 6379; then
    echo "test-services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
fi
if ! port_open 5672; then
    echo "test-services: starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ
fi
# The node_exporter and nginx packages may start system instances on 9100 / 80;
# tests start their own on free ports, so nothing else is needed here.
echo "test-services: PostgreSQL, Redis and RabbitMQ are up"
