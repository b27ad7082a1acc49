"""The Celery collector's diagnostics: do the workers answer, do events arrive, do the
workers send task events and the producers task-sent events, may stackmon's RabbitMQ
user do what it needs.

Evidence comes from the collector's event state (what the stream showed since the
receiver started: each worker's task events against the tasks its heartbeats say it
processed) and one ``inspect conf`` broadcast (read-only: each worker's non-default
settings, of which only ``worker_send_task_events`` and ``task_send_sent_event`` are
kept).  Nothing is sent to the workers that changes them: never ``enable_events``.

``stackmon check`` starts the collector, so the stream is watched for ``WINDOW_SECONDS``
first (a live worker sends a heartbeat every 2 s).  A check with no evidence either way
(no task ran while watching, and the workers' configuration does not say) is
``unknown``: a worker started with ``-E`` has the setting off in its configuration.

Sample findings (``stackmon check``)::

    celery  inspect      ok       1 worker(s) answered: celery@web-1
    celery  task_events  missing  celery@web-1 processed 4 task(s) ... worker_send_task_events = ...
"""

from __future__ import annotations

import shlex
import time
import urllib.parse
from typing import Any

from exporter import logs
from exporter.checks import Check, Finding, Status
from exporter.collectors.celery.collector import CeleryCollector
from exporter.collectors.celery.events import Evidence

# Watch the stream this long before deciding (Celery workers send a heartbeat every 2 s,
# so every live worker is seen at least twice).
WINDOW_SECONDS = 5.0
POLL_SECONDS = 0.1
# docs/security.md, "Least privilege": what stackmon's RabbitMQ user needs on the vhost
# (configure, write, read); tests/unit/test_checks.py keeps the two equal.
RABBITMQ_PERMISSIONS = (
    r"^(celeryev|celery\.pidbox|reply\.celery\.pidbox|celeryev\..+|.+\.reply\.celery\.pidbox)$",
    r"^(celery\.pidbox|celeryev\..+|.+\.reply\.celery\.pidbox)$",
    r"^(celeryev|reply\.celery\.pidbox|celeryev\..+|.+\.reply\.celery\.pidbox)$",
)
TASK_FAMILIES = ("celery_task_received_total", "celery_task_started_total",
                 "celery_task_succeeded_total", "celery_task_failed_total",
                 "celery_task_retried_total", "celery_task_revoked_total",
                 "celery_task_rejected_total", "celery_task_runtime",
                 "celery_task_queue_wait_time")
TASK_PANELS = ("Celery / Failure ratio", "Celery / Task events", "Celery / Failures by task",
               "Celery / Task runtime", "Celery / Queue wait", "Celery / Revoked and rejected",
               "Celery / Top failing tasks", "Celery / Slowest tasks",
               "Celery tasks / Failure ratio", "Celery tasks / Succeeded in range",
               "Celery tasks / Failed in range", "Celery tasks / Rate by state",
               "Celery tasks / Failures by exception",
               "Celery tasks / Retries, revocations and rejections",
               "Celery tasks / Failures by exception in range", "Celery tasks / Runtime",
               "Celery tasks / Queue wait")
INSPECT_FAMILIES = ("celery_worker_tasks_reserved", "celery_worker_tasks_scheduled",
                    "celery_worker_tasks_registered", "celery_worker_pool_max_concurrency",
                    "celery_worker_pool_info", "celery_active_worker_count",
                    "celery_active_process_count",
                    "stackmon_celery_inspect_last_success_timestamp_seconds")
EVENT_FAMILIES = ("celery_worker_up", "celery_workers", "celery_worker_tasks_active",
                  "celery_worker_tasks_processed_total", *TASK_FAMILIES,
                  "celery_task_sent_total")

INSPECT = Check(
    "celery", "inspect", "the workers answer inspect broadcasts",
    families=INSPECT_FAMILIES,
    panels=("Celery / Last inspect", "Celery / Tasks per worker", "Celery / Consumers per queue",
            "Celery / Pool size", "Celery / Pool use", "Celery / Registered tasks",
            "Overview / Celery pool"),
    fixes={"no_worker": "# start a worker on this broker, or set celery.broker_url to the "
                        "workers' broker_url (same host, vhost or Redis database number)",
           "no_control": "worker_enable_remote_control = True  # the workers' Celery "
                         "configuration (the default); restart them",
           "refused": "# the broker refused the broadcast: see the rabbitmq_permissions "
                      "check",
           "error": "# the broadcast failed ({error}): see docs/celery.md, Troubleshooting"})
EVENTS = Check(
    "celery", "events", "events reach the celeryev exchange stackmon listens to",
    families=EVENT_FAMILIES,
    panels=("Celery / Workers online", "Celery / Worker up", "Celery / Tasks per worker",
            "Celery / Pool use", "Overview / Celery pool", *TASK_PANELS),
    fixes={"silent": "# start the workers without --without-heartbeat (heartbeats are "
                     "events) and with -E (worker_send_task_events = True)",
           "elsewhere": "# set celery.broker_url to the workers' broker_url (same host, "
                        "vhost or Redis database number), and start a worker",
           "receiver": "# the event receiver cannot consume ({error}): see "
                       "docs/celery.md, Troubleshooting"})
