"""Engine fixtures: one redis-server per session for the contract suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_servers import RedisServer


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
