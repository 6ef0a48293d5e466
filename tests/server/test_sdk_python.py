"""centrifuge-python, unchanged, against a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    DeltaType,
    DisconnectedContext,
    PublicationContext,
    ReplyError,
    StreamPosition,
    SubscribedContext,
    SubscriptionEventHandler,
)

from tests.processes import ServerProcess, token


class Recorder(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        await self.subscribed.put(ctx)


class ClientRecorder(ClientEventHandler):
    def __init__(self) -> None:
        self.connected: asyncio.Queue[ConnectedContext] = asyncio.Queue()
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()

    async def on_connected(self, ctx: ConnectedContext) -> None:
        await self.connected.put(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        await self.disconnected.put(ctx)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.disconnect()
    # The SDK closes its socket in a task of its own; let those finish before the loop ends.
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if pending:
        await asyncio.wait(pending, timeout=10)


async def next_item(queue: asyncio.Queue[Any], timeout: float = 5) -> Any:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_publish_presence_history(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    ch = f"py{uuid.uuid4().hex[:8]}"
    client = Client(protocol_server.ws_url, token=token("py1"))
    clients.append(client)
    await client.connect()
    events = Recorder()
    sub = client.new_subscription(ch, events=events)
    await sub.subscribe()
    await sub.publish({"text": "hello"})
    pub = await next_item(events.publications)
    assert pub.pub.data == {"text": "hello"} and pub.pub.offset == 1
    presence = await sub.presence()
    assert [info.user for info in presence.clients.values()] == ["py1"]
    stats = await sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (1, 1)
    history = await sub.history(limit=10)
    assert [p.data for p in history.publications] == [{"text": "hello"}]
    assert history.offset == 1


async def test_two_clients_exchange_messages(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    ch = f"py{uuid.uuid4().hex[:8]}"
    a, b = (
        Client(protocol_server.ws_url, token=token("a")),
        Client(protocol_server.ws_url, token=token("b")),
    )
    clients.extend([a, b])
    await asyncio.gather(a.connect(), b.connect())
    ev_a, ev_b = Recorder(), Recorder()
    sub_a = a.new_subscription(ch, events=ev_a)
    sub_b = b.new_subscription(ch, events=ev_b)
    await asyncio.gather(sub_a.subscribe(), sub_b.subscribe())
    await sub_a.publish({"from": "a"})
    assert (await next_item(ev_b.publications)).pub.data == {"from": "a"}
    assert (await next_item(ev_a.publications)).pub.info.user == "a"


async def test_recovery_after_reconnect(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    ch = f"py{uuid.uuid4().hex[:8]}"
    client = Client(protocol_server.ws_url, token=token("py2"))
    clients.append(client)
    await client.connect()
    events = Recorder()
    sub = client.new_subscription(ch, events=events)
    await sub.subscribe()
    await next_item(events.subscribed)
    protocol_server.api("publish", {"channel": ch, "data": {"n": 1}})
    await next_item(events.publications)
    await client.disconnect()
    for n in (2, 3):
        protocol_server.api("publish", {"channel": ch, "data": {"n": n}})
    await client.connect()
    ctx = await next_item(events.subscribed)
    assert ctx.was_recovering and ctx.recovered
    got = [(await next_item(events.publications)).pub for _ in range(2)]
    assert [(p.offset, p.data) for p in got] == [(2, {"n": 2}), (3, {"n": 3})]


@pytest.mark.parametrize("published", [0, 2], ids=["fresh", "two-missed"])
async def test_get_state_without_epoch_recovers(
    clients: list[Client], protocol_server: ServerProcess, published: int
) -> None:
    """getState giving offset 0 and no epoch recovers once; it used to get 112 and loop."""
    ch = f"py{uuid.uuid4().hex[:8]}"
    for n in range(1, published + 1):
        protocol_server.api("publish", {"channel": ch, "data": {"n": n}})
    asked: list[str] = []

    async def get_state(channel: str) -> StreamPosition:
        asked.append(channel)
        return StreamPosition(offset=0, epoch="")

    client = Client(protocol_server.ws_url, token=token("py4"))
    clients.append(client)
    await client.connect()
    events = Recorder()
    sub = client.new_subscription(ch, events=events, get_state=get_state)
    await sub.subscribe()
    ctx = await next_item(events.subscribed)
    assert ctx.was_recovering and ctx.recovered
    got = [(await next_item(events.publications)).pub for _ in range(published)]
    assert [(p.offset, p.data) for p in got] == [(n, {"n": n}) for n in range(1, published + 1)]
    assert ctx.stream_position is not None and ctx.stream_position.epoch
    assert asked == [ch]


async def test_reply_errors(clients: list[Client], protocol_server: ServerProcess) -> None:
    client = Client(protocol_server.ws_url, token=token("py3"))
    clients.append(client)
    await client.connect()
    with pytest.raises(ReplyError) as error:
        await client.rpc("nothing", {})
    assert error.value.code == 108
    with pytest.raises(ReplyError) as error:
        await client.publish("plain:room", {"x": 1})
    assert error.value.code == 103


async def test_force_disconnect_is_terminal(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    user = f"u{uuid.uuid4().hex[:6]}"
    events = ClientRecorder()
    client = Client(protocol_server.ws_url, token=token(user), events=events)
    clients.append(client)
    await client.connect()
    await next_item(events.connected)
    protocol_server.api("disconnect", {"user": user})
    ctx = await next_item(events.disconnected)
    assert ctx.code == 3503


async def test_fossil_deltas_live_and_after_recovery(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    """The SDK negotiates fossil deltas and decodes what it receives: live publications
    (deltas after the first) and the ones recovered after a reconnect (full strings)."""
    ch = f"delta:py{uuid.uuid4().hex[:8]}"
    board = {"round": 0, "scores": [i * 7 for i in range(100)]}
    client = Client(protocol_server.ws_url, token=token("py-delta"))
    clients.append(client)
    await client.connect()
    events = Recorder()
    sub = client.new_subscription(ch, events=events, delta=DeltaType.FOSSIL)
    await sub.subscribe()
    await next_item(events.subscribed)
    for n in range(1, 4):
        protocol_server.api("publish", {"channel": ch, "data": {**board, "round": n}})
    live = [(await next_item(events.publications)).pub for _ in range(3)]
    assert [p.data["round"] for p in live] == [1, 2, 3]
    assert all(p.data["scores"] == board["scores"] for p in live)
    await client.disconnect()
    for n in (4, 5):
        protocol_server.api("publish", {"channel": ch, "data": {**board, "round": n}})
    await client.connect()
    assert (await next_item(events.subscribed)).recovered
    protocol_server.api("publish", {"channel": ch, "data": {**board, "round": 6}})
    after = [(await next_item(events.publications)).pub for _ in range(3)]
    assert [(p.offset, p.data["round"]) for p in after] == [(4, 4), (5, 5), (6, 6)]


async def test_protobuf_client_with_json_client_on_one_channel(
    clients: list[Client], protocol_server: ServerProcess
) -> None:
    """A Protobuf connection (subprotocol centrifuge-protobuf, binary frames) and a JSON one
    share a channel: each receives the other's publications in its own encoding, the
    Protobuf client's payload bytes exactly as sent; history and presence answer it too."""
    ch = f"py{uuid.uuid4().hex[:8]}"
    binary = Client(protocol_server.ws_url, token=token("pb"), use_protobuf=True)
    text = Client(protocol_server.ws_url, token=token("js"))
    clients.extend([binary, text])
    await asyncio.gather(binary.connect(), text.connect())
    ev_binary, ev_text = Recorder(), Recorder()
    sub_binary = binary.new_subscription(ch, events=ev_binary, delta=DeltaType.FOSSIL)
    sub_text = text.new_subscription(ch, events=ev_text)
    await asyncio.gather(sub_binary.subscribe(), sub_text.subscribe())
    await sub_binary.publish(b'{"from": "protobuf"}')
    assert (await next_item(ev_text.publications)).pub.data == {"from": "protobuf"}
    assert (await next_item(ev_binary.publications)).pub.data == b'{"from": "protobuf"}'
    await sub_text.publish({"from": "json"})
    assert (await next_item(ev_binary.publications)).pub.data == b'{"from":"json"}'
    history = await sub_binary.history(limit=10)
    assert [p.data for p in history.publications] == [b'{"from": "protobuf"}', b'{"from":"json"}']
    presence = await sub_binary.presence()
    assert sorted(info.user for info in presence.clients.values()) == ["js", "pb"]
    with pytest.raises(ReplyError) as refused:
        await sub_binary.publish(b"not json")
    assert refused.value.code == 107
