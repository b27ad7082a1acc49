"""Logging: logfmt-style lines on stderr, with every configured secret redacted.

Sample line::

    ts=2026-11-27T04:10:00Z level=warning logger=stackmon.collectors collector=postgres
    msg="collect failed"   (one line in reality)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

from exporter.secrets import REDACTED, redact

__all__ = ["REDACTED", "RedactingFormatter", "redact", "setup"]

class RedactingFormatter(logging.Formatter):
    """Formats a record and scrubs secrets from the final text (args and tracebacks too)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"ts={ts} level={record.levelname.lower()} logger={record.name} "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line, self.secrets)


_formatter = RedactingFormatter()


def setup(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Send stackmon's logs to stderr at ``level``; remember the secrets to scrub."""
    _formatter.secrets = list(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter)
    root.addHandler(handler)
    root.setLevel(level.upper())
