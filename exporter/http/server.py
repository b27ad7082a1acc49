"""The WSGI app and the threaded HTTP(S) server around it.

Routes::

    GET /metrics       Prometheus text, or OpenMetrics when the Accept header asks; gzip
    GET /probe?target= the same for one configured target by name (multi-target)
    GET /              landing page: version, collectors, last success, link to /metrics
    GET /-/healthy     200 while the process serves (never needs auth)
    GET /-/ready       200 once the config is loaded and the server listens

Anything else is a 404.  With basic auth configured every route but /-/healthy needs
credentials.  Beyond ``web.max_requests`` concurrent requests the answer is 503.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.collectors.base import CollectorSet
from exporter.http.webconfig import WebConfig
from exporter.settings import ConfigError, parse_listen_address

log = logging.getLogger("stackmon.server")

StartResponse = Callable[..., Any]
Environ = Mapping[str, Any]
MIN_DEADLINE_SECONDS = 0.1
GZIP_LEVEL = 5


class _Families:
    """Adapter so prometheus_client's encoders can render a list of families."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def scrape_deadline(environ: Environ, timeout: float, offset: float) -> float:
    """min(configured timeout, Prometheus's scrape timeout header minus offset)."""
    budget = timeout
    header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    if header:
        try:
            value = float(header)
        except ValueError:
            value = 0.0
        if value > 0 and value == value:
            budget = min(budget, max(value - offset, MIN_DEADLINE_SECONDS))
    return time.monotonic() + budget


