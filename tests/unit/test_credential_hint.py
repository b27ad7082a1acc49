"""A ``*_PASSWORD_FILE`` under /run/credentials/ that the service cannot read names the
``LoadCredential=`` line it lacks (issue 20), instead of a bare "permission denied".

Under systemd the file is missing (or its directory closed) exactly when the unit has no
``LoadCredential=<name>:<file>`` line: tests/installed/test_systemd.py runs that for real.
Here ``CREDENTIALS_ROOT`` points into a temp dir, so nothing of the machine's /run is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import cli, secrets
from exporter.errors import SettingError
from exporter.settings import ConfigError

HINT = ('the service has no credential "postgres_password": add '
        "LoadCredential=postgres_password:<password file> to its unit (docs/deployment.md)")


@pytest.fixture
def run_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/run/credentials/ of a service without credentials (no $CREDENTIALS_DIRECTORY)."""
    root = tmp_path / "run-credentials"
    root.mkdir()
    monkeypatch.setattr(secrets, "CREDENTIALS_ROOT", f"{root}/", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return root


def error(path: Path) -> str:
    with pytest.raises(SettingError) as info:
        secrets.read_secret_file(str(path), "password_file")
    return info.value.message


def test_missing_credential_names_the_load_credential_line(run_credentials: Path) -> None:
    path = run_credentials / "stackmon.service" / "postgres_password"
    assert error(path) == f'file "{path}" not found: {HINT}'


def test_unreadable_credential_names_the_load_credential_line(
        run_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What systemd 252 gives a service without credentials: its /run/credentials is
    # closed. The suite runs as root, which reads any file, so the refusal is faked here
    # and real in tests/installed/test_systemd.py.
    path = run_credentials / "stackmon.service" / "postgres_password"

    def refuse(self: Path, *args: object, **kw: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    assert error(path) == f'file "{path}" not readable (permission denied): {HINT}'


def test_credential_of_another_unit_says_where_this_ones_are(
        run_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = run_credentials / "stackmon-backends.service"
    mine.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(mine))
    path = run_credentials / "stackmon.service" / "postgres_password"
    assert error(path) == (f'file "{path}" not found; this service\'s credentials are in '
                           f"{mine}")


def test_a_loaded_credential_is_read(run_credentials: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mine = run_credentials / "stackmon.service"
    mine.mkdir()
    (mine / "postgres_password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(mine))
    assert secrets.read_secret_file(str(mine / "postgres_password"), "k") == "s3cret"


def test_files_elsewhere_get_no_hint(run_credentials: Path, tmp_path: Path) -> None:
    path = tmp_path / "postgres_password"
    assert error(path) == f'file "{path}" not found'


def test_the_start_error_is_one_line_with_the_hint(run_credentials: Path) -> None:
    path = run_credentials / "stackmon.service" / "postgres_password"
    with pytest.raises(ConfigError) as info:
        cli.parse([], {"STACKMON_POSTGRES_DSN": "postgresql://stackmon@db:5432/postgres",
                       "STACKMON_POSTGRES_PASSWORD_FILE": str(path)})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("environment STACKMON_POSTGRES_PASSWORD_FILE: "
                              "postgres.password_file: ")
    assert message.endswith(HINT)
