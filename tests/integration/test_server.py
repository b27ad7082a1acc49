"""The real exporter over a real socket: routes, formats, robustness, shutdown."""

from __future__ import annotations

import gzip
import signal
import socket
import threading

from tests.helpers.exporter import Exporter, Samples, free_port, start_exporter, wait_for


def test_metrics_text_format(host_exporter: Exporter) -> None:
    status, headers, body = host_exporter.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = Samples.parse(body.decode())
    assert samples.get("stackmon_scrape_collector_success", collector="host") == 1.0
    assert samples.has("stackmon_scrape_collector_duration_seconds", collector="host")
    assert samples.has("stackmon_build_info", version=__import__("exporter").__version__)
    assert samples.has("node_cpu_seconds_total", cpu="0", mode="idle")
    assert samples.has("process_resident_memory_bytes")


def test_openmetrics_by_content_negotiation(host_exporter: Exporter) -> None:
    status, headers, body = host_exporter.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_gzip_when_asked(host_exporter: Exporter) -> None:
    status, headers, body = host_exporter.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert b"node_load1" in gzip.decompress(body)


def test_landing_health_ready_and_404(host_exporter: Exporter) -> None:
    host_exporter.get("/metrics")
    status, headers, body = host_exporter.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'href="/metrics"' in page and "<td>host</td><td>ok</td>" in page
    assert __import__("exporter").__version__ in page
    assert host_exporter.get("/-/healthy")[0] == 200
    assert host_exporter.get("/-/ready")[0] == 200
    assert host_exporter.get("/nope")[0] == 404
    assert host_exporter.get("/probe?target=x")[0] == 400


def raw_request(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_survives_malformed_requests(host_exporter: Exporter) -> None:
    bad = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # TLS to plain HTTP
        b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n",
        b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"",
    ]
    for payload in bad:
        reply = raw_request(host_exporter.port, payload)
        assert not reply.startswith(b"HTTP/1.0 200") or payload.startswith(b"GET /metrics")
    assert host_exporter.get("/metrics")[0] == 200


def test_slow_client_does_not_block_others(host_exporter: Exporter) -> None:
    with socket.create_connection(("127.0.0.1", host_exporter.port)) as idle:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its headers
        assert host_exporter.get("/metrics", timeout=5)[0] == 200


def test_concurrent_scrapes_all_succeed(host_exporter: Exporter) -> None:
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(host_exporter.get()[0]))
               for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10


def test_sigterm_and_sigint_shut_down_cleanly() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        exp = start_exporter([])
        assert exp.get("/metrics")[0] == 200
        exp.proc.send_signal(sig)
        assert exp.proc.wait(timeout=10) == 0
        assert "Traceback" not in exp.logs()
        assert 'msg="stopped"' in exp.logs()


def test_custom_telemetry_path() -> None:
    exp = start_exporter(["--web.telemetry-path=/custom"])
    try:
        assert wait_for(lambda: exp.get("/custom")[0] == 200, what="custom path")
        assert exp.get("/metrics")[0] == 404
    finally:
        exp.stop()


def test_ipv6_listen_address() -> None:
    port = free_port()
    exp = start_exporter([f"--web.listen-address=[::1]:{port}"], port=port, wait=False)
    try:
        def up() -> bool:
            with socket.create_connection(("::1", port), timeout=1):
                return True
        wait_for(up, what="IPv6 listener")
        with socket.create_connection(("::1", port), timeout=5) as s:
            s.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
            assert s.recv(100).split(b"\r\n")[0].endswith(b" 200 OK")
    finally:
        exp.stop()


def test_keep_alive_serves_many_requests_on_one_connection(host_exporter: Exporter) -> None:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", host_exporter.port, timeout=10)
    try:
        sockets = set()
        for path in ("/metrics", "/-/healthy", "/nope", "/metrics"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.version == 11
            sockets.add(id(conn.sock))
        conn.request("HEAD", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert int(resp.headers["Content-Length"]) > 1000
        conn.request("GET", "/-/healthy")
        assert conn.getresponse().read() == b"Healthy\n"
        assert len(sockets) == 1
    finally:
        conn.close()
