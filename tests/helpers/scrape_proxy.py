"""A loopback HTTP proxy between a scraper and the exporter that can rewrite the Accept
header, and records what format the exporter answered in.

Prometheus 2.42 (Debian's) asks for OpenMetrics first and has no ``scrape_protocols``
setting to ask for the text format; scraping through ``ScrapeProxy(upstream,
accept=CLASSIC_ACCEPT)`` makes it read the text format from the same exporter.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Request headers passed on to the exporter (the rest are the proxy's business).
FORWARDED = ("Accept", "Accept-Encoding", "X-Prometheus-Scrape-Timeout-Seconds",
             "User-Agent", "Authorization")
RETURNED = ("Content-Type", "Content-Encoding")


class ScrapeProxy:
    """Forwards GETs to ``upstream`` (``http://127.0.0.1:9860``), with ``accept`` as the
    Accept header when given; ``content_types`` lists what the exporter answered."""

    def __init__(self, upstream: str, accept: str | None = None) -> None:
        self.upstream = upstream
        self.accept = accept
        self.content_types: list[str] = []
        self.accepts: list[str] = []  # what the scraper asked for
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.accepts.append(headers.get("Accept", ""))
        if self.accept is not None:
            headers["Accept"] = self.accept
        req = urllib.request.Request(self.upstream + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, got, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, got, body = err.code, err.headers, err.read()
        with self._lock:
            self.content_types.append(got.get("Content-Type", ""))
        return status, {k: got[k] for k in RETURNED if got.get(k)}, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k: v for k in FORWARDED if (v := self.headers.get(k)) is not None}
                status, got, body = proxy._forward(self.path, headers)
                self.send_response(status)
                for key, value in got.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
