"""Teardown owns in-flight work: a connection closed abruptly at any await leaves nothing.

The production application and gateway run in-process with ``GatedEngine``: the real
memory engine with a gate injected before each of its awaited calls, so a test can
hold one call, drop the client's socket (an RST, as a crashed client or a dead
network does), then let the call finish. Whatever the command had added (hub
membership, node registration, heartbeat slot, presence, engine interest) must
be gone once the connection's teardown is done.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from roomcast.app import CONNECTIONS, NODE, build_app
from roomcast.config import load_settings
from roomcast.engine.memory import MemoryEngine
from roomcast.node import Node
from tests.processes import PROTOCOL_CONFIG, SECRET
from tests.support.rawws import RawSocket
from tests.support.served import Served, serving
from tests.support.tokens import token
from tests.support.waiting import eventually


class GatedEngine(MemoryEngine):
    """The memory engine with a gate before every awaited call (a real engine, delayed).

    ``calls`` lists the calls in order; the call numbered ``hold`` waits at its gate
    until ``release`` is set. ``interest`` counts subscribe minus unsubscribe per
    channel, which is what a Redis engine turns into channel subscriptions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.hold = -1
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.interest: Counter[str] = Counter()

    async def _gate(self, name: str) -> None:
        number = len(self.calls)
        self.calls.append(name)
        if number == self.hold:
            self.held.set()
            await self.release.wait()


def _gated(name: str) -> Callable[..., Awaitable[Any]]:
    async def call(self: GatedEngine, *args: Any, **kwargs: Any) -> Any:
        await self._gate(name)
        result = await getattr(MemoryEngine, name)(self, *args, **kwargs)
        if name in ("subscribe", "unsubscribe"):
            self.interest[args[0]] += 1 if name == "subscribe" else -1
        return result

    return call


for _name in (
    "subscribe",
    "unsubscribe",
    "history",
    "add_presence",
    "remove_presence",
    "publish_join",
    "publish_leave",
):
    setattr(GatedEngine, _name, _gated(_name))


#: Presence, join/leave and recovery everywhere, so connect and subscribe await each.
CONFIG = {
    **PROTOCOL_CONFIG,
    "client": {**PROTOCOL_CONFIG["client"], "stale_close_delay": "60s"},
}


@dataclass
class Setup:
    served: Served
    node: Node
    engine: GatedEngine


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    settings = load_settings(environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET}, overrides=CONFIG)
    engine = GatedEngine()
    app = build_app(settings, engine)
    async with serving(app) as served:
        yield Setup(served, app[NODE], engine)


def leftovers(node: Node, engine: GatedEngine) -> dict[str, object]:
    """Everything a connection can leave behind; empty when teardown did its job."""
    found = {
        "clients": dict(node.clients),
        "users": dict(node.users),
        "hub": not node.hub.idle,
        "heartbeat": [len(slot) for slot in node.heartbeat._slots if slot],
        "connecting": len(node.heartbeat._connecting),
        "presence": dict(engine._presence),
        "interest": {ch: n for ch, n in engine.interest.items() if n},
        "tasks": len(node._tasks),
    }
    return {name: value for name, value in found.items() if value}


def commands() -> bytes:
    """connect with a server-side subscription, then a client subscribe, in one frame."""
    connect = {"id": 1, "connect": {"token": token(channels=["server-side"])}}
    subscribe = {"id": 2, "subscribe": {"channel": "client-side", "recover": True, "offset": 0}}
    return (json.dumps(connect) + "\n" + json.dumps(subscribe)).encode()


async def abort(sock: RawSocket) -> None:
    """Close with an RST: no close frame, no FIN."""
    raw = sock.writer.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.writer.close()


async def upgraded(setup: Setup) -> RawSocket:
    sock = await RawSocket.open(setup.served.port)
    assert await sock.upgrade() == 101
    return sock


async def drop_while_held(setup: Setup, sock: RawSocket, closed: Callable[[], bool]) -> None:
    """Drop the socket while the engine holds a call, wait for ``closed`` (the server's
    side of the close is done), let the call finish, and check that nothing is left."""
    await asyncio.wait_for(setup.engine.held.wait(), 5)
    await abort(sock)
    await eventually(closed)
    setup.engine.release.set()
    await eventually(lambda: not leftovers(setup.node, setup.engine))


async def test_await_points_are_the_engine_calls(setup: Setup) -> None:
    """The unheld run: which calls connect and subscribe await (what the next test holds)."""
    async with await RawSocket.open(setup.served.port) as sock:
        assert await sock.upgrade() == 101
        sock.send(0x1, commands())
        replies = b""
        while b'"id":2' not in replies:
            _, payload = await sock.read_frame()
            replies += payload
    await eventually(lambda: not leftovers(setup.node, setup.engine))
    assert setup.engine.calls[:6] == [
        "subscribe",
        "history",
        "add_presence",
        "subscribe",
        "history",
        "add_presence",
    ]


@pytest.mark.parametrize("hold", range(6), ids=lambda n: f"await-{n}")
async def test_abrupt_close_at_every_await_leaves_nothing(setup: Setup, hold: int) -> None:
    setup.engine.hold = hold
    sock = await upgraded(setup)
    sock.send(0x1, commands())
    await drop_while_held(setup, sock, lambda: not setup.served.app[CONNECTIONS])


async def test_server_side_subscribe_racing_an_abrupt_close_leaves_nothing(setup: Setup) -> None:
    """The server API's subscribe runs beside the connection, not in its command order."""
    sock = await upgraded(setup)
    await sock.connect()
    setup.engine.hold = len(setup.engine.calls)
    await setup.node.control({"op": "subscribe", "user": "42", "channel": "from-api"})
    await drop_while_held(setup, sock, lambda: not setup.served.app[CONNECTIONS])


async def test_presence_refresh_racing_an_abrupt_close_leaves_no_ghost(setup: Setup) -> None:
    """The heartbeat's presence refresh is written after the connection's cleanup ran."""
    engine = setup.engine
    sock = await upgraded(setup)
    await sock.connect()
    sock.send_text(json.dumps({"id": 2, "subscribe": {"channel": "present"}}))
    await sock.read_frame()
    (client,) = setup.served.app[CONNECTIONS]
    await eventually(lambda: "present" in client.subs)
    engine.hold = len(engine.calls)
    client.last_presence_update = 0.0
    setup.node._on_heartbeat(client)  # what a heartbeat tick does for this client
    await asyncio.wait_for(engine.held.wait(), 5)
    assert engine.calls[-1] == "add_presence"
    await drop_while_held(setup, sock, lambda: "remove_presence" in engine.calls[engine.hold :])
