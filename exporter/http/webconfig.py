"""``--web.config.file``: TLS and basic auth in Prometheus exporter-toolkit's format.

Example::

    tls_server_config:
      cert_file: /etc/stackmon/tls.crt
      key_file: /etc/stackmon/tls.key
      client_ca_file: /etc/stackmon/ca.crt        # optional
      client_auth_type: RequireAndVerifyClientCert  # optional
      min_version: TLS12                          # optional
    basic_auth_users:
      prometheus: $2b$12$...                       # bcrypt hash (htpasswd -nBC 12 "")

Checking a password costs one bcrypt run (~0.25 s at cost 12) the first time; a
success is cached under a SHA-256 of user, hash and password, so later scrapes with
the same credentials stay fast and never wait for bcrypt.  A failure is cached for
``FAILURE_TTL_SECONDS`` in a separate table, so a flood of wrong passwords can neither
evict the good entries nor make the same wrong guess cost bcrypt again.  At most
``BCRYPT_CONCURRENCY`` bcrypt runs go at once; a request that cannot get one within
``BCRYPT_WAIT_SECONDS`` is answered 503 (``authorized`` returns None).  Unknown users
are checked against a dummy hash of the configured hashes' cost, so the answer takes
as long as for known ones.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from exporter.settings import ConfigError, read_yaml

# Names in the ssl module, looked up when TLS is configured: ssl is loaded only then
# (exporter/__init__.py).
TLS_VERSIONS = {"TLS10": "TLSv1", "TLS11": "TLSv1_1", "TLS12": "TLSv1_2", "TLS13": "TLSv1_3"}
CLIENT_AUTH = {
    "NoClientCert": "CERT_NONE",
    "RequestClientCert": "CERT_OPTIONAL",
    "RequireAnyClientCert": "CERT_REQUIRED",
    "VerifyClientCertIfGiven": "CERT_OPTIONAL",
    "RequireAndVerifyClientCert": "CERT_REQUIRED",
}
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version",
            "max_version", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
CACHE_SIZE = 256  # successful credentials remembered (a deployment has a handful)
FAILURE_CACHE_SIZE = 4096
FAILURE_TTL_SECONDS = 10.0
# bcrypt is CPU-bound: more runs at once than cores only makes every one slower.
BCRYPT_CONCURRENCY = 2
BCRYPT_WAIT_SECONDS = 2.0
DEFAULT_COST = 12


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash: ``$2b$12$...`` -> 12."""
    return int(hashed.split(b"$")[2])


def dummy_hash(users: dict[str, bytes]) -> bytes:
    """A hash of a random secret at the highest configured cost: checking an unknown
    user costs as much as checking a known one, so timing does not reveal who exists."""
    cost = max((bcrypt_cost(h) for h in users.values()), default=DEFAULT_COST)
    return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=cost))


