"""Configuration: frozen dataclasses, loaded once and validated before anything runs.

Precedence (lowest first): defaults < YAML file (``--config.file``) < ``STACKMON_*``
environment variables < command-line flags.  One schema drives all three sources:
the YAML key ``web.listen_address`` is the env var ``STACKMON_WEB_LISTEN_ADDRESS``
and the flag ``--web.listen-address``.

Every problem becomes a :class:`ConfigError` whose one-line message names the
source (file, env var or flag), the key, the value (never a secret's) and what was
expected, e.g.::

    stackmon.yml: web.listen_adress: unknown key (did you mean "listen_address"?)
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union
from urllib.parse import urlsplit

import yaml

DEFAULT_PORT = 9860
ENV_PREFIX = "STACKMON_"
# Env vars that are not settings but are still ours.
ENV_EXTRA = frozenset({"STACKMON_CONFIG_FILE"})
REDACTED = "<redacted>"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A bad input: ``str(err)`` is the one line the user sees.

    Control characters that came from the input (a newline inside a key) are escaped so
    the message stays on one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Escape non-printable characters (newlines included) so text stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SettingError(ValueError):
    """Raised by a settings class's ``check()`` for a value that fails a cross-field rule."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[str] | None = None,
    regex: bool = False,
    secret: bool = False,
    flag: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Callable[[], Any] | None = None,
    password_inside: bool = False,
) -> Any:
    """Declare one setting: its default, help text and the rules its value obeys.

    ``secret`` values are never echoed and are refused on the command line;
    ``check`` returns what was expected ("a path starting with /") or None.
    ``password_inside`` marks a URL/DSN that may carry a password: allowed from the file
    and env, refused on the command line when it does.
    """
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "choices": tuple(choices) if choices else None,
        "regex": regex,
        "secret": secret,
        "flag": flag,
        "check": check,
        "password_inside": password_inside,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``:9860``, ``127.0.0.1:9860``, ``[::1]:9860``) into its parts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("host:port, e.g. :9860 or 127.0.0.1:9860")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("a port between 0 and 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("an IPv6 address inside [ ]") from None
    elif ":" in host:
        raise ValueError("IPv6 addresses in brackets, e.g. [::1]:9860")
    return host, port


def _check_listen_address(value: str) -> str | None:
    try:
        parse_listen_address(value)
    except ValueError as err:
        return str(err)
    return None


def _check_path(value: str) -> str | None:
    if not value.startswith("/") or value == "/":
        return "a path starting with / other than / itself, e.g. /metrics"
    return None


@dataclass(frozen=True)
class WebSettings:
    """How the HTTP server listens."""

    section: ClassVar[str] = "web"
    listen_address: str = setting(
        f":{DEFAULT_PORT}", "address to listen on, host:port", check=_check_listen_address
    )
    telemetry_path: str = setting("/metrics", "path that serves metrics", check=_check_path)
    config_file: str | None = setting(
        None, "exporter-toolkit web config file (TLS, basic auth)", flag="--web.config.file"
    )
    max_requests: int = setting(
        40, "concurrent requests served before answering 503 (0 = no limit)", min=0, max=10000
    )


@dataclass(frozen=True)
class LogSettings:
    section: ClassVar[str] = "log"
    level: str = setting("info", "log level", choices=LOG_LEVELS)


@dataclass(frozen=True)
class ScrapeSettings:
    section: ClassVar[str] = "scrape"
    timeout_seconds: float = setting(
        10.0, "longest a scrape may take, also capped by Prometheus's scrape timeout",
        min=0.1, max=300,
    )
    timeout_offset_seconds: float = setting(
        0.5, "subtracted from X-Prometheus-Scrape-Timeout-Seconds to leave room for the reply",
        min=0, max=60,
    )


# node_exporter's defaults (collector/filesystem_linux.go, diskstats_linux.go).
FS_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs"
    r"|squashfs|erofs|sysfs|tracefs)$"
)
DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


