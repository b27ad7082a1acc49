"""COLLECTORS: the one table of collectors, one SPEC per package.

Each package's ``__init__.py`` holds only its ``SPEC`` (name, help, default, settings
section, lazy ``build`` / ``probes``); adding a collector is one new package and its
name in ``PACKAGES``. Importing this module loads no backend driver.

A new collector ``x``: ``x/__init__.py`` (``SPEC = CollectorSpec("x", help, XSettings,
lazy("exporter.collectors.x.collector", "build"), ...)``), ``x/settings.py`` (the
``x:`` section: YAML keys, ``STACKMON_X_*`` and ``--x.*`` follow from it),
``x/collector.py`` (``build(section, scrape)`` and the Collector), ``"x"`` in
``PACKAGES``, ``docs/x.md`` with its Metrics table, then ``make docs``.
"""

from __future__ import annotations

import importlib

from exporter.collectors.base import CollectorSpec
from exporter.settings import CORE_SECTIONS, Config, SettingPath, setting_paths

# The collector table: one package per name, in the order of the landing page and logs.
PACKAGES = ("host", "postgres", "redis", "celery", "services")


def _spec(package: str) -> CollectorSpec:
    spec = getattr(importlib.import_module(f"exporter.collectors.{package}"), "SPEC", None)
    if not isinstance(spec, CollectorSpec) or spec.name != package:  # a packaging bug
        raise TypeError(f"exporter.collectors.{package}: SPEC missing or not named {package!r}")
    return spec


COLLECTORS: tuple[CollectorSpec, ...] = tuple(_spec(package) for package in PACKAGES)

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
