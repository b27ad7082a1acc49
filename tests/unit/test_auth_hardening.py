"""Basic auth: timing does not reveal users, and failures cannot evict good credentials."""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path

import bcrypt
import pytest

from exporter.http import webconfig
from exporter.http.webconfig import WebConfig, bcrypt_cost, load_web_config


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def web_config(tmp_path: Path, cost: int, password: str = "right") -> WebConfig:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    return load_web_config(str(path))


@pytest.mark.parametrize("cost", [4, 12])
def test_dummy_hash_has_the_configured_cost(tmp_path: Path, cost: int) -> None:
    cfg = web_config(tmp_path, cost)
    assert bcrypt_cost(cfg.dummy) == bcrypt_cost(cfg.users["alice"]) == cost


def test_unknown_and_known_users_take_as_long(tmp_path: Path) -> None:
    """Wrong passwords for a known and an unknown user: medians within a factor of 3
    (a cost-10 dummy against cost-12 hashes made it a factor of 4; the bound is loose
    because CI is a loaded 2-core machine, and the cost test above is the exact check)."""
    cfg = web_config(tmp_path, 12)
    times: dict[str, list[float]] = {"alice": [], "mallory": []}
    for i in range(5):
        for user in times:  # interleaved, so a change in machine load hits both alike
            start = time.perf_counter()
            assert cfg.authorized(header(user, f"wrong-{user}-{i}")) is False
            times[user].append(time.perf_counter() - start)
    known, unknown = (statistics.median(times[u]) for u in ("alice", "mallory"))
    assert 1 / 3 < unknown / known < 3.0, (known, unknown)


class CountingCheckpw:
    """Counts bcrypt runs and still runs the real bcrypt."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return self.real(password, hashed)


def test_failures_are_cached_and_never_evict_good_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = web_config(tmp_path, 4)
    counter = CountingCheckpw()
    monkeypatch.setattr(bcrypt, "checkpw", counter)
    assert cfg.authorized(header("alice", "right")) is True
    # More distinct failures than the success cache holds (it used to share one table).
    for i in range(webconfig.CACHE_SIZE + 50):
        assert cfg.authorized(header("alice", f"wrong-{i}")) is False
    runs = counter.calls
    assert cfg.authorized(header("alice", "right")) is True
    assert cfg.authorized(header("alice", "wrong-0")) is False  # failure cached
    assert counter.calls == runs


def test_failure_cache_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = web_config(tmp_path, 4)
    counter = CountingCheckpw()
    monkeypatch.setattr(bcrypt, "checkpw", counter)
    monkeypatch.setattr(webconfig, "FAILURE_TTL_SECONDS", 0.0)
    assert cfg.authorized(header("alice", "wrong")) is False
    assert cfg.authorized(header("alice", "wrong")) is False
    assert counter.calls == 2  # an expired failure is checked again (the password may be
    # right after a config reload; failures are only a brief shield)
