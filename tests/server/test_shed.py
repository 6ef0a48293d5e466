"""The server API's ``shed``: a node moves some of its clients with paced 3020 closes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from tests.processes import PROTOCOL_CONFIG, ServerProcess, token

CLIENTS = 40
SHED = 12
WINDOW_SECONDS = 1.5


class Moves(ClientEventHandler):
    """When the client lost its connection (and with which code), and when it was back."""

    def __init__(self) -> None:
        self.connected: list[float] = []
        self.lost: list[tuple[float, int]] = []

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connected.append(time.monotonic())

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        if self.connected:
            self.lost.append((time.monotonic(), ctx.code))


class Deliveries(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.subscribed: list[SubscribedContext] = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.offsets.append(ctx.pub.offset)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


@pytest.fixture
async def server(server_factory: Any) -> ServerProcess:
    started: ServerProcess = server_factory(PROTOCOL_CONFIG)
    return started


CHANNEL = f"shed{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def fleet(server: ServerProcess) -> AsyncIterator[list[tuple[Client, Moves, Deliveries]]]:
    """Clients on the one server, each subscribed to a history channel."""
    channel = CHANNEL
    made = []
    for i in range(CLIENTS):
        moves, deliveries = Moves(), Deliveries()
        client = Client(server.ws_url, token=token(f"u{i}"), events=moves, max_reconnect_delay=0.5)
        client.new_subscription(channel, events=deliveries)
        made.append((client, moves, deliveries))
    await asyncio.gather(*(c.connect() for c, _, _ in made))
    await asyncio.gather(*(c.get_subscription(channel).subscribe() for c, _, _ in made))  # type: ignore[union-attr]
    yield made
    await asyncio.gather(*(c.disconnect() for c, _, _ in made), return_exceptions=True)


async def _until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_shed_moves_the_asked_share_paced_and_they_recover(
    server: ServerProcess, fleet: list[tuple[Client, Moves, Deliveries]]
) -> None:
    await _until(lambda: all(d.subscribed for _, _, d in fleet))
    reply = await asyncio.to_thread(server.api, "shed", {"count": SHED, "window": WINDOW_SECONDS})
    assert reply == {"result": {"shedding": SHED, "connections": CLIENTS}}
    # One shed at a time.
    again = await asyncio.to_thread(server.api, "shed", {"count": 1})
    assert again == {"error": {"code": 108, "message": "already shedding"}}

    def moved() -> list[Moves]:
        return [m for _, m, _ in fleet if m.lost]

    await _until(lambda: len(moved()) == SHED and all(len(m.connected) == 2 for m in moved()))
    await asyncio.sleep(WINDOW_SECONDS)  # nobody else is closed later
    assert len(moved()) == SHED
    assert {code for m in moved() for _, code in m.lost} == {3020}
    # Paced, not a storm: the closes spread over the window.
    times = sorted(t for m in moved() for t, _ in m.lost)
    assert times[-1] - times[0] >= WINDOW_SECONDS / 2, times
    # The moved clients resubscribed with recovery and miss nothing published afterwards.
    publication = await asyncio.to_thread(server.api, "publish", {"channel": CHANNEL, "data": {}})
    offset = publication["result"]["offset"]
    await _until(lambda: all(offset in d.offsets for _, _, d in fleet))
    for _, m, d in fleet:
        assert len(d.subscribed) == (2 if m.lost else 1)
        assert all(ctx.recovered for ctx in d.subscribed[1:])
    before = [len(m.connected) for _, m, _ in fleet]
    assert server.api("shed", {"count": CLIENTS * 2, "window": 0})["result"] == {
        "shedding": CLIENTS,
        "connections": CLIENTS,
    }  # more than it has: everyone, at once with a zero window
    # Everyone is back before the fixture disconnects them: a client told to disconnect
    # in the middle of its reconnect leaves its socket to the garbage collector.
    await _until(
        lambda: all(len(m.connected) > n for (_, m, _), n in zip(fleet, before, strict=True))
    )


async def test_shed_refuses_bad_requests_and_wrong_keys(server: ServerProcess) -> None:
    for body, message in [
        ({}, "count must be at least 1"),
        ({"count": 0}, "count must be at least 1"),
        ({"count": "many"}, "count must be an integer"),
        ({"count": 1, "window": -1}, "window must be 0-300 seconds"),
        ({"count": 1, "window": 301}, "window must be 0-300 seconds"),
        ({"count": 1, "window": "soon"}, "window must be 0-300 seconds"),
        ({"count": 1, "window": True}, "window must be 0-300 seconds"),
    ]:
        reply = await asyncio.to_thread(server.api, "shed", body)
        assert reply == {"error": {"code": 107, "message": message}}, body
    with pytest.raises(Exception, match="401"):
        await asyncio.to_thread(server.api, "shed", {"count": 1}, "wrong-key")
    # Nothing to shed is not an error.
    assert server.api("shed", {"count": 5})["result"] == {"shedding": 0, "connections": 0}
