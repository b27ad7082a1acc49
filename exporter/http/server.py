"""The WSGI app and the threaded HTTP(S) server around it.

Routes::

    GET /metrics       Prometheus text, or OpenMetrics when the Accept header asks; gzip
    GET /probe?target= the same for one configured target by name (multi-target)
    GET /              landing page: version, collectors, last success, the checks' findings
    GET /-/healthy     200 while the process serves (never needs auth)
    GET /-/ready       200 once the config is loaded and the server listens

Anything else is a 404.  With basic auth configured every route but /-/healthy needs
credentials, checked before a request slot is taken.  Beyond ``web.max_requests``
concurrent authorized requests the answer is 503.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from exporter import __version__
from exporter.checks import Findings
from exporter.collectors.base import CollectorSet
from exporter.http.exposition import render_openmetrics, render_text
from exporter.http.webconfig import WebConfig
from exporter.metrics import Metric
from exporter.settings import ConfigError, parse_listen_address

log = logging.getLogger("stackmon.server")

StartResponse = Callable[..., Any]
Environ = Mapping[str, Any]
MIN_DEADLINE_SECONDS = 0.1
# gzip level 1: a host scrape's 50 KB compress in 0.2 ms instead of 0.48 ms at level 5,
# for replies ~13 % larger (9.6 KB instead of 8.5 KB); bench/RESULTS.md, "Changes".
GZIP_LEVEL = 1
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


OPENMETRICS = "application/openmetrics-text"
OPENMETRICS_1 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Name escapings prometheus_client accepts in an Accept header; others mean "underscores".
ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")


def _param(tokens: list[str], key: str) -> str:
    """The first ``key=value`` parameter's value, read as prometheus_client reads it."""
    for token in tokens:
        if "=" in token:
            name, value = token.strip().split("=", 1)
            if name == key:
                return value
    return ""


def negotiate(accept: str) -> tuple[str, str] | None:
    """("text" or "openmetrics", Content-Type) as prometheus_client's ``choose_encoder``
    picks them, for the Accept headers Prometheus and curl send; None for anything else
    (a version above 1.0.0, a name escaping that rewrites names), which is left to it.

    >>> negotiate("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4")[1]
    'application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores'
    >>> negotiate("text/plain;version=0.0.4;q=1,*/*;q=0.1")
    ('text', 'text/plain; version=0.0.4; charset=utf-8')
    """
    for accepted in accept.split(","):
        tokens = accepted.split(";")
        mime = tokens[0].strip()
        if mime not in (OPENMETRICS, "text/plain"):
            continue
        version = _param(tokens, "version")
        if mime == "text/plain":
            if version in ("", "0.0.4"):
                continue  # prometheus_client goes on looking, then writes 0.0.4
            return None
        if not version:
            return "openmetrics", OPENMETRICS_1
        if version == "1.0.0":
            escaping = _param(tokens, "escaping")
            escaping = escaping if escaping in ESCAPINGS else "underscores"
            if escaping not in ("allow-utf-8", "underscores"):
                return None
            return "openmetrics", f"{OPENMETRICS_1}; escaping={escaping}"
        if version in ("0.0.1",):
            continue  # below 1.0.0: prometheus_client goes on looking
        return None
    return "text", TEXT_CONTENT_TYPE


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
        findings: Findings | None = None,
    ) -> None:
        self.collectors = collectors
        self.findings = findings  # the diagnostics' findings, listed on the landing page
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
        # Credentials first, outside the request slots: clients with wrong passwords must
        # not fill the slots an authenticated scrape needs (bcrypt is bounded on its own).
        authorized = self.web_config.authorized(environ.get("HTTP_AUTHORIZATION"))
        if authorized is None:
            return self._text(start_response, "503 Service Unavailable",
                              "too many password checks at once\n", [("Retry-After", "1")])
        if not authorized:
            return self._text(start_response, "401 Unauthorized", "Unauthorized\n",
                              [("WWW-Authenticate", 'Basic realm="stackmon"')])
        if self._slots is not None and not self._slots.acquire(blocking=False):
            return self._text(start_response, "503 Service Unavailable",
                              "too many concurrent requests\n")
        try:
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
        accept = environ.get("HTTP_ACCEPT", "")
        chosen = negotiate(accept)
        if chosen is None:  # an Accept header beyond the common ones: prometheus_client's
            # choice, imported only now (it loads ssl: 12 MB; bench/RESULTS.md, "Memory")
            from prometheus_client.exposition import choose_encoder, generate_latest

            encoder, content_type = choose_encoder(accept)
            if encoder is generate_latest:
                body = render_text(metrics)
            elif content_type.startswith("application/openmetrics-text"):
                body = render_openmetrics(metrics, content_type,
                                          encoder)  # type: ignore[arg-type]
            else:
                body = encoder(_Families(metrics))  # type: ignore[arg-type]
        elif chosen[0] == "text":
            # The text format from our own writer: same bytes, less than half the CPU.
            body, content_type = render_text(metrics), chosen[1]
        else:
            content_type = chosen[1]
            body = render_openmetrics(metrics, content_type)
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
            f"<th>duration</th></tr>{''.join(rows)}</table>"
            f"{self.findings.html() if self.findings is not None else ''}</body></html>\n"
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
    # wsgiref starts every request's environ from a copy of the process environment (CGI
    # style); nothing here reads it, and a container's environment makes that copy large.
    os_environ: dict[str, str] = {}


