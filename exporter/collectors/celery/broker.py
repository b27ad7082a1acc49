"""The broker side of the Celery collector: the Celery app stackmon uses to talk to the
broker, and the queue lengths read through one long-lived connection on every scrape.

On Redis a queue is a list ``name`` plus one list per priority step (``name\\x06\\x163``,
...), all summed; on RabbitMQ a passive ``queue_declare`` gives the message and consumer
counts::

    celery_queue_length{queue_name="celery"} 12.0
    celery_active_consumer_count{queue_name="celery"} 2.0
"""

from __future__ import annotations

import logging
import time
from typing import Any

from exporter.collectors.celery.settings import CelerySettings

log = logging.getLogger("stackmon.collectors.celery")

REDIS_SCHEMES = ("redis", "rediss")
# kombu puts priority n of queue "q" in the list "q" + sep + str(n) (priority 0 in "q");
# its default steps are 0, 3, 6, 9 and custom steps lie in 0..9: read all ten.
REDIS_PRIORITIES = tuple(range(10))
REDIS_DEFAULT_SEP = "\x06\x16"

def make_app(settings: CelerySettings) -> Any:
    """A private Celery app for the broker (not set as the current app)."""
    from celery import Celery

    timeout = settings.broker_timeout_seconds
    app = Celery("stackmon", broker=settings.url(), set_as_current=False)
    app.conf.update(
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        broker_connection_max_retries=1,
        broker_transport_options={"socket_timeout": timeout,
                                  "socket_connect_timeout": timeout,
                                  "max_retries": 1},
        # No AMQP heartbeats on the scrape and inspect connections: nobody would send
        # them between scrapes and RabbitMQ would close the connection.  The event
        # receiver asks for its own (RECEIVER_HEARTBEAT_SECONDS) and sends them.
        broker_heartbeat=0,
        control_queue_expires=60.0,
    )
    return app



class QueueReader:
    """Reads queue lengths through one long-lived broker connection, repaired on error."""

    def __init__(self, app: Any, settings: CelerySettings) -> None:
        self.app = app
        self.settings = settings
        self.scheme = settings.url().partition("://")[0].lower()
        self.conn: Any = None
        self.channel: Any = None

    @property
    def is_redis(self) -> bool:
        return self.scheme in REDIS_SCHEMES

    def read(self, queues: list[str], deadline: float
             ) -> dict[str, tuple[float, float | None]]:
        """``{queue: (messages, consumers or None)}`` before ``deadline``; raises when the
        broker is down or does not answer in time."""
        try:
            if self.conn is None:
                # Connecting is two waits (TCP, then the broker's handshake or first
                # reply): each gets half of what is left, so together they fit.
                timeout = self._timeout(deadline) / 2
                options = dict(self.app.conf.broker_transport_options or {})
                options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
                self.conn = self.app.connection_for_read(url=self.settings.url(),
                                                         connect_timeout=timeout,
                                                         transport_options=options)
                self.conn.ensure_connection(max_retries=0)  # a retry would sleep 2 s first
            self._bound_reads(self._timeout(deadline))
            return self._redis(queues) if self.is_redis else self._amqp(queues)
        except Exception:
            self.close()
            raise

    def _timeout(self, deadline: float) -> float:
        """The broker timeout, cut to the time left before the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left before the scrape deadline")
        return min(self.settings.broker_timeout_seconds, left)

    def _bound_reads(self, timeout: float) -> None:
        """Set the long-lived connection's socket timeouts to this scrape's time left
        (they were set from an earlier scrape's budget when it connected)."""
        if self.is_redis:
            pool = self.conn.default_channel.client.connection_pool
            pool.connection_kwargs.update(socket_timeout=timeout / 2,
                                          socket_connect_timeout=timeout / 2)
            # redis-py has no public list of a pool's connections; these are stable since 3.x.
            for conn in (*pool._available_connections, *pool._in_use_connections):
                conn.socket_timeout = conn.socket_connect_timeout = timeout / 2
                if conn._sock is not None:
                    conn._sock.settimeout(timeout)
        else:
            sock = getattr(self.conn.connection, "sock", None)  # py-amqp's socket
            if sock is not None:
                sock.settimeout(timeout)

    def _redis(self, queues: list[str]) -> dict[str, tuple[float, float | None]]:
        channel = self.conn.default_channel
        sep = getattr(channel, "sep", REDIS_DEFAULT_SEP)
        steps = sorted(set(REDIS_PRIORITIES) | set(getattr(channel, "priority_steps", ())))
        client = channel.client
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for pri in steps:
                    pipe.llen(f"{queue}{sep}{pri}" if pri else queue)
            sizes = pipe.execute()
        out: dict[str, tuple[float, float | None]] = {}
        for i, queue in enumerate(queues):
            out[queue] = (float(sum(sizes[i * len(steps):(i + 1) * len(steps)])), None)
        return out

    def _amqp(self, queues: list[str]) -> dict[str, tuple[float, float | None]]:
        not_found = tuple(self.conn.channel_errors)
        out: dict[str, tuple[float, float | None]] = {}
        for queue in queues:
            if self.channel is None:
                self.channel = self.conn.channel()
            try:
                _, messages, consumers = self.channel.queue_declare(queue=queue, passive=True)
            except not_found:  # no such queue: the broker closed our channel
                self.channel = None
                out[queue] = (0.0, 0.0)
                continue
            out[queue] = (float(messages), float(consumers))
        return out

    def close(self) -> None:
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            try:
                conn.collect()
            except Exception:
                log.debug('collector=celery msg="closing the broker connection failed"',
                          exc_info=True)