@dataclass
class WebConfig:
    """Parsed web config: an optional TLS context and optional basic-auth users."""

    users: dict[str, bytes] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    dummy: bytes = b""
    _good: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    _bad: OrderedDict[bytes, float] = field(default_factory=OrderedDict)  # key -> expiry
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _bcrypt: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(BCRYPT_CONCURRENCY))

    def __post_init__(self) -> None:
        if self.users and not self.dummy:
            self.dummy = dummy_hash(self.users)

    def authorized(self, header: str | None) -> bool | None:
        """True when no users are configured or the Basic credentials match, False when
        they do not, None when every bcrypt slot stayed busy (answer 503, not 401)."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = self.users.get(user)
        import hashlib  # here: OpenSSL's libcrypto is 3.7 MB that only basic auth needs

        key = hashlib.sha256(b"\0".join([user.encode(), hashed or b"",
                                         password.encode()])).digest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        if not self._bcrypt.acquire(timeout=BCRYPT_WAIT_SECONDS):
            return None
        try:
            # checkpw compares in constant time; unknown users pay for a dummy check too.
            ok = bcrypt.checkpw(password.encode(), hashed or self.dummy) and hashed is not None
        finally:
            self._bcrypt.release()
        with self._lock:
            if ok:
                self._good[key] = None
                while len(self._good) > CACHE_SIZE:
                    self._good.popitem(last=False)
            else:
                self._bad[key] = time.monotonic() + FAILURE_TTL_SECONDS
                while len(self._bad) > FAILURE_CACHE_SIZE:
                    self._bad.popitem(last=False)
        return ok

    def _cached(self, key: bytes) -> bool | None:
        with self._lock:
            if key in self._good:
                self._good.move_to_end(key)
                return True
            expiry = self._bad.get(key)
            if expiry is None:
                return None
            if expiry > time.monotonic():
                return False
            del self._bad[key]
            return None


def _err(path: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def _file(path: str, key: str, value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value:
        raise _err(path, key, "expected a file path")
    full = (base / value) if not value.startswith("/") else Path(value)
    if not full.is_file():
        raise _err(path, key, f'file "{value}" not found')
    return str(full)


def _tls(path: str, raw: Any, base: Path) -> ssl.SSLContext | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _err(path, "tls_server_config", "expected a mapping")
    for key in raw:
        if key not in TLS_KEYS:
            raise _err(path, f"tls_server_config.{key}", "unknown key")
    if "cert_file" not in raw or "key_file" not in raw:
        raise _err(path, "tls_server_config", "cert_file and key_file are both required")
    cert = _file(path, "tls_server_config.cert_file", raw["cert_file"], base)
    key = _file(path, "tls_server_config.key_file", raw["key_file"], base)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        raise _err(path, "tls_server_config.cert_file",
                   "certificate and key could not be loaded (not PEM, or they do not match)"
                   ) from None
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = raw.get(name, default)
        if version not in TLS_VERSIONS:
            raise _err(path, f"tls_server_config.{name}",
                       f'got "{version}", expected one of {", ".join(TLS_VERSIONS)}')
        setattr(context, "minimum_version" if name == "min_version" else "maximum_version",
                getattr(ssl.TLSVersion, TLS_VERSIONS[version]))
    auth_type = raw.get("client_auth_type", "NoClientCert")
    if auth_type not in CLIENT_AUTH:
        raise _err(path, "tls_server_config.client_auth_type",
                   f'got "{auth_type}", expected one of {", ".join(CLIENT_AUTH)}')
    ca = raw.get("client_ca_file")
    if ca is not None:
        ca_file = _file(path, "tls_server_config.client_ca_file", ca, base)
        try:
            context.load_verify_locations(ca_file)
        except (ssl.SSLError, OSError):
            raise _err(path, "tls_server_config.client_ca_file",
                       "not a PEM CA certificate") from None
    elif auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        raise _err(path, "tls_server_config.client_ca_file",
                   f"required when client_auth_type is {auth_type}")
    context.verify_mode = getattr(ssl, CLIENT_AUTH[auth_type])
    return context


def load_web_config(path: str | None) -> WebConfig:
    """Read and check the web config file; every problem is a ConfigError naming the key."""
    if not path:
        return WebConfig()
    raw = read_yaml(path)  # every YAML error is a ConfigError already
    for key in raw:
        if key not in TOP_KEYS:
            raise _err(path, str(key), "unknown key")
    base = Path(path).resolve().parent
    users: dict[str, bytes] = {}
    raw_users = raw.get("basic_auth_users") or {}
    if not isinstance(raw_users, dict):
        raise _err(path, "basic_auth_users", "expected a mapping of user name to bcrypt hash")
    for user, hashed in raw_users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            # Never echo the value: it may be a plain-text password by mistake.
            raise _err(path, f"basic_auth_users.{user}", "expected a bcrypt hash ($2b$...)")
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            raise _err(path, f"basic_auth_users.{user}", "not a valid bcrypt hash") from None
        users[str(user)] = hashed.encode()
    return WebConfig(users=users, ssl_context=_tls(path, raw.get("tls_server_config"), base))
