"""The suite's isolation from the machine: unit tests ignore the machine's ``STACKMON_*``
variables, and the guard (tests/helpers/guard.py) sees connections to watched ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.backends import private_port
from tests.helpers.exporter import REPO, wait_for
from tests.helpers.guard import Watcher, compare

# A unit test that calls cli.main() (reads the environment) and the config tests.
UNIT_TESTS = ["tests/unit/test_services_unit.py::test_url_password_is_redacted_in_the_error",
              "tests/unit/test_config.py"]
MACHINE_ENV = {"STACKMON_FOO": "bogus", "STACKMON_REDIS_URL": "ftp://bogus",
               "STACKMON_TEST_GUARD": "off"}


def run_unit_tests(*extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **MACHINE_ENV}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *extra, *UNIT_TESTS], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=240)


def test_machine_stackmon_variables_do_not_change_unit_results() -> None:
    assert "STACKMON_FOO" not in os.environ  # the autouse fixture of tests/unit/conftest.py
    proc = run_unit_tests()
    assert proc.returncode == 0, proc.stdout[-3000:]
    # Without tests/unit/conftest.py the same variables make a unit test fail.
    bare = run_unit_tests("--noconftest")
    assert bare.returncode == 1, bare.stdout[-3000:]
    assert "test_url_password_is_redacted_in_the_error FAILED" in bare.stdout or \
        "FAILED tests/unit/test_services_unit.py::test_url_password_is_redacted" in bare.stdout


def test_guard_sees_a_child_process_connecting() -> None:
    watched, other = private_port(), private_port()
    with socket.socket() as server, socket.socket() as server2:
        for s, port in ((server, watched), (server2, other)):
            s.bind(("127.0.0.1", port))
            s.listen(4)
        watcher = Watcher(ports=(watched,), interval=0.05).start()
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import socket, sys
            a = socket.create_connection(("127.0.0.1", {watched}))
            b = socket.create_connection(("127.0.0.1", {other}))
            sys.stdin.read()  # hold both until the test closes our stdin
            """)], stdin=subprocess.PIPE)
        try:
            wait_for(lambda: watcher.hits, timeout=30, what="the watcher to see the child")
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
            hits = watcher.stop()
    assert [(h.pid, h.port) for h in hits] == [(child.pid, watched)]
    assert "create_connection" in hits[0].cmdline


def test_guard_sees_pytest_itself_connecting_and_stops_watching() -> None:
    watched = private_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", watched))
        server.listen(4)
        watcher = Watcher(ports=(watched,), interval=60).start()
        with socket.create_connection(("127.0.0.1", watched)):
            pass
        hits = watcher.stop()
        assert [(h.pid, h.port, h.cmdline) for h in hits] == [
            (os.getpid(), watched, "pytest (in-process)")]
        with socket.create_connection(("127.0.0.1", watched)):  # after stop(): not counted
            pass
    assert len(watcher.hits) == 1


def test_guard_sees_a_child_process_on_a_unix_socket(tmp_path: Path) -> None:
    """libpq without a host connects to /var/run/postgresql/.s.PGSQL.5432: the guard
    watches the servers' default Unix sockets as it watches their ports."""
    # Not the real name: the session's own watcher would count this test's socket.
    path = str(tmp_path / ".s.PGSQL.65432")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as other:
        server.bind(path)
        server.listen(4)
        other.bind(str(tmp_path / "other.sock"))
        other.listen(4)
        watcher = Watcher(ports=(), socket_names=(".s.PGSQL.65432",), socket_paths=(),
                          interval=0.05).start()
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import socket, sys
            a = socket.socket(socket.AF_UNIX); a.connect({path!r})
            b = socket.socket(socket.AF_UNIX); b.connect({str(tmp_path / "other.sock")!r})
            sys.stdin.read()
            """)], stdin=subprocess.PIPE)
        accepted = [server.accept()[0], other.accept()[0]]  # the server ends, as a server has
        try:
            wait_for(lambda: watcher.hits, timeout=30, what="the watcher to see the child")
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
            hits = watcher.stop()
            for conn in accepted:
                conn.close()
    assert [(h.pid, h.port) for h in hits] == [(child.pid, 0)]


def test_compare_reports_each_server() -> None:
    before = {"redis": {0: 1, 11: 2}, "rabbitmq": ["/", "guard-vhost"]}
    after = {"redis": {0: 1, 11: 0}, "rabbitmq": ["/", "guard-vhost"], "postgres": "x"}
    lines = compare(before, after)
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["CHANGED", "unchanged", "CHANGED"]
    assert lines[2].startswith("guard: redis before {0: 1, 11: 2} after {0: 1, 11: 0}")


def test_guard_fails_the_run(tmp_path: Path) -> None:
    """End to end: a test that connects to a watched port makes pytest exit 1."""
    (tmp_path / "test_offender.py").write_text(textwrap.dedent("""
        import socket

        from tests import conftest
        from tests.helpers.backends import private_port


        def test_connects_to_a_watched_port() -> None:
            port = private_port()
            with socket.socket() as server:
                server.bind(("127.0.0.1", port))
                server.listen(1)
                conftest._GUARD["watcher"].ports = (port,)  # stands in for 6379
                socket.create_connection(("127.0.0.1", port)).close()
        """))
    env = {k: v for k, v in os.environ.items() if k != "STACKMON_TEST_GUARD"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_offender.py")],
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)},
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 passed" in proc.stdout
    assert "guard: FAILED: the suite connected to the machine's servers" in proc.stdout
    assert "pytest (in-process)" in proc.stdout


def test_failures_are_listed_whatever_report_option(tmp_path: Path) -> None:
    """``scripts/test.sh -rs`` (skip reasons) replaced the configured ``-ra``, and the
    summary then named no failure."""
    (tmp_path / "test_fails.py").write_text("def test_fails() -> None:\n    assert 1 == 2\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_fails.py")],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO),
                               "STACKMON_TEST_GUARD": "off"},
                          cwd=tmp_path, timeout=240)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "FAILED test_fails.py::test_fails" in proc.stdout, proc.stdout[-3000:]