def _check_target_name(value: str) -> str | None:
    """Names of /probe targets (postgres, redis) and service checks."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", value):
        return "a name of letters, digits, '_', '.' or '-' (at most 63), e.g. cache-1"
    return None


def _dsn_password(dsn: str) -> str | None:
    """The password inside a libpq DSN (URL or key=value), or None; never raises."""
    from psycopg.conninfo import conninfo_to_dict

    with contextlib.suppress(Exception):
        value = conninfo_to_dict(dsn).get("password")
        return str(value) if value else None
    return None


def _check_dsn(dsn: str | None, password_file: str | None, key: str = "dsn") -> None:
    """A DSN must parse; a password lives either inside it or in password_file, not both.

    Messages never quote the DSN: it may carry a password.
    """
    if dsn is not None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(dsn)
        except Exception:
            raise SettingError(key, "cannot be parsed, expected a libpq key=value string "
                               "(host=... dbname=...) or a postgresql:// URL") from None
        if password_file and _dsn_password(dsn):
            raise SettingError("password_file", "the DSN already contains a password, expected "
                               "the password in one place only")
    if password_file:
        read_secret_file(password_file, "password_file")


def _file_secret(path: str | None) -> list[str]:
    if not path:
        return []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return [Path(path).read_text(encoding="utf-8").rstrip("\r\n")]
    return []


@dataclass(frozen=True)
class PostgresTarget:
    """One named PostgreSQL server for ``/probe?target=<name>``."""

    name: str = setting(help="target name used in /probe?target=<name>",
                        check=_check_target_name)
    dsn: str = setting(help="libpq DSN (URL or key=value)", password_inside=True)
    password_file: str | None = setting(None, "file holding the password")

    def check(self) -> None:
        _check_dsn(self.dsn, self.password_file)

    def extra_secrets(self) -> list[str]:
        found = _file_secret(self.password_file)
        password = _dsn_password(self.dsn)
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
        5, "connect timeout (also capped by the scrape deadline; libpq's minimum is 2)",
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
        found = _file_secret(self.password_file)
        password = _dsn_password(self.dsn) if self.dsn else None
        return [*found, password] if password else found


@dataclass(frozen=True)
class HostSettings:
    section: ClassVar[str] = "host"
    filesystem_mount_points_exclude: str = setting(
        FS_MOUNT_POINTS_EXCLUDE, "regex of mount points to ignore", regex=True
    )
    filesystem_fs_types_exclude: str = setting(
        FS_TYPES_EXCLUDE, "regex of filesystem types to ignore", regex=True
    )
    filesystem_mount_timeout_seconds: float = setting(
        1.0, "a mount whose statfs takes longer is reported as an error and skipped until "
        "it answers", min=0.01, max=60,
    )
    disk_devices_exclude: str = setting(
        DISK_DEVICES_EXCLUDE, "regex of block devices to ignore", regex=True
    )
    network_devices_exclude: str = setting("", "regex of network devices to ignore", regex=True)


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
    return None


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return []
    return [password, urllib.parse.unquote(password)] if password else []


@dataclass(frozen=True)
class RedisTarget:
    """One named Redis served on ``/probe?target=<name>``."""

    name: str = setting(help="target name for /probe?target=<name>", check=_check_target_name)
    url: str = setting(help="redis://, rediss:// or unix:// URL", check=_check_redis_url,
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
        "redis collector (a password in it only from env or file)", check=_check_redis_url,
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
    found = _url_password(url)
    if password_file is not None:
        with contextlib.suppress(SettingError):
            found.append(read_secret_file(password_file, "password_file"))
    return found


# ---------------------------------------------------------------------------
# Service checks (exporter/collectors/services/)

CHECK_TYPES = ("http", "tcp", "nginx")
# Names the built-in collectors use for stackmon_service_up{service}.
BUILTIN_SERVICES = ("postgres", "redis", "celery")
_CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _check_check_name(value: str) -> str | None:
    if not _CHECK_NAME.match(value):
        return "a name of letters, digits, _ . - (at most 63, starting with a letter or digit)"
    if value in BUILTIN_SERVICES:
        return "a name other than the built-in services " + ", ".join(BUILTIN_SERVICES)
    return None


def _check_env_name(value: str) -> str | None:
    if not _ENV_NAME.match(value):
        return "the name of an environment variable, e.g. DJANGO_HEALTH_TOKEN"
    if value.startswith(ENV_PREFIX):
        return f"a variable name not starting with {ENV_PREFIX} (those are settings)"
    return None


def _check_header_name(value: str) -> str | None:
    return None if _HEADER_NAME.match(value) else "an HTTP header name, e.g. X-App-Version"


def _check_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "an http:// or https:// URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host"
    if parts.password is not None or parts.username is not None:
        return ("a URL without user:password@ (use basic_auth_user and "
                "basic_auth_password_file / basic_auth_password_env)")
    return None


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` of a TCP check; the host is required."""
    host, port = parse_listen_address(text)
    if not host or port == 0:
        raise ValueError("expected host:port with a host and a port above 0, e.g. db:5432")
    return host, port


