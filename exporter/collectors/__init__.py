"""COLLECTORS: the one table of collectors.

Each row names a collector (``--collector.<name>`` / ``--no-collector.<name>``,
``collectors.<name>`` in the config file, label ``collector="<name>"``), how to
build it from the validated config, and whether it runs by default.  A default of
``None`` means "on when its section is configured" (see ``configured``).

``probes`` (optional) builds one collector list per named target for the multi-target
endpoint ``/probe?target=<name>``; ``build`` gives what plain ``/metrics`` serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.collectors.base import Collector
from exporter.collectors.celery import CeleryCollector
from exporter.collectors.host import HostCollector
from exporter.config import Config


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    help: str
    build: Callable[[Config], list[Collector]]
    default: bool | None = True
    configured: Callable[[Config], bool] | None = None
    probes: Callable[[Config], dict[str, list[Collector]]] | None = None


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("host", "CPU, memory, filesystems, network and disks (node_exporter names)",
                  lambda cfg: [HostCollector.from_config(cfg)]),
    CollectorSpec("celery", "Celery broker queue lengths, workers and task events",
                  lambda cfg: [CeleryCollector.from_config(cfg)], default=None,
                  configured=lambda cfg: cfg.celery.broker_url is not None),
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
