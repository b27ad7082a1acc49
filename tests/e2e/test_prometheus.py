"""A real Prometheus scrapes the real exporter: targets are up, the deadline header is
honoured, and host queries return data."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.helpers.exporter import REPO, Exporter, free_port, http_get, wait_for

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="module")
def prometheus(full_exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed; run scripts/test-services.sh")
    d = tmp_path_factory.mktemp("prometheus")
    config = d / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: stackmon\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{full_exporter.port}']\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={d / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(d / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, timeout=30, what="prometheus")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def query(url: str, promql: str) -> list[dict[str, object]]:
    status, _, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


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
    'scrape_duration_seconds{job="stackmon"} < 1',
    'pg_up == 1',
    'sum by (instance) (pg_stat_activity_count) / on (instance) pg_settings_max_connections',
    'sum by (datname) (rate(pg_stat_database_blks_hit_total[5s])) / sum by (datname) '
    '(rate(pg_stat_database_blks_hit_total[5s]) + rate(pg_stat_database_blks_read_total[5s]))',
    'rate(pg_stat_database_xact_commit_total[5s])',
    'pg_database_size_bytes',
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


