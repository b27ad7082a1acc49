"""postgres: one server on /metrics, named servers on /probe (postgres_exporter names)."""

from exporter.collectors.base import CollectorSpec, lazy
from exporter.collectors.postgres.settings import PostgresSettings

SPEC = CollectorSpec(
    "postgres", "PostgreSQL connections, activity, sizes, locks, replication "
    "(postgres_exporter names; postgres.dsn, postgres.targets for /probe)",
    PostgresSettings, lazy("exporter.collectors.postgres.collector", "build"), default=None,
    configured=lambda s: s.dsn is not None or bool(s.targets),
    probes=lazy("exporter.collectors.postgres.collector", "probes"),
    checks=lazy("exporter.collectors.postgres.checks", "diagnose"))
