"""Logging: one logfmt line per event on stderr, with every configured secret redacted.

Sample lines::

    ts=2026-11-27T04:10:00Z level=warning logger=stackmon.collectors collector=postgres msg="collect failed" err="connection failed: FATAL:  password authentication failed for user \\"app\\"\\nDETAIL: ..."
    ts=2026-11-27T04:11:00Z level=warning logger=stackmon.collectors collector=postgres msg="still failing" err="..." failures=4 failing_for=60s
    ts=2026-11-27T04:12:30Z level=info logger=stackmon.collectors collector=postgres msg="recovered" failures=7 failing_for=150s

Arguments are escaped for logfmt (``\\`` ``"`` and line breaks), so a PostgreSQL error
with a DETAIL line or a quoted name stays on its line; a traceback (debug level) is
appended as one escaped ``exc="..."`` field.
"""  # noqa: E501 - sample lines are one line each

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.secrets import REDACTED, redact

# A collector or thread failing again and again logs the first failure, then at most one
# line per this many seconds (with the count), then one line when it recovers.
REPEAT_INTERVAL_SECONDS = 60.0

__all__ = ["REDACTED", "RedactingFormatter", "RepeatedFailures", "cause", "escape", "redact",
           "setup"]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """Make ``text`` safe inside a logfmt quoted value: one line, quotes escaped, and no
    control character left (libpq indents its hints with a tab).

    >>> escape('FATAL:  role "x"\\nDETAIL:\\ty')
    'FATAL:  role \\\\"x\\\\"\\\\nDETAIL:\\\\ty'
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: _NAMED.get(m[0], f"\\u{ord(m[0]):04x}"), text)
    return text


def _escape_arg(arg: object) -> object:
    # Numbers keep their type for %d / %.1f; everything else is text in a logfmt value.
    if isinstance(arg, int | float):
        return arg
    return escape(str(arg))


class RedactingFormatter(logging.Formatter):
    """Formats a record as one line and scrubs secrets from it (args and tracebacks too)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        line = f"ts={ts} level={record.levelname.lower()} logger={record.name} "
        if record.name == "stackmon" or record.name.startswith("stackmon."):
            line += _message(record)
        else:
            # Libraries (kombu, celery, py.warnings) write prose: it becomes the msg value.
            line += f'msg="{escape(record.getMessage())}"'
        if record.exc_info:
            line += f' exc="{escape(self.formatException(record.exc_info))}"'
        # Secrets are also looked for in their escaped form (a password with a quote).
        return redact(line, [*self.secrets, *map(escape, self.secrets)])


def _message(record: logging.LogRecord) -> str:
    msg = str(record.msg)
    if record.args:
        args = record.args
        if isinstance(args, tuple):
            args = tuple(_escape_arg(a) for a in args)
        elif isinstance(args, dict):
            args = {k: _escape_arg(v) for k, v in args.items()}
        try:
            msg = msg % args
        except (TypeError, ValueError):
            msg = record.getMessage()  # let logging report the mistake as it always did
    # Whatever is left (a line break in the format string itself) must not split the line.
    return _CONTROL.sub(lambda m: _NAMED.get(m[0], f"\\u{ord(m[0]):04x}"), msg)


_formatter = RedactingFormatter()


def setup(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Send every log line to stderr at ``level``, one logfmt record each (libraries'
    loggers, Python warnings and uncaught exceptions in threads too); remember the secrets
    to scrub."""
    _formatter.secrets = list(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    threading.excepthook = _thread_exception


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception nothing caught in a thread: one record with its traceback, instead of
    the multi-line dump Python writes by default."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("stackmon").error('msg="uncaught exception in thread" thread="%s"', name,
                                        exc_info=args.exc_value or True)


def cause(err: BaseException) -> str:
    """A short name for what went wrong, for the ``cause=`` field.

    >>> cause(ModuleNotFoundError("No module named 'redis'"))
    'missing_module'
    >>> cause(ConnectionRefusedError(111, "Connection refused"))
    'unreachable'
    """
    chain: list[BaseException] = []
    seen: BaseException | None = err
    while seen is not None and len(chain) < 10:  # libraries wrap the real error
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, ImportError):
            return "missing_module"
        if isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower():
            return "timeout"
        if type(e).__name__ in _ACCESS_ERRORS or any(m in str(e) for m in _ACCESS_MESSAGES):
            return "access_refused"
    if any(isinstance(e, OSError) or type(e).__name__ in _CONNECTION_ERRORS for e in chain):
        return "unreachable"
    return "error"


_ACCESS_ERRORS = ("AccessRefused", "NotAllowed", "AuthenticationError", "NoPermissionError",
                  "AuthenticationWrongNumberOfArgsError", "InsufficientPrivilege")
# Servers that report a refused login or permission only in the message text (libpq's
# connection errors carry no SQLSTATE, Redis replies are plain errors).
_ACCESS_MESSAGES = ("authentication failed", "pg_hba.conf", "permission denied",
                    "ACCESS_REFUSED", "WRONGPASS", "NOAUTH", "NOPERM")
_CONNECTION_ERRORS = ("OperationalError", "ConnectionError", "RecoverableConnectionError")


@dataclass
class _Failing:
    since: float  # time.monotonic() of the first failure in this run of failures
    last_logged: float
    total: int = 1
    unlogged: int = 0
    kind: str = ""


class RepeatedFailures:
    """Log a failure when it starts (or its kind changes), then at most once per
    ``interval`` with a count, and once when it recovers: a backend down for an hour
    gives ~60 lines, not one per scrape.

    ``key`` is the log prefix naming the thing (``collector=postgres``).
    """

    def __init__(self, logger: logging.Logger, interval: float = REPEAT_INTERVAL_SECONDS
                 ) -> None:
        self.log = logger
        self.interval = interval
        self._state: dict[str, _Failing] = {}
        self._lock = threading.Lock()

    def failed(self, key: str, msg: str, kind: str, fields: str = "", *args: object,
               exc_info: BaseException | None = None) -> None:
        """``msg`` is the msg= text; ``fields`` a logfmt format for the details."""
        now = time.monotonic()
        extra: tuple[object, ...] = ()
        with self._lock:
            st = self._state.get(key)
            if st is None or st.kind != kind:  # a new failure, or a new kind of failure
                self._state[key] = _Failing(since=st.since if st else now, last_logged=now,
                                            kind=kind, total=st.total + 1 if st else 1)
                suffix = ""
            elif now - st.last_logged >= self.interval:
                st.total += 1
                suffix = " failures=%d failing_for=%ds"
                extra = (st.unlogged + 1, int(now - st.since))
                msg = "still failing: " + msg
                st.unlogged, st.last_logged = 0, now
            else:
                st.total += 1
                st.unlogged += 1
                return
        sep = " " if fields else ""
        self.log.warning(f'{key} msg="{msg}"{sep}{fields}{suffix}', *args, *extra,
                         exc_info=exc_info)

    def failing(self, key: str) -> bool:
        with self._lock:
            return key in self._state

    def ok(self, key: str) -> None:
        with self._lock:
            st = self._state.pop(key, None)
        if st is not None:
            self.log.info('%s msg="recovered" failures=%d failing_for=%ds', key, st.total,
                          int(time.monotonic() - st.since))
