"""Logs: one logfmt line per event, repeated failures summarised, real causes named."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest

from exporter import logs
from exporter.collectors.celery.broker import make_app
from exporter.collectors.celery.events import EventReceiverThread, EventState
from exporter.collectors.celery.settings import CelerySettings
from tests.helpers import logfmt
from tests.helpers.exporter import free_port, wait_for

# key=value or key="escaped value", space separated, nothing else.
LOGFMT_LINE = re.compile(r'^(?:[\w.]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$))+$')
PG_ERROR = ('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
            'FATAL:  password authentication failed for user "app"\n'
            'connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "x" '
            'does not exist\\n')


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("line one\nline two")
        except ValueError as err:
            exc_info = (type(err), err, err.__traceback__)
    return logging.LogRecord("stackmon.test", logging.WARNING, __file__, 1, msg, args,
                             exc_info)


def test_multi_line_error_with_quotes_is_one_logfmt_line() -> None:
    formatter = logs.RedactingFormatter()
    line = formatter.format(record('collector=postgres msg="collect failed" err="%s" n=%d',
                                   Exception(PG_ERROR), 3, exc=True))
    assert "\n" not in line
    assert LOGFMT_LINE.match(line), line
    # The value reads back exactly as it was.
    value = re.search(r' err="((?:[^"\\]|\\.)*)"', line).group(1)  # type: ignore[union-attr]
    assert re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), value) == PG_ERROR
    assert " n=3 " in line and ' exc="Traceback' in line


def test_secret_with_a_quote_is_redacted_after_escaping() -> None:
    formatter = logs.RedactingFormatter()
    formatter.secrets = ['pa"ss\nword']
    line = formatter.format(record('msg="x" err="%s"', 'auth failed for pa"ss\nword'))
    assert "ss" not in line.replace("redacted", ""), line


def test_repeated_failures_log_on_change_then_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stackmon.test")
    failures = logs.RepeatedFailures(logging.getLogger("stackmon.test"), interval=3600)
    for _ in range(10):
        failures.failed("collector=pg", "collect failed", "OperationalError", 'err="%s"', "x")
    assert len(caplog.records) == 1
    failures.failed("collector=pg", "collect failed", "TimeoutError", 'err="%s"', "y")
    assert len(caplog.records) == 2  # a new kind of failure is a state change
    failures.interval = 0  # the minute has passed
    failures.failed("collector=pg", "collect failed", "TimeoutError", 'err="%s"', "y")
    assert caplog.records[-1].getMessage().endswith("failures=1 failing_for=0s")
    assert "still failing" in caplog.records[-1].getMessage()
    failures.ok("collector=pg")
    failures.ok("collector=pg")  # logged once
    assert len(caplog.records) == 4
    assert 'msg="recovered" failures=12' in caplog.records[-1].getMessage()


@pytest.mark.parametrize(("err", "kind"), [
    (ModuleNotFoundError("No module named 'librabbitmq'"), "missing_module"),
    (ConnectionRefusedError(111, "Connection refused"), "unreachable"),
    (TimeoutError("timed out"), "timeout"),
    (type("AccessRefused", (Exception,), {})("ACCESS_REFUSED"), "access_refused"),
    (ConnectionError('target db: connection failed: FATAL:  password authentication failed '
                     'for user "app"'), "access_refused"),
    (type("ResponseError", (Exception,), {})("NOPERM this user has no permissions"),
     "access_refused"),
    (KeyError("x"), "error"),
])
def test_cause(err: Exception, kind: str) -> None:
    assert logs.cause(err) == kind


def test_wrapped_cause_is_found() -> None:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as inner:
            raise RuntimeError("OperationalError: timed out") from inner
    except RuntimeError as outer:
        assert logs.cause(outer) == "timeout"


def test_import_error_is_not_a_lost_broker(caplog: pytest.LogCaptureFixture) -> None:
    cfg = dataclasses.replace(CelerySettings(), broker_url=f"redis://127.0.0.1:{free_port()}/0",
                              broker_timeout_seconds=0.5)
    receiver = EventReceiverThread(make_app(cfg), EventState(cfg), cfg)

    def consume() -> None:
        raise ModuleNotFoundError("No module named 'redis'")

    receiver._consume = consume  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="stackmon.collectors.celery")
    receiver.start()
    try:
        wait_for(lambda: receiver.restarts >= 2, timeout=20, what="two attempts")
    finally:
        receiver.stop()
    assert "cause=missing_module" in caplog.text
    assert "No module named" in caplog.text
    assert "lost the broker" not in caplog.text
    assert caplog.text.count("event receiver failed") == 1  # not once per attempt


@pytest.mark.parametrize(("logger", "text"), [
    ("kombu.mixins", "Connected to redis://127.0.0.1:6379/11"),
    ("celery.app.trace", 'Task t[1] raised: ValueError("x = 1")\nline two'),
    ("py.warnings", "x.py:1: DeprecationWarning: old\n  warn()"),
])
def test_library_loggers_write_one_strict_record(logger: str, text: str) -> None:
    """Libraries log prose, not fields: their message becomes the msg value, whole."""
    rec = logging.LogRecord(logger, logging.INFO, __file__, 1, "%s", (text,), None)
    fields = logfmt.check_record(logs.RedactingFormatter().format(rec))
    assert (fields["logger"], fields["msg"]) == (logger, text)


def test_own_records_with_spaces_in_values_are_strict() -> None:
    """The lines the issue found unparsable, as the code now writes them."""
    formatter = logs.RedactingFormatter()
    for rec in (
        record('collector=postgres target=%s msg="connected" server_version="%s"', "default",
               "15.20 (Debian 15.20-0+deb12u1)"),
        record('collector=host subcollector=%s msg="collect failed" err="%s"', "timex",
               "PermissionError: [Errno 1] Operation not permitted"),
    ):
        fields = logfmt.check_record(formatter.format(rec))
        assert fields["msg"] in ("connected", "collect failed")


def test_control_characters_are_escaped_and_read_back() -> None:
    """libpq indents its hint with a tab ("...refused\n\tIs the server running"); a
    server's message may hold any control character."""
    err = 'port 1 failed: Connection refused\n\tIs the server running on "h"?\x01\x7f'
    line = logs.RedactingFormatter().format(record('msg="collect failed" err="%s"', err))
    assert logfmt.check_record(line)["err"] == err


@pytest.mark.parametrize("line", [
    'ts=1 level=info logger=x msg="a" server_version=15.20 (Debian)',  # unquoted space
    "ts=1 level=info logger=kombu.mixins Connected to redis://h:6379//",  # no msg=
    'ts=1 level=info logger=x msg="a" msg="b"',  # repeated key
    "ts=1 level=info logger=x",  # no msg
    'ts=1 level=loud logger=x msg="a"',  # not a level
    'ts=1 level=info logger=x msg="a"  n=1',  # two spaces
    'ts=1 level=info logger=x msg="a\\x"',  # an escape logfmt readers do not know
])
def test_strict_parser_refuses(line: str) -> None:
    with pytest.raises(ValueError):
        logfmt.check_record(line)


def test_uncaught_thread_exception_is_one_record(capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    saved = threading.excepthook
    try:
        logs.setup("info")

        def boom() -> None:
            raise RuntimeError("first\nsecond")

        thread = threading.Thread(target=boom, name="worker-1")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = saved
        logging.captureWarnings(False)
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    fields = logfmt.check_record(lines[0])
    assert fields["thread"] == "worker-1" and "RuntimeError: first" in fields["exc"]
