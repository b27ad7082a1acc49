#!/usr/bin/env python3
"""Restrict stackmon's Grafana folder to admins, through Grafana's folder-permissions API.

Grafana OSS cannot set folder permissions from provisioning files, so this script does it
once the stack is up (and is safe to run again: it changes nothing when the folder is
already restricted):

    python3 scripts/grafana-restrict-folder.py --url http://127.0.0.1:3000 \\
        --password-file secrets/grafana_admin_password
    grafana-restrict-folder: folder stackmon: removed Viewer (View), Editor (Edit); admins only

It reads ``GET /api/folders/<uid>/permissions`` and, if any entry grants a role, team or
user access, replaces them all with ``POST /api/folders/<uid>/permissions`` and an empty
list: Grafana's organisation admins always keep access to every folder, so an empty list
means admins only. Standard library only, so it runs anywhere Python 3.9+ does.
Authentication: a service account token in ``GRAFANA_TOKEN``, or basic auth with
``--user`` (default admin) and the password read from ``--password-file``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_FOLDER_UID = "stackmon"  # grafana/provisioning/dashboards/stackmon.yaml folderUid


class GrafanaError(Exception):
    """A one-line reason the folder could not be restricted."""


def describe(item: dict[str, Any]) -> str:
    """Who an entry of the permissions list grants access to (``Viewer (View)``)."""
    if item.get("role"):
        who = str(item["role"])
    elif item.get("teamId"):
        who = str(item.get("team") or f"team {item['teamId']}")
    else:
        who = str(item.get("userLogin") or f"user {item.get('userId')}")
    return f"{who} ({item.get('permissionName') or item.get('permission')})"


def grants_non_admin(item: dict[str, Any]) -> bool:
    """True for an entry that lets someone other than an org admin see the folder."""
    if item.get("role") == "Admin":
        return False  # org admins: always there, not removable
    return bool(item.get("role") or item.get("teamId") or item.get("userId"))


class Grafana:
    """The two calls of Grafana's HTTP API this script needs."""

    def __init__(self, url: str, auth_header: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.auth_header = auth_header
        self.timeout = timeout

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": self.auth_header, "Accept": "application/json",
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            reason = {401: "login refused (check the user and password or token)",
                      403: "not allowed (the account must be a Grafana admin)",
                      404: "not found (has Grafana provisioned the stackmon folder?)"}.get(
                err.code, f"HTTP {err.code}")
            raise GrafanaError(f"{method} {path}: {reason}") from None
        except (urllib.error.URLError, OSError) as err:
            raise GrafanaError(f"{method} {self.url}{path}: cannot connect ({err})") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise GrafanaError(f"{method} {path}: the answer is not JSON") from None


def restrict(grafana: Grafana, folder_uid: str) -> list[str]:
    """Remove every non-admin permission of the folder; the entries removed (none when
    it already was admins only)."""
    path = f"/api/folders/{folder_uid}/permissions"
    current = grafana.call("GET", path)
    if not isinstance(current, list):
        raise GrafanaError(f"GET {path}: expected a list of permissions")
    removed = [describe(item) for item in current
               if isinstance(item, dict) and grants_non_admin(item)]
    if removed:
        grafana.call("POST", path, {"items": []})
    return removed


def auth_header(user: str, password_file: str | None) -> str:
    token = os.environ.get("GRAFANA_TOKEN", "").strip()
    if token:
        return f"Bearer {token}"
    if not password_file:
        raise GrafanaError("no credentials: set GRAFANA_TOKEN or give --password-file")
    try:
        with open(password_file, encoding="utf-8") as f:
            password = f.read().strip()
    except OSError as err:
        raise GrafanaError(f"--password-file {password_file}: {err.strerror}") from None
    if not password:
        raise GrafanaError(f"--password-file {password_file}: empty")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="Grafana's address")
    parser.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID)
    parser.add_argument("--user", default="admin", help="admin login for basic auth")
    parser.add_argument("--password-file", help="file holding that login's password")
    args = parser.parse_args(argv)
    try:
        grafana = Grafana(args.url, auth_header(args.user, args.password_file))
        removed = restrict(grafana, args.folder_uid)
    except GrafanaError as err:
        print(f"grafana-restrict-folder: {err}", file=sys.stderr)
        return 1
    if removed:
        print(f"grafana-restrict-folder: folder {args.folder_uid}: removed "
              f"{', '.join(removed)}; admins only")
    else:
        print(f"grafana-restrict-folder: folder {args.folder_uid}: already admins only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
