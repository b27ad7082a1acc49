"""The PostgreSQL collector's section: the DSN /metrics watches and the named /probe
targets; a password lives in the DSN (file or env only) or in ``password_file``.

    postgres:
      dsn: host=127.0.0.1 user=stackmon dbname=postgres
      password_file: /run/secrets/pg
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from exporter.secrets import dsn_password, file_secret, read_secret_file, show
from exporter.settings import SettingError, check_target_name, setting


def _check_dsn(dsn: str | None, password_file: str | None, key: str = "dsn") -> None:
    """A DSN must parse; a password lives either inside it or in password_file, not both.

    Messages never quote the DSN: it may carry a password.
    """
    if dsn is not None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            fields = conninfo_to_dict(dsn)
        except Exception:
            raise SettingError(key, "cannot be parsed, expected a libpq key=value string "
                               "(host=... dbname=...) or a postgresql:// URL") from None
        _check_dsn_fields(fields, key)
        if password_file and dsn_password(dsn):
            raise SettingError("password_file", "the DSN already contains a password, expected "
                               "the password in one place only")
    if password_file:
        read_secret_file(password_file, "password_file")


# libpq fields with a fixed set of values, which libpq checks only when it connects (so
# a typo would fail every scrape): libpq 18's values, exact case.  A field an older libpq
# does not know is refused when the DSN is parsed.  tests/unit/test_dsn_fields.py holds
# the table against the libpq psycopg runs on.
DSN_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby",
                             "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
    "min_protocol_version": ("3.0", "3.2", "latest"),
    "max_protocol_version": ("3.0", "3.2", "latest"),
}
# Empty means "the default" for these; any case.
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
TLS_VERSION_FIELDS = ("ssl_min_protocol_version", "ssl_max_protocol_version")
# Whole numbers (a C int), read when a TCP connection is made.
DSN_INTEGERS = ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                "keepalives_count", "tcp_user_timeout")
INT_MAX = 2**31 - 1
# What Linux's setsockopt accepts for them while keepalives are on (libpq passes them on).
KEEPALIVE_RANGES = {"keepalives_idle": (1, 32767), "keepalives_interval": (1, 32767),
                    "keepalives_count": (1, 127)}
STRONG_SSLMODES = ("require", "verify-ca", "verify-full")
REQUIRE_AUTH_METHODS = ("password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _items(value: object) -> list[str]:
    return str(value).split(",")


def _pg_bool(text: str) -> bool:
    """What the server's parse_bool accepts: true/false/yes/no/on/off/1/0, any case, a
    unique prefix of the words ("t", "of")."""
    low = text.lower()
    if low in ("1", "0"):
        return True
    words = ("true", "false", "yes", "no", "on", "off")
    shortest = {"on": 2, "off": 2}
    return any(len(low) >= shortest.get(w, 1) and w.startswith(low) for w in words)


def _check_dsn_fields(fields: Mapping[str, object], key: str) -> None:
    """Fields libpq (or the server) only checks when it connects, checked at start
    instead, so a typo fails once with a clear line rather than on every scrape::

        postgres.dsn: port "notaport" in the DSN, expected a port number 1-65535
        postgres.dsn: sslmode "bogus" in the DSN, expected one of disable, allow, ...

    ``port`` and ``hostaddr`` may list one item per host (``port=5432,5433``); an empty
    item means the default.  Only the offending field's value is quoted, never the DSN.
    """
    def bad(field: str, value: str, expected: str) -> SettingError:
        return SettingError(key, f"{field} {show(value)} in the DSN, expected {expected}")

    for field, choices in DSN_CHOICES.items():
        value = fields.get(field)
        if value is not None and str(value) not in choices:
            raise bad(field, str(value), "one of " + ", ".join(choices))
    numbers: dict[str, int] = {}
    for field in DSN_INTEGERS:
        value = fields.get(field)
        if value is None:
            continue
        if not _INTEGER.fullmatch(str(value)) or not -INT_MAX - 1 <= int(str(value)) <= INT_MAX:
            raise bad(field, str(value), "a whole number" + (
                " of seconds" if field == "connect_timeout" else ""))
        numbers[field] = int(str(value))
    if numbers.get("keepalives", 1) != 0:
        for field, (low, high) in KEEPALIVE_RANGES.items():
            if field in numbers and not low <= numbers[field] <= high:
                raise bad(field, str(fields[field]), f"a number {low}-{high}")
    if fields.get("sslnegotiation") == "direct":
        # libpq's default sslmode is prefer, or PGSSLMODE from its environment.
        mode = str(fields.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer")
        if mode not in STRONG_SSLMODES:
            raise SettingError(key, f'sslnegotiation "direct" in the DSN with sslmode '
                               f"{show(mode)}, expected sslmode "
                               + ", ".join(STRONG_SSLMODES))
    _check_hosts(fields, bad)
    tls = [v.lower() for v in TLS_VERSIONS]
    for field in TLS_VERSION_FIELDS:
        value = str(fields.get(field) or "")
        if value and value.lower() not in tls:
            raise bad(field, value, "one of " + ", ".join(TLS_VERSIONS))
    _check_order(fields, TLS_VERSION_FIELDS, tls, key)
    _check_order(fields, ("min_protocol_version", "max_protocol_version"),
                 list(DSN_CHOICES["min_protocol_version"]), key)
    _check_require_auth(fields.get("require_auth"), bad)
    replication = fields.get("replication")
    if replication is not None and str(replication) != "database" \
            and not _pg_bool(str(replication)):
        raise bad("replication", str(replication), "true, false or database")


def _check_hosts(fields: Mapping[str, object],
                 bad: Callable[[str, str, str], SettingError]) -> None:
    """Ports 1-65535, numeric ``hostaddr`` items, and as many of them as hosts."""
    ports = _items(fields["port"]) if fields.get("port") is not None else []
    for item in ports:
        if item and not (item.isdigit() and 1 <= int(item) <= 65535):
            raise bad("port", item, "a port number 1-65535")
    addrs = _items(fields["hostaddr"]) if fields.get("hostaddr") else []
    for item in addrs:
        try:
            if item:
                ipaddress.ip_address(item)
        except ValueError:
            raise bad("hostaddr", item, "a numeric IPv4 or IPv6 address (names go in "
                      "host)") from None
    hosts = _items(fields["host"]) if fields.get("host") else []
    if addrs and hosts and len(addrs) != len(hosts):
        raise bad("hostaddr", str(fields["hostaddr"]),
                  f"one address per host ({len(hosts)} hosts)")
    count = len(addrs or hosts) or 1
    if len(ports) > 1 and len(ports) != count:
        hosts_text = f"{count} host" + ("s" if count > 1 else "")
        raise bad("port", str(fields["port"]), f"one port, or one per host ({hosts_text})")


def _check_order(fields: Mapping[str, object], pair: tuple[str, str], order: list[str],
                 key: str) -> None:
    """The lower bound of a min/max pair of fields is not above the upper one."""
    low, high = (str(fields.get(f) or "") for f in pair)
    if low and high and order.index(low.lower()) > order.index(high.lower()):
        raise SettingError(key, f"{pair[0]} {show(low)} in the DSN is above {pair[1]} "
                           f"{show(high)}, expected the lower bound first")


def _check_require_auth(value: object, bad: Callable[[str, str, str], SettingError]) -> None:
    """A list of methods, all of them negated with "!" or none; each once."""
    if not value:
        return
    methods = _items(value)
    negated = {m.startswith("!") for m in methods}
    names = [m.removeprefix("!") for m in methods]
    expected = ("methods from " + ", ".join(REQUIRE_AUTH_METHODS) + ", each once, all or "
                "none of them negated with !")
    if len(negated) > 1 or len(set(names)) != len(names) or \
            any(n not in REQUIRE_AUTH_METHODS for n in names):
        raise bad("require_auth", str(value), expected)


@dataclass(frozen=True)
class PostgresTarget:
    """One named PostgreSQL server for ``/probe?target=<name>``."""

    name: str = setting(help="target name used in /probe?target=<name>",
                        check=check_target_name)
    dsn: str = setting(help="libpq DSN (URL or key=value)", password_inside=True)
    password_file: str | None = setting(None, "file holding the password")

    def check(self) -> None:
        _check_dsn(self.dsn, self.password_file)

    def extra_secrets(self) -> list[str]:
        found = file_secret(self.password_file)
        password = dsn_password(self.dsn)
        return [*found, password] if password else found


@dataclass(frozen=True)
class PostgresSettings:
    """The PostgreSQL collector: on when ``dsn`` or ``targets`` is set."""

    section: ClassVar[str] = "postgres"
    dsn: str | None = setting(
        None, "libpq DSN of the server /metrics watches (URL or key=value); a password inside "
        "is refused on the command line", password_inside=True)
    password_file: str | None = setting(None, "file holding the password for dsn")
    connect_timeout_seconds: int = setting(
        5, "connect timeout (also capped by the time left in the scrape)",
        min=1, max=300)
    slow_query_threshold_seconds: float = setting(
        60.0, "statements running longer than this count as slow", min=0, max=86400)
    database_size_refresh_seconds: float = setting(
        60.0, "pg_database_size (it stats every file) runs at most this often; scrapes in "
        "between serve the last sizes (0 = every scrape)", min=0, max=86400)
    stat_statements: bool = setting(
        False, "export pg_stat_statements totals (needs the extension) for the top queries")
    stat_statements_limit: int = setting(
        20, "how many queries (by total execution time) pg_stat_statements exports",
        min=1, max=1000)
    user_tables_limit: int = setting(
        200, "pg_stat_user_tables_* for at most this many tables of the connected database, "
        "largest first (0 = off)", min=0, max=100000)
    table_count_databases: tuple[str, ...] = setting(
        (), "more databases whose user tables are counted (one short connection each per "
        "scrape); the connected database is always counted")
    table_count_discover_max: int = setting(
        0, "count user tables in up to this many discovered databases (0 = off)",
        min=0, max=1000)
    targets: tuple[PostgresTarget, ...] = setting(
        (), "named servers for /probe?target=<name> (config file only)")

    def check(self) -> None:
        _check_dsn(self.dsn, self.password_file)

    def extra_secrets(self) -> list[str]:
        found = file_secret(self.password_file)
        password = dsn_password(self.dsn) if self.dsn else None
        return [*found, password] if password else found

