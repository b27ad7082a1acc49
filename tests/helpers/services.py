"""Real loopback targets for the service-check tests: an HTTP(S) test server and nginx."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers.exporter import free_port, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # Debian: nginx-light
APP_VERSION = "4.2.1"
HANG_SECONDS = 60.0

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server_tokens on;
    server {{
        listen 127.0.0.1:{port};
        location = /stub_status {{ stub_status; }}
        location / {{ return 200 "hello\\n"; }}
    }}
}}
"""


@dataclass
class TargetServer:
    """A threaded HTTP(S) server whose paths answer the way a test needs.

    /ok 200 "status: ok" + X-App-Version, /fail 500, /degraded 200 with another body,
    /hang waits until the server stops, /auth 200 only with an Authorization header
    listed in ``accepted_auth``.
    """

    tls: ssl.SSLContext | None = None
    accepted_auth: tuple[str, ...] = ()
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                target.seen.append((self.path, self.headers.get("Authorization", "")))
                if self.path == "/ok":
                    self._reply(200, b"status: ok\n", {"X-App-Version": APP_VERSION})
                elif self.path == "/fail":
                    self._reply(500, b"server error\n")
                elif self.path == "/degraded":
                    self._reply(200, b"status: degraded\n")
                elif self.path == "/hang":
                    target.release.wait(HANG_SECONDS)
                    self._reply(200, b"status: ok\n")
                elif self.path == "/auth":
                    ok = self.headers.get("Authorization") in target.accepted_auth
                    self._reply(200 if ok else 401, b"status: ok\n" if ok else b"no\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None
                       ) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # The exporter hangs up on /hang at its deadline; the late reply's broken
                # pipe is expected, anything else is reported as usual.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def self_signed_cert(directory: Path, days: int) -> tuple[Path, Path, float]:
    """A key and certificate made by openssl for ``days``; returns (cert, key, notAfter)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", str(days), "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60)
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    not_after = ssl.cert_time_to_seconds(out.strip().split("=", 1)[1])
    return cert, key, float(not_after)


def tls_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@dataclass
class Nginx:
    """A real nginx on a free loopback port, its files in ``tmp``."""

    tmp: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port))
        log = open(self.tmp / "stderr.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([NGINX, "-p", str(self.tmp), "-c", str(conf),
                                      "-e", str(self.tmp / "error.log")],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.logs()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(listening, timeout=20, what="nginx to listen")
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in
                       (self.tmp / "stderr.log", self.tmp / "error.log") if p.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # fast shutdown of master + workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def nginx_version() -> str:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=30).stderr
    return out.strip().rsplit("/", 1)[1]

