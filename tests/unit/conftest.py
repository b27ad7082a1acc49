"""Unit tests never see the machine's environment: no ``STACKMON_*`` variable reaches
them (a user's own settings must not change a unit test's outcome)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_stackmon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("STACKMON_")]:
        monkeypatch.delenv(name)
