"""COLLECTORS: the one table of collectors.

Each row names a collector (``--collector.<name>`` / ``--no-collector.<name>``,
``collectors.<name>`` in the config file, label ``collector="<name>"``), how to
build it from the validated config, and whether it runs by default.  A default of
``None`` means "on when its section is configured" (see ``configured``).

``probes`` (optional) builds one collector list per named target for the multi-target
endpoint ``/probe?target=<name>``; ``build`` gives what plain ``/metrics`` serves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.collectors.base import Collector
from exporter.config import Config


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    help: str
    build: Callable[[Config], list[Collector]]
    default: bool | None = True
    configured: Callable[[Config], bool] | None = None
    probes: Callable[[Config], dict[str, list[Collector]]] | None = None


def lazy(module: str, function: str) -> Callable[[Config], Any]:
    """``module.function(cfg)``, imported on first use: a host-only exporter never loads
    psycopg, redis-py or Celery, which keeps its memory small."""

    def call(cfg: Config) -> Any:
        return getattr(importlib.import_module(module), function)(cfg)

    call.__qualname__ = f"{module}.{function}"
    return call


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("host", "CPU, memory, filesystems, network and disks (node_exporter names)",
                  lazy("exporter.collectors.host.collector", "build")),
    CollectorSpec("postgres", "PostgreSQL connections, activity, sizes, locks, replication "
                  "(postgres_exporter names; postgres.dsn, postgres.targets for /probe)",
                  lazy("exporter.collectors.postgres.collector", "collectors_for"), default=None,
                  configured=lambda cfg: cfg.postgres.dsn is not None
                  or bool(cfg.postgres.targets),
                  probes=lazy("exporter.collectors.postgres.collector", "probe_collectors")),
    CollectorSpec("redis", "Redis INFO and SLOWLOG LEN (redis_exporter names; redis.url, "
                  "redis.targets for /probe)",
                  lazy("exporter.collectors.redis.collector", "build"), default=None,
                  configured=lambda cfg: cfg.redis.url is not None or bool(cfg.redis.targets),
                  probes=lazy("exporter.collectors.redis.collector", "probes")),
    CollectorSpec("celery", "Celery broker queue lengths, workers and task events "
                  "(celery-exporter names; celery.broker_url)",
                  lazy("exporter.collectors.celery.collector", "build"), default=None,
                  configured=lambda cfg: cfg.celery.broker_url is not None),
    CollectorSpec("services", "configured HTTP, TCP and nginx stub_status checks "
                  "(blackbox / nginx-prometheus-exporter)",
                  lazy("exporter.collectors.services.collector", "build"), default=None,
                  configured=lambda cfg: bool(cfg.services.checks),
                  probes=lazy("exporter.collectors.services.collector", "probes")),
)


def defaults() -> dict[str, bool | None]:
    return {spec.name: spec.default for spec in COLLECTORS}


def enabled(config: Config) -> list[CollectorSpec]:
    """Specs switched on by the config; ``None`` defaults resolve via ``configured``."""
    out = []
    for spec in COLLECTORS:
        on = config.collectors.get(spec.name, spec.default)
        if on is None:
            on = bool(spec.configured and spec.configured(config))
        if on:
            out.append(spec)
    return out
