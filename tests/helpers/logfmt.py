"""A strict logfmt parser: what the suite holds every exporter log line to.

A record is ``key=value`` pairs separated by one space. A key is a word (letters, digits,
``_ . -``); a value is bare (no space, quote, ``=`` or control character) or quoted, with
only ``\\\\ \\" \\n \\r \\t`` and ``\\u00XX`` (other control characters)
escaped inside. Keys are unique, and every stackmon record has
``ts``, ``level``, ``logger`` and ``msg``.

>>> parse('ts=2026-12-06T03:00:00Z level=info logger=stackmon msg="listening" port=9860')
{'ts': '2026-12-06T03:00:00Z', 'level': 'info', 'logger': 'stackmon', 'msg': 'listening', 'port': '9860'}
>>> parse('ts=1 level=info logger=x msg="a" server_version=15.20 (Debian)')
Traceback (most recent call last):
...
ValueError: column 55: expected key=value, got '(Debian)'
"""  # noqa: E501 - the sample record is one line

from __future__ import annotations

import re
from pathlib import Path

REQUIRED = ("ts", "level", "logger", "msg")
LEVELS = {"debug", "info", "warning", "error", "critical"}
_PAIR = re.compile(r'([A-Za-z_][\w.-]*)='
                   r'("(?:[^"\\\x00-\x1f\x7f]|\\[\\"nrt]|\\u[0-9a-f]{4})*"|[^\s"=\x00-\x1f\x7f]*)')
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
# The one line that is not a log record: a configuration error before logging starts
# (README, "Configuration"), then exit 2.
USAGE_ERROR = re.compile(r"^stackmon: error: \S.*$")


def _unescape(m: re.Match[str]) -> str:
    code = m.group(1)
    return chr(int(code[1:], 16)) if code.startswith("u") else _UNESCAPE[code]


def parse(line: str) -> dict[str, str]:
    """The fields of one record; ValueError naming the column where it stops being logfmt."""
    fields: dict[str, str] = {}
    pos = 0
    while True:
        m = _PAIR.match(line, pos)
        if m is None:
            rest = line[pos:].split(" ", 1)[0]
            raise ValueError(f"column {pos + 1}: expected key=value, got {rest!r}")
        key, value = m.group(1), m.group(2)
        if key in fields:
            raise ValueError(f"column {pos + 1}: key {key!r} repeated")
        if value.startswith('"'):
            value = re.sub(r"\\(u[0-9a-f]{4}|.)", _unescape, value[1:-1])
        fields[key] = value
        pos = m.end()
        if pos == len(line):
            break
        if line[pos] != " " or pos + 1 == len(line):
            raise ValueError(f"column {pos + 1}: expected one space between pairs")
        pos += 1
    return fields


def check_record(line: str) -> dict[str, str]:
    """``parse`` plus the keys and level every stackmon record has."""
    fields = parse(line)
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if fields["level"] not in LEVELS:
        raise ValueError(f"level {fields['level']!r} is not one of {sorted(LEVELS)}")
    return fields


def bad_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, line, why) for each line of a log that is not a strict record."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if USAGE_ERROR.match(line):
            continue
        try:
            check_record(line)
        except ValueError as err:
            out.append((number, line, str(err)))
    return out


def check_files(paths: list[Path]) -> tuple[int, list[str]]:
    """Lines read from the logs that still exist, and one report line per bad line."""
    total, report = 0, []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        total += len(text.splitlines())
        for number, line, why in bad_lines(text):
            report.append(f"  {path.name}:{number}: {why}: {line[:300]}")
    return total, report
