"""``stackmon check`` against a real Redis configured wrong in exactly one way, then right:
an ACL user without SLOWLOG (fixed with the ACL SETUSER line the check prints), and
CONFIG renamed away with rename-command (the same server started without it)."""

from __future__ import annotations

import shlex

from tests.helpers.check import CheckRun, run_check
from tests.helpers.redis_server import redis_server

PASSWORD = "check-Pw-1"


def check(port: int, user: str | None = None) -> CheckRun:
    auth = f"{user}:{PASSWORD}@" if user else ""
    return run_check(["--no-collector.host"],
                     {"STACKMON_REDIS_URL": f"redis://{auth}127.0.0.1:{port}"})


def test_acl_user_without_slowlog() -> None:
    with redis_server() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "stackmon", "on", f">{PASSWORD}", "-@all",
                              "+info", "+config|get")
        wrong = check(server.port, "stackmon")
        found = wrong.finding("redis", "slowlog")
        assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
        assert "ACL user stackmon" in found["detail"] and "NOPERM" in found["detail"]
        assert found["affected"]["panels"] == ["Cache / Slow log"]
        assert wrong.status("redis", "config_get") == "ok"
        command = found["fix"].split("#", 1)[0].strip()
        assert command == "ACL SETUSER stackmon +slowlog|len +slowlog|get"
        admin.execute_command(*shlex.split(command))  # the fix as printed
        right = check(server.port, "stackmon")
        assert right.code == 0 and right.status("redis", "slowlog") == "ok", right.explain()


def test_config_renamed() -> None:
    with redis_server("--rename-command", "CONFIG", "CONFIG_8c5f0e") as server:
        wrong = check(server.port)
        found = wrong.finding("redis", "config_get")
        assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
        assert "renamed" in found["detail"]
        assert found["fix"].startswith("# redis.conf: remove the line rename-command CONFIG")
        assert "redis_db_keys" in found["affected"]["families"]
        assert wrong.status("redis", "slowlog") == "ok"
        # The same server, started again without the rename-command line.
        server.stop()
        server.args = [a for a in server.args if a not in ("--rename-command", "CONFIG",
                                                           "CONFIG_8c5f0e")]
        server.start()
        right = check(server.port)
        assert right.code == 0 and right.status("redis", "config_get") == "ok", \
            right.explain()


def test_wrong_password_is_broken_and_never_printed() -> None:
    with redis_server("--requirepass", PASSWORD) as server:
        secret = "Wr0ng-secret-xyz"
        for text in (False, True):
            run = run_check(["--no-collector.host"], {
                "STACKMON_REDIS_URL": f"redis://:{secret}@127.0.0.1:{server.port}"}, text=text)
            assert run.code == 1, run.stderr
            assert secret not in run.stdout and secret not in run.stderr
        found = check_json(server.port, secret).finding("redis", "collect")
        assert found["status"] == "broken" and "authentication failed" in found["detail"]


def check_json(port: int, password: str) -> CheckRun:
    return run_check(["--no-collector.host"],
                     {"STACKMON_REDIS_URL": f"redis://:{password}@127.0.0.1:{port}"})
