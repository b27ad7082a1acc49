"""The services collector's section: named http, tcp and nginx stub_status checks.

    services:
      checks:
        - {name: web, url: "https://example.org/healthz"}
        - {name: db-port, type: tcp, address: "db:5432"}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from exporter.secrets import read_secret_file
from exporter.settings import ENV_PREFIX, SettingError, parse_listen_address, setting

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

