"""App-level behaviour that needs a scrape held open: the request limit."""

from __future__ import annotations

import threading
from typing import Any

from exporter.collectors.base import CollectorSet
from exporter.http.server import App


class Blocking(CollectorSet):
    def __init__(self) -> None:
        super().__init__([])
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self, deadline: float) -> list[Any]:
        self.entered.set()
        self.release.wait(10)
        return []


def call(app: App, path: str) -> str:
    status: list[str] = []
    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"},
               lambda s, h: status.append(s))
    b"".join(body)
    return status[0]


def test_requests_beyond_the_limit_get_503_and_health_stays_open() -> None:
    blocking = Blocking()
    app = App(blocking, max_requests=1)
    app.ready.set()
    held = threading.Thread(target=call, args=(app, "/metrics"))
    held.start()
    assert blocking.entered.wait(5)
    assert call(app, "/metrics").startswith("503")
    assert call(app, "/").startswith("503")
    assert call(app, "/-/healthy").startswith("200")
    blocking.release.set()
    held.join(5)
    assert call(app, "/-/ready").startswith("200")


def test_not_ready_until_serving() -> None:
    app = App(CollectorSet([]))
    assert call(app, "/-/ready").startswith("503")
    app.ready.set()
    assert call(app, "/-/ready").startswith("200")


def test_unknown_probe_target_is_400_without_echo() -> None:
    app = App(CollectorSet([]), probes={"main": CollectorSet([])})
    status: list[str] = []
    body = b"".join(app({"PATH_INFO": "/probe", "REQUEST_METHOD": "GET",
                         "QUERY_STRING": "target=<script>postgres://u:secret@h/db"},
                        lambda s, h: status.append(s)))
    assert status[0].startswith("400")
    assert b"secret" not in body and b"<script>" not in body
    assert b"main" in body