def _check_address(value: str) -> str | None:
    try:
        parse_host_port(value)
    except ValueError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class ServiceCheck:
    """One named check: an HTTP endpoint, a TCP port or an nginx stub_status page."""

    name: str = setting(help="service label value", check=_check_check_name)
    type: str = setting("http", "http, tcp or nginx (stub_status URL)", choices=CHECK_TYPES)
    url: str | None = setting(None, "http / nginx: the URL to GET", check=_check_url)
    address: str | None = setting(None, "tcp: host:port to connect to", check=_check_address)
    role: str | None = setting(None, "role label of stackmon_service_info (default: the type)",
                               check=lambda v: None if _CHECK_NAME.match(v) else
                               "letters, digits, _ . - (at most 63)")
    expected_status_codes: tuple[int, ...] = setting(
        (), "http: status codes that count as up (default: any 2xx)", min=100, max=599)
    body_regex: str | None = setting(None, "http: the body must match this regex", regex=True)
    timeout_seconds: float = setting(5.0, "give up after this long (also capped by the "
                                     "scrape deadline)", min=0.01, max=300)
    tls_verify: bool = setting(True, "https: verify the certificate chain and host name")
    version_header: str | None = setting(
        None, "http / nginx: response header whose value is the version label "
        "(nginx default: Server)", check=_check_header_name)
    basic_auth_user: str | None = setting(None, "http / nginx: basic auth user name")
    basic_auth_password_file: str | None = setting(None, "file holding the basic auth password")
    basic_auth_password_env: str | None = setting(
        None, "environment variable holding the basic auth password", check=_check_env_name)
    bearer_token_file: str | None = setting(None, "file holding a bearer token")
    bearer_token_env: str | None = setting(
        None, "environment variable holding a bearer token", check=_check_env_name)
    # Resolved from the *_file / *_env settings by check(); never in repr or the YAML.
    password: str = field(default="", init=False, repr=False, compare=False,
                          metadata={"secret": True})
    bearer_token: str = field(default="", init=False, repr=False, compare=False,
                              metadata={"secret": True})

    def check(self) -> None:
        if self.type == "tcp":
            if not self.address:
                raise SettingError("address", "missing, expected host:port for a tcp check")
            for key in ("url", "body_regex", "version_header", "basic_auth_user",
                        "basic_auth_password_file", "basic_auth_password_env",
                        "bearer_token_file", "bearer_token_env"):
                if getattr(self, key) is not None:
                    raise SettingError(key, "not used by a tcp check, expected it removed")
            if self.expected_status_codes:
                raise SettingError("expected_status_codes", "not used by a tcp check")
            return
        if not self.url:
            raise SettingError("url", f"missing, expected an http(s) URL for a {self.type} check")
        if self.address is not None:
            raise SettingError("address", f"not used by a {self.type} check (use url)")
        if self.type == "nginx":
            for key in ("body_regex",):
                if getattr(self, key) is not None:
                    raise SettingError(key, "not used by an nginx check")
            if self.expected_status_codes:
                raise SettingError("expected_status_codes", "not used by an nginx check")
        if self.basic_auth_password_file and self.basic_auth_password_env:
            raise SettingError("basic_auth_password_env",
                               "give basic_auth_password_file or basic_auth_password_env, "
                               "not both")
        if self.bearer_token_file and self.bearer_token_env:
            raise SettingError("bearer_token_env",
                               "give bearer_token_file or bearer_token_env, not both")
        has_password = bool(self.basic_auth_password_file or self.basic_auth_password_env)
        if has_password and self.basic_auth_user is None:
            raise SettingError("basic_auth_user", "missing, needed with a basic auth password")
        if (self.basic_auth_user is not None or has_password) and (
                self.bearer_token_file or self.bearer_token_env):
            raise SettingError("bearer_token_file",
                               "use basic auth or a bearer token, not both")
        object.__setattr__(self, "password", _secret_value(
            self.basic_auth_password_file, self.basic_auth_password_env,
            "basic_auth_password_file", "basic_auth_password_env"))
        object.__setattr__(self, "bearer_token", _secret_value(
            self.bearer_token_file, self.bearer_token_env,
            "bearer_token_file", "bearer_token_env"))
        if (self.bearer_token_file or self.bearer_token_env) and not self.bearer_token:
            raise SettingError("bearer_token_file" if self.bearer_token_file
                               else "bearer_token_env", "the bearer token is empty")


