"""Redis collector against real servers: exact values after known operations, cost per scrape,
promtool and the docs table.

Counts that other clients could disturb (hits, misses, clients, evictions) are checked on a
redis-server this module starts; keys per DB also on the shared Redis (DBs 13 and 14 only).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.docs import table_names
from tests.helpers.exporter import (
    REPO,
    Exporter,
    Samples,
    free_port,
    promtool_complaints,
    start_exporter,
    wait_for,
)
from tests.helpers.redis_server import SHARED_URL, RedisServer, redis_server

ARGS = ["--no-collector.host"]
SHARED_DBS = (13, 14)


@pytest.fixture(scope="module")
def own() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def exporter(own: RedisServer) -> Iterator[Exporter]:
    exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": own.url})
    try:
        yield exp
    finally:
        exp.stop()


def families(s: Samples, prefix: str = "redis_") -> set[str]:
    return {name for name in s.types if name.startswith(prefix)}


def test_exact_values_after_known_operations(own: RedisServer, exporter: Exporter) -> None:
    c1 = own.client(db=1)
    c2 = own.client(db=2)
    c1.flushall()
    c1.config_resetstat()
    c1.mset({"a": "1", "b": "2", "c": "3"})
    c2.set("t1", "x", ex=1000)
    c2.set("t2", "x", ex=1000)
    c2.set("p", "x")
    for key in ("a", "b", "c", "a"):  # 4 hits
        assert c1.get(key) is not None
    for key in ("x", "y", "z"):  # 3 misses
        assert c1.get(key) is None
    extra = [own.client() for _ in range(3)]
    for c in extra:
        c.ping()
    s = exporter.scrape()
    assert s.get("redis_up") == 1
    assert s.get("redis_db_keys", db="db1") == 3
    assert s.get("redis_db_keys_expiring", db="db1") == 0
    assert s.get("redis_db_keys", db="db2") == 3
    assert s.get("redis_db_keys_expiring", db="db2") == 2
    assert 0 <= s.get("redis_db_avg_ttl_seconds", db="db2") <= 1000  # sampled by Redis
    # As redis_exporter: every configured database (16 by default), 0 when empty.
    assert s.get("redis_db_keys", db="db0") == 0
    assert s.get("redis_db_keys_expiring", db="db15") == 0
    assert not s.has("redis_db_keys", db="db16")
    assert not s.has("redis_db_avg_ttl_seconds", db="db0")
    assert s.get("redis_keyspace_hits_total") == 4
    assert s.get("redis_keyspace_misses_total") == 3
    assert s.get("redis_commands_total", cmd="get") == 7
    assert s.get("redis_commands_total", cmd="mset") == 1
    assert s.get("redis_commands_total", cmd="set") == 3
    assert s.get("redis_commands_duration_seconds_total", cmd="get") > 0
    # c1, c2, three extra clients and the exporter's one pooled connection
    assert s.get("redis_connected_clients") == 6
    assert s.get("redis_config_maxclients") == 10000
    assert s.get("redis_blocked_clients") == 0
    info = c1.info("server")
    labels = next(lbl for lbl, _ in s.samples["redis_instance_info"])
    assert labels["redis_version"] == info["redis_version"]
    assert labels["role"] == "master"
    assert labels["redis_mode"] == "standalone"
    assert labels["maxmemory_policy"] == "noeviction"
    assert labels["tcp_port"] == str(own.port)
    assert s.get("stackmon_service_up", service="redis") == 1
    assert s.get("stackmon_service_info", service="redis", version=info["redis_version"],
                 role="primary") == 1
    assert abs(s.get("redis_start_time_seconds")
               - (time.time() - int(info["uptime_in_seconds"]))) <= 2
    for c in (c1, c2, *extra):
        c.close()
    c1.flushall()


def test_eviction_and_maxmemory(own: RedisServer, exporter: Exporter) -> None:
    c = own.client()
    c.flushall()
    used = int(c.info("memory")["used_memory"])
    limit = used + 2 * 1024 * 1024
    c.config_set("maxmemory-policy", "allkeys-random")
    c.config_set("maxmemory", limit)
    try:
        value = "v" * 10_000
        pipe = c.pipeline(transaction=False)
        for i in range(600):  # ~6 MB into a 2 MB budget: evictions are certain
            pipe.set(f"evict:{i}", value)
        pipe.execute()
        evicted = int(c.info("stats")["evicted_keys"])
        assert evicted > 0
        s = exporter.scrape()
        assert s.get("redis_evicted_keys_total") == evicted
        assert s.get("redis_memory_max_bytes") == limit
        labels = next(lbl for lbl, _ in s.samples["redis_instance_info"])
        assert labels["maxmemory_policy"] == "allkeys-random"
        assert 0 < s.get("redis_memory_used_bytes") <= limit + 1024 * 1024
    finally:
        c.config_set("maxmemory", 0)
        c.config_set("maxmemory-policy", "noeviction")
        c.flushall()
        c.close()


def test_expired_keys_slowlog_and_rdb(own: RedisServer, exporter: Exporter) -> None:
    c = own.client()
    c.flushall()
    c.config_resetstat()
    c.set("short", "x", px=1)
    wait_for(lambda: c.get("short") is None, what="key to expire")  # lazy expiry counts it
    c.save()
    saved_at = int(c.info("persistence")["rdb_last_save_time"])
    c.set("one", "1")
    c.set("two", "2")
    c.config_set("slowlog-max-len", 3)
    c.config_set("slowlog-log-slower-than", 0)
    try:
        c.slowlog_reset()
        for _ in range(5):
            c.ping()
        s = exporter.scrape()
        assert s.get("redis_expired_keys_total") == 1
        assert s.get("redis_rdb_last_save_timestamp_seconds") == saved_at
        assert s.get("redis_rdb_changes_since_last_save") == 2
        assert s.get("redis_rdb_last_bgsave_status") == 1
        assert s.get("redis_slowlog_length") == 3
        c.config_set("slowlog-log-slower-than", 10_000_000)
        c.slowlog_reset()
        assert exporter.scrape().get("redis_slowlog_length") == 0
    finally:
        c.config_set("slowlog-log-slower-than", 10_000)
        c.config_set("slowlog-max-len", 128)
        c.flushall()
        c.close()


def test_commands_and_connections_per_scrape(own: RedisServer, exporter: Exporter) -> None:
    exporter.scrape()  # the pooled connection exists from here on
    c = own.client()
    c.ping()

    def stats() -> tuple[dict[str, int], int]:
        calls = {k[len("cmdstat_"):]: int(v["calls"])
                 for k, v in c.info("commandstats").items()}
        return calls, int(c.info("stats")["total_connections_received"])

    before, conns_before = stats()
    scrapes = 5
    for _ in range(scrapes):
        assert exporter.scrape().get("redis_up") == 1
    after, conns_after = stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta["info"] -= 2  # stats() itself ran INFO twice before the "after" snapshot
    sent = {k: v for k, v in delta.items() if v}
    assert sum(sent.values()) <= 3 * scrapes, sent
    assert sent == {"info": scrapes, "slowlog|len": scrapes, "slowlog|get": scrapes}, sent
    assert not any(k in after for k in ("keys", "scan")), after
    assert conns_after == conns_before, "the exporter opened a new connection per scrape"
    c.close()


def test_shared_redis_own_dbs() -> None:
    """Keys in DBs 13 and 14 of the shared Redis show exactly; only those DBs are flushed."""
    clients = {db: redis.Redis.from_url(SHARED_URL, db=db, socket_timeout=5)
               for db in SHARED_DBS}
    for c in clients.values():
        c.flushdb()
    exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": SHARED_URL})
    try:
        clients[13].mset({f"k{i}": i for i in range(5)})
        clients[14].set("a", 1, ex=3600)
        clients[14].set("b", 1)
        s = exp.scrape()
        assert s.get("redis_up") == 1
        assert s.get("redis_db_keys", db="db13") == 5
        assert s.get("redis_db_keys_expiring", db="db13") == 0
        assert s.get("redis_db_keys", db="db14") == 2
        assert s.get("redis_db_keys_expiring", db="db14") == 1
        clients[13].delete("k0")
        assert exp.scrape().get("redis_db_keys", db="db13") == 4
    finally:
        exp.stop()
        for c in clients.values():
            c.flushdb()
            c.close()


def test_configured_databases_are_all_reported() -> None:
    """CONFIG GET databases gives the list; read once per connection, again after a restart."""
    with redis_server("--databases", "3") as server:
        exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        try:
            server.client(db=2).set("k", "v", ex=100)
            s = exp.scrape()
            assert {lbl["db"]: v for lbl, v in s.samples["redis_db_keys"]} == {
                "db0": 0, "db1": 0, "db2": 1}
            assert {lbl["db"]: v for lbl, v in s.samples["redis_db_keys_expiring"]} == {
                "db0": 0, "db1": 0, "db2": 1}
            server.stop()
            server.args = ["--databases", "2"]
            server.start()
            wait_for(lambda: {lbl["db"] for lbl, _ in exp.scrape().samples.get(
                "redis_db_keys", [])} == {"db0", "db1"}, timeout=30,
                what="db list of the restarted server")
        finally:
            exp.stop()


def test_cluster_node_reports_cluster_info(tmp_path: Path) -> None:
    """A cluster node: CLUSTER INFO's fields under redis_exporter's names, db0 only."""
    # The bus port is given: the default (port + 10000) fails for a free port above 55535.
    with redis_server("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                      "--cluster-config-file", str(tmp_path / "nodes.conf")) as server:
        exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        try:
            s = wait_for(lambda: (s := exp.scrape()).has("redis_cluster_state") and s,
                         what="CLUSTER INFO in the scrape")
            assert s.get("redis_cluster_enabled") == 1
            assert s.get("redis_cluster_state") == 0  # no slots assigned: "fail"
            assert s.get("redis_cluster_slots_fail") == 0
            assert s.get("redis_cluster_known_nodes") == 1
            assert s.has("redis_cluster_messages_sent_total")
            assert [lbl["db"] for lbl, _ in s.samples["redis_db_keys"]] == ["db0"]
            assert promtool_complaints(s.text) == []
            assert "\n# TYPE redis_cluster_messages_sent_total gauge" in s.text
        finally:
            exp.stop()


def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with redis_server("--unixsocket", str(sock), "--unixsocketperm", "700") as server:
        exp = start_exporter([*ARGS, f"--redis.url=unix://{sock}"])  # flag: no password
        try:
            s = exp.scrape()
            assert s.get("redis_up") == 1
            labels = next(lbl for lbl, _ in s.samples["redis_instance_info"])
            assert labels["tcp_port"] == str(server.port)
        finally:
            exp.stop()


def test_promtool_clean(own: RedisServer, exporter: Exporter) -> None:
    own.client(db=3).set("k", "v")
    status, _, body = exporter.get()
    assert status == 200
    text = body.decode()
    assert "redis_db_keys" in text and "redis_commands_total" in text
    assert promtool_complaints(text) == []
    # the one allow-listed Redis name is really emitted (a stale entry would hide complaints)
    assert "\nredis_instantaneous_ops_per_sec " in text


# Documented, but reported only when the server has them: AOF sizes and buffers (AOF on),
# the Redis < 5 client fields, error counts (after the first error reply).
CONDITIONAL = {"redis_aof_current_size_bytes", "redis_aof_base_size_bytes",
               "redis_aof_pending_rewrite", "redis_aof_buffer_length",
               "redis_aof_rewrite_buffer_length", "redis_aof_pending_bio_fsync",
               "redis_aof_delayed_fsync", "redis_client_longest_output_list",
               "redis_client_biggest_input_buf", "redis_errors_total"}


def documented_names() -> set[str]:
    """The names in docs/redis.md's Metrics tables (the main one and the other INFO fields)."""
    docs = (REPO / "docs" / "redis.md").read_text()
    more = docs[docs.index("\n## Metrics\n"):docs.index("\n## Troubleshooting\n")]
    names = table_names("redis") | set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", more, re.M))
    return {n for n in names if n.startswith(("redis_", "stackmon_"))}


def emitted_families(*scrapes: Samples) -> set[str]:
    """Sample names as the exposition writes them (counters with their _total, if any)."""
    out = set()
    for s in scrapes:
        for line in s.text.splitlines():
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            if name.startswith(("redis_", "stackmon_service_")):
                out.add(name)
    return out


def check_docs_table(*scrapes: Samples) -> None:
    """Every family in the scrapes is documented and every documented name is emitted."""
    emitted = emitted_families(*scrapes)
    documented = documented_names()
    assert emitted - documented == set(), "emitted but not in docs/redis.md"
    assert documented - emitted - CONDITIONAL == set(), "in docs/redis.md but not emitted"
