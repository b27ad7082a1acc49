"""Redis collector under faults on instances these tests own: down at start, restart,
stall (CLIENT PAUSE), a replica losing its primary; also /probe targets and the docs table."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers.exporter import free_port, start_exporter, wait_for
from tests.helpers.redis_server import RedisServer, redis_server
from tests.integration.test_redis import ARGS, check_docs_table


def test_down_at_start_then_up_then_restarted() -> None:
    port = free_port()
    exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": f"redis://127.0.0.1:{port}"})
    server = RedisServer(port=port)
    try:
        s = exp.scrape()
        assert s.get("redis_up") == 0
        assert s.get("stackmon_service_up", service="redis") == 0
        assert s.get("stackmon_scrape_collector_success", collector="redis") == 0
        assert not s.has("redis_connected_clients")
        assert "cannot reach redis://127.0.0.1:" in exp.logs()
        assert "Connection refused" in exp.logs()
        server.start()
        s = wait_for(lambda: (r := exp.scrape()).get("redis_up") == 1 and r,
                     what="redis_up 1 after start")
        run_id = next(lbl for lbl, _ in s.samples["redis_instance_info"])["run_id"]
        server.stop()
        assert exp.scrape().get("redis_up") == 0
        server.start()
        # The first scrape after the restart already succeeds: a broken pooled
        # connection is replaced within the same scrape.
        s = exp.scrape()
        assert s.get("redis_up") == 1
        assert next(lbl for lbl, _ in s.samples["redis_instance_info"])["run_id"] != run_id
        assert exp.proc.poll() is None
    finally:
        exp.stop()
        server.cleanup()


def test_restart_under_a_live_pooled_connection() -> None:
    with redis_server() as server:
        exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        try:
            assert exp.scrape().get("redis_up") == 1
            server.stop()
            server.start()
            assert exp.scrape().get("redis_up") == 1
        finally:
            exp.stop()


def test_stalled_redis_scrape_returns_within_deadline() -> None:
    with redis_server() as server:
        exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": server.url})
        try:
            assert exp.scrape().get("redis_up") == 1
            c = server.client()
            c.execute_command("CLIENT", "PAUSE", "4000", "ALL")
            t0 = time.monotonic()
            s = exp.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
            took = time.monotonic() - t0
            assert took < 1.5, took
            assert s.get("redis_up") == 0
            assert s.get("stackmon_service_up", service="redis") == 0
            c.execute_command("CLIENT", "UNPAUSE")
            wait_for(lambda: exp.scrape().get("redis_up") == 1, timeout=10,
                     what="redis_up 1 after the pause")
            # Whichever timeout fires first (the collector's socket timeout or the
            # framework's deadline) must say so in the log.
            logs = exp.logs()
            assert "timed out talking to" in logs or 'msg="deadline exceeded"' in logs
            c.close()
        finally:
            exp.stop()


def test_replica_link_and_docs_table() -> None:
    with redis_server() as primary, redis_server(
            "--replicaof", "127.0.0.1", str(free_port())) as replica:
        replica.client().execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        p_exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": primary.url})
        r_exp = start_exporter(ARGS, {"STACKMON_REDIS_URL": replica.url})
        try:
            primary.client().set("k", "v")
            wait_for(lambda: replica.client().get("k") == b"v", what="replication")
            ps = wait_for(lambda: (s := p_exp.scrape()).get("redis_connected_slaves") == 1
                          and s.has("redis_connected_slave_lag_seconds", slave_state="online")
                          and s, what="connected_slaves 1, replica online")
            rs = wait_for(lambda: (s := r_exp.scrape()).get("redis_master_link_up") == 1 and s,
                          what="master_link_up 1")
            labels = {"slave_ip": "127.0.0.1", "slave_port": str(replica.port),
                      "slave_state": "online"}
            assert ps.get("redis_connected_slave_lag_seconds", **labels) >= 0
            assert ps.get("redis_connected_slave_offset_bytes", **labels) > 0
            assert not ps.has("redis_master_link_up")
            assert rs.get("redis_slave_repl_offset") > 0
            assert rs.get("redis_master_sync_in_progress") == 0
            assert next(lbl for lbl, _ in rs.samples["redis_instance_info"])["role"] == "slave"
            assert rs.get("stackmon_service_info", service="redis", role="replica") == 1
            check_docs_table(ps, rs)
            primary.stop()
            wait_for(lambda: r_exp.scrape().get("redis_master_link_up") == 0,
                     what="master_link_up 0 after the primary stopped")
            assert r_exp.scrape().get("redis_up") == 1
        finally:
            p_exp.stop()
            r_exp.stop()


def test_probe_targets(tmp_path: Path) -> None:
    password = "probe-Pa55word"
    with redis_server() as a, redis_server("--requirepass", password) as b:
        (tmp_path / "pw").write_text(password + "\n")
        cfg = tmp_path / "stackmon.yml"
        cfg.write_text(f"""
redis:
  targets:
    - name: cache-a
      url: {a.url}
    - name: cache-b
      url: {b.url}
      password_file: {tmp_path / "pw"}
      socket_timeout_seconds: 2
    - name: gone
      url: redis://127.0.0.1:{free_port()}
""")
        exp = start_exporter([*ARGS, f"--config.file={cfg}"])
        try:
            assert not exp.scrape().has("redis_up")  # no redis.url: /metrics has none
            for name, server in (("cache-a", a), ("cache-b", b)):
                s = exp.scrape(f"/probe?target={name}")
                assert s.get("redis_up") == 1
                assert next(lbl for lbl, _ in s.samples["redis_instance_info"])[
                    "tcp_port"] == str(server.port)
            assert exp.scrape("/probe?target=gone").get("redis_up") == 0
            status, _, body = exp.get("/probe?target=nope")
            assert status == 400 and b"cache-a" in body
            _, _, page = exp.get("/")
            assert b"redis (target cache-b)" in page
            assert password not in exp.logs() + page.decode()
        finally:
            exp.stop()
