"""One place for secrets: password files, passwords inside URLs and DSNs, redaction.

Policy:

* a ``*_password_file`` is read when the section is validated (so a missing file stops
  the start) and again at every (re)connect, for every backend, so a rotated password
  is picked up without a restart (not so a systemd credential: that is a copy made at
  start, docs/deployment.md); one under /run/credentials/ that cannot be read names the
  ``LoadCredential=`` line the unit lacks (:func:`credential_hint`);
* a value shown in an error is parsed first and cut second: a mapping's values, a value
  under a secret-bearing key and the password inside a URL or DSN are never shown::

      postgres.dsn: got a mapping, expected a string
      redis.url: got "redis://<redacted>@127.0.0.1:notaport", expected ...

* log lines go through :func:`redact`, which knows the configured secrets.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from exporter.errors import SettingError

REDACTED = "<redacted>"
# Shown values are cut to this many characters, after redaction.
SHOW_MAX = 80
# Keys whose values are never shown, whatever their type.
SECRET_KEY = re.compile(r"pass|secret|token|credential|auth|key$", re.I)
# user:password@ in any URL, whatever we were told.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
# Any userinfo of a URL-looking text: everything between :// and the last @ of the
# authority part, for error messages where over-redaction is harmless.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^\s]*@", re.I)
# password=... in libpq key/value strings.  A value already redacted is left as it is:
# a second pass (fail() redacts the line show() built) would take the closing '"]' of a
# quoted list with it.
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(?!<redacted>)('(?:[^'\\]|\\.)*'?|\S+)", re.I)


def read_secret_file(path: str, key: str) -> str:
    """Read a ``*_file`` secret, stripping one trailing newline; errors never show content."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise SettingError(key, f'file "{path}" not found{credential_hint(path)}') from None
    except PermissionError:
        raise SettingError(key, f'file "{path}" not readable (permission denied)'
                                f'{credential_hint(path)}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingError(key, f'file "{path}" cannot be read ({type(err).__name__})') from None


CREDENTIALS_ROOT = "/run/credentials/"


def credential_hint(path: str, directory: str | None = None) -> str:
    """Why a systemd credential the service cannot read is missing, or "".

    systemd copies a credential to /run/credentials/<unit>/<name> only for a
    ``LoadCredential=<name>:<file>`` line of that unit (and sets $CREDENTIALS_DIRECTORY);
    without it the service sees "permission denied" or "not found", which says nothing
    about the fix.

    >>> credential_hint("/run/credentials/stackmon.service/pg", directory="")[:60]
    ': the service has no credential "pg": add LoadCredential=pg:'
    >>> credential_hint("/etc/stackmon/pg")
    ''
    """
    if not path.startswith(CREDENTIALS_ROOT):
        return ""
    if directory is None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    parent, _, name = path.rpartition("/")
    if directory and parent != directory.rstrip("/"):
        return f"; this service's credentials are in {directory}"
    return (f': the service has no credential "{name}": add '
            f"LoadCredential={name}:<password file> to its unit (docs/deployment.md)")


def file_secret(path: str | None) -> list[str]:
    """The content of a password file for log redaction, or nothing; never raises."""
    if not path:
        return []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return [Path(path).read_text(encoding="utf-8").rstrip("\r\n")]
    return []


def url_password(url: str | None) -> list[str]:
    """The password of ``scheme://user:password@host`` as written and URL-decoded.

    >>> url_password("redis://u:p%40ss@h:6379")
    ['p%40ss', 'p@ss']
    """
    if not url:
        return []
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return []
    return [password, urllib.parse.unquote(password)] if password else []


def dsn_password(dsn: str) -> str | None:
    """The password inside a libpq DSN (URL or key=value), or None; never raises."""
    from psycopg.conninfo import conninfo_to_dict  # only where a DSN is configured

    with contextlib.suppress(Exception):
        value = conninfo_to_dict(dsn).get("password")
        return str(value) if value else None
    return None


def has_password(text: str) -> bool:
    """True when a URL (``scheme://user:pw@host``) or a libpq DSN (``password=``) has one."""
    try:
        if urllib.parse.urlsplit(text).password:
            return True
    except ValueError:
        pass
    return re.search(r"(^|[\s?&])password\s*=", text, re.I) is not None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords from URLs and DSNs, and every known secret value.

    >>> redact("redis://u:hunter2@h:6379 password=x", ["h:6379"])
    'redis://u:<redacted>@<redacted> password=<redacted>'
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def secret_key(key: str) -> bool:
    """True for a key whose value may be a credential (``password_file`` is a path: no).

    >>> [secret_key(k) for k in ("password", "bearer_token", "password_file", "host")]
    [True, True, False, False]
    """
    return bool(SECRET_KEY.search(key)) and not key.endswith(("_file", "_env", "_user"))


def show(value: Any, key: str = "", secret: bool = False) -> str:
    """``value`` as an error message may quote it: parsed, redacted, then cut.

    >>> show({"host": "h", "password": "pw"})
    'a mapping'
    >>> show("postgresql://u:pw@h/db")
    '"postgresql://<redacted>@h/db"'
    """
    if secret or (key and secret_key(key)):
        return REDACTED
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping | list | tuple) for item in value):
            return "a list"
        return _cut("[" + ", ".join(show(item) for item in value) + "]")
    if isinstance(value, str):
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", value)
        text = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        return _cut(f'"{text}"')
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= SHOW_MAX else text[:SHOW_MAX - 3] + "..."