class App:
    """The WSGI application: routing, auth, request limit and rendering."""

    def __init__(
        self,
        collectors: CollectorSet,
        *,
        telemetry_path: str = "/metrics",
        timeout: float = 10.0,
        timeout_offset: float = 0.5,
        max_requests: int = 40,
        web_config: WebConfig | None = None,
        probes: Mapping[str, CollectorSet] | None = None,
    ) -> None:
        self.collectors = collectors
        self.telemetry_path = telemetry_path
        self.timeout = timeout
        self.timeout_offset = timeout_offset
        self.web_config = web_config or WebConfig()
        self.probes = dict(probes or {})
        self._slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None
        self.ready = threading.Event()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body = self._route(environ, start_response)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]  # headers (with Content-Length) only
        return body

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/-/healthy":
            return self._text(start_response, "200 OK", "Healthy\n")
        if self._slots is not None and not self._slots.acquire(blocking=False):
            return self._text(start_response, "503 Service Unavailable",
                              "too many concurrent requests\n")
        try:
            if not self.web_config.authorized(environ.get("HTTP_AUTHORIZATION")):
                return self._text(start_response, "401 Unauthorized", "Unauthorized\n",
                                  [("WWW-Authenticate", 'Basic realm="stackmon"')])
            method = environ.get("REQUEST_METHOD", "GET")
            if method not in ("GET", "HEAD"):
                return self._text(start_response, "405 Method Not Allowed",
                                  "method not allowed\n", [("Allow", "GET, HEAD")])
            if path == self.telemetry_path:
                return self._metrics(environ, start_response, self.collectors)
            if path == "/probe":
                return self._probe(environ, start_response)
            if path == "/":
                return self._landing(start_response)
            if path == "/-/ready":
                if self.ready.is_set():
                    return self._text(start_response, "200 OK", "Ready\n")
                return self._text(start_response, "503 Service Unavailable", "Not ready\n")
            return self._text(start_response, "404 Not Found", "404 page not found\n")
        finally:
            if self._slots is not None:
                self._slots.release()

    def routes(self) -> set[str]:
        return {self.telemetry_path, "/probe", "/", "/-/healthy", "/-/ready"}

    def _probe(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        names = query.get("target", [])
        if len(names) != 1 or not names[0]:
            return self._text(start_response, "400 Bad Request",
                              "exactly one target=<name> parameter is required\n")
        target = self.probes.get(names[0])
        if target is None:
            # Never echo the raw input: it may be a DSN with a password in it.
            known = ", ".join(sorted(self.probes)) or "none configured"
            return self._text(start_response, "400 Bad Request",
                              f"unknown target name; configured targets: {known}\n")
        return self._metrics(environ, start_response, target)

    def _metrics(self, environ: Environ, start_response: StartResponse,
                 collectors: CollectorSet) -> Iterable[bytes]:
        deadline = scrape_deadline(environ, self.timeout, self.timeout_offset)
        metrics = collectors.collect(deadline)
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        body: bytes = encoder(_Families(metrics))
        headers = [("Content-Type", content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    def _landing(self, start_response: StartResponse) -> Iterable[bytes]:
        rows = []
        sets = [("", self.collectors)] + [(f" (target {name})", cs)
                                          for name, cs in sorted(self.probes.items())]
        for suffix, cs in sets:
            for collector in cs.collectors:
                st = cs.state[collector.name]
                if st.last_success is None:
                    status = "not scraped yet"
                else:
                    status = "ok" if st.last_success else f"failed: {st.last_error or 'error'}"
                last_ok = (time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                         time.gmtime(st.last_success_time))
                           if st.last_success_time else "never")
                rows.append(
                    f"<tr><td>{html.escape(collector.name + suffix)}</td>"
                    f"<td>{html.escape(status)}</td><td>{html.escape(last_ok)}</td>"
                    f"<td>{st.last_duration * 1000:.1f} ms</td></tr>")
        path = html.escape(self.telemetry_path)
        page = (
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>stackmon</title></head>"
            f"<body><h1>stackmon</h1><p>Version {html.escape(__version__)}</p>"
            f"<p><a href=\"{path}\">Metrics</a></p>"
            "<table><tr><th>collector</th><th>last scrape</th><th>last success</th>"
            f"<th>duration</th></tr>{''.join(rows)}</table></body></html>\n"
        )
        return self._text(start_response, "200 OK", page, content_type="text/html; charset=utf-8")

    @staticmethod
    def _text(start_response: StartResponse, status: str, text: str,
              extra: list[tuple[str, str]] | None = None,
              content_type: str = "text/plain; charset=utf-8") -> Iterable[bytes]:
        body = text.encode("utf-8")
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   *(extra or [])]
        start_response(status, headers)
        return [body]


class _ServerHandler(ServerHandler):
    http_version = "1.1"  # every response has a Content-Length, so keep-alive is safe


class _ResponseBuffer:
    """Collects wsgiref's many small writes (status, each header, body) into one send."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive (Prometheus reuses its connection), quiet logging, and a socket
    timeout so slow or idle clients cannot hold a thread for long."""

    timeout = 30
    protocol_version = "HTTP/1.1"
    server_version = "stackmon"

    def setup(self) -> None:
        super().setup()
        # wsgiref sends status, headers and body in separate writes; without NODELAY a
        # keep-alive client waits for Nagle + delayed ACK (~40 ms) on every response.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def handle(self) -> None:
        try:
            self.close_connection = True
            self._handle_one()
            while not self.close_connection:
                self._handle_one()
        except (ssl.SSLError, OSError) as err:
            log.debug("msg=\"connection dropped\" err=\"%s\"", type(err).__name__)

    def _handle_one(self) -> None:
        self.close_connection = True
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # it has sent the error and set close_connection
            return
        out = _ResponseBuffer()
        handler = _ServerHandler(self.rfile, out,  # type: ignore[arg-type]
                                 self.get_stderr(), self.get_environ(),
                                 multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        self.wfile.write(b"".join(out.parts))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Debug-log a request without echoing client input: an unknown path or a query
        string could carry anything (a DSN pasted into /probe?target=...)."""
        app = self.server.get_app()  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        known = isinstance(app, App) and path in app.routes()
        log.debug("msg=\"request\" client=%s method=%s path=%s status=%s bytes=%s",
                  self.client_address[0], self.command if known else "-",
                  path if known else "(other)", getattr(code, "value", code), size)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own messages quote the raw request line: keep only the status code.
        code = args[0] if args and isinstance(args[0], int) else "-"
        log.debug("msg=\"bad request\" client=%s status=%s", self.client_address[0], code)


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("msg=\"request failed\" client=%s", client_address[0], exc_info=True)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        context: ssl.SSLContext | None = getattr(self, "ssl_context", None)
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def make_server(listen_address: str, app: App,
                ssl_context: ssl.SSLContext | None = None) -> Server:
    """Bind the listen address; a taken or invalid address is a ConfigError."""
    host, port = parse_listen_address(listen_address)
    family = socket.AF_INET
    bind_host = host or "0.0.0.0"
    if not host and socket.has_ipv6:
        family, bind_host = socket.AF_INET6, "::"
    elif ":" in host:
        family = socket.AF_INET6

    class _Bound(Server):
        address_family = family

        def server_bind(self) -> None:
            if family == socket.AF_INET6 and not host:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    try:
        server = _Bound((bind_host, port), _Handler)
    except OSError as err:
        if family == socket.AF_INET6 and not host and err.errno != 98:
            return make_server(f"0.0.0.0:{port}", app, ssl_context)
        reason = "is already in use" if err.errno == 98 else f"cannot be bound ({err.strerror})"
        raise ConfigError(f'web.listen_address: "{listen_address}" {reason}') from None
    server.set_app(app)
    server.ssl_context = ssl_context  # type: ignore[attr-defined]
    return server
