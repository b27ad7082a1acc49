"""The HTTP server's accept loop and connection reaper: both sleep until there is work
(no periodic wakeups), shutdown wakes the loop, and deadlines are still kept."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.collectors.base import CollectorSet
from exporter.http.server import App, Server, make_server


@pytest.fixture
def server() -> Iterator[Server]:
    app = App(CollectorSet([]))
    app.ready.set()
    srv = make_server("127.0.0.1:0", app)
    srv.header_timeout = 0.3  # the reaper's deadline for a silent new connection
    yield srv
    srv.server_close()


def test_shutdown_wakes_the_loop_and_a_late_one_writes_nowhere(server: Server) -> None:
    loop = threading.Thread(target=server.serve_forever)
    loop.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200
    conn.close()
    server.shutdown()  # returns once serve_forever() has returned
    loop.join(5)
    assert not loop.is_alive()
    server.server_close()
    # A second signal after close: the wake-up pipe's descriptors may belong to someone
    # else now (this new pipe most likely reuses them); nothing may be written there.
    r, w = os.pipe()
    try:
        server.shutdown()
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 1)
    finally:
        os.close(r)
        os.close(w)


def test_reaper_cuts_a_silent_connection_at_its_deadline(server: Server) -> None:
    loop = threading.Thread(target=server.serve_forever)
    loop.start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            start = time.monotonic()
            reply = sock.recv(4096)  # the 408, or the close, once the reaper cut it
            waited = time.monotonic() - start
        assert reply.startswith(b"HTTP/1.1 408") or reply == b""
        assert waited >= 0.25  # not before the deadline (0.3 s from the accept)
    finally:
        server.shutdown()
        loop.join(5)
