"""A real Prometheus scrapes the real exporter: targets are up, the deadline header is
honoured, and host queries return data."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.exporter import REPO, wait_for
from tests.helpers.prometheus import query


@pytest.mark.parametrize("promql", [
    'up{job="stackmon"} == 1',
    'stackmon_scrape_collector_success{collector="host"} == 1',
    '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5s]))',
    'count by (instance) (node_cpu_seconds_total{mode="idle"})',
    'node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes',
    'node_filesystem_size_bytes - node_filesystem_free_bytes',
    'rate(node_network_receive_bytes_total[5s])',
    'rate(node_disk_io_time_seconds_total[5s])',
    'time() - node_boot_time_seconds',
    'scrape_duration_seconds{job="stackmon"} < 5',
    'pg_up == 1',
    'sum by (instance) (pg_stat_activity_count) / on (instance) pg_settings_max_connections',
    'sum by (datname) (rate(pg_stat_database_blks_hit[5s])) / sum by (datname) '
    '(rate(pg_stat_database_blks_hit[5s]) + rate(pg_stat_database_blks_read[5s]))',
    'rate(pg_stat_database_xact_commit[5s])',
    'pg_database_size_bytes',
    # postgres_mixin / awesome-prometheus-alerts inputs, under postgres_exporter's names
    'pg_exporter_last_scrape_error == 0',
    'max by (datname) (pg_stat_activity_max_tx_duration) >= 0',
    'sum by (instance) (pg_settings_max_connections) '
    '- sum by (instance) (pg_settings_superuser_reserved_connections)',
    'rate(pg_stat_bgwriter_checkpoints_timed_total[5s]) >= 0',
    'pg_locks_count / on (instance) group_left() '
    '(pg_settings_max_locks_per_transaction * pg_settings_max_connections)',
    'redis_up == 1',
    'redis_memory_used_bytes',
    'rate(redis_commands_processed_total[5s])',
    'redis_keyspace_hits_total / (redis_keyspace_hits_total + redis_keyspace_misses_total)',
    'stackmon_service_up{service="postgres"} == 1',
    'stackmon_service_up{service="redis"} == 1',
    'stackmon_service_up{service="postgres-port"} == 1',
    'celery_broker_up == 1',
    'stackmon_celery_events_receiver_up == 1',
    'sum(celery_queue_length)',
])
def test_query_returns_data(prometheus: str, promql: str) -> None:
    wait_for(lambda: query(prometheus, promql), timeout=30, what=promql)


def test_shipped_prometheus_config_is_valid() -> None:
    proc = subprocess.run(["promtool", "check", "config", "--syntax-only",
                           str(REPO / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


