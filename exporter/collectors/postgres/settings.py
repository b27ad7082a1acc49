"""The PostgreSQL collector's section: the DSN /metrics watches and the named /probe
targets; a password lives in the DSN (file or env only) or in ``password_file``.

    postgres:
      dsn: host=127.0.0.1 user=stackmon dbname=postgres
      password_file: /run/secrets/pg
"""

from __future__ import annotations

from collections.abc import Mapping
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



def _check_dsn_fields(fields: Mapping[str, object], key: str) -> None:
    """Fields libpq only checks when it connects, checked at start instead, so a typo
    fails once with a clear line rather than on every scrape::

        postgres.dsn: port "notaport" in the DSN, expected a port number 1-65535

    ``port`` may list one port per host (``port=5432,5433``); an empty item means 5432.
    """
    port = fields.get("port")
    if port is not None:
        for item in str(port).split(","):
            if item and not (item.isdigit() and 1 <= int(item) <= 65535):
                raise SettingError(key, f"port {show(item)} in the DSN, expected a port "
                                   "number 1-65535")
    timeout = fields.get("connect_timeout")
    if timeout is not None and not str(timeout).lstrip("-").isdigit():
        raise SettingError(key, f"connect_timeout {show(str(timeout))} in the DSN, expected "
                           "whole seconds")


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

