"""The Redis collector's section: one URL for /metrics, named targets for /probe; the
password in the URL (file or env only), ``password`` (env or file) or ``password_file``.

    redis:
      url: redis://127.0.0.1:6379
      password_file: /run/secrets/redis
"""

from __future__ import annotations

import contextlib
import urllib.parse
from dataclasses import dataclass
from typing import ClassVar

from exporter.secrets import read_secret_file, url_password
from exporter.settings import SettingError, check_target_name, setting

REDIS_SCHEMES = ("redis", "rediss", "unix")


def _check_redis_url(value: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return "a redis://host:port, rediss://host:port or unix:///path/to/socket URL"
    if parts.scheme not in REDIS_SCHEMES:
        return ("a URL starting with redis://, rediss:// or unix://, "
                "e.g. redis://127.0.0.1:6379")
    if parts.scheme == "unix":
        return None if parts.path.startswith("/") else "unix:///absolute/path/to/redis.sock"
    if not parts.hostname:
        return "a host in the URL, e.g. redis://127.0.0.1:6379"
    if port == 0:
        return "a port between 1 and 65535"
    database = urllib.parse.unquote(parts.path).replace("/", "")
    if database and not database.isdigit():
        return "a database number after the host, e.g. redis://127.0.0.1:6379/0"
    return None


def _check_redis_options(value: str) -> str | None:
    """The URL's query options, as redis-py will read them at the first connect."""
    import redis  # only where a Redis URL is configured
    from redis.connection import Connection, parse_url

    try:
        kw = parse_url(value)  # type: ignore[no-untyped-call]
        kw.pop("connection_class", Connection)(**kw)  # builds, does not connect
    except TypeError as err:  # an option redis-py's connection does not take
        option = str(err).rpartition(" ")[2]
        return f"only options redis-py takes in the query string, not {option}"
    except (ValueError, redis.RedisError) as err:  # "Invalid value for 'db' ..."
        return f"valid query options ({err})"
    return None


def _check_url(value: str) -> str | None:
    return _check_redis_url(value) or _check_redis_options(value)



@dataclass(frozen=True)
class RedisTarget:
    """One named Redis served on ``/probe?target=<name>``."""

    name: str = setting(help="target name for /probe?target=<name>", check=check_target_name)
    url: str = setting(help="redis://, rediss:// or unix:// URL", check=_check_url,
                       password_inside=True)
    username: str | None = setting(None, "ACL user name (overrides the URL's)")
    password: str | None = setting(None, "password (overrides the URL's)", secret=True)
    password_file: str | None = setting(None, "file holding the password")
    socket_timeout_seconds: float | None = setting(
        None, "per-command socket timeout (default: redis.socket_timeout_seconds)",
        min=0.01, max=300)

    def check(self) -> None:
        _check_redis_secrets(self.password, self.password_file)

    def extra_secrets(self) -> list[str]:
        return _redis_secrets(self.url, self.password_file)


@dataclass(frozen=True)
class RedisSettings:
    """The Redis collector: one URL on /metrics, named ``targets`` on /probe."""

    section: ClassVar[str] = "redis"
    url: str | None = setting(
        None, "redis://[user[:password]@]host:port, rediss://… or unix:///path; enables the "
        "redis collector (a password in it only from env or file)", check=_check_url,
        password_inside=True)
    username: str | None = setting(None, "ACL user name (overrides the URL's)")
    password: str | None = setting(None, "password (overrides the URL's)", secret=True)
    password_file: str | None = setting(None, "file holding the password (overrides the URL's)")
    socket_timeout_seconds: float = setting(
        5.0, "per-command socket and connect timeout, also capped by the scrape deadline",
        min=0.01, max=300)
    targets: tuple[RedisTarget, ...] = setting(
        (), "named Redis targets for /probe?target=<name> (config file only)")

    def check(self) -> None:
        _check_redis_secrets(self.password, self.password_file)

    def extra_secrets(self) -> list[str]:
        return _redis_secrets(self.url, self.password_file)


def _check_redis_secrets(password: str | None, password_file: str | None) -> None:
    if password is not None and password_file is not None:
        raise SettingError("password_file", "set either password or password_file, not both")
    if password_file is not None:
        read_secret_file(password_file, "password_file")


def _redis_secrets(url: str | None, password_file: str | None) -> list[str]:
    found = url_password(url)
    if password_file is not None:
        with contextlib.suppress(SettingError):
            found.append(read_secret_file(password_file, "password_file"))
    return found

