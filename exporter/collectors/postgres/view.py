"""What every view module shares: the query row types, the server facts and family helpers.

Each ``pg_*.py`` module beside this one holds one PostgreSQL view (or a few close ones):
its SQL as named constants, a ``queries(server)`` that picks the SQL for this server, and
a ``metrics(results, server)`` that turns the rows into families under postgres_exporter's
names.  ``collector.py`` prepares every module's queries once per connection and runs
them all in one round trip per scrape.

Sample output of the helpers::

    pg_stat_database_xact_commit{datid="5",datname="app",server="127.0.0.1:5432"} 51723.0
    # TYPE pg_stat_database_xact_commit counter
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from exporter.collectors.postgres.settings import PostgresSettings
from exporter.metrics import GaugeMetricFamily, Metric

Row = tuple[Any, ...]
Rows = list[Row]
Results = dict[str, Rows]  # prepared-query name -> its rows of this scrape

NAN = math.nan


@dataclass(frozen=True)
class PreparedQuery:
    """One query of the per-scrape batch; ``name`` keys its rows in ``Results``."""

    name: str
    sql: str


@dataclass(frozen=True)
class ServerInfo:
    """What the queries and metric builders need to know about one connection."""

    version: int  # server_version_num, e.g. 150020
    server: str  # postgres_exporter's ``server`` label: "host:port" of the DSN
    settings: PostgresSettings
    statements: tuple[str, str] | None = None  # (schema, extversion) of pg_stat_statements
    # pg_settings' statement_timeout before stackmon set its own (milliseconds, as text)
    statement_timeout: str = ""


def add(family: Metric, labels: list[str], value: Any) -> None:
    """Add one sample to a family made by ``bare_counter`` or ``untyped``."""
    names: tuple[str, ...] = family._labelnames
    family.add_sample(str(family.name), dict(zip(names, labels, strict=True)),
                      NAN if value is None else float(value))


def untyped(name: str, help_text: str, labels: list[str]) -> Metric:
    """An untyped family, as postgres_exporter exports columns it has no type for."""
    family = Metric(name, help_text, "unknown")
    family._labelnames = tuple(labels)
    return family


def gauge(name: str, help_text: str, value: float, labels: dict[str, str] | None = None
          ) -> GaugeMetricFamily:
    """A gauge family with one sample."""
    keys = list(labels or {})
    family = GaugeMetricFamily(name, help_text, labels=keys)
    family.add_metric([(labels or {})[k] for k in keys], float(value))
    return family
