"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.exporter import Exporter, exporter_fixture


@pytest.fixture(scope="session")
def host_exporter() -> Iterator[Exporter]:
    """A real stackmon process with the default (host-only) collectors."""
    yield from exporter_fixture([])
