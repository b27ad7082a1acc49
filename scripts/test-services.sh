#!/usr/bin/env bash
# Install the programs the tests run (Debian packages), when absent; safe to run again.
# The tests start their own PostgreSQL, Redis and RabbitMQ (and Prometheus, node_exporter,
# nginx) on free loopback ports in temp dirs: this script never starts, stops or
# reconfigures the machine's own services, nor writes to them.
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-node-exporter >/dev/null || need_apt+=(prometheus-node-exporter)
# The anchors the parity tests run beside stackmon (tests/integration/test_*_parity.py).
command -v prometheus-postgres-exporter >/dev/null || need_apt+=(prometheus-postgres-exporter)
command -v prometheus-redis-exporter >/dev/null || need_apt+=(prometheus-redis-exporter)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
# A second consumer beside Prometheus, scraping and receiving remote_write (tests/e2e/).
command -v victoria-metrics >/dev/null || need_apt+=(victoria-metrics)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
# The unit's static checks (tests/deploy/test_systemd.py) and the real-run tests of the
# documented deployments (tests/installed/): systemd as PID 1 in a debootstrap root under
# systemd-nspawn, and the image under a Docker engine the tests start themselves.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v dockerd >/dev/null || need_apt+=(docker.io)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "test-services: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Installing must not start (or restart) services either: policy-rc.d refuses, for
    # the duration of this install only (an existing one is kept and restored).
    policy=/usr/sbin/policy-rc.d
    saved=""
    if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    restore() { if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi; }
    trap restore EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    restore
    trap - EXIT
fi
# PostgreSQL refuses to run as root: the tests run their clusters as the postgres user
# (created by the package).
id postgres >/dev/null
echo "test-services: programs present; the tests start their own servers"
