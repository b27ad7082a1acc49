"""The Celery collector's section: the broker, the bounds of the event state, histogram
buckets and the inspect refresh.

    celery:
      broker_url: amqp://stackmon@127.0.0.1:5672//
      broker_password_file: /run/secrets/rabbitmq
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import ClassVar

from exporter.secrets import read_secret_file, show
from exporter.settings import SettingError, setting

CELERY_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
# celery-exporter's defaults: prometheus_client's Histogram.DEFAULT_BUCKETS for the run
# time, and its own 50 ms - 30 min range for the queue wait (a backlog lasts minutes).
CELERY_RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                          7.5, 10.0)
CELERY_QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                             600.0, 1800.0)


def _check_bucket(value: str) -> str | None:
    """One histogram bucket bound (the setting's check runs once per list item)."""
    try:
        bound = float(value)
    except ValueError:
        return "a number (a list such as 0.1,0.5,1,5)"
    if not 0 < bound < float("inf"):
        return "a positive finite number"
    return None


def _check_broker_url(url: str, parts: urllib.parse.SplitResult) -> None:
    """What kombu reads from the broker URL only when it connects: a Redis database
    number, and the query options (``?heartbeat=30``).  The URL is never quoted: it may
    carry a password."""
    database = urllib.parse.unquote(parts.path).lstrip("/")
    if parts.scheme.lower() in ("redis", "rediss") and database and not database.isdigit():
        raise SettingError("broker_url", f"database {show(database)} after the host, expected "
                           "a number, e.g. redis://127.0.0.1:6379/0")
    from kombu.connection import Connection  # only where a broker is configured

    try:
        connection = Connection(url)  # type: ignore[no-untyped-call]  # parses, no connect
        if connection.connect_timeout is not None:
            float(connection.connect_timeout)
    except TypeError as err:  # an option kombu does not take
        option = str(err).rpartition(" ")[2]
        raise SettingError("broker_url", f"option {option} in the query string, expected "
                           "only options kombu takes (e.g. heartbeat, connect_timeout, "
                           "ssl_cert_reqs)") from None
    except (ValueError, KeyError) as err:  # float("abc"), ssl_cert_reqs=bogus
        detail = f"unknown value {err}" if isinstance(err, KeyError) else str(err)
        raise SettingError("broker_url", f"a query option kombu cannot read ({detail}), "
                           "expected option values kombu accepts") from None


@dataclass(frozen=True)
class CelerySettings:
    """Celery: broker queue lengths, the event stream and the workers' inspect data."""

    section: ClassVar[str] = "celery"
    broker_url: str | None = setting(
        None, "broker URL, redis://[:password@]host:port/db or amqp://user:password@host/vhost",
        secret=True)
    broker_password_file: str | None = setting(
        None, "file holding the broker password (replaces the password in broker_url)")
    queues: tuple[str, ...] = setting(
        ("celery",), "queues whose length is read from the broker (the queues workers "
        "report consuming are added)")
    worker_heartbeat_timeout_seconds: float = setting(
        15.0, "celery_worker_up turns 0 when no event came from a worker for this long",
        min=0.1, max=3600)
    worker_purge_seconds: float = setting(
        600.0, "a silent worker's series are removed after this long", min=0.1, max=86400)
    max_task_names: int = setting(
        500, "distinct task names tracked; the rest are counted under name=\"__other__\"",
        min=1, max=100000)
    max_workers: int = setting(
        500, "distinct workers (node names) tracked; further workers get no worker series",
        min=1, max=100000)
    max_queue_names: int = setting(
        100, "distinct queue names in task series; the rest become \"__other__\"",
        min=1, max=10000)
    max_tracked_tasks: int = setting(
        100000, "in-flight task ids remembered to label later events (oldest dropped first)",
        min=100, max=10000000)
    runtime_buckets: tuple[str, ...] = setting(
        tuple(str(b) for b in CELERY_RUNTIME_BUCKETS),
        "celery_task_runtime (and flower_task_runtime_seconds) histogram buckets (seconds)",
        check=_check_bucket)
    queue_wait_buckets: tuple[str, ...] = setting(
        tuple(str(b) for b in CELERY_QUEUE_WAIT_BUCKETS),
        "celery_task_queue_wait_time histogram buckets (seconds)", check=_check_bucket)
    task_hostname_label: bool = setting(
        True, "the hostname label of the task series holds the sending or executing host; "
        "false: hostname=\"generic\" in every task series (one series per task and queue)")
    flower_metrics: bool = setting(
        False, "also export Flower's metric families (flower_events_total, "
        "flower_worker_online, flower_task_runtime_seconds, ...) with Flower's names and "
        "labels, from the same event stream")
    max_task_hostnames: int = setting(
        200, "distinct hostname label values in the task series; the rest become "
        "\"__other__\"", min=1, max=100000)
    max_task_series: int = setting(
        2000, "distinct (name, queue, hostname) label sets of the task series (about 40 "
        "series each); beyond it a new set's hostname becomes \"__other__\"",
        min=1, max=1000000)
    max_exception_names: int = setting(
        100, "distinct exception class names in celery_task_failed_total; the rest "
        "become \"__other__\"", min=1, max=100000)
    enable_events_at_start: bool = setting(
        False, "send the enable_events control command to the workers at start, "
        "after each reconnect and on every inspect refresh")
    inspect_interval_seconds: float = setting(
        30.0, "how often the inspect broadcasts (stats, active, reserved, scheduled, "
        "registered, active_queues) are refreshed in the background (0 = never)",
        min=0, max=86400)
    inspect_timeout_seconds: float = setting(
        1.0, "longest wait for the replies of one inspect broadcast", min=0.05, max=60)
    broker_timeout_seconds: float = setting(
        3.0, "connect and socket timeout for the broker", min=0.1, max=60)

    def check(self) -> None:
        if self.broker_url is not None:
            scheme = self.broker_url.partition("://")[0].lower()
            if "://" not in self.broker_url or scheme not in CELERY_BROKER_SCHEMES:
                raise SettingError("broker_url", "expected a URL with one of the schemes "
                                   + ", ".join(CELERY_BROKER_SCHEMES))
            try:
                parts = urllib.parse.urlsplit(self.broker_url)
                parts.port  # noqa: B018 - validates the port
            except ValueError:
                raise SettingError("broker_url", "expected a port between 1 and 65535 "
                                   "after the host") from None
            _check_broker_url(self.broker_url, parts)
        if self.broker_password_file is not None:
            if self.broker_url is None:
                raise SettingError("broker_password_file", "needs celery.broker_url as well")
            read_secret_file(self.broker_password_file, "broker_password_file")
        for key in ("runtime_buckets", "queue_wait_buckets"):
            bounds = [float(b) for b in getattr(self, key)]
            if not bounds or sorted(set(bounds)) != bounds:
                raise SettingError(key, "expected strictly increasing numbers")
        if self.worker_purge_seconds < self.worker_heartbeat_timeout_seconds:
            raise SettingError("worker_purge_seconds", "expected a value at least "
                               "worker_heartbeat_timeout_seconds")

    def url(self) -> str:
        """The broker URL with the password from ``broker_password_file`` put in."""
        if self.broker_url is None:
            return ""
        if self.broker_password_file is None:
            return self.broker_url
        password = read_secret_file(self.broker_password_file, "broker_password_file")
        scheme, _, rest = self.broker_url.partition("://")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0] if at else ""
        quoted = urllib.parse.quote(password, safe="")
        return f"{scheme}://{user}:{quoted}@{hostport}{slash}{path}"

    def extra_secrets(self) -> list[str]:
        """The password inside the broker URL (also URL-decoded) and from the file."""
        out: list[str] = []
        url = self.url() if self.broker_url else ""
        netloc = url.partition("://")[2].partition("/")[0]
        userinfo, at, _ = netloc.rpartition("@")
        if at and ":" in userinfo:
            password = userinfo.partition(":")[2]
            out += [password, urllib.parse.unquote(password)]
        return [s for s in out if s]

