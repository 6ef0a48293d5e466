"""The operator's ``shed`` call against a running server: the count it moves, or None
for every way the call can fail."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from roomcast_operator import podapi
from tests.processes import API_KEY, token
from tests.wsclient import RawClient


async def test_shed_returns_how_many_clients_the_pod_moves(server_factory: Any) -> None:
    server = server_factory()
    async with await RawClient.open(server.ws_url) as client:
        assert "connect" in await client.connect(token())
        moving = await podapi.shed("127.0.0.1", server.port, API_KEY, 5, 0)
        assert moving == 1
        assert await client.closed() == 3020


async def test_every_failed_shed_is_none_and_logged(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory()
    caplog.set_level(logging.WARNING, logger="roomcast_operator")
    assert await podapi.shed("127.0.0.1", server.port, "wrong-key", 1, 0) is None
    assert "HTTP 401" in caplog.text
    # An error reply (count below 1) comes with HTTP 200 but no result.
    assert await podapi.shed("127.0.0.1", server.port, API_KEY, 0, 0) is None
    assert "count must be at least 1" in caplog.text
    assert await podapi.shed("127.0.0.1", 1, API_KEY, 1, 0, timeout_seconds=0.5) is None
    assert caplog.text.count("shed on 127.0.0.1") == 3
