"""services: HTTP, TCP and nginx stub_status checks (blackbox / nginx-prometheus-exporter)."""

from exporter.collectors.base import CollectorSpec, lazy
from exporter.collectors.services.settings import ServicesSettings

SPEC = CollectorSpec(
    "services", "configured HTTP, TCP and nginx stub_status checks "
    "(blackbox / nginx-prometheus-exporter)",
    ServicesSettings, lazy("exporter.collectors.services.collector", "build"), default=None,
    configured=lambda s: bool(s.checks),
    probes=lazy("exporter.collectors.services.collector", "probes"))
