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


# Issue 21 item 6: every field of a DSN or URL that libpq, redis-py or kombu would only
# refuse when connecting (on every scrape) is refused at start, in one line naming the
# source, the key and the value, never the password.
@pytest.mark.parametrize(("dsn", "expected"), [
    ("host=db sslmode=bogus", 'sslmode "bogus" in the DSN, expected one of disable, allow'),
    (f"postgresql://u:{PASSWORD}@db/app?sslmode=Require", 'sslmode "Require" in the DSN'),
    ("host=db gssencmode=maybe", 'gssencmode "maybe" in the DSN'),
    ("host=db channel_binding=yes", 'channel_binding "yes" in the DSN'),
    ("host=db target_session_attrs=master", 'target_session_attrs "master" in the DSN'),
    ("host=db load_balance_hosts=roundrobin", 'load_balance_hosts "roundrobin" in the DSN'),
    ("host=db sslnegotiation=tls", 'sslnegotiation "tls" in the DSN'),
    ("host=db sslcertmode=always", 'sslcertmode "always" in the DSN'),
    ("host=db min_protocol_version=3.1", 'min_protocol_version "3.1" in the DSN'),
    ("host=db ssl_min_protocol_version=SSLv3", 'ssl_min_protocol_version "SSLv3" in the DSN'),
    ("host=db ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
     'ssl_min_protocol_version "TLSv1.3" in the DSN is above ssl_max_protocol_version'),
    ("host=db min_protocol_version=latest max_protocol_version=3.0",
     'min_protocol_version "latest" in the DSN is above max_protocol_version "3.0"'),
    ("host=db keepalives=yes", 'keepalives "yes" in the DSN, expected a whole number'),
    ("host=db keepalives_idle=1.5", 'keepalives_idle "1.5" in the DSN'),
    ("host=db keepalives_count=200", 'keepalives_count "200" in the DSN, expected a number '
                                     "1-127"),
    ("host=db sslnegotiation=direct", 'sslnegotiation "direct" in the DSN with sslmode '
                                      '"prefer", expected sslmode require'),
    ("host=db tcp_user_timeout=soon", 'tcp_user_timeout "soon" in the DSN'),
    ("host=db hostaddr=db.internal", 'hostaddr "db.internal" in the DSN, expected a numeric'),
    ("host=a,b hostaddr=10.0.0.1", 'hostaddr "10.0.0.1" in the DSN, expected one address per '
                                   "host (2 hosts)"),
    ("host=a,b,c port=5432,5433", 'port "5432,5433" in the DSN, expected one port, or one per '
                                  "host (3 hosts)"),
    ("host=db require_auth=kerberos", 'require_auth "kerberos" in the DSN'),
    ("host=db require_auth=md5,!password", 'require_auth "md5,!password" in the DSN'),
    ("host=db require_auth=md5,md5", 'require_auth "md5,md5" in the DSN'),
    ("host=db replication=maybe", 'replication "maybe" in the DSN, expected true, false or '
                                  "database"),
])
def test_every_checkable_dsn_field_fails_at_start(dsn: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli.parse([], {"STACKMON_POSTGRES_DSN": dsn})
    message = str(info.value)
    assert message.startswith("environment STACKMON_POSTGRES_DSN: postgres.dsn: "), message
    assert expected in message, message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize("dsn", [
    "host=db sslmode=verify-full sslrootcert=system", "host=db gssencmode=disable",
    "host=db target_session_attrs=prefer-standby", "host=db load_balance_hosts=random",
    "host=a,b hostaddr=10.0.0.1,::1 port=5432", "host=a,b hostaddr=10.0.0.1, port=1,2",
    "hostaddr=127.0.0.1", "host=db keepalives=1 keepalives_idle=30 tcp_user_timeout=-1",
    "host=db ssl_min_protocol_version=tlsv1.2 ssl_max_protocol_version=TLSv1.3",
    "host=db ssl_min_protocol_version=", "host=db min_protocol_version=3.0 "
    "max_protocol_version=latest", "host=db require_auth=!password,!md5",
    "host=db require_auth=scram-sha-256,none", "host=db replication=database",
    "host=db replication=off", "host=db replication=T",
    "host=db sslnegotiation=direct sslmode=verify-full", "host=db keepalives=0 keepalives_idle=0",
    "postgresql://u@db:5432/app?sslmode=require&channel_binding=require&connect_timeout=10",
])
def test_good_dsn_fields_pass(dsn: str) -> None:
    assert cli.parse([], {"STACKMON_POSTGRES_DSN": dsn}).postgres.dsn == dsn


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://h:6379/abc", "expected a database number after the host"),
    (f"redis://:{PASSWORD}@h:6379/0?db=x", "expected valid query options (Invalid value for "
                                           "'db'"),
    ("redis://h:6379?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    (f"redis://u:{PASSWORD}@h/0?sockettimeout=3", "expected only options redis-py takes in "
                                                  "the query string, not 'sockettimeout'"),
    ("rediss://h/0?ssl_cert_reqs=bogus", "Invalid SSL Certificate Requirements Flag: bogus"),
    ("unix:///run/redis.sock?db=one", "Invalid value for 'db'"),
])
def test_bad_redis_url_fields_fail_at_start(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli.parse([], {"STACKMON_REDIS_URL": url})
    message = str(info.value)
    assert message.startswith('environment STACKMON_REDIS_URL: redis.url: got "'), message
    assert expected in message, message
    assert PASSWORD not in message and "\n" not in message


def test_bad_redis_url_in_a_probe_target_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "stackmon.yml"
    config.write_text("redis:\n  targets:\n    - {name: a, url: 'redis://h:6379/sessions'}\n")
    with pytest.raises(ConfigError) as info:
        cli.parse([f"--config.file={config}"], {})
    assert str(info.value).startswith(
        f'{config}: redis.targets[0].url: got "redis://h:6379/sessions", expected a database')


@pytest.mark.parametrize("url", ["redis://h:6379", "redis://h:6379/", "redis://h:6379/15",
                                 "rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false",
                                 "redis://h?db=3&socket_timeout=2.5&health_check_interval=10",
                                 "unix:///run/redis.sock?db=2"])
def test_good_redis_urls_pass(url: str) -> None:
    assert cli.parse([], {"STACKMON_REDIS_URL": url}).redis.url == url


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://h:6379/abc", 'database "abc" after the host, expected a number'),
    (f"redis://:{PASSWORD}@h:6379/0?foo=1", "option 'foo' in the query string, expected only "
                                            "options kombu takes"),
    (f"amqp://u:{PASSWORD}@h//?heartbeat=often", "a query option kombu cannot read (could "
                                                 "not convert string to float: 'often')"),
    ("amqp://u@h//?connect_timeout=soon", "could not convert string to float: 'soon'"),
    ("rediss://h/0?ssl_cert_reqs=bogus", "(unknown value 'bogus')"),
])
def test_bad_broker_url_fields_fail_at_start(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli.parse([], {"STACKMON_CELERY_BROKER_URL": url})
    message = str(info.value)
    assert message.startswith("environment STACKMON_CELERY_BROKER_URL: celery.broker_url: "), \
        message
    assert expected in message, message
    assert PASSWORD not in message and "\n" not in message


@pytest.mark.parametrize("url", ["redis://h:6379/0", "redis://h", "amqp://u@h:5672/vhost",
                                 "amqp://u@h//?heartbeat=30&connect_timeout=5",
                                 "rediss://h:6380/1?ssl_cert_reqs=required", "pyamqp://h//"])
def test_good_broker_urls_pass(url: str) -> None:
    assert cli.parse([], {"STACKMON_CELERY_BROKER_URL": url}).celery.broker_url == url


def test_a_redacted_value_in_a_list_keeps_its_closing_quote_and_bracket(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "stackmon.yml"
    config.write_text(f'postgres:\n  dsn: ["host=db password={PASSWORD}", "host=b"]\n')
    line = start_error(capsys, ["--no-collector.host", f"--config.file={config}"])
    assert line == (f'stackmon: error: {config}: postgres.dsn: got ["host=db '
                    'password=<redacted>", "host=b"], expected a string')
