"""The inputs of the public Celery and Redis material, asked of a real Prometheus that
scrapes the full exporter: what the celery-mixin's dashboards and alerts
(danihodovic/celery-exporter, celery-mixin/) and the redis_exporter dashboard and
redis-mixin (oliver006/redis_exporter, contrib/) compute, written here in our own words
with the same metrics, labels and aggregations.  Each must return data (the mixins'
``job`` selectors are configurable and left out: here every series has job="stackmon")."""

from __future__ import annotations

import pytest

from tests.helpers.exporter import wait_for
from tests.helpers.prometheus import query, returns_data

TASK_STATES = ("sent", "received", "started", "succeeded", "failed", "retried", "revoked",
               "rejected")

QUERIES = {
    # celery-mixin: task overview and per-task dashboards.
    **{f"celery {state} by queue and task":
       f"sum by (queue_name, name) (increase(celery_task_{state}_total[30s]))"
       for state in TASK_STATES},
    "celery failures by task and exception":
        "sum by (name, exception) (increase(celery_task_failed_total[30s]))",
    "celery success ratio by task":
        "sum by (name) (increase(celery_task_succeeded_total[30s])) / ("
        "sum by (name) (increase(celery_task_succeeded_total[30s])) + "
        "sum by (name) (increase(celery_task_failed_total[30s])))",
    "celery runtime quantile by task":
        "histogram_quantile(0.95, sum by (name, job, le) "
        "(rate(celery_task_runtime_bucket[30s])))",
    "celery mean runtime by task":
        "sum by (name) (rate(celery_task_runtime_sum[1m])) / "
        "sum by (name) (rate(celery_task_runtime_count[1m]))",
    "celery workers online": "count(celery_worker_up == 1)",
    "celery active tasks": "sum(celery_worker_tasks_active)",
    "celery queue length by queue": "sum by (job, queue_name) (celery_queue_length)",
    "celery queues": "count(group by (queue_name) (celery_queue_length))",
    "celery task names of a queue": 'celery_task_received_total{queue_name!~"None"}',
    # celery-mixin alerts: failure ratio, queue length, worker down.
    "celery alert failure ratio":
        "100 * sum by (job, queue_name, name) (increase(celery_task_failed_total[1m])) / ("
        "sum by (job, queue_name, name) (increase(celery_task_failed_total[1m])) + "
        "sum by (job, queue_name, name) (increase(celery_task_succeeded_total[1m])))",
    "celery alert worker up by host": "celery_worker_up{hostname!=\"\"}",
    # celery-exporter's per-queue gauges.
    "celery workers per queue": "sum by (queue_name) (celery_active_worker_count)",
    "celery processes per queue": "sum by (queue_name) (celery_active_process_count)",
    # redis_exporter dashboard and redis-mixin.
    "redis up": "redis_up",
    "redis uptime": "max(redis_uptime_in_seconds)",
    "redis clients": "sum(redis_connected_clients) + sum(redis_blocked_clients)",
    "redis memory of max": "redis_memory_used_bytes / redis_memory_max_bytes",
    "redis rss": "redis_memory_used_rss_bytes",
    "redis commands per second": "sum by (cmd) (rate(redis_commands_total[30s]))",
    "redis command latency": "sum by (cmd) (rate(redis_commands_duration_seconds_total[30s]))"
                             " / sum by (cmd) (rate(redis_commands_total[30s]))",
    "redis hit ratio": "rate(redis_keyspace_hits_total[30s]) / (rate(redis_keyspace_hits_total"
                       "[30s]) + rate(redis_keyspace_misses_total[30s]))",
    "redis keys by db": "sum by (db) (redis_db_keys) - sum by (db) (redis_db_keys_expiring)",
    "redis expired and evicted": "rate(redis_expired_keys_total[30s]) + "
                                 "rate(redis_evicted_keys_total[30s])",
    "redis network": "rate(redis_net_input_bytes_total[30s]) + "
                     "rate(redis_net_output_bytes_total[30s])",
    "redis replicas": "redis_connected_slaves",
}


@pytest.mark.parametrize("what", sorted(QUERIES))
def test_public_query_returns_data(warm: str, what: str) -> None:
    promql = QUERIES[what]
    returns_data(warm, promql, what=f"{what}: {promql}")


def test_every_configured_redis_database_is_a_series(prometheus: str) -> None:
    """redis_exporter's panels list every database, empty ones at 0."""

    def dbs() -> set[str]:
        found = set()
        for row in query(prometheus, "redis_db_keys"):
            labels = row["metric"]
            assert isinstance(labels, dict)
            found.add(str(labels["db"]))
        return found

    wait_for(lambda: {f"db{i}" for i in range(16)} <= dbs(), timeout=60,
             what="a redis_db_keys series for each of the 16 databases")