def _secret_value(path: str | None, env_name: str | None, file_key: str, env_key: str) -> str:
    if path:
        return read_secret_file(path, file_key)
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise SettingError(env_key, f'environment variable "{env_name}" is not set')
        return value
    return ""


@dataclass(frozen=True)
class ServicesSettings:
    """Configured service checks; the services collector runs them all on every scrape."""

    section: ClassVar[str] = "services"
    checks: tuple[ServiceCheck, ...] = setting(
        help="named http / tcp / nginx checks (config file only)", default_factory=tuple)


CELERY_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
CELERY_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                          60.0, 300.0, 600.0, 1800.0)


def _check_bucket(value: str) -> str | None:
    """One histogram bucket bound (the setting's check runs once per list item)."""
    try:
        bound = float(value)
    except ValueError:
        return "a number (a list such as 0.1,0.5,1,5)"
    if not 0 < bound < float("inf"):
        return "a positive finite number"
    return None


@dataclass(frozen=True)
class CelerySettings:
    """Celery: broker queue lengths, the event stream and the workers' inspect data."""

    section: ClassVar[str] = "celery"
    broker_url: str | None = setting(
        None, "broker URL, redis://[:password@]host:port/db or amqp://user:password@host/vhost",
        secret=True)
    broker_password_file: str | None = setting(
        None, "file holding the broker password (replaces the password in broker_url)")
    queues: tuple[str, ...] = setting(
        ("celery",), "queues whose length is read from the broker (the queues workers "
        "report consuming are added)")
    worker_heartbeat_timeout_seconds: float = setting(
        15.0, "celery_worker_up turns 0 when no event came from a worker for this long",
        min=0.1, max=3600)
    worker_purge_seconds: float = setting(
        600.0, "a silent worker's series are removed after this long", min=0.1, max=86400)
    max_task_names: int = setting(
        500, "distinct task names tracked; the rest are counted under name=\"__other__\"",
        min=1, max=100000)
    max_workers: int = setting(
        500, "distinct worker hostnames tracked; further workers get no worker series and "
        "hostname=\"__other__\" in task series", min=1, max=100000)
    max_queue_names: int = setting(
        100, "distinct queue names in task series; the rest become \"__other__\"",
        min=1, max=10000)
    max_tracked_tasks: int = setting(
        100000, "in-flight task ids remembered to label later events (oldest dropped first)",
        min=100, max=10000000)
    runtime_buckets: tuple[str, ...] = setting(
        tuple(str(b) for b in CELERY_DEFAULT_BUCKETS),
        "celery_task_runtime_seconds histogram buckets (seconds)", check=_check_bucket)
    queue_wait_buckets: tuple[str, ...] = setting(
        tuple(str(b) for b in CELERY_DEFAULT_BUCKETS),
        "celery_task_queue_wait_seconds histogram buckets (seconds)", check=_check_bucket)
    task_hostname_label: bool = setting(
        False, "add a hostname label to the task counters (one series per worker)")
    enable_events_at_start: bool = setting(
        False, "send the enable_events control command to the workers at start, "
        "after each reconnect and on every inspect refresh")
    inspect_interval_seconds: float = setting(
        30.0, "how often the inspect broadcasts (stats, active, reserved, scheduled, "
        "registered, active_queues) are refreshed in the background (0 = never)",
        min=0, max=86400)
    inspect_timeout_seconds: float = setting(
        1.0, "longest wait for the replies of one inspect broadcast", min=0.05, max=60)
    broker_timeout_seconds: float = setting(
        3.0, "connect and socket timeout for the broker", min=0.1, max=60)

    def check(self) -> None:
        if self.broker_url is not None:
            scheme = self.broker_url.partition("://")[0].lower()
            if "://" not in self.broker_url or scheme not in CELERY_BROKER_SCHEMES:
                raise SettingError("broker_url", "expected a URL with one of the schemes "
                                   + ", ".join(CELERY_BROKER_SCHEMES))
            try:
                urllib.parse.urlsplit(self.broker_url).port  # noqa: B018 - validates the port
            except ValueError:
                raise SettingError("broker_url", "expected a port between 1 and 65535 "
                                   "after the host") from None
        if self.broker_password_file is not None:
            if self.broker_url is None:
                raise SettingError("broker_password_file", "needs celery.broker_url as well")
            read_secret_file(self.broker_password_file, "broker_password_file")
        for key in ("runtime_buckets", "queue_wait_buckets"):
            bounds = [float(b) for b in getattr(self, key)]
            if not bounds or sorted(set(bounds)) != bounds:
                raise SettingError(key, "expected strictly increasing numbers")
        if self.worker_purge_seconds < self.worker_heartbeat_timeout_seconds:
            raise SettingError("worker_purge_seconds", "expected a value at least "
                               "worker_heartbeat_timeout_seconds")

    def url(self) -> str:
        """The broker URL with the password from ``broker_password_file`` put in."""
        if self.broker_url is None:
            return ""
        if self.broker_password_file is None:
            return self.broker_url
        password = read_secret_file(self.broker_password_file, "broker_password_file")
        scheme, _, rest = self.broker_url.partition("://")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0] if at else ""
        quoted = urllib.parse.quote(password, safe="")
        return f"{scheme}://{user}:{quoted}@{hostport}{slash}{path}"

    def extra_secrets(self) -> list[str]:
        """The password inside the broker URL (also URL-decoded) and from the file."""
        out: list[str] = []
        url = self.url() if self.broker_url else ""
        netloc = url.partition("://")[2].partition("/")[0]
        userinfo, at, _ = netloc.rpartition("@")
        if at and ":" in userinfo:
            password = userinfo.partition(":")[2]
            out += [password, urllib.parse.unquote(password)]
        return [s for s in out if s]