class _ResponseBuffer:
    """Collects wsgiref's many small writes (status, each header, body) into one send."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass


# Connection limits (see docs/security.md).  A request's line and headers (and, for TLS,
# the handshake) must arrive within HEADER_TIMEOUT_SECONDS in total, however slowly the
# bytes trickle; a keep-alive connection may wait IDLE_TIMEOUT_SECONDS for its next
# request.  At most MAX_CONNECTIONS are open: beyond that the one that has waited longest
# without a request being served is shut down first, so Prometheus's busy keep-alive
# connection is the last to go.
HEADER_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 120.0
WRITE_TIMEOUT_SECONDS = 30.0
MAX_CONNECTIONS = 128
# Connections already shut down but whose thread has not ended yet; beyond this many
# extra, new connections are refused so threads stay bounded even under a flood.
SHED_SLACK = 32
MAX_REQUEST_LINE = 65536
BLANK_LINES_SKIPPED = 4
# After an error reply, unread input is read and dropped (bounded) before closing:
# closing with unread bytes makes the kernel send a reset that can destroy the reply.
DRAIN_BYTES = 1 << 20
DRAIN_SECONDS = 1.0


@dataclass
class _Conn:
    """What the server knows about one open connection."""

    phase: str  # "headers" (reading a request or the TLS handshake), "idle", "busy"
    since: float  # time.monotonic() when the phase began
    served: int = 0  # requests answered on it
    cut: str = ""  # "timeout", "idle" or "shed" once the server shut its reading side


def _raw_shutdown(sock: socket.socket, how: int) -> None:
    """shutdown() through a duplicate of the descriptor: works on TLS sockets too (at
    the TCP level) and wakes a thread blocked reading the original."""
    with contextlib.suppress(OSError), socket.fromfd(sock.fileno(), sock.family,
                                                     sock.type) as dup:
        dup.shutdown(how)


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive (Prometheus reuses its connection), fixed-text error replies,
    and quiet logging.  The server's reaper enforces the header and idle deadlines."""

    protocol_version = "HTTP/1.1"
    server_version = "stackmon"
    server: Server
    _replied = False

    def setup(self) -> None:
        super().setup()
        # wsgiref sends status, headers and body in separate writes; without NODELAY a
        # keep-alive client waits for Nagle + delayed ACK (~40 ms) on every response.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Per-read backstop; the total header deadline is the reaper's.
        self.connection.settimeout(self.server.header_timeout)
        if getattr(self.server, "ssl_context", None) is not None:  # an ssl.SSLSocket
            self.connection.do_handshake()

    def handle(self) -> None:
        try:
            self.close_connection = True
            self._handle_one(first=True)
            while not self.close_connection:
                self._handle_one(first=False)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            log.debug("msg=\"connection dropped\" err=\"%s\"", type(err).__name__)

    def _handle_one(self, first: bool) -> None:
        self.close_connection = True
        self.requestline, self.request_version, self.command = "", "HTTP/0.9", ""
        if not first:
            self.server.set_phase(self.connection, "idle")
            self.connection.settimeout(self.server.idle_timeout + 5)
            # rfile is a BufferedReader (makefile with the default buffer size).
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # closed or cut
                return
            self.server.set_phase(self.connection, "headers")
            self.connection.settimeout(self.server.header_timeout)
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        for _ in range(BLANK_LINES_SKIPPED):  # RFC 9112 2.2: ignore CRLFs before a request
            if self.raw_requestline not in (b"\r\n", b"\n"):
                break
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if self._timed_out() or not self.raw_requestline:
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.send_error(414)
            return
        self._replied = False
        if not self.parse_request():
            if not self._replied:  # a blank or whitespace-only line: http.server stays mute
                self.send_error(400)
            return
        if self._timed_out():
            return
        if self.request_version == "HTTP/0.9":
            # An HTTP/0.9 reply has no status line: a body alone is never right here.
            self.send_error(400)
            return
        self.server.set_phase(self.connection, "busy")
        self.connection.settimeout(WRITE_TIMEOUT_SECONDS)
        out = _ResponseBuffer()
        handler = _ServerHandler(self.rfile, out,  # type: ignore[arg-type]
                                 self.get_stderr(), self.get_environ(),
                                 multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[arg-type]
        self.wfile.write(b"".join(out.parts))
        self.server.set_phase(self.connection, "served")

    def _timed_out(self) -> bool:
        """True when the reaper cut this connection; a header timeout gets a 408."""
        cut = self.server.cut_reason(self.connection)
        if cut == "timeout":
            self.send_error(408)
        return bool(cut)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """A plain-text error with a status line whatever the client sent, then close.

        http.server's own error page quotes the raw request line and, for garbage, has
        no status line at all (it answers in HTTP/0.9): neither is wanted."""
        self.close_connection = True
        self._replied = True
        self.request_version = "HTTP/1.1"
        status = HTTPStatus(code)
        body = f"{status.value} {status.phrase}\n".encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            return
        self._drain()

    def _drain(self) -> None:
        """Drop what the client still sends (bounded), so closing does not reset the
        connection before it has read the error."""
        _raw_shutdown(self.connection, socket.SHUT_WR)
        deadline = time.monotonic() + DRAIN_SECONDS
        dropped = 0
        with contextlib.suppress(OSError, ValueError), socket.fromfd(
                self.connection.fileno(), self.connection.family, self.connection.type) as raw:
            while dropped < DRAIN_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                raw.settimeout(left)
                data = raw.recv(65536)
                if not data:
                    break
                dropped += len(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Debug-log a request without echoing client input: an unknown path or a query
        string could carry anything (a DSN pasted into /probe?target=...)."""
        app = self.server.get_app()
        # Unset when the request line could not be parsed (an error reply for garbage).
        path = getattr(self, "path", "").split("?", 1)[0]
        known = isinstance(app, App) and path in app.routes()
        log.debug("msg=\"request\" client=%s method=%s path=%s status=%s bytes=%s",
                  self.client_address[0], self.command if known else "-",
                  path if known else "(other)", getattr(code, "value", code), size)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own messages quote the raw request line: keep only the status code.
        code = args[0] if args and isinstance(args[0], int) else "-"
        log.debug("msg=\"bad request\" client=%s status=%s", self.client_address[0], code)


class Server(ThreadingMixIn, WSGIServer):
    """One thread per connection, with at most ``max_connections`` of them open."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    max_connections = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT_SECONDS
    idle_timeout = IDLE_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kw: Any) -> None:
        self._conns: dict[socket.socket, _Conn] = {}
        # Held while a descriptor is shut down, and while a connection leaves the table
        # before its socket is closed: the reaper never touches a reused descriptor.
        self._conns_lock = threading.Lock()
        self._reaper_stop = threading.Event()
        # serve_forever() blocks in select() without a timeout; shutdown() wakes it by
        # writing to this pipe, so an idle exporter has no periodic wakeups.
        self._wake_r, self._wake_w = os.pipe()
        # Guards the pipe's descriptors: after server_close() they may be reused, and a
        # late shutdown() (a second signal) must not write to whatever has them now.
        self._wake_lock = threading.Lock()
        self._wake_open = True
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        super().__init__(*args, **kw)

    def connections(self) -> dict[str, int]:
        """Open connections by phase (cut ones under their reason), for tests and logs."""
        with self._conns_lock:
            counts: dict[str, int] = {}
            for conn in self._conns.values():
                key = conn.cut or conn.phase
                counts[key] = counts.get(key, 0) + 1
            return counts

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until shutdown() (``poll_interval`` is not used: the loop
        sleeps until a connection or shutdown arrives)."""
        reaper = threading.Thread(target=self._reap, name="http-reaper", daemon=True)
        reaper.start()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is self and not self._stopping.is_set():
                            # socketserver's accept-and-dispatch step (untyped there)
                            self._handle_request_noblock()  # type: ignore[attr-defined]
        finally:
            self._reaper_stop.set()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever() and wait until it has returned (from another thread)."""
        self._stopping.set()
        with self._wake_lock:
            if self._wake_open:
                os.write(self._wake_w, b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        with self._wake_lock:
            if self._wake_open:
                self._wake_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("msg=\"request failed\" client=%s", client_address[0], exc_info=True)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        context: ssl.SSLContext | None = getattr(self, "ssl_context", None)
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        now = time.monotonic()
        with self._conns_lock:
            live = [(s, c) for s, c in self._conns.items() if not c.cut]
            victim = None
            if len(live) >= self.max_connections:
                victim = self._victim(live)
                if victim is not None:
                    self._cut(victim, "shed")
                    log.debug("msg=\"connection limit reached; shed the longest waiting\"")
            refuse = (len(live) >= self.max_connections and victim is None) or (
                len(self._conns) >= self.max_connections + SHED_SLACK)
            if not refuse:
                self._conns[request] = _Conn("headers", now)
        if refuse:
            log.debug("msg=\"connection limit reached; refused\" client=%s", client_address[0])
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    @staticmethod
    def _victim(live: list[tuple[socket.socket, _Conn]]) -> socket.socket | None:
        """The connection to shed: never one serving a request; first those that never
        had a request served (slow or idle new clients), then idle keep-alive ones;
        oldest first within each."""
        ranked = []
        for sock, conn in live:
            if conn.phase == "busy":
                continue
            rank = 0 if conn.served == 0 else (1 if conn.phase == "idle" else 2)
            ranked.append((rank, conn.since, id(sock), sock))
        return min(ranked)[3] if ranked else None

    def _cut(self, sock: socket.socket, reason: str) -> None:
        """Shut the reading side (call with the lock held): the handler's blocked read
        returns at once and it answers or closes; the writing side stays for a 408."""
        self._conns[sock].cut = reason
        _raw_shutdown(sock, socket.SHUT_RD)

    def set_phase(self, sock: socket.socket, phase: str) -> None:
        with self._conns_lock:
            conn = self._conns.get(sock)
            if conn is None:
                return
            if phase == "served":
                conn.served += 1
                phase = "idle"
            conn.phase, conn.since = phase, time.monotonic()

    def cut_reason(self, sock: socket.socket) -> str:
        with self._conns_lock:
            conn = self._conns.get(sock)
            return conn.cut if conn else ""

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
            super().shutdown_request(request)

    def _reap(self) -> None:
        """Cut connections past their header or idle time.  It wakes when the earliest one
        is due, and at least every min(header, idle) timeout: a connection whose phase
        begins after this pass is due later than that, so none is missed, and an idle
        exporter wakes once every few seconds instead of several times a second."""
        shortest = min(self.header_timeout, self.idle_timeout)
        wait = shortest
        while not self._reaper_stop.wait(wait):
            now = time.monotonic()
            next_due = now + shortest
            with self._conns_lock:
                for sock, conn in list(self._conns.items()):
                    if conn.cut or conn.phase == "busy":
                        continue
                    timeout = self.header_timeout if conn.phase == "headers" else \
                        self.idle_timeout
                    due = conn.since + timeout
                    if now > due:
                        self._cut(sock, "timeout" if conn.phase == "headers" else "idle")
                    else:
                        next_due = min(next_due, due)
            # A little past the deadline, so that the connection is over it on waking.
            wait = next_due - now + 0.01


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
