"""The event receiver thread's supervision, against a broker that is not there."""

from __future__ import annotations

import dataclasses
import logging
import threading

import pytest

from exporter.collectors.celery.broker import make_app
from exporter.collectors.celery.events import EventReceiverThread, EventState
from exporter.collectors.celery.settings import CelerySettings
from tests.helpers.exporter import free_port, wait_for


def settings() -> CelerySettings:
    # Nothing listens on this port: every connection attempt fails at once.
    return dataclasses.replace(CelerySettings(), broker_url=f"redis://127.0.0.1:{free_port()}/0",
                               broker_timeout_seconds=0.5)


def test_receiver_keeps_retrying_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    cfg = settings()
    receiver = EventReceiverThread(make_app(cfg), EventState(cfg), cfg)
    caplog.set_level(logging.WARNING, logger="stackmon.collectors.celery")
    receiver.start()
    try:
        wait_for(lambda: receiver.restarts >= 2, timeout=20, what="two reconnect attempts")
        assert receiver.alive()
        assert not receiver.up
        samples = {m.name: m.samples[0].value for m in receiver.metrics()}
        assert samples["stackmon_celery_events_receiver_up"] == 0
        assert samples["stackmon_celery_events_receiver_restarts"] >= 2
        assert "event receiver lost the broker; reconnecting" in caplog.text
    finally:
        receiver.stop()
    assert not receiver.alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_thread_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    cfg = settings()
    receiver = EventReceiverThread(make_app(cfg), EventState(cfg), cfg)
    calls = []
    release = threading.Event()

    def consume() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated fatal error")  # a BaseException: thread ends
        release.wait(10)

    receiver._consume = consume  # type: ignore[method-assign]
    receiver.start()
    wait_for(lambda: not receiver.alive(), timeout=10, what="the thread to die")
    assert "event receiver thread failed" in caplog.text
    receiver.ensure_running()
    wait_for(lambda: len(calls) == 2, timeout=10, what="a new thread")
    assert receiver.alive()
    assert "starting it again" in caplog.text
    release.set()
    receiver.stop()
