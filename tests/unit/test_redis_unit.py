"""Redis collector failure paths and parsing, against a tiny fake RESP server (fakes only
where a real Redis cannot be made to misbehave this way: an old Redis 6 INFO, garbage)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from exporter.collectors.redis.collector import (
    CONFIG_GET_DATABASES,
    CONFIG_GET_IO_THREADS,
    CONFIG_GET_MAXCLIENTS,
    INFO_ALL,
    SLOWLOG_GET,
    SLOWLOG_LEN,
    Endpoint,
    RedisCollector,
    RedisScrapeError,
    _reason,
    parse_info,
    parse_kv,
)
from exporter.secrets import has_password
from tests.helpers.exporter import REPO

REDIS6_INFO = (
    "# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\nrun_id:abc\r\n"
    "uptime_in_seconds:100\r\ntcp_port:6379\r\n\r\n# Clients\r\nconnected_clients:3\r\n"
    "\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n"
    "\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Commandstats\r\n"
    "cmdstat_get:calls=5,usec=20,usec_per_call=4.00\r\n\r\n# Keyspace\r\n"
    "db0:keys=7,expires=2,avg_ttl=1500\r\n"
)

Reply = Callable[[list[bytes]], bytes]


def bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class FakeRedis:
    """Accepts connections and answers each RESP command with ``reply(args)``."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.commands: list[list[bytes]] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                args = []
                for _ in range(int(line[1:])):
                    size = int(f.readline()[1:])
                    args.append(f.read(size + 2)[:-2])
                self.commands.append(args)
                answer = self.reply(args)
                if answer == b"CLOSE":
                    conn.close()
                    return
                conn.sendall(answer)
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Reply], FakeRedis]]:
    servers: list[FakeRedis] = []

    def make(reply: Reply) -> FakeRedis:
        servers.append(FakeRedis(reply))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def collector(port: int, timeout: float = 2.0) -> RedisCollector:
    return RedisCollector(Endpoint(f"redis://127.0.0.1:{port}", None, None, None, timeout))


def values(metrics: list[object]) -> dict[str, float]:
    out = {}
    for family in metrics:
        for s in family.samples:  # type: ignore[attr-defined]
            if not s.labels or set(s.labels) == {"db"} or set(s.labels) == {"cmd"}:
                key = s.name + (f"{{{','.join(s.labels.values())}}}" if s.labels else "")
                out[key] = s.value
    return out


def test_redis6_uses_config_get_for_maxclients_every_scrape(fake: Callable[[Reply], FakeRedis]
                                                             ) -> None:
    config = {b"maxclients": "123", b"databases": "4", b"io-threads": "1"}
    run_id = ["abc"]

    def reply(args: list[bytes]) -> bytes:
        if args[0] == b"INFO":
            return bulk(REDIS6_INFO.replace("run_id:abc", f"run_id:{run_id[0]}"))
        if args[:2] == [b"SLOWLOG", b"LEN"]:
            return b":5\r\n"
        if args[:2] == [b"SLOWLOG", b"GET"]:  # one entry: id 9, 2500 us
            return b"*1\r\n*4\r\n:9\r\n:1700000000\r\n:2500\r\n*1\r\n" + bulk("get")
        if args[:2] == [b"CONFIG", b"GET"]:
            return b"*2\r\n" + bulk(args[2].decode()) + bulk(config[args[2]])
        return b"-ERR unexpected\r\n"
    server = fake(reply)
    c = collector(server.port)
    for _ in range(2):
        v = values(c.collect(time.monotonic() + 5))
        assert v["redis_up"] == 1
        assert v["redis_config_maxclients"] == 123
        assert v["redis_slowlog_length"] == 5
        assert v["redis_slowlog_last_id"] == 9
        assert v["redis_last_slow_execution_duration_seconds"] == 0.0025
        assert v["redis_config_io_threads"] == 1
        assert v["redis_db_keys{db0}"] == 7
        assert v["redis_db_keys_expiring{db0}"] == 2
        assert v["redis_db_avg_ttl_seconds{db0}"] == 1.5
        assert v["redis_commands_total{get}"] == 5
        assert v["redis_commands_duration_seconds_total{get}"] == 20e-6
        assert "redis_commands_rejected_calls_total{get}" not in v  # Redis < 6.2
        # Empty databases up to CONFIG GET databases, as redis_exporter (keys, expiring).
        assert [v[f"redis_db_keys{{db{i}}}"] for i in range(1, 4)] == [0, 0, 0]
        assert [v[f"redis_db_keys_expiring{{db{i}}}"] for i in range(1, 4)] == [0, 0, 0]
        assert "redis_db_keys{db4}" not in v and "redis_db_avg_ttl_seconds{db1}" not in v
    sent = [tuple(a.decode() for a in cmd) for cmd in server.commands]
    # INFO ALL: < 7.0; the number of databases is read once per connection.
    assert sent == [INFO_ALL, SLOWLOG_LEN, SLOWLOG_GET, CONFIG_GET_MAXCLIENTS,
                    CONFIG_GET_DATABASES, CONFIG_GET_IO_THREADS,
                    INFO_ALL, SLOWLOG_LEN, SLOWLOG_GET, CONFIG_GET_MAXCLIENTS]
    assert server.connections == 1
    # A restart (new run_id) on the same connection may bring another config: asked again.
    run_id[0], config[b"databases"] = "def", "2"
    server.commands.clear()
    c.collect(time.monotonic() + 5)
    v = values(c.collect(time.monotonic() + 5))
    assert "redis_db_keys{db2}" not in v and v["redis_db_keys{db1}"] == 0
    assert [tuple(a.decode() for a in cmd) for cmd in server.commands].count(
        CONFIG_GET_DATABASES) == 1
    c.close()


