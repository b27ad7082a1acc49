"""Logging: logfmt-style lines on stderr, with every configured secret redacted.

Sample line::

    ts=2026-11-27T04:10:00Z level=warning logger=stackmon.collectors collector=postgres
    msg="collect failed"   (one line in reality)
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable

REDACTED = "<redacted>"
# user:password@ in any URL, whatever we were told.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
# password=... in libpq key/value strings.
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords from URLs and DSNs, and every known secret value."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


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
