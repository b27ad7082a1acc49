"""The receiver's own decoding of kombu's envelopes gives what kombu and Celery give.

On a Redis broker the receiver decodes kombu's JSON envelopes itself (events.py,
"decoding"); these tests hold it to kombu's and Celery's results for the same bytes,
and check that what it does not handle goes down kombu's path.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import uuid
from typing import Any

import pytest
from celery import Celery
from celery.events.receiver import EventReceiver
from kombu.serialization import dumps as kombu_dumps
from kombu.serialization import loads as kombu_loads

from exporter.collectors.celery import events
from exporter.collectors.celery.events import EventState, envelope_body, install_fast_decode
from exporter.collectors.celery.settings import CelerySettings


def envelope(payload: Any, **over: Any) -> dict[str, Any]:
    content_type, encoding, data = kombu_dumps(payload, serializer="json")
    raw = {"body": base64.b64encode(data.encode() if isinstance(data, str) else data).decode(),
           "content-encoding": encoding, "content-type": content_type, "headers": {},
           "properties": {"body_encoding": "base64", "delivery_tag": "t1",
                          "delivery_info": {"exchange": "celeryev", "routing_key": "x"}}}
    raw.update(over)
    return raw


def kombu_decode(raw: dict[str, Any]) -> Any:
    return kombu_loads(base64.b64decode(raw["body"]), raw["content-type"],
                       raw["content-encoding"])


@pytest.mark.parametrize("body", [
    {"type": "task-sent", "uuid": "u1", "name": "shop.charge", "timestamp": 1.5, "retries": 0},
    [{"type": "task-started", "uuid": "u1"}, {"type": "task-succeeded", "runtime": 0.25}],
    {"type": "task-received", "eta": datetime.datetime(2026, 1, 2, 3, 4, 5),
     "id": uuid.UUID(int=7)},  # kombu's typed values ({"__type__": ...})
    {"type": "task-failed", "exception": "ValueError('é\\u2603')", "big": 2**70},
])
def test_same_body_as_kombu(body: Any) -> None:
    raw = envelope(body)
    assert envelope_body(raw) == kombu_decode(raw)


def test_what_orjson_refuses_decodes_as_the_stdlib_does() -> None:
    data = b'{"type": "task-sent", "value": NaN, "n": 123456789012345678901234567890}'
    raw = envelope({}, body=base64.b64encode(data).decode())
    got = envelope_body(raw)
    assert got["n"] == 123456789012345678901234567890
    assert got["value"] != got["value"]  # NaN, as json.loads gives it


@pytest.mark.parametrize("over", [
    {"content-type": "application/x-python-serialize"},
    {"content-encoding": "binary"},
    {"headers": {"compression": "application/x-gzip"}},
    {"properties": {"body_encoding": "hex", "delivery_tag": "t"}},
])
def test_other_envelopes_are_left_to_kombu(over: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        envelope_body(envelope({"type": "task-sent"}, **over))


def test_timestamps_localised_as_celery_does() -> None:
    app = Celery("t", broker="memory://", set_as_current=False)
    receiver = EventReceiver(app.connection_for_read(), app=app)
    for offset in (0, -5, 3):
        event = {"type": "task-started", "uuid": "u", "timestamp": 1_795_000_000.25,
                 "utcoffset": offset, "clock": 3}
        celery_type, celery_event = receiver.event_from_message(dict(event))
        kind, ours = events.localize(dict(event))
        assert (kind, ours["timestamp"]) == (celery_type, celery_event["timestamp"])
    assert events.localize({"type": "worker-heartbeat"}) == (
        "worker-heartbeat", {"type": "worker-heartbeat"})


def test_every_event_counted_through_the_fast_path() -> None:
    """Celery's own dispatcher and receiver on kombu's in-memory (virtual) transport: the
    fast callback is installed once, and every event arrives once, in order."""
    app = Celery("t", broker="memory://", set_as_current=False)
    cfg = dataclasses.replace(CelerySettings(), broker_url="memory://")
    state = EventState(cfg)
    seen: list[str] = []

    def handle(event: dict[str, Any]) -> None:
        seen.append(event["type"])
        state.handle(event)

    with app.connection_for_write() as out:
        receiver = app.events.Receiver(out, handlers={"*": handle}, app=app)
        with receiver.consumer_context() as (conn, _, consumers):
            assert install_fast_decode(consumers, receiver) == 1
            assert install_fast_decode(consumers, receiver) == 0  # not twice
            dispatcher = app.events.Dispatcher(out, hostname="w@host1")
            kinds = ["task-sent", "task-received", "task-started", "task-succeeded",
                     "task-failed", "task-retried", "task-revoked", "task-rejected",
                     "worker-online", "worker-heartbeat", "worker-offline"]
            for i, kind in enumerate(kinds):
                dispatcher.send(kind, uuid=f"u{i // 4}", name="shop.charge", queue="celery",
                                runtime=0.5, exception="ValueError('x')")
            for _ in range(len(kinds)):
                conn.drain_events(timeout=1)
    assert seen == kinds  # every event once, in order
    assert state.events_total == len(kinds)


def test_fast_callback_hands_other_envelopes_to_kombu() -> None:
    calls: list[Any] = []
    processed: list[tuple[str, dict[str, Any]]] = []

    class Receiver:
        def process(self, kind: str, event: dict[str, Any]) -> None:
            processed.append((kind, event))

    deliver = events.fast_callback(calls.append, Receiver())
    pickled = envelope({"type": "task-sent"}, **{"content-type": "application/x-python-serialize"})
    deliver(pickled)
    deliver(envelope([{"type": "task-sent"}, {"type": "task-started"}]))
    assert calls == [pickled]
    assert [k for k, _ in processed] == ["task-sent", "task-started"]