def test_error_reply_to_info_fails_the_scrape(fake: Callable[[Reply], FakeRedis]) -> None:
    server = fake(lambda args: b"-ERR boom\r\n")
    c = collector(server.port)
    with pytest.raises(RedisScrapeError, match="INFO refused: boom"):
        c.collect(time.monotonic() + 5)
    names = {m.name: m.samples[0].value for m in c.failure_metrics()}
    assert names == {"redis_up": 0.0, "stackmon_service_up": 0.0}


def test_server_closing_the_connection(fake: Callable[[Reply], FakeRedis]) -> None:
    server = fake(lambda args: b"CLOSE")
    c = collector(server.port)
    with pytest.raises(RedisScrapeError, match=re.escape("cannot reach redis://127.0.0.1:")):
        c.collect(time.monotonic() + 5)


def test_silent_server_costs_at_most_the_deadline(fake: Callable[[Reply], FakeRedis]) -> None:
    server = fake(lambda args: b"")  # reads, never answers
    c = collector(server.port, timeout=30)
    t0 = time.monotonic()
    with pytest.raises(RedisScrapeError, match="timed out"):
        c.collect(time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 1.5


def test_garbage_reply_is_a_failure_not_a_crash(fake: Callable[[Reply], FakeRedis]) -> None:
    server = fake(lambda args: b"!!garbage\r\n")
    c = collector(server.port)
    with pytest.raises(RedisScrapeError, match=re.escape("unexpected reply from redis://127.0.0.1:")):
        c.collect(time.monotonic() + 5)


def test_parse_info_and_kv() -> None:
    info = parse_info("# Server\r\nredis_version:7.0.1\r\n\r\nos:Linux 6.1 x86_64\r\n"
                      "db0:keys=1,expires=0,avg_ttl=0\r\n")
    assert info == {"redis_version": "7.0.1", "os": "Linux 6.1 x86_64",
                    "db0": "keys=1,expires=0,avg_ttl=0"}
    assert parse_kv("ip=10.0.0.1,port=6380,state=online,offset=5,lag=1") == {
        "ip": "10.0.0.1", "port": "6380", "state": "online", "offset": "5", "lag": "1"}


def test_describe_never_shows_the_password() -> None:
    e = Endpoint("redis://user:topsecret@db.example:6390/3", None, None, None, 1.0, "a")
    assert e.describe == "redis://db.example:6390 (target a)"
    assert Endpoint("rediss://:topsecret@h", None, None, None, 1.0).describe == "rediss://h:6379"
    assert Endpoint("unix:///run/r.sock", None, None, None, 1.0).describe == "unix:///run/r.sock"
    kw = Endpoint("redis://u:frompw@h:1/5", "other", "explicit", None, 1.0).connection_kwargs()
    assert (kw["username"], kw["password"], kw["db"]) == ("other", "explicit", 0)


def test_has_password() -> None:
    assert has_password("redis://:pw@h:1")
    assert has_password("redis://u:pw@h:1")
    assert has_password("redis://h:1?password=pw")
    assert has_password("host=x password=pw")
    assert not has_password("redis://u@h:1")
    assert not has_password("unix:///run/redis.sock")


def test_reason_strips_redis_py_noise() -> None:
    err = Exception("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    assert _reason(err) == "Connection refused"
    assert _reason(Exception("something else")) == "something else"


def test_transient_error_on_slowlog_is_not_permanent(fake: Callable[[Reply], FakeRedis]
                                                      ) -> None:
    answers = iter([b"-BUSY Redis is busy running a script\r\n", b":4\r\n"])

    def reply(args: list[bytes]) -> bytes:
        if args[0] == b"INFO":
            return bulk(REDIS6_INFO + "maxclients:50\r\n")
        if args[:2] == [b"SLOWLOG", b"LEN"]:
            return next(answers)
        if args[:2] == [b"SLOWLOG", b"GET"]:
            return b"-NOPERM this user has no permissions to run the 'slowlog|get' command\r\n"
        return b"-ERR unknown command 'CONFIG'\r\n"
    server = fake(reply)
    c = collector(server.port)
    first = values(c.collect(time.monotonic() + 5))
    assert "redis_slowlog_length" not in first and first["redis_config_maxclients"] == 50
    second = values(c.collect(time.monotonic() + 5))
    assert second["redis_slowlog_length"] == 4
    sent = [tuple(a.decode() for a in cmd) for cmd in server.commands]
    # CONFIG GET refused: asked once (its three settings in one round trip), never again;
    # SLOWLOG GET refused (an ACL) leaves SLOWLOG LEN on.
    assert sent == [INFO_ALL, SLOWLOG_LEN, SLOWLOG_GET, CONFIG_GET_MAXCLIENTS,
                    CONFIG_GET_DATABASES, CONFIG_GET_IO_THREADS, INFO_ALL, SLOWLOG_LEN]
    assert "redis_slowlog_last_id" not in second and "redis_config_io_threads" not in second
    # Without CONFIG, only the databases the keyspace section lists.
    assert [k for k in second if k.startswith("redis_db_keys{")] == ["redis_db_keys{db0}"]


def test_the_acl_is_written_once_from_the_commands_sent() -> None:
    """docs/redis.md's ACL line is made from the collector's list of commands, and no other
    page keeps a copy to drift (docs/security.md's lacked +slowlog|get +cluster|info)."""
    from exporter.collectors.redis.collector import acl_rules

    assert acl_rules() == "-@all +info +slowlog|len +slowlog|get +cluster|info +config|get"
    lines = [(path.name, line) for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
             for line in path.read_text().splitlines() if line.startswith("ACL SETUSER")]
    assert lines == [("redis.md", f"ACL SETUSER stackmon on >CHANGE-ME {acl_rules()}")]
