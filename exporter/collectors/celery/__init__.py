"""celery: broker queues, workers and task events (celery-exporter names)."""

from exporter.collectors.base import CollectorSpec, lazy
from exporter.collectors.celery.settings import CelerySettings

SPEC = CollectorSpec(
    "celery", "Celery broker queue lengths, workers and task events "
    "(celery-exporter names; celery.broker_url)",
    CelerySettings, lazy("exporter.collectors.celery.collector", "build"), default=None,
    configured=lambda s: s.broker_url is not None,
    checks=lazy("exporter.collectors.celery.checks", "diagnose"))
