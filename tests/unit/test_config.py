"""Every bad input ends with exit code 2 and one clear line; good input lands in Config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import cli
from exporter.settings import ConfigError, parse_listen_address
from tests.helpers.exporter import REPO


def load(tmp_path: Path, yaml_text: str | None = None, argv: list[str] | None = None,
         env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    args = list(argv or [])
    if yaml_text is not None:
        path = tmp_path / "stackmon.yml"
        path.write_text(yaml_text)
        args.append(f"--config.file={path}")
    return cli.parse(args, dict(env or {}))


def error_of(tmp_path: Path, yaml_text: str | None = None, argv: list[str] | None = None,
             env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, yaml_text, argv, env)
    return str(info.value)


def test_defaults_are_host_only_on_9860(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.web.listen_address == ":9860"
    assert cfg.web.telemetry_path == "/metrics"
    assert cfg.collectors["host"] is True


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    text = "scrape:\n  timeout_seconds: 5\nweb:\n  telemetry_path: /file\nlog:\n  level: error\n"
    cfg = load(tmp_path, text)
    assert (cfg.scrape.timeout_seconds, cfg.web.telemetry_path, cfg.log.level) == (
        5.0, "/file", "error")
    cfg = load(tmp_path, text, env={"STACKMON_WEB_TELEMETRY_PATH": "/env",
                                    "STACKMON_LOG_LEVEL": "debug"})
    assert (cfg.scrape.timeout_seconds, cfg.web.telemetry_path, cfg.log.level) == (
        5.0, "/env", "debug")
    cfg = load(tmp_path, text, argv=["--web.telemetry-path=/flag"],
               env={"STACKMON_WEB_TELEMETRY_PATH": "/env"})
    assert cfg.web.telemetry_path == "/flag"


def test_collector_switches_from_flags_env_and_file(tmp_path: Path) -> None:
    assert load(tmp_path, argv=["--no-collector.host"]).collectors["host"] is False
    assert load(tmp_path, env={"STACKMON_COLLECTORS_HOST": "false"}).collectors["host"] is False
    assert load(tmp_path, "collectors:\n  host: false\n").collectors["host"] is False
    cfg = load(tmp_path, "collectors:\n  host: false\n", argv=["--collector.host"])
    assert cfg.collectors["host"] is True


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("web:\n  listen_adress: ':1'\n", 'web.listen_adress: unknown key (did you mean '
                                           '"listen_address"?)'),
        ("webb:\n  listen_address: ':1'\n", 'webb: unknown section (did you mean "web"?)'),
        ("scrape:\n  timeout_seconds: fast\n",
         'scrape.timeout_seconds: got "fast", expected a number'),
        ("scrape:\n  timeout_seconds: 0\n",
         "scrape.timeout_seconds: got 0, expected a value between 0.1 and 300"),
        ("web:\n  max_requests: 1.5\n", "web.max_requests: got 1.5, expected an integer"),
        ("log:\n  level: verbose\n", 'log.level: got "verbose", expected one of debug, info, '
                                     "warning, error"),
        ("web:\n  listen_address: 'localhost'\n", "web.listen_address: got \"localhost\", "
                                                  "expected host:port"),
        ("host:\n  disk_devices_exclude: '(['\n",
         "host.disk_devices_exclude: got \"([\", expected a valid regular expression"),
        ("collectors:\n  hots: true\n", 'collectors.hots: unknown collector (did you mean '
                                        '"host"?)'),
        ("collectors:\n  host: maybe\n", 'collectors.host: got "maybe", expected true or false'),
        ("web: [1, 2]\n", "web: got [1, 2], expected a mapping"),
        ("- a\n- b\n", "expected a mapping of sections at the top level, got list"),
    ],
)
def test_bad_file_values_name_file_key_value(tmp_path: Path, yaml_text: str,
                                             expected: str) -> None:
    message = error_of(tmp_path, yaml_text)
    assert message.startswith(str(tmp_path / "stackmon.yml"))
    assert expected in message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "web:\n  listen_address: ':1'\n   bad: [\n")
    assert "stackmon.yml: line 3" in message
    assert "malformed YAML" in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    assert f"{missing}: config file not found" in error_of(
        tmp_path, argv=[f"--config.file={missing}"])
    assert "is a directory" in error_of(tmp_path, argv=[f"--config.file={tmp_path}"])
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in error_of(tmp_path, argv=[f"--config.file={binary}"])


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    message = error_of(tmp_path, env={"STACKMON_WEB_LISTEN_ADRESS": ":1"})
    assert message == ('environment: STACKMON_WEB_LISTEN_ADRESS: unknown variable '
                       '(did you mean "STACKMON_WEB_LISTEN_ADDRESS"?)')
    message = error_of(tmp_path, env={"STACKMON_WEB_MAX_REQUESTS": "many"})
    assert message == ('environment STACKMON_WEB_MAX_REQUESTS: web.max_requests: got "many", '
                       "expected an integer")


def test_flag_errors_name_the_flag(tmp_path: Path) -> None:
    message = error_of(tmp_path, argv=["--scrape.timeout-seconds=-1"])
    assert message == ('flag --scrape.timeout-seconds: scrape.timeout_seconds: got -1.0, '
                       "expected a value between 0.1 and 300")


@pytest.mark.parametrize("text", [":9860", "127.0.0.1:1", "[::1]:80", "0.0.0.0:65535"])
def test_listen_addresses_accepted(text: str) -> None:
    parse_listen_address(text)


@pytest.mark.parametrize("text", ["9860", "::1:80", "[nothost]:1", "a:99999", "a:b"])
def test_listen_addresses_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(text)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=30, cwd=REPO, env={"PATH": "/usr/bin:/bin",
                                                                **(env or {})})


def test_process_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("web:\n  listen_adress: ':1'\n")
    for args in ([f"--config.file={bad}"], ["--no-such-flag"], ["--web.max-requests=x"],
                 [f"--config.file={tmp_path / 'missing.yml'}"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("stackmon: error: ")
        assert "Traceback" not in proc.stderr


def test_listen_address_taken_exits_2(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli(f"--web.listen-address=127.0.0.1:{port}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f'stackmon: error: flag --web.listen-address: web.listen_address: "127.0.0.1:{port}" '
        'is already in use']


def test_help_lists_generated_flags() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--web.listen-address", "--web.telemetry-path", "--web.config.file",
                 "--config.file", "--log.level", "--collector.host", "--no-collector.host"):
        assert flag in proc.stdout


def test_help_lists_the_subcommands() -> None:
    """`stackmon --help` is where a user looks first: it names `check` and `healthcheck`,
    and each of them answers its own --help."""
    proc = run_cli("--help")
    assert proc.returncode == 0
    commands = proc.stdout.split("commands (each has its own --help):\n", 1)[1]
    named = [line.split()[1] for line in commands.splitlines() if line.startswith("  stackmon ")]
    assert named == ["check", "healthcheck"]
    for name in named:
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: stackmon {name}"), sub
