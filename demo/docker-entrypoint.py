"""Container entrypoint of the demo image: put passwords from files into the URLs, then exec.

compose hands passwords over as secret files; the demo's settings read them inside
``DEMO_POSTGRES_DSN``, ``DEMO_REDIS_URL`` and ``DEMO_BROKER_URL``. For each URL whose
``*_PASSWORD_FILE`` is set, the file's first line becomes the URL's password::

    DEMO_REDIS_URL=redis://redis:6379/0 DEMO_REDIS_PASSWORD_FILE=/run/secrets/redis_password
    -> DEMO_REDIS_URL=redis://:<password>@redis:6379/0
"""

from __future__ import annotations

import os
import sys
from urllib.parse import quote, urlsplit

PASSWORD_FILES = {
    "DEMO_POSTGRES_DSN": "DEMO_POSTGRES_PASSWORD_FILE",
    "DEMO_REDIS_URL": "DEMO_REDIS_PASSWORD_FILE",
    "DEMO_BROKER_URL": "DEMO_BROKER_PASSWORD_FILE",
}


def with_password(url: str, password: str) -> str:
    """``url`` with its password replaced (user and everything else kept).

    >>> with_password("postgresql://postgres@db:5432/app", "p@ss/w")
    'postgresql://postgres:p%40ss%2Fw@db:5432/app'
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}").geturl()


def main() -> None:
    for url_name, file_name in PASSWORD_FILES.items():
        path = os.environ.pop(file_name, "")
        if path and os.environ.get(url_name):
            with open(path, encoding="utf-8") as f:
                password = f.readline().strip()
            os.environ[url_name] = with_password(os.environ[url_name], password)
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
