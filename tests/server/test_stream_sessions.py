"""Where an emulation request goes: a stream on another node is reached through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.server.engine.redis_servers import RedisServer
from tests.support.streams import EMULATION_CONFIG, emulate, http_session, open_stream


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session() as session:
        yield session


@pytest.mark.redis
async def test_emulation_posted_to_another_node_reaches_the_stream(
    http: aiohttp.ClientSession,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Two servers on one redis-server: the stream on A, every POST to B."""
    with RedisServer() as redis:
        config = {
            **EMULATION_CONFIG,
            "engine": {"type": "redis", "redis": {"address": [redis.url]}},
        }
        a, b = server_factory(config), server_factory(config)
        ch = f"s{uuid.uuid4().hex[:8]}"
        stream, connect = await open_stream(http, a, user="roamer")
        subscribe = {"id": 2, "subscribe": {"channel": ch}}
        assert await emulate(http, b.http_url, connect, subscribe) == 204
        assert "subscribe" in await stream.until(lambda m: m.get("id") == 2)
        publish = {"id": 3, "publish": {"channel": ch, "data": {"via": "b"}}}
        assert await emulate(http, b.http_url, connect, publish) == 204
        pub, _ = await stream.both(lambda m: "pub" in m.get("push", {}), lambda m: m.get("id") == 3)
        assert pub["push"]["pub"]["data"] == {"via": "b"}
        # Handled in the order sent, each having gone through Redis on its own.
        batch = [{"id": n, "presence_stats": {"channel": ch}} for n in range(4, 9)]
        for item in batch:
            assert await emulate(http, b.http_url, connect, item) == 204
        ids = [(await stream.until(lambda m: "id" in m))["id"] for _ in batch]
        assert ids == [4, 5, 6, 7, 8]
        unknown = {**connect, "node": str(uuid.uuid4())}
        assert await emulate(http, b.http_url, unknown, {}) == 404