TASK_EVENTS = Check(
    "celery", "task_events", "the workers send task events (worker_send_task_events, -E)",
    families=TASK_FAMILIES, panels=TASK_PANELS,
    fixes={"": "worker_send_task_events = True  # the workers' Celery configuration (or "
               "start them with -E), then restart them; or set "
               "celery.enable_events_at_start: true and stackmon switches them on"})
TASK_SENT = Check(
    "celery", "task_sent_events", "the producers send task-sent events (task_send_sent_event)",
    families=("celery_task_sent_total", "celery_task_queue_wait_time"),
    panels=("Celery / Task events", "Celery / Queue wait", "Celery tasks / Rate by state",
            "Celery tasks / Queue wait"),
    fixes={"": "task_send_sent_event = True  # the Celery configuration of every producer "
               "(the application calling .delay() / apply_async, and beat); without it "
               "queue_name is \"unknown\""})
RABBITMQ_PERMISSIONS_CHECK = Check(
    "celery", "rabbitmq_permissions",
    "stackmon's RabbitMQ user may use celeryev and celery.pidbox (events, inspect)",
    families=(*INSPECT_FAMILIES, *EVENT_FAMILIES),
    panels=tuple(dict.fromkeys((*INSPECT.panels, *EVENTS.panels))),
    fixes={"": "rabbitmqctl set_permissions -p {vhost} {user} {configure} {write} {read}"})

CHECKS = (INSPECT, EVENTS, TASK_EVENTS, TASK_SENT, RABBITMQ_PERMISSIONS_CHECK)
# The two settings kept from the workers' `inspect conf` replies (nothing else is read).
CONF_KEYS = ("worker_send_task_events", "task_send_sent_event")


def diagnose(collector: CeleryCollector, deadline: float) -> list[Finding]:
    settings = collector.settings
    inspecting = settings.inspect_interval_seconds > 0  # 0: no broadcast at all, as asked
    conf, conf_error = _conf(collector, min(deadline, time.monotonic()
                                            + settings.inspect_timeout_seconds + 2)) \
        if inspecting else ({}, None)
    _watch(collector, deadline)
    receiver = collector.receiver
    evidence = collector.state.evidence()
    since = receiver.consuming_since
    watched = time.monotonic() - since if since is not None else 0.0
    out = [_inspect(conf, conf_error, evidence) if inspecting else INSPECT.finding(
               Status.UNKNOWN, "not asked: celery.inspect_interval_seconds is 0"),
           _events(receiver.up, watched, receiver.last_error, receiver.last_cause, evidence,
                   conf),
           _task_events(evidence, conf, watched),
           _task_sent(evidence, conf, watched)]
    if not collector.queues.is_redis:
        out.append(_rabbitmq(settings.broker_url or "", conf_error, receiver.last_cause,
                             receiver.up))
    return out


def _conf(collector: CeleryCollector, deadline: float
          ) -> tuple[dict[str, dict[str, Any]], BaseException | None]:
    """Each answering worker's two settings (None: not set, the default False)."""
    app, settings = collector.app, collector.settings
    expected = len(collector.state.online_workers())
    timeout = max(0.05, min(settings.inspect_timeout_seconds, deadline - time.monotonic()))
    try:
        with app.connection_for_write(url=settings.url()) as conn:
            inspect = app.control.inspect(timeout=timeout, connection=conn,
                                          limit=expected or None)
            replies = inspect.conf(with_defaults=False) or {}
    except Exception as err:
        return {}, err
    return {str(node): {k: (reply.get(k) if isinstance(reply, dict) else None)
                        for k in CONF_KEYS} for node, reply in replies.items()}, None


def _watch(collector: CeleryCollector, deadline: float) -> None:
    """Until the receiver has consumed for WINDOW_SECONDS, has failed, or the deadline."""
    receiver = collector.receiver
    while time.monotonic() < deadline - POLL_SECONDS:
        since = receiver.consuming_since
        if since is not None and time.monotonic() - since >= WINDOW_SECONDS:
            return
        if since is None and receiver.last_error:
            return
        time.sleep(POLL_SECONDS)


def _inspect(conf: dict[str, dict[str, Any]], error: BaseException | None,
             evidence: Evidence) -> Finding:
    if error is not None:
        cause = logs.cause(error)
        return INSPECT.finding(Status.MISSING if cause == "access_refused" else Status.BROKEN,
                               f"the inspect broadcast failed ({cause}): "
                               f"{logs.redact(str(error))[:160]}",
                               cause="refused" if cause == "access_refused" else "error",
                               error=type(error).__name__)
    if conf:
        return INSPECT.finding(Status.OK, f"{len(conf)} worker(s) answered: "
                               f"{', '.join(sorted(conf))}")
    if evidence.workers:
        return INSPECT.finding(
            Status.MISSING, f"{len(evidence.workers)} worker(s) send heartbeats "
            f"({', '.join(sorted(evidence.workers))}) but none answered inspect: remote "
            "control is off", cause="no_control")
    return INSPECT.finding(Status.MISSING, "no worker answered inspect, and none sends "
                           "heartbeats: no worker runs on this broker", cause="no_worker")