SECTIONS: tuple[Any, ...] = (WebSettings, LogSettings, ScrapeSettings, HostSettings,
                             PostgresSettings, RedisSettings, CelerySettings, ServicesSettings)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    scrape: ScrapeSettings = field(default_factory=ScrapeSettings)
    host: HostSettings = field(default_factory=HostSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    celery: CelerySettings = field(default_factory=CelerySettings)
    services: ServicesSettings = field(default_factory=ServicesSettings)
    collectors: Mapping[str, bool | None] = field(default_factory=dict)
    source: str = "defaults"

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for log redaction."""
        found: list[str] = []
        for section in SECTIONS:
            _collect_secrets(getattr(self, section.section), found)
        return [s for s in found if s]


def _collect_secrets(obj: Any, found: list[str]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret") and isinstance(value, str):
            found.append(value)
        elif dataclasses.is_dataclass(value):
            _collect_secrets(value, found)
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    _collect_secrets(item, found)
    hook = getattr(obj, "extra_secrets", None)
    if callable(hook):
        found.extend(hook())


# ---------------------------------------------------------------------------
# Schema walking


@dataclass(frozen=True)
class Leaf:
    """One scalar setting reachable from env and flags."""

    path: tuple[str, ...]
    field: dataclasses.Field[Any]
    type: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def flag(self) -> str:
        explicit = self.field.metadata.get("flag")
        if explicit:
            return str(explicit)
        return "--" + self.path[0] + "." + "-".join(self.path[1:]).replace("_", "-")

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret"))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def leaves() -> list[Leaf]:
    """Every scalar setting of every section (lists of targets are file-only)."""
    out: list[Leaf] = []
    for section in SECTIONS:
        hints = _hints(section)
        for f in dataclasses.fields(section):
            tp, _ = _unwrap_optional(hints[f.name])
            if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is tuple:
                if typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is str:
                    out.append(Leaf((section.section, f.name), f, hints[f.name]))
                continue
            out.append(Leaf((section.section, f.name), f, hints[f.name]))
    return out


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _type_name(tp: Any) -> str:
    tp, _optional = _unwrap_optional(tp)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return "a list of strings" if inner is str else "a list of mappings"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return names.get(tp, str(tp))


class _Origins:
    """Remembers where each raw value came from, for error messages."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.by_path: dict[tuple[str, ...], str] = {}

    def of(self, path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.by_path:
                return self.by_path[path[:n]]
        return self.file_label


def _show(value: Any, secret: bool) -> str:
    if secret:
        return REDACTED
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 80 else text[:77] + "..."


def _coerce(value: Any, tp: Any, path: tuple[str, ...], meta: Mapping[str, Any],
            origins: _Origins, from_text: bool) -> Any:
    key = ".".join(path)
    where = origins.of(path)
    secret = bool(meta.get("secret"))

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: got {_show(value, secret)}, expected {expected}")

    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise bad(_type_name(tp))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        return _build(tp, value, path, origins)
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise bad(_type_name(tp))
        items = []
        for i, item in enumerate(value):
            items.append(_coerce(item, inner, (*path[:-1], f"{path[-1]}[{i}]"), meta,
                                 origins, from_text))
        if dataclasses.is_dataclass(inner):
            names = [getattr(item, "name", None) for item in items]
            dupes = sorted({n for n in names if n is not None and names.count(n) > 1})
            if dupes:
                raise ConfigError(f'{where}: {key}: target name "{dupes[0]}" appears twice, '
                                  "expected unique names")
        return tuple(items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise bad("true or false")
    if tp is int:
        if isinstance(value, str) and from_text:
            try:
                value = int(value.strip())
            except ValueError:
                raise bad("an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        result: Any = value
    elif tp is float:
        if isinstance(value, str) and from_text:
            try:
                value = float(value.strip())
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
        result = float(value)
    elif tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad("a string")
        result = str(value)
    else:  # pragma: no cover - schema bug, not user input
        raise TypeError(f"unsupported setting type {tp!r} for {key}")

    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        bounds = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else (
            f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        raise bad(f"a value {bounds}")
    choices = meta.get("choices")
    if choices and result not in choices:
        raise bad("one of " + ", ".join(choices) + _suggest(str(result), choices))
    if meta.get("regex"):
        try:
            re.compile(result)
        except re.error as err:
            raise bad(f"a valid regular expression ({err})") from None
    check = meta.get("check")
    if check is not None:
        problem = check(result)
        if problem:
            raise bad(problem)
    if meta.get("password_inside") and where.startswith("flag ") and has_password(result):
        env_name = ENV_PREFIX + "_".join(path).upper()
        raise ConfigError(f"{where}: {key}: a password inside the URL is not accepted on the "
                          "command line (other users can read it in the process list); set "
                          f"{env_name}, use the config file, or put the password in "
                          f"{path[0]}.password_file")
    return result


def has_password(text: str) -> bool:
    """True when a URL (``scheme://user:pw@host``) or a libpq DSN (``password=``) has one."""
    try:
        if urllib.parse.urlsplit(text).password:
            return True
    except ValueError:
        pass
    return re.search(r"(^|[\s?&])password\s*=", text, re.I) is not None


def _build(cls: type, raw: Mapping[str, Any], path: tuple[str, ...], origins: _Origins) -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        sub = (*path, str(key))
        if not isinstance(key, str) or key not in fields:
            where = origins.of(sub)
            raise ConfigError(f"{where}: {'.'.join(sub)}: unknown key"
                              f"{_suggest(str(key), list(fields))}")
        from_text = origins.of(sub) != origins.file_label
        kwargs[key] = _coerce(value, hints[key], sub, fields[key].metadata, origins, from_text)
    missing = [name for name, f in fields.items()
               if name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        key = ".".join((*path, missing[0]))
        raise ConfigError(f"{origins.of(path)}: {key}: missing, expected "
                          f"{_type_name(hints[missing[0]])}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except SettingError as err:
            key = ".".join((*path, err.key))
            raise ConfigError(f"{origins.of((*path, err.key))}: {key}: {err.message}") from None
    return obj


# ---------------------------------------------------------------------------
# Sources


def read_yaml(path: str) -> dict[str, Any]:
    """Read the config file; any problem becomes a ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = err.problem or err.context or "malformed YAML"
        raise ConfigError(f"{path}:{line} malformed YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {type(err).__name__}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, "
                          f"got {type(data).__name__}")
    return data


_COLLECTOR_FIELD: dataclasses.Field[Any] = dataclasses.fields(
    dataclasses.make_dataclass("_Switch", [("on", bool, field(default=False))]))[0]


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def env_settings(collectors: Iterable[str]) -> dict[str, Leaf]:
    """Every ``STACKMON_*`` variable that sets something, by name (ENV_EXTRA aside).

    >>> sorted(env_settings(["host"]))[:2]
    ['STACKMON_CELERY_BROKER_PASSWORD_FILE', 'STACKMON_CELERY_BROKER_TIMEOUT_SECONDS']
    """
    by_env = {leaf.env: leaf for leaf in leaves()}
    for name in collectors:
        by_env[f"{ENV_PREFIX}COLLECTORS_{name.upper()}"] = Leaf(
            ("collectors", name), _COLLECTOR_FIELD, bool)
    return by_env


def load(
    *,
    config_file: str | None,
    env: Mapping[str, str],
    flags: Mapping[tuple[str, ...], Any],
    collector_defaults: Mapping[str, bool | None],
) -> Config:
    """Merge defaults, file, env and flags, then validate everything once.

    ``flags`` maps a setting path such as ``("web", "listen_address")`` to the text
    given on the command line; collector switches use ``("collectors", name)``.
    """
    file_label = config_file or "defaults"
    origins = _Origins(file_label)
    raw: dict[str, Any] = read_yaml(config_file) if config_file else {}

    by_env = env_settings(collector_defaults)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in ENV_EXTRA:
            continue
        leaf = by_env.get(name)
        if leaf is None:
            raise ConfigError(f"environment: {name}: unknown variable"
                              f"{_suggest(name, list(by_env))}")
        _set(raw, leaf.path, env[name])
        origins.by_path[leaf.path] = f"environment {name}"
    for path, value in flags.items():
        _set(raw, path, value)
        leaf = next((lf for lf in leaves() if lf.path == path), None)
        label = leaf.flag if leaf else f"--{'collector' if path[0] == 'collectors' else path[0]}." \
            + "-".join(path[1:])
        origins.by_path[path] = f"flag {label}"

    collectors_raw = raw.pop("collectors", {}) or {}
    if not isinstance(collectors_raw, Mapping):
        raise ConfigError(f"{origins.of(('collectors',))}: collectors: expected a mapping of "
                          "collector name to true/false")
    enabled: dict[str, bool | None] = dict(collector_defaults)
    for name, value in collectors_raw.items():
        path = ("collectors", str(name))
        if name not in collector_defaults:
            raise ConfigError(f"{origins.of(path)}: collectors.{name}: unknown collector"
                              f"{_suggest(str(name), list(collector_defaults))}")
        enabled[name] = _coerce(value, bool, path, {}, origins,
                                from_text=origins.of(path) != file_label)

    sections: dict[str, Any] = {}
    known = {s.section: s for s in SECTIONS}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{origins.of((str(key),))}: {key}: unknown section"
                              f"{_suggest(str(key), [*known, 'collectors'])}")
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{origins.of((key,))}: {key}: got {_show(value, False)}, "
                              "expected a mapping")
        sections[key] = _build(known[key], value, (key,), origins)
    return Config(**sections, collectors=enabled, source=file_label)


def read_secret_file(path: str, key: str) -> str:
    """Read a ``*_file`` secret, stripping one trailing newline; errors never show content."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise SettingError(key, f'file "{path}" not found') from None
    except PermissionError:
        raise SettingError(key, f'file "{path}" not readable (permission denied)') from None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingError(key, f'file "{path}" cannot be read ({type(err).__name__})') from None
