"""The core sections: how the HTTP server listens (web), logs (log) and how long a
scrape may take (scrape). Collector sections live beside their collector
(``exporter/collectors/<name>/settings.py``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

from exporter.settings.schema import setting

DEFAULT_PORT = 9860
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``:9860``, ``127.0.0.1:9860``, ``[::1]:9860``) into its parts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("host:port, e.g. :9860 or 127.0.0.1:9860")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("a port between 0 and 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("an IPv6 address inside [ ]") from None
    elif ":" in host:
        raise ValueError("IPv6 addresses in brackets, e.g. [::1]:9860")
    return host, port


def _check_listen_address(value: str) -> str | None:
    try:
        parse_listen_address(value)
    except ValueError as err:
        return str(err)
    return None


def _check_path(value: str) -> str | None:
    if not value.startswith("/") or value == "/":
        return "a path starting with / other than / itself, e.g. /metrics"
    return None


def check_target_name(value: str) -> str | None:
    """Names of /probe targets (postgres, redis) and service checks."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", value):
        return "a name of letters, digits, '_', '.' or '-' (at most 63), e.g. cache-1"
    return None


@dataclass(frozen=True)
class WebSettings:
    """How the HTTP server listens."""

    section: ClassVar[str] = "web"
    listen_address: str = setting(
        f":{DEFAULT_PORT}", "address to listen on, host:port", check=_check_listen_address
    )
    telemetry_path: str = setting("/metrics", "path that serves metrics", check=_check_path)
    config_file: str | None = setting(
        None, "exporter-toolkit web config file (TLS, basic auth)", flag="--web.config.file"
    )
    max_requests: int = setting(
        40, "concurrent requests served before answering 503 (0 = no limit)", min=0, max=10000
    )


@dataclass(frozen=True)
class LogSettings:
    """What the exporter logs."""

    section: ClassVar[str] = "log"
    level: str = setting("info", "log level", choices=LOG_LEVELS)


@dataclass(frozen=True)
class ScrapeSettings:
    """How long a scrape may take; every collector gets these with its own section."""

    section: ClassVar[str] = "scrape"
    timeout_seconds: float = setting(
        10.0, "longest a scrape may take, also capped by Prometheus's scrape timeout",
        min=0.1, max=300,
    )
    timeout_offset_seconds: float = setting(
        0.5, "subtracted from X-Prometheus-Scrape-Timeout-Seconds to leave room for the reply",
        min=0, max=60,
    )


CORE_SECTIONS: tuple[type, ...] = (WebSettings, LogSettings, ScrapeSettings)
