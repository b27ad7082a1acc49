"""The Docker engine the Docker real-run tests share (tests/helpers/docker.py): one for the
whole session, started on first use."""

from __future__ import annotations

import pytest

from tests.helpers import docker


@pytest.fixture(scope="session")
def engine() -> docker.Engine:
    return docker.shared_engine()
