"""The Celery tasks dashboard (stackmon-tasks): one Celery task (or several) in detail."""

from __future__ import annotations

from grafana.dashboards_src.shared import (
    CELERY_VARS,
    FAILURE_RATIO,
    QUEUE_WAIT,
    RUNTIME,
    TASK,
    TQ,
    quantiles,
    task_states,
)
from grafana.lib.dashboard import Dash
from grafana.lib.panels import above, st, tbl, ts
from grafana.lib.promql import Q, increase, rate, rates

TASKS = Dash(
    "tasks", "stackmon / Celery tasks",
    "One Celery task (or several): rate, failures by exception, run time and queue wait.",
    "celery_broker_up", [
        ("Task", [
            st("Failure ratio", "Failed / (failed + succeeded) of the selected tasks, 0 when "
               "a task had no completions. CeleryTaskFailureRatioHigh fires (warning) above "
               "5 %.", "percentunit", Q(FAILURE_RATIO, "{{instance}} {{name}}"),
               steps=above(0.05), w=8),
            st("Succeeded in range", "Completions of the selected tasks in the selected "
               "range.", "short",
               Q(increase("celery_task_succeeded_total", TASK, TQ), "{{instance}} {{name}}"),
               w=8),
            st("Failed in range", "Failures of the selected tasks in the selected range.",
               "short",
               Q(increase("celery_task_failed_total", TASK, TQ), "{{instance}} {{name}}"),
               w=8),
            ts("Rate by state", "Task events per second of the selected tasks by state.",
               "ops", *task_states(TASK, "{{instance}} {{name}}")),
            ts("Failures by exception", "Failures per second of the selected tasks by "
               "exception class.", "ops",
               Q(rate("celery_task_failed_total", f"{TASK}, exception", TQ),
                 "{{instance}} {{name}} {{exception}}")),
            ts("Retries, revocations and rejections", "Retries, revocations and rejections "
               "per second of the selected tasks.", "ops",
               *rates(TASK, "{{instance}} {{name}}", {
                   "celery_task_retried_total": "retried",
                   "celery_task_revoked_total": "revoked",
                   "celery_task_rejected_total": "rejected"}, TQ)),
            tbl("Failures by exception in range", "Failures of the selected tasks per "
                "exception class in the selected range.", "short", [("Failures", "short")],
                Q(f'{increase("celery_task_failed_total", f"{TASK}, exception", TQ)} > 0'),
                w=12),
            ts("Runtime", f"p50, p95 and p99 run time of succeeded tasks ({RUNTIME}).", "s",
               *quantiles(RUNTIME, TASK, "{{instance}} {{name}}")),
            ts("Queue wait", "p50, p95 and p99 time from sent (or a later ETA) to started "
               f"({QUEUE_WAIT}).",
               "s", *quantiles(QUEUE_WAIT, TASK, "{{instance}} {{name}}")),
        ]),
    ], extra_vars=CELERY_VARS)
