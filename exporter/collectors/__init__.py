"""COLLECTORS: the one table of collectors, one SPEC per package.

Each package's ``__init__.py`` holds only its ``SPEC`` (name, help, default, settings
section, lazy ``build`` / ``probes``); adding a collector is one new package and one
line here. Importing this module loads no backend driver.
"""

from __future__ import annotations

from exporter.collectors import celery, host, postgres, redis, services
from exporter.collectors.base import CollectorSpec
from exporter.settings import CORE_SECTIONS, Config, SettingPath, setting_paths

COLLECTORS: tuple[CollectorSpec, ...] = (
    host.SPEC,
    postgres.SPEC,
    redis.SPEC,
    celery.SPEC,
    services.SPEC,
)

# Every settings section: the core ones, then one per collector.
SECTIONS: tuple[type, ...] = (*CORE_SECTIONS, *(spec.settings for spec in COLLECTORS))


def defaults() -> dict[str, bool | None]:
    return {spec.name: spec.default for spec in COLLECTORS}


def all_setting_paths() -> list[SettingPath]:
    """Every scalar setting of every section, as env vars and flags know them."""
    return setting_paths(SECTIONS)


def enabled(config: Config) -> list[CollectorSpec]:
    """Specs switched on by the config; ``None`` defaults resolve via ``configured``."""
    out = []
    for spec in COLLECTORS:
        on = config.collectors.get(spec.name, spec.default)
        if on is None:
            on = bool(spec.configured and spec.configured(config.sections[spec.name]))
        if on:
            out.append(spec)
    return out
