"""Configured service checks: HTTP endpoints, TCP ports and nginx stub_status pages.

Every configured check runs in its own thread on every scrape, all within the scrape
deadline: a slow or hanging target is cut off at its own ``timeout_seconds`` (or the
deadline) and never delays the others.  Only the URLs and addresses in the config
file are ever contacted.

Sample output::

    stackmon_service_up{service="django"} 1.0
    stackmon_service_info{role="http",service="django",version="4.2.1"} 1.0
    stackmon_service_check_duration_seconds{service="django"} 0.0031
    stackmon_service_http_status_code{service="django"} 200.0
    stackmon_service_tls_cert_expiry_timestamp_seconds{service="django"} 1.8e+09
    nginx_up{service="web"} 1.0
    nginx_connections_active{service="web"} 3.0
    nginx_connections_accepted_total{service="web"} 1520.0
    nginx_http_requests_total{service="web"} 8841.0

The nginx series keep nginx-prometheus-exporter's names (its two counters without
``_total`` gain the suffix) and carry a ``service`` label so several nginx checks can
live side by side.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.collectors.base import (
    CallState,
    Collector,
    ParallelRunner,
    service_info_family,
    service_up_family,
)
from exporter.collectors.services.checks import (
    CheckResult,
    check_http,
    check_tcp,
    classify,
    log_target,
    ssl_context_for,
)
from exporter.collectors.services.settings import ServiceCheck, ServicesSettings
from exporter.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.services")


@dataclass
class _Slot:
    """Per-check state kept across scrapes."""

    check: ServiceCheck
    ssl_context: ssl.SSLContext | None = None
    version: str = ""
    last_reason: str | None = None


class ServicesCollector(Collector):
    """Runs every configured check in parallel on each scrape."""

    name = "services"

    def __init__(self, checks: Sequence[ServiceCheck]) -> None:
        self.slots = [_Slot(check, ssl_context_for(check)) for check in checks]
        self.runner: ParallelRunner[CheckResult] = ParallelRunner("check")

    def collect(self, deadline: float) -> list[Metric]:
        outcomes = self.runner.run(
            {slot.check.name: functools.partial(self._run, slot) for slot in self.slots},
            deadline)
        results: dict[str, CheckResult] = {}
        for slot in self.slots:
            outcome = outcomes[slot.check.name]
            if outcome.state is CallState.OK and outcome.value is not None:
                result = outcome.value
            else:
                reason = {CallState.BUSY: "busy", CallState.TIMEOUT: "deadline"}.get(
                    outcome.state) or (classify(outcome.error) if outcome.error else "error")
                # A busy check did not run in this scrape: it has no duration to show.
                result = CheckResult(up=False, reason=reason, duration=(
                    None if outcome.state is CallState.BUSY else outcome.duration))
            results[slot.check.name] = result
            self._note(slot, result)
        return self._families(results)

    def failure_metrics(self) -> list[Metric]:
        return self._families({s.check.name: CheckResult(up=False) for s in self.slots})

    @staticmethod
    def _run(slot: _Slot, stop: float) -> CheckResult:
        check = slot.check
        deadline = min(stop, time.monotonic() + check.timeout_seconds)
        if check.type == "tcp":
            return check_tcp(check, deadline)
        return check_http(check, deadline, slot.ssl_context)

    def _note(self, slot: _Slot, result: CheckResult) -> None:
        """Remember the version; log when a check changes state (not on every scrape)."""
        if result.version:
            slot.version = result.version
        reason = None if result.up else (result.reason or "error")
        if reason != slot.last_reason:
            check = slot.check
            where = log_target(check)
            if reason is None:
                log.info('collector=services service=%s msg="check ok" target="%s"',
                         check.name, where)
            else:
                log.warning('collector=services service=%s msg="check failed" reason=%s '
                            'target="%s" status=%d', check.name, reason, where,
                            result.status_code)
            slot.last_reason = reason

    def _families(self, results: dict[str, CheckResult]) -> list[Metric]:
        up = service_up_family()  # 1 if the service answered as expected
        info = service_info_family()
        duration = GaugeMetricFamily(
            "stackmon_service_check_duration_seconds",
            "Time the check took, connecting included (blackbox: probe_duration_seconds).",
            labels=["service"])
        status = GaugeMetricFamily(
            "stackmon_service_http_status_code",
            "HTTP status code of the last response, 0 if none came.", labels=["service"])
        expiry = GaugeMetricFamily(
            "stackmon_service_tls_cert_expiry_timestamp_seconds",
            "notAfter of the TLS certificate the server presented, Unix seconds.",
            labels=["service"])
        nginx_up = GaugeMetricFamily(
            "nginx_up", "1 if nginx stub_status was read successfully.", labels=["service"])
        nginx_gauges = {
            "active": GaugeMetricFamily("nginx_connections_active",
                                        "Active client connections.", labels=["service"]),
            "reading": GaugeMetricFamily("nginx_connections_reading",
                                         "Connections where nginx reads the request header.",
                                         labels=["service"]),
            "writing": GaugeMetricFamily("nginx_connections_writing",
                                         "Connections where nginx writes the response.",
                                         labels=["service"]),
            "waiting": GaugeMetricFamily("nginx_connections_waiting",
                                         "Idle client connections.", labels=["service"]),
        }
        accepted = CounterMetricFamily("nginx_connections_accepted_total",
                                       "Accepted client connections.", labels=["service"])
        handled = CounterMetricFamily("nginx_connections_handled_total",
                                      "Handled client connections.", labels=["service"])
        requests = CounterMetricFamily("nginx_http_requests_total",
                                       "Total HTTP requests.", labels=["service"])
        for slot in self.slots:
            check = slot.check
            name = check.name
            result = results[name]
            up.add_metric([name], 1.0 if result.up else 0.0)
            info.add_metric([name, result.version or slot.version, check.role or check.type],
                            1.0)
            if result.duration is not None:
                duration.add_metric([name], result.duration)
            if check.type == "http" and result.duration is not None:
                status.add_metric([name], float(result.status_code))
            if result.cert_expiry is not None:
                expiry.add_metric([name], result.cert_expiry)
            if check.type == "nginx":
                stub = result.stub if result.up else None
                nginx_up.add_metric([name], 1.0 if stub is not None else 0.0)
                if stub is not None:
                    for state, family in nginx_gauges.items():
                        family.add_metric([name], float(getattr(stub, state)))
                    accepted.add_metric([name], float(stub.accepted))
                    handled.add_metric([name], float(stub.handled))
                    requests.add_metric([name], float(stub.requests))
        families: list[Metric] = [up, info, duration, status, expiry, nginx_up,
                                  *nginx_gauges.values(), accepted, handled, requests]
        return [f for f in families if f.samples]


def build(settings: ServicesSettings, scrape: ScrapeSettings) -> list[Collector]:
    """What /metrics serves: one collector running every check."""
    return [ServicesCollector(settings.checks)]


def probes(settings: ServicesSettings, scrape: ScrapeSettings) -> dict[str, list[Collector]]:
    """One collector per check for ``/probe?target=<check name>``."""
    return {check.name: [ServicesCollector([check])] for check in settings.checks}
