"""Values libpq or the kernel would only reject later are refused at start, and the
refusal names the source that set them (issue 14 item 7; the flag case of a port in use is
in test_config.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import cli
from exporter.settings import ConfigError

PASSWORD = "Pw-9c1f77e2d4"


@pytest.mark.parametrize(("dsn", "expected"), [
    (f"postgresql://u:{PASSWORD}@db:notaport/app", 'port "notaport" in the DSN'),
    ("host=db port=abc dbname=app", 'port "abc" in the DSN'),
    ("host=db port=99999", 'port "99999" in the DSN'),
    (f"postgresql://u:{PASSWORD}@db:0/app", 'port "0" in the DSN'),
    ("host=a,b port=5432,x", 'port "x" in the DSN'),
    ("host=db connect_timeout=soon", 'connect_timeout "soon" in the DSN'),
])
def test_bad_dsn_fields_fail_at_start(dsn: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli.parse([], {"STACKMON_POSTGRES_DSN": dsn})
    message = str(info.value)
    assert message.startswith("environment STACKMON_POSTGRES_DSN: postgres.dsn: "), message
    assert expected in message
    assert PASSWORD not in message and "\n" not in message


def test_bad_dsn_in_a_probe_target_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "stackmon.yml"
    config.write_text("postgres:\n  targets:\n"
                      f"    - {{name: a, dsn: 'host=db port=70000 password={PASSWORD}'}}\n")
    with pytest.raises(ConfigError) as info:
        cli.parse([f"--config.file={config}"], {})
    assert str(info.value).startswith(f"{config}: postgres.targets[0].dsn: port \"70000\"")
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("dsn", ["host=db port=5432 dbname=app", "host=a,b port=5432,5433",
                                 "host=a,b port=,5433", "postgresql://u@db/app",
                                 "host=db connect_timeout=5"])
def test_good_dsns_pass(dsn: str) -> None:
    assert cli.parse([], {"STACKMON_POSTGRES_DSN": dsn}).postgres.dsn == dsn


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def start_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_port_in_use_names_the_variable(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, taken_port: int) -> None:
    monkeypatch.setenv("STACKMON_WEB_LISTEN_ADDRESS", f"127.0.0.1:{taken_port}")
    line = start_error(capsys, ["--no-collector.host"])
    assert "environment STACKMON_WEB_LISTEN_ADDRESS: web.listen_address:" in line


def test_port_in_use_names_the_file_only_when_it_sets_the_address(
        capsys: pytest.CaptureFixture[str], taken_port: int, tmp_path: Path) -> None:
    config = tmp_path / "stackmon.yml"
    config.write_text(f"web:\n  listen_address: '127.0.0.1:{taken_port}'\n")
    line = start_error(capsys, ["--no-collector.host", f"--config.file={config}"])
    assert line.startswith(f"stackmon: error: {config}: web.listen_address:")
    # A file that does not set the address: the flag that did is named, not the file.
    other = tmp_path / "other.yml"
    other.write_text("log:\n  level: info\n")
    line = start_error(capsys, ["--no-collector.host", f"--config.file={other}",
                                f"--web.listen-address=127.0.0.1:{taken_port}"])
    assert "flag --web.listen-address: web.listen_address:" in line
