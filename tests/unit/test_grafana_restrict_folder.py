"""scripts/grafana-restrict-folder.py against a fake Grafana that keeps the recorded
contract of the folder-permissions API (GET lists the entries, POST replaces them all,
401 on a bad login, 404 for an unknown folder): no Grafana can run on these machines."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.exporter import REPO

SCRIPT = REPO / "scripts" / "grafana-restrict-folder.py"
PASSWORD = "s3cret-pw"
TOKEN = "glsa_token"
# What Grafana 11 answers for a freshly provisioned folder: the default role entries.
DEFAULTS = [
    {"role": "Viewer", "permission": 1, "permissionName": "View", "teamId": 0, "userId": 0},
    {"role": "Editor", "permission": 2, "permissionName": "Edit", "teamId": 0, "userId": 0},
]


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.folders: dict[str, list[dict[str, Any]]] = {"stackmon": list(DEFAULTS)}
        self.calls: list[tuple[str, str, str, Any]] = []  # method, path, auth, body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_call(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization", "")
        self.server.calls.append((method, self.path, auth, body))
        basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        if auth not in (basic, f"Bearer {TOKEN}"):
            return self.answer(401, {"message": "Unauthorized"})
        parts = self.path.split("/")  # /api/folders/<uid>/permissions
        if len(parts) != 5 or parts[1:3] != ["api", "folders"] or parts[4] != "permissions":
            return self.answer(404, {"message": "Not found"})
        uid = parts[3]
        if uid not in self.server.folders:
            return self.answer(404, {"message": "Folder not found"})
        if method == "GET":
            return self.answer(200, self.server.folders[uid])
        assert isinstance(body, dict) and isinstance(body.get("items"), list)
        self.server.folders[uid] = list(body["items"])  # replaces every entry
        return self.answer(200, {"message": "Folder permissions updated"})

    def do_GET(self) -> None:
        self.handle_call("GET")

    def do_POST(self) -> None:
        self.handle_call("POST")


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # never the machine's own GRAFANA_TOKEN
    if token:
        env["GRAFANA_TOKEN"] = token
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "grafana_admin_password"
    path.write_text(PASSWORD + "\n")
    return str(path)


def test_restricts_the_folder_then_changes_nothing(grafana: FakeGrafana,
                                                   password_file: str) -> None:
    first = run("--url", grafana.url, "--password-file", password_file)
    assert first.returncode == 0, first.stderr
    assert "removed Viewer (View), Editor (Edit); admins only" in first.stdout
    assert grafana.folders["stackmon"] == []
    assert [(m, p, b) for m, p, _, b in grafana.calls] == [
        ("GET", "/api/folders/stackmon/permissions", None),
        ("POST", "/api/folders/stackmon/permissions", {"items": []}),
    ]
    assert all(auth.startswith("Basic ") for _, _, auth, _ in grafana.calls)

    grafana.calls.clear()
    second = run("--url", grafana.url, "--password-file", password_file)
    assert second.returncode == 0, second.stderr
    assert "already admins only" in second.stdout
    assert [m for m, _, _, _ in grafana.calls] == ["GET"], "no change on a second run"


def test_team_and_user_grants_are_removed_admin_entries_kept_as_they_are(
        grafana: FakeGrafana) -> None:
    grafana.folders["stackmon"] = [
        {"role": "Admin", "permission": 4, "permissionName": "Admin"},
        {"teamId": 3, "team": "ops", "permission": 1, "permissionName": "View"},
        {"userId": 7, "userLogin": "alice", "permission": 2, "permissionName": "Edit"},
    ]
    result = run("--url", grafana.url, token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "removed ops (View), alice (Edit)" in result.stdout
    assert grafana.calls[0][2] == f"Bearer {TOKEN}"
    assert grafana.folders["stackmon"] == []


def test_an_admins_only_folder_with_the_admin_entry_is_left_alone(
        grafana: FakeGrafana) -> None:
    grafana.folders["stackmon"] = [{"role": "Admin", "permission": 4}]
    result = run("--url", grafana.url, token=TOKEN)
    assert result.returncode == 0 and "already admins only" in result.stdout
    assert [m for m, _, _, _ in grafana.calls] == ["GET"]


@pytest.mark.parametrize(("args", "token", "message"), [
    (["--folder-uid", "nope"], TOKEN, "GET /api/folders/nope/permissions: not found"),
    ([], "wrong", "login refused"),
    ([], "", "no credentials: set GRAFANA_TOKEN or give --password-file"),
    (["--password-file", "/nonexistent/pw"], "", "--password-file /nonexistent/pw: No such"),
])
def test_failures_are_one_line_without_secrets(grafana: FakeGrafana, args: list[str],
                                               token: str, message: str) -> None:
    result = run("--url", grafana.url, *args, token=token)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "wrong" not in result.stderr
    assert grafana.folders["stackmon"] == DEFAULTS, "nothing changed on failure"


def test_wrong_password_is_refused_and_not_printed(grafana: FakeGrafana,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("not-the-password")
    result = run("--url", grafana.url, "--password-file", str(path))
    assert result.returncode == 1 and "login refused" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


def test_unreachable_grafana() -> None:
    result = run("--url", "http://127.0.0.1:9", token=TOKEN)
    assert result.returncode == 1 and "cannot connect" in result.stderr


def test_provisioning_pins_the_folder_uid_the_script_uses() -> None:
    provider = (REPO / "grafana" / "provisioning" / "dashboards" / "stackmon.yaml").read_text()
    assert "folderUid: stackmon" in provider
    assert 'DEFAULT_FOLDER_UID = "stackmon"' in SCRIPT.read_text()