def _events(up: bool, watched: float, last_error: str, last_cause: str, evidence: Evidence,
            conf: dict[str, dict[str, Any]]) -> Finding:
    if evidence.events_total:
        return EVENTS.finding(Status.OK, f"{evidence.events_total} event(s) received")
    if not up:
        if last_error:
            return EVENTS.finding(
                Status.MISSING if last_cause == "access_refused" else Status.BROKEN,
                f"the event receiver cannot consume ({last_error}, {last_cause})",
                cause="receiver", error=f"{last_error}, {last_cause}")
        return EVENTS.finding(Status.UNKNOWN, "the event receiver has not connected yet")
    if watched < WINDOW_SECONDS:
        return EVENTS.finding(Status.UNKNOWN, f"listening for {watched:.1f} s only")
    if conf:
        return EVENTS.finding(
            Status.MISSING, f"{len(conf)} worker(s) answer inspect but no event arrived in "
            f"{watched:.0f} s: the workers send no heartbeats and no task events",
            cause="silent")
    return EVENTS.finding(Status.MISSING, f"no event arrived in {watched:.0f} s and no "
                          "worker answers: no worker publishes to this broker", cause="elsewhere")


def _task_events(evidence: Evidence, conf: dict[str, dict[str, Any]], watched: float
                 ) -> Finding:
    nodes = sorted(set(evidence.workers) | set(conf))
    if not nodes:
        return TASK_EVENTS.finding(Status.UNKNOWN, "no worker seen")
    silent, proven, undecided = [], [], []
    for node in nodes:
        task_events, processed = evidence.workers.get(node, (0, 0.0))
        if task_events or (conf.get(node) or {}).get("worker_send_task_events"):
            proven.append(node)
        elif processed > 0:
            silent.append(f"{node} processed {processed:.0f} task(s) and sent no task event")
        else:
            undecided.append(node)
    if silent:
        return TASK_EVENTS.finding(Status.MISSING, "; ".join(silent))
    if undecided:
        return TASK_EVENTS.finding(
            Status.UNKNOWN, f"{', '.join(undecided)}: no task ran in the {watched:.0f} s "
            "watched and worker_send_task_events is not set in their configuration "
            "(with -E it need not be); run `stackmon check` while tasks run")
    return TASK_EVENTS.finding(Status.OK, f"{', '.join(proven)}: task events on")


def _task_sent(evidence: Evidence, conf: dict[str, dict[str, Any]], watched: float
               ) -> Finding:
    if evidence.sent_seen:
        return TASK_SENT.finding(Status.OK, "task-sent events arrive")
    worker_events = sum(n for n, _ in evidence.workers.values())
    if worker_events:
        return TASK_SENT.finding(
            Status.MISSING, f"{worker_events} task event(s) came from the workers and not one "
            "task-sent event: the producers do not send them")
    setting = [bool(c.get("task_send_sent_event")) for c in conf.values()]
    if setting and all(setting):
        return TASK_SENT.finding(Status.OK, "task_send_sent_event is set in the workers' "
                                 "configuration (no task was sent while watching)")
    return TASK_SENT.finding(Status.UNKNOWN, f"no task ran in the {watched:.0f} s watched "
                             "and the workers' configuration does not set "
                             "task_send_sent_event")


def _rabbitmq(broker_url: str, conf_error: BaseException | None, receiver_cause: str,
              receiver_up: bool) -> Finding:
    refused = []
    if conf_error is not None and logs.cause(conf_error) == "access_refused":
        refused.append("inspect (celery.pidbox, reply.celery.pidbox)")
    if not receiver_up and receiver_cause == "access_refused":
        refused.append("the event receiver (celeryev, celery.pidbox)")
    if not refused:
        return RABBITMQ_PERMISSIONS_CHECK.finding(Status.OK, "nothing refused")
    vhost, user = rabbitmq_vhost_user(broker_url)
    configure, write, read = (shlex.quote(p) for p in RABBITMQ_PERMISSIONS)
    return RABBITMQ_PERMISSIONS_CHECK.finding(
        Status.MISSING, f"RabbitMQ refused user {user} on vhost {vhost}: "
        f"{' and '.join(refused)} (ACCESS_REFUSED)", vhost=shlex.quote(vhost),
        user=shlex.quote(user), configure=configure, write=write, read=read)


def rabbitmq_vhost_user(url: str) -> tuple[str, str]:
    """``amqp://stackmon@rabbit:5672/prod`` -> ("prod", "stackmon"); kombu's defaults
    ("/", "guest") where the URL has none."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return urllib.parse.unquote(path) or "/", urllib.parse.unquote(parts.username or "guest")
