"""The application served in process on the engine a parametrized fixture names.

Suites that check a behaviour on both engines parametrize their fixture with ``ENGINES``
and serve their configuration with :func:`served_on`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from roomcast.app import build_app
from roomcast.config import load_settings
from roomcast.engine import Engine
from roomcast.engine.memory import MemoryEngine
from roomcast.engine.redis import RedisEngine
from tests.processes import SECRET
from tests.support.served import Served, serving

from .redis_servers import RedisServer
from .test_engine_contract import redis_settings

ENGINES = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@asynccontextmanager
async def served_on(
    request: pytest.FixtureRequest, config: dict[str, Any]
) -> AsyncIterator[Served]:
    """Serve ``config`` (settings overrides) on a fresh memory engine, or on the shared
    redis-server under a fresh prefix, as ``request.param`` says."""
    engine: Engine
    if request.param == "memory":
        engine = MemoryEngine()
    else:
        redis: RedisServer = request.getfixturevalue("shared_redis")
        engine = RedisEngine(redis_settings(redis.url))
    settings = load_settings(environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET}, overrides=config)
    async with serving(build_app(settings, engine)) as server:
        yield server
