"""stackmon against Debian's redis_exporter on the same servers: a drop-in, exactly.

A primary, a replica and a cluster node of our own (free loopback ports), each scraped by
``prometheus-redis-exporter`` under its default flags and by stackmon.  Every metric name
and label-name set the anchor exports must be in stackmon's output with the same type,
except the reviewed ``# redis_exporter`` entries of tests/parity-allowlist.txt; static
values (keys per database, settings, the instance and replica facts) agree exactly and
counters lie between the anchor's readings before and after stackmon's, within a few
percent.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.helpers.exporter import (
    Exporter,
    free_port,
    http_get,
    start_exporter,
    wait_for,
)
from tests.helpers.parity import Scrape, allowed, allowlist
from tests.helpers.redis_server import RedisServer, redis_server

ANCHOR = "redis_exporter"
REDIS_EXPORTER = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter")
# Equal in both, label values included.
STATIC = ("redis_db_keys", "redis_db_keys_expiring", "redis_config_maxclients",
          "redis_config_maxmemory", "redis_config_io_threads", "redis_memory_max_bytes",
          "redis_connected_slaves", "redis_instance_info", "redis_process_id",
          "redis_aof_enabled", "redis_slave_info", "redis_master_link_up",
          "redis_rdb_last_bgsave_status", "redis_cluster_enabled",
          "redis_master_sync_in_progress")
# Gauges that only grow (every command is a slow log entry here): compared as counters.
GROWING = {"redis_slowlog_last_id"}
NEAR = {"redis_start_time_seconds": 2.0, "redis_uptime_in_seconds": 5.0}
DASHBOARD_METRICS = {
    "redis_up", "redis_uptime_in_seconds", "redis_connected_clients", "redis_blocked_clients",
    "redis_memory_used_bytes", "redis_memory_used_rss_bytes", "redis_memory_max_bytes",
    "redis_commands_total", "redis_commands_duration_seconds_total",
    "redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_evicted_keys_total",
    "redis_expired_keys_total", "redis_db_keys", "redis_db_keys_expiring",
    "redis_net_input_bytes_total", "redis_net_output_bytes_total", "redis_connected_slaves"}
COUNTER_SLACK = 0.05
COUNTER_ABSOLUTE_SLACK = 50.0


@dataclass
class Pair:
    """One Redis server, scraped by the anchor and by stackmon."""

    server: RedisServer
    anchor_url: str
    stackmon: Exporter

    def scrape_anchor(self) -> Scrape:
        return Scrape.parse(http_get(self.anchor_url)[2].decode())

    def scrape_all(self) -> tuple[Scrape, Scrape, Scrape]:
        """Anchor, stackmon, anchor: counters read by stackmon lie between the two."""
        before = self.scrape_anchor()
        ours = Scrape.parse(self.stackmon.get()[2].decode())
        return before, ours, self.scrape_anchor()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    if REDIS_EXPORTER is None:
        pytest.fail("prometheus-redis-exporter is not installed; run scripts/test-services.sh")
    procs: list[subprocess.Popen[bytes]] = []
    exporters: list[Exporter] = []
    nodes = tmp_path_factory.mktemp("cluster") / "nodes.conf"
    with redis_server() as primary, redis_server() as replica, redis_server(
            "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
            "--cluster-config-file", str(nodes)) as cluster:
        replica.client().execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        out: dict[str, Pair] = {}
        try:
            for role, server in (("primary", primary), ("replica", replica),
                                 ("cluster", cluster)):
                port = free_port()
                procs.append(subprocess.Popen(
                    [REDIS_EXPORTER, f"-redis.addr=redis://127.0.0.1:{server.port}",
                     f"-web.listen-address=127.0.0.1:{port}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                url = f"http://127.0.0.1:{port}/metrics"
                wait_for(lambda u=url: http_get(u)[0] == 200, what=f"redis_exporter ({role})")
                exp = start_exporter(["--no-collector.host"],
                                     {"STACKMON_REDIS_URL": server.url})
                exporters.append(exp)
                out[role] = Pair(server, url, exp)
            prime(primary, replica)
            # stackmon learns a node is in cluster mode from its first INFO; CLUSTER INFO
            # is asked from the next scrape on.
            wait_for(lambda: b"redis_cluster_state" in out["cluster"].stackmon.get()[2],
                     what="CLUSTER INFO in stackmon's scrape")
            yield out
        finally:
            for exp in exporters:
                exp.stop()
            for proc in procs:
                proc.terminate()
                proc.wait(10)


def prime(primary: RedisServer, replica: RedisServer) -> None:
    """Data in two databases, an error reply and a slow log entry, replicated."""
    admin = primary.client()
    admin.config_set("slowlog-log-slower-than", 0)
    primary.client(db=3).set("t", "x", ex=1000)
    primary.client(db=3).set("p", "x")
    primary.client().set("k", "v")
    with pytest.raises(redis.ResponseError):
        admin.execute_command("INCR", "k")  # ERR: not an integer -> errorstat_ERR
    wait_for(lambda: replica.client(db=3).dbsize() == 2
             and replica.client().info("replication")["master_link_status"] == "up",
             what="replication")
    admin.close()


def test_allowlist_entries_have_reasons() -> None:
    entries = allowlist(ANCHOR)
    assert entries, "no # redis_exporter section in tests/parity-allowlist.txt"
    assert all(len(reason) > 10 for reason in entries.values()), entries


@pytest.mark.parametrize("role", ["primary", "replica", "cluster"])
def test_every_anchor_series_shape_is_on_stackmon(pairs: dict[str, Pair], role: str) -> None:
    entries = allowlist(ANCHOR)
    before, ours, after = pairs[role].scrape_all()
    missing = sorted(f"{name}{{{','.join(sorted(labels))}}}"
                     for name, labels in (before.shapes() | after.shapes()) - ours.shapes()
                     if not allowed(name, entries) and not allowed(after.family(name), entries))
    assert missing == [], "exported by redis_exporter, not by stackmon"
    wrong_type = sorted(f"{name}: {kind} vs {ours.types.get(name)}"
                        for name, kind in after.types.items()
                        if name in ours.types and ours.types[name] != kind)
    assert wrong_type == []
    # Every entry covers something the anchor exports and stackmon lacks.
    both = [pairs[r].scrape_anchor() for r in ("primary", "replica", "cluster")]
    lacking = {n for scrape in both for n in scrape.types} - set(ours.types)
    stale = [p for p in entries if not any(fnmatch.fnmatchcase(n, p) for n in lacking)]
    assert stale == [], "allow-list entries with nothing left to excuse"


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_values_agree(pairs: dict[str, Pair], role: str) -> None:
    before, ours, after = pairs[role].scrape_all()
    problems: list[str] = []
    compared = 0
    for name in STATIC:
        theirs = after.values(name)
        if name in after.types or name in ours.types:
            compared += 1
            if ours.values(name) != theirs:
                problems.append(f"{name}: ours {ours.values(name)}, anchor {theirs}")
    for name, slack in NEAR.items():
        (mine,), (theirs,) = ours.values(name).values(), after.values(name).values()
        compared += 1
        if abs(mine - theirs) > slack:
            problems.append(f"{name}: ours {mine}, anchor {theirs}")
    for name, kind in after.types.items():
        if (kind != "counter" and name not in GROWING) or name not in ours.types:
            continue
        lo_values, hi_values, mine = before.values(name), after.values(name), ours.values(name)
        for labels, hi in hi_values.items():
            if labels not in lo_values or labels not in mine:
                continue  # born between the scrapes (a command first used meanwhile)
            lo = lo_values[labels]
            compared += 1
            if not (lo * (1 - COUNTER_SLACK) - COUNTER_ABSOLUTE_SLACK <= mine[labels]
                    <= hi * (1 + COUNTER_SLACK) + COUNTER_ABSOLUTE_SLACK):
                problems.append(f"{name}{dict(labels)}: ours {mine[labels]}, "
                                f"anchor {lo}..{hi}")
    assert problems == []
    assert compared > 30
    # Every series the redis_exporter dashboard and the redis-mixin query that this role
    # has (oliver006/redis_exporter contrib/), on both.
    wanted = DASHBOARD_METRICS | ({"redis_master_last_io_seconds_ago"} if role == "replica"
                                  else set())
    assert sorted(wanted - set(after.samples)) == []
    assert sorted(wanted - set(ours.samples)) == []
    # What this test is about: every configured database, 0 when empty.
    keys = {dict(k)["db"]: v for k, v in ours.values("redis_db_keys").items()}
    assert len(keys) == 16 and keys["db3"] == 2 and keys["db0"] == 1 and keys["db5"] == 0
