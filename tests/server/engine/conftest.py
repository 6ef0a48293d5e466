"""Engine fixtures: one redis-server and one Redis Cluster per session for the contract suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_servers import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster(3) as cluster:
        yield cluster
