"""Config errors never carry a secret (issue 14 item 1): values are parsed, redacted,
then cut; a mapping's values and a value under a secret-bearing key are never shown.

The fuzz puts a random marker where a password goes (inside URLs and DSNs of every
backend, in mappings, under password keys), from the file and from env, and checks
that no error contains the marker or any 8-character piece of it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import cli
from exporter.secrets import REDACTED, show
from exporter.settings import ConfigError

# Characters a password may hold without changing a URL's structure.
PASSWORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$*+"


def error_of(tree: Any = None, env: dict[str, str] | None = None) -> str | None:
    with tempfile.TemporaryDirectory() as d:
        argv = []
        if tree is not None:
            path = Path(d) / "c.yml"
            path.write_text(yaml.safe_dump(tree))
            argv = [f"--config.file={path}"]
        try:
            cli.parse(argv, env or {})
        except ConfigError as err:
            return str(err)
    return None


def assert_no_piece(message: str | None, marker: str) -> None:
    if message is None:
        return
    pieces = {marker[i:i + 8] for i in range(len(marker) - 7)}
    leaked = [p for p in pieces if p in message]
    assert not leaked, f"{message!r} shows {leaked[:3]}"


def urls(marker: str, prefix: str) -> list[str]:
    """URLs and DSNs carrying the marker as password, most of them invalid somewhere."""
    user = "u" * len(prefix)
    return [
        f"redis://{user}:{marker}@127.0.0.1:notaport",
        f"redis://{user}:{marker}@127.0.0.1:99999/0",
        f"rediss://{user}:{marker}@:6379",
        f"http://{user}:{marker}@127.0.0.1:6379",
        f"postgresql://{user}:{marker}@127.0.0.1:5432/db?sslmode=bogus broken",
        f"host=127.0.0.1 user={user} password={marker} broken",
        f"amqp://{user}:{marker}@127.0.0.1:notaport//",
        f"ftp://{user}:{marker}@127.0.0.1/",
    ]


def trees(marker: str, text: str) -> list[Any]:
    """Config trees that put the marker under every secret-bearing place."""
    mapping = {"host": "127.0.0.1", "password": marker, "user": text}
    out: list[Any] = [
        {"postgres": {"dsn": mapping}},
        {"redis": {"url": mapping}},
        {"redis": {"password": {"value": marker}}},
        {"redis": {"password": [marker]}},
        {"redis": {"password": 12345, "url": f"redis://:{marker}@127.0.0.1:6379"}},
        {"redis": {"targets": [{"name": "a", "url": mapping}]}},
        {"redis": {"targets": [mapping]}},
        {"postgres": {"targets": [{"name": "a", "dsn": [mapping]}]}},
        {"celery": {"broker_url": mapping}},
        {"celery": {"broker_url": [f"amqp://u:{marker}@h//"]}},
        {"services": {"checks": [{"name": "a", "url": mapping}]}},
        {"web": mapping},
        {"postgres": mapping},
    ]
    for url in urls(marker, text):
        out += [{"redis": {"url": url}}, {"postgres": {"dsn": url}},
                {"celery": {"broker_url": url}},
                {"redis": {"targets": [{"name": "a", "url": url}]}},
                {"postgres": {"targets": [{"name": "a", "dsn": url}]}},
                {"services": {"checks": [{"name": "a", "url": url}]}}]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(marker=st.text(PASSWORD_CHARS, min_size=12, max_size=90),
       prefix=st.text("abc", max_size=90))
def test_no_error_shows_a_piece_of_the_marker(marker: str, prefix: str) -> None:
    for tree in trees(marker, prefix):
        assert_no_piece(error_of(tree), marker)
    for url in urls(marker, prefix):
        for name in ("STACKMON_REDIS_URL", "STACKMON_POSTGRES_DSN",
                     "STACKMON_CELERY_BROKER_URL"):
            assert_no_piece(error_of(env={name: url}), marker)


@pytest.mark.parametrize(("tree", "expected"), [
    # A mapping where a string belongs: its keys may be shown, never its values.
    ({"postgres": {"dsn": {"host": "h", "password": "hunter2hunter2"}}},
     "postgres.dsn: got a mapping, expected a string"),
    # A long URL is redacted before it is cut (it used to be cut before the "@").
    ({"redis": {"url": "redis://" + "u" * 70 + ":hunter2hunter2@h:notaport"}},
     'redis.url: got "redis://<redacted>@h:notaport", expected a redis://host:port'),
    # A value under a password key is never shown, whatever its type.
    ({"redis": {"password": ["hunter2hunter2"]}}, f"redis.password: got {REDACTED}"),
])
def test_examples_of_structural_redaction(tree: Any, expected: str) -> None:
    message = error_of(tree)
    assert message is not None and expected in message
    assert "hunter2" not in message


def test_show_keeps_harmless_values() -> None:
    assert show("localhost") == '"localhost"'
    assert show(1.5) == "1.5"
    assert show(["a", 1]) == '["a", 1]'
    assert show("x" * 200).endswith('..."') is False and len(show("x" * 200)) == 80
