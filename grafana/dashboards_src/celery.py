"""The Celery dashboard (stackmon-celery): brokers, workers, queues and tasks."""

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
from grafana.lib.panels import GREEN, ORANGE, UP, above, st, tbl, ts, up
from grafana.lib.promql import RI, Q, increase, rate, rates

CW = "job, instance"
QN = '{queue_name=~"$queue_name"}'
TASK_LINK = ("Open this task", "/d/stackmon-tasks?var-job=${__field.labels.job}"
             "&var-instance=${__field.labels.instance}&var-task=${__field.labels.name}"
             "&${__url_time_range}")

CELERY = Dash(
    "celery", "stackmon / Celery", "Celery brokers, workers and tasks watched by stackmon.",
    "celery_broker_up", [
        ("Status", [
            up("Broker up", "celery_broker_up: 1 if the broker answered this scrape. "
               "CeleryBrokerDown fires (critical) when 0 for 2 m.",
               Q("celery_broker_up{}", "{{instance}}")),
            st("Workers online", "Workers up (celery_workers). CeleryNoWorkers fires "
               "(critical) at 0.", "short", Q("celery_workers{}", "{{instance}}"),
               steps=UP),
            up("Event receiver", "stackmon_celery_events_receiver_up: 1 while the event "
               "receiver consumes from the broker. CeleryEventsReceiverDown fires (warning) "
               "when 0 for 5 m.", Q("stackmon_celery_events_receiver_up{}", "{{instance}}"),
               down=ORANGE),
            st("Last inspect", "Time since the last successful inspect round (no value "
               "while inspect is off or has not succeeded yet). CeleryInspectStale fires "
               "(warning) above 10 m.", "s",
               Q("time() - (stackmon_celery_inspect_last_success_timestamp_seconds{} > 0)",
                 "{{instance}}"), steps=above(600)),
            st("Queued tasks", "Messages waiting in the selected queues.", "short",
               Q(f"sum by ({CW}) (celery_queue_length{QN})", "{{instance}}")),
            st("Failure ratio", "Failed / (failed + succeeded) tasks per task name, 0 when a "
               "task had no completions. CeleryTaskFailureRatioHigh fires (warning) above "
               "5 %.", "percentunit", Q(FAILURE_RATIO, "{{instance}} {{name}}"),
               steps=above(0.05), links=[TASK_LINK]),
        ]),
        ("Workers", [
            ts("Worker up", "celery_worker_up per worker. CeleryWorkerDown fires (warning) "
               "when 0 for 5 m.", "none",
               Q("celery_worker_up{}", "{{instance}} {{hostname}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            ts("Tasks per worker", "Tasks executing (active), prefetched (reserved) and held "
               "with an ETA (scheduled) per worker.", "short",
               Q("celery_worker_tasks_active{}", "{{instance}} {{hostname}} active"),
               Q("celery_worker_tasks_reserved{}", "{{instance}} {{hostname}} reserved"),
               Q("celery_worker_tasks_scheduled{}", "{{instance}} {{hostname}} scheduled"),
               w=8),
            ts("Queue length", "Messages waiting per queue. CeleryQueueBacklogGrowing fires "
               "(warning) above 100 while not draining.", "short",
               Q(f"celery_queue_length{QN}", "{{instance}} {{queue_name}}"),
               steps=above(100), w=8),
            ts("Consumers per queue", "Workers consuming each queue and their pool processes "
               "(celery_active_worker_count, celery_active_process_count; inspect data).",
               "short", Q(f"celery_active_worker_count{QN}", "{{instance}} {{queue_name}} workers"),
               Q(f"celery_active_process_count{QN}", "{{instance}} {{queue_name}} processes"),
               w=6),
            ts("Pool size", "Pool processes (or threads) per worker host "
               "(celery_worker_pool_max_concurrency, from inspect stats).", "short",
               Q("celery_worker_pool_max_concurrency{}", "{{instance}} {{hostname}}"), w=6),
            ts("Pool use", "Tasks executing / pool size per worker host: at 100 % new tasks "
               "wait in the queue.", "percentunit",
               Q("celery_worker_tasks_active{} / (celery_worker_pool_max_concurrency{} > 0)",
                 "{{instance}} {{hostname}}"), max=1, w=6),
            ts("Registered tasks", "Task types each worker host has registered (inspect "
               "registered).", "short",
               Q("celery_worker_tasks_registered{}", "{{instance}} {{hostname}}"), w=6),
        ]),
        ("Tasks", [
            ts("Task events", "Task events per second by state (sent, received, started, "
               "succeeded, failed, retried, revoked, rejected).", "ops",
               *task_states(CW, "{{instance}}")),
            ts("Failures by task", "Failed tasks per second by task name and exception "
               "class.", "ops",
               Q(rate("celery_task_failed_total", f"{TASK}, exception", TQ),
                 "{{instance}} {{name}} {{exception}}"), links=[TASK_LINK]),
            ts("Task runtime", "p50, p95 and p99 run time of succeeded tasks per task name "
               f"({RUNTIME}).", "s", *quantiles(RUNTIME, TASK, "{{instance}} {{name}}")),
            ts("Queue wait", "p50, p95 and p99 time from sent (or a later ETA) to started "
               "per task name "
               f"({QUEUE_WAIT}).", "s", *quantiles(QUEUE_WAIT, TASK, "{{instance}} {{name}}")),
            ts("Revoked and rejected", "Tasks revoked (cancelled) and rejected by workers "
               "per second.", "ops",
               *rates(CW, "{{instance}}", {"celery_task_revoked_total": "revoked",
                                           "celery_task_rejected_total": "rejected"}, TQ)),
            ts("Events consumed", "Celery events consumed per second and receiver restarts.",
               "ops",
               Q(rate("stackmon_celery_events_total", CW), "{{instance}} events"),
               Q(f"increase(stackmon_celery_events_receiver_restarts_total{{}}[{RI}])",
                 "{{instance}} restarts")),
        ]),
        ("Over the selected range", [
            tbl("Top failing tasks", "The 10 task names with the most failures in the "
                "selected range (increase of celery_task_failed_total); click a row for the "
                "task's dashboard.", "short", [("Failures", "short")],
                Q(f'topk(10, {increase("celery_task_failed_total", TASK, TQ)} > 0)'),
                links=[TASK_LINK], w=12),
            tbl("Slowest tasks", "The 10 task names with the longest mean run time in the "
                "selected range, with their p95 and number of runs "
                f"({RUNTIME}).", "s", [("Mean", "s"), ("p95", "s"), ("Runs", "short")],
                Q(f'topk(10, {increase(f"{RUNTIME}_sum", TASK, TQ)} / '
                  f'({increase(f"{RUNTIME}_count", TASK, TQ)} > 0))'),
                Q(f"histogram_quantile(0.95, "
                  f'{increase(f"{RUNTIME}_bucket", f"le, {TASK}", TQ)}) >= 0'),
                Q(f'{increase(f"{RUNTIME}_count", TASK, TQ)} > 0'),
                links=[TASK_LINK], w=12),
        ]),
    ], extra_vars=CELERY_VARS)
