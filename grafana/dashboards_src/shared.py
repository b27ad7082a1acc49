"""Expressions and variables more than one dashboard shows: PostgreSQL connections used
(Overview, Database), Redis memory used (Overview, Cache), and the Celery task selector,
variables, quantiles and failure ratio (Celery, Celery tasks)."""

from __future__ import annotations

from grafana.lib.dashboard import Var
from grafana.lib.promql import Q, failure_ratio, quantile, rate, rates

PG_CONNECTIONS = ("sum by (job, instance) (pg_stat_activity_count{}) "
                  "/ on (job, instance) pg_settings_max_connections{}")
# Of maxmemory when one is set, else of the host's memory (Redis's default maxmemory 0):
# never "No data" for a running server.
REDIS_MEMORY = ("redis_memory_used_bytes{} / (redis_memory_max_bytes{} > 0) "
                "or redis_memory_used_bytes{} / redis_total_system_memory_bytes{}")

TASK = "job, instance, name"
TQ = '{name=~"$task", queue_name=~"$queue_name"}'
RUNTIME = "celery_task_runtime"
QUEUE_WAIT = "celery_task_queue_wait_time"
CELERY_VARS = [
    Var("queue_name", "queue_name",
        'celery_queue_length{job=~"$job", instance=~"$instance"}'),
    Var("task", "name", 'celery_task_received_total{job=~"$job", instance=~"$instance"}'),
]


def task_states(by: str, legend: str, selector: str = TQ) -> list[Q]:
    """Task events per second by state (celery_task_<state>_total), summed by ``by``."""
    return rates(by, legend, {f"celery_task_{state}_total": state for state in (
        "sent", "received", "started", "succeeded", "failed", "retried", "revoked",
        "rejected")}, selector)


def quantiles(histogram: str, by: str, legend: str) -> list[Q]:
    """p50, p95 and p99 of a task histogram of the selected tasks, summed by ``by``."""
    return [Q(quantile(q, f"{histogram}_bucket", by, TQ), f"{legend} p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


FAILURE_RATIO = failure_ratio(rate("celery_task_failed_total", TASK, TQ),
                              rate("celery_task_succeeded_total", TASK, TQ))
