"""Fuzzing the HTTP server: random request lines and headers never stop it serving."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.exporter import Exporter

request_lines = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda m, p, v: m + b" " + p + b" " + v + b"\r\n\r\n",
              st.sampled_from([b"GET", b"POST", b"HEAD", b"\x00", b"G ET", b""]),
              st.binary(max_size=100), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"", b"X"])),
    st.builds(lambda name, value: b"GET /metrics HTTP/1.1\r\n" + name + b": " + value
              + b"\r\n\r\n", st.binary(max_size=50), st.binary(max_size=2000)),
)


def send(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=request_lines)
def test_server_survives_random_requests(host_exporter: Exporter, payload: bytes) -> None:
    send(host_exporter.port, payload)
    assert host_exporter.proc.poll() is None


def test_still_serving_after_fuzzing(host_exporter: Exporter) -> None:
    assert host_exporter.get("/metrics")[0] == 200
    assert "Traceback" not in host_exporter.logs()


def test_many_slow_clients_do_not_block_scrapes(host_exporter: Exporter) -> None:
    idle = []
    try:
        for i in range(30):
            s = socket.create_connection(("127.0.0.1", host_exporter.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GE")
            idle.append(s)
        assert host_exporter.get("/metrics", timeout=5)[0] == 200
    finally:
        for s in idle:
            s.close()
