"""The DSN field rules stackmon checks at start hold against libpq itself.

libpq checks these fields only when it connects.  Here it is asked to connect where
nothing can answer (a socket in a directory that does not exist, or a loopback port
nobody listens on), so the attempt fails either on the field (libpq refused the value)
or on the missing server (libpq accepted it).  Every value stackmon accepts must be one
libpq accepts, and the bogus values stackmon refuses must be ones libpq refuses too:
the tables in exporter/collectors/postgres/settings.py follow the libpq psycopg runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from exporter.collectors.postgres.collector import connect_before
from exporter.collectors.postgres.settings import (
    DSN_CHOICES,
    DSN_INTEGERS,
    KEEPALIVE_RANGES,
    REQUIRE_AUTH_METHODS,
    TLS_VERSION_FIELDS,
    TLS_VERSIONS,
    _check_dsn,
)
from exporter.errors import SettingError

NOTHING_THERE = ("No such file or directory", "Connection refused")


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq takes defaults from PG* variables; the machine's must not count here."""
    for name in [n for n in os.environ if n.startswith("PG")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("libpq") / "no-such-dir"


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listened on: a connect is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def libpq_refusal(options: str, nowhere: Path, closed_port: int, tcp: bool = False) -> str:
    """libpq's error about ``options``, or "" when it got as far as finding no server;
    asked the way the collector connects (``connect_before``)."""
    host = f"host=127.0.0.1 port={closed_port}" if tcp else f"host={nowhere}"
    try:
        connect_before(f"{host} {options}", time.monotonic() + 5).close()
    except psycopg.OperationalError as err:
        message = str(err)
        return "" if any(s in message for s in NOTHING_THERE) else message
    raise AssertionError("connected where nothing listens")


def stackmon_refusal(options: str) -> str:
    try:
        _check_dsn(f"host=db {options}", None)
    except SettingError as err:
        return err.message
    return ""


CHOICE_CASES = [(field, value) for field, values in DSN_CHOICES.items() for value in values]


@pytest.mark.parametrize(("field", "value"), CHOICE_CASES)
def test_every_accepted_value_is_one_libpq_accepts(field: str, value: str, nowhere: Path,
                                                   closed_port: int) -> None:
    options = f"{field}={value}"
    if options == "sslnegotiation=direct":
        options += " sslmode=require"  # libpq's rule, and stackmon's (next test)
    # gssencmode=require fails on a local socket for another reason: it names GSSAPI.
    refusal = libpq_refusal(options, nowhere, closed_port, tcp=field == "gssencmode")
    assert field not in refusal, refusal
    assert stackmon_refusal(options) == ""


@pytest.mark.parametrize("field", [*DSN_CHOICES, *TLS_VERSION_FIELDS])
@pytest.mark.parametrize("value", ["bogus", "''"])
def test_values_stackmon_refuses_libpq_refuses(field: str, value: str, nowhere: Path,
                                               closed_port: int) -> None:
    refusal = stackmon_refusal(f"{field}={value}")
    libpq = libpq_refusal(f"{field}={value}", nowhere, closed_port)
    # An empty TLS version means "the default" to both.
    assert bool(refusal) == bool(libpq), (refusal, libpq)
    if refusal:
        assert field in libpq


@pytest.mark.parametrize("version", [*TLS_VERSIONS, "tlsv1.2"])
def test_tls_versions_as_libpq(version: str, nowhere: Path, closed_port: int) -> None:
    options = f"ssl_min_protocol_version={version}"
    assert libpq_refusal(options, nowhere, closed_port) == stackmon_refusal(options) == ""


@pytest.mark.parametrize("options", [
    "ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
    "min_protocol_version=3.2 max_protocol_version=3.0",
    "require_auth=kerberos", "require_auth=md5,!password", "require_auth=md5,md5",
    "hostaddr=db.internal", "sslnegotiation=direct", "sslnegotiation=direct sslmode=allow",
])
def test_combinations_both_refuse(options: str, nowhere: Path, closed_port: int) -> None:
    assert stackmon_refusal(options)
    assert libpq_refusal(options, nowhere, closed_port)


@pytest.mark.parametrize("options", [
    *(f"require_auth={m}" for m in REQUIRE_AUTH_METHODS), "require_auth=!password,!md5",
    "require_auth=scram-sha-256,none",
])
def test_require_auth_lists_libpq_accepts(options: str, nowhere: Path,
                                          closed_port: int) -> None:
    assert libpq_refusal(options, nowhere, closed_port) == stackmon_refusal(options) == ""


@pytest.mark.parametrize("field", [f for f in DSN_INTEGERS if f != "connect_timeout"])
def test_integer_fields_as_libpq_reads_them(field: str, nowhere: Path,
                                            closed_port: int) -> None:
    """Read when a TCP connection is set up: asked of a loopback port nobody listens on.
    (connect_timeout is left out: the collector replaces it with its own setting.)"""
    low, high = KEEPALIVE_RANGES.get(field, (-1, 40000))
    for good in (str(low), " 7 ", "+3", str(high)):
        assert libpq_refusal(f"{field}='{good}'", nowhere, closed_port, tcp=True) == ""
        assert stackmon_refusal(f"{field}='{good}'") == ""
    bad = ["abc", "1.5", "99999999999"]
    if field in KEEPALIVE_RANGES:
        bad += [str(low - 1), str(high + 1)]  # the kernel's setsockopt refuses them
    for value in bad:
        assert libpq_refusal(f"{field}={value}", nowhere, closed_port, tcp=True), value
        assert stackmon_refusal(f"{field}={value}"), value
    # With keepalives off, libpq never passes them to the kernel.
    assert libpq_refusal(f"keepalives=0 {field}=0", nowhere, closed_port, tcp=True) == ""
    assert stackmon_refusal(f"keepalives=0 {field}=0") == ""
