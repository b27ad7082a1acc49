"""The HTTP server from the outside: malformed requests, slowloris, wrong-password floods.

Every load here is bounded in count and time and stays on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.http.server import (
    HEADER_TIMEOUT_SECONDS,
    MAX_CONNECTIONS,
    SHED_SLACK,
)
from tests.helpers.exporter import Exporter, start_exporter, wait_for

STATUS_LINE = re.compile(rb"^HTTP/1\.1 ([1-5]\d\d) ")


@pytest.fixture(scope="module")
def debug_exporter() -> Iterator[Exporter]:
    """Debug logging on: the request log is where the AttributeError used to show."""
    exp = start_exporter(["--log.level=debug"])
    try:
        yield exp
    finally:
        exp.stop()


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send ``payload``, half-close, and read the reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        chunks = []
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while data := s.recv(65536):
                chunks.append(data)
        except (ConnectionResetError, BrokenPipeError):
            pass
        return b"".join(chunks)


def status_of(reply: bytes) -> int:
    match = STATUS_LINE.match(reply)
    assert match, f"no status line in {reply[:120]!r}"
    return int(match.group(1))


@pytest.mark.parametrize(("payload", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x00\xff\xfe junk\r\n\r\n", 400),
    (b"   \r\n\r\n", 400),
    (b"GET /metrics HTTP/9.9\r\n\r\n", 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # the HTTP/2 connection preface
    (b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /metrics\r\n", 400),  # HTTP/0.9: would get a body without a status line
    (b"\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n", 200),  # leading CRLF is ignored
])
def test_malformed_request_gets_a_proper_status(debug_exporter: Exporter, payload: bytes,
                                                status: int) -> None:
    reply = exchange(debug_exporter.port, payload)
    assert status_of(reply) == status
    if status >= 400:
        assert b"Connection: close" in reply
        assert b"x" * 100 not in reply and b"a" * 100 not in reply  # input never echoed


def test_http09_never_gets_metrics(debug_exporter: Exporter) -> None:
    reply = exchange(debug_exporter.port, b"GET /metrics\r\n")
    assert b"# HELP" not in reply


request_lines = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda m, p, v, rest: m + b" " + p + b" " + v + b"\r\n" + rest + b"\r\n\r\n",
              st.sampled_from([b"GET", b"POST", b"HEAD", b"PRI", b"\x00", b"G ET", b""]),
              st.binary(max_size=100),
              st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9",
                               b"HTTP/9.9", b"HTTP/1", b"", b"X"]),
              st.binary(max_size=200)),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=request_lines)
def test_fuzzed_requests_always_get_a_status_line(debug_exporter: Exporter,
                                                  payload: bytes) -> None:
    if not payload.strip(b"\r\n"):
        return  # nothing but line ends: skipped before a request line, then end of input
    reply = exchange(debug_exporter.port, payload)
    status_of(reply)


def test_no_errors_logged_after_fuzzing(debug_exporter: Exporter) -> None:
    for payload in (b"GARBAGE\r\n\r\n", b"GET /" + b"x" * 70000 + b"\r\n", b"\x16\x03\x01"):
        exchange(debug_exporter.port, payload)
    assert debug_exporter.get("/metrics")[0] == 200
    logs = debug_exporter.logs()
    assert "AttributeError" not in logs and "Traceback" not in logs, logs[-2000:]
    assert 'msg="request"' in logs  # the request log itself is on


def thread_count(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


class Slowloris:
    """``count`` connections that send a request's headers one byte a second, forever."""

    def __init__(self, port: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            self.socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(1.0):  # pacing the attack, not synchronising the test
            for s in self.socks:
                with contextlib.suppress(OSError):  # shed or cut by the server: the point
                    s.sendall(b"a")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def test_slowloris_is_capped_and_a_real_client_is_served() -> None:
    exp = start_exporter([])
    keep_alive = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=20)
    loris: Slowloris | None = None
    try:
        keep_alive.request("GET", "/metrics")
        assert keep_alive.getresponse().read() and True
        base_threads = thread_count(exp.proc.pid)
        loris = Slowloris(exp.port, MAX_CONNECTIONS + 120)
        # The cap holds: the server sheds slow connections instead of growing threads.
        wait_for(lambda: thread_count(exp.proc.pid) >= base_threads + MAX_CONNECTIONS // 2,
                 timeout=30, what="the slow connections to reach the server")
        # Threads of shed connections end within moments; until they have, new ones
        # beyond the cap plus SHED_SLACK would be refused (the bound under a flood).
        wait_for(lambda: thread_count(exp.proc.pid) <= base_threads + MAX_CONNECTIONS + 8,
                 timeout=30, what="shed connections' threads to end")
        for _ in range(5):
            # A new client is served...
            assert exp.get("/metrics", timeout=20)[0] == 200
            # ...and Prometheus's keep-alive connection, served before, is never shed.
            keep_alive.request("GET", "/metrics")
            response = keep_alive.getresponse()
            assert response.status == 200 and response.read()
            threads = thread_count(exp.proc.pid)
            assert threads <= base_threads + MAX_CONNECTIONS + SHED_SLACK, threads
        assert exp.proc.poll() is None
    finally:
        if loris:
            loris.close()
        keep_alive.close()
        exp.stop()


def test_trickled_headers_hit_a_total_deadline(debug_exporter: Exporter) -> None:
    """A client that sends a header byte a second is cut after the header deadline
    (with a 408), although each single read is well within the per-read timeout."""
    loris = Slowloris(debug_exporter.port, 1)
    try:
        sock = loris.socks[0]
        sock.settimeout(HEADER_TIMEOUT_SECONDS * 4)
        start = time.monotonic()
        reply = b""
        try:
            while data := sock.recv(65536):
                reply += data
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < HEADER_TIMEOUT_SECONDS * 4
        assert status_of(reply) == 408
    finally:
        loris.close()


# -- basic auth under a flood of wrong passwords ---------------------------------------

USER, PASSWORD = "prometheus", "right-Pass-1"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def auth_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """Cost 12 as in production, and few request slots so a flood would fill them."""
    d = tmp_path_factory.mktemp("auth")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
    (d / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    exp = start_exporter([f"--web.config.file={d / 'web.yml'}", "--web.max-requests=8"])
    try:
        yield exp
    finally:
        exp.stop()


def test_wrong_password_flood_does_not_starve_the_real_scrape(auth_exporter: Exporter) -> None:
    assert auth_exporter.get("/metrics", headers=basic(USER, PASSWORD))[0] == 200  # primed
    stop = threading.Event()
    flood_statuses: list[int] = []
    budget = {"requests": 400}
    lock = threading.Lock()

    def flood() -> None:
        while not stop.is_set():
            with lock:
                if budget["requests"] <= 0:
                    return
                budget["requests"] -= 1
            wrong = basic(USER, os.urandom(8).hex())
            try:
                status = auth_exporter.get("/metrics", headers=wrong, timeout=30)[0]
            except OSError:
                status = 0
            flood_statuses.append(status)

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(30)]
    for t in threads:
        t.start()
    try:
        # Wait until the flood is really on (bcrypt runs under way, answers coming back).
        wait_for(lambda: len(flood_statuses) >= 10, timeout=60, what="the flood to start")
        statuses = [auth_exporter.get("/metrics", headers=basic(USER, PASSWORD),
                                      timeout=30)[0] for _ in range(10)]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert statuses == [200] * 10
    # The flood itself was refused (401 once checked, 503 when bcrypt was saturated).
    assert set(flood_statuses) <= {401, 503}, set(flood_statuses)
    assert 401 in flood_statuses
