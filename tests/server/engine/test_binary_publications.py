"""Publications that are not JSON, in a namespace with ``publication_data_format: binary``,
on the memory engine and on a real redis-server.

A Protobuf client (the official Python SDK) publishes bytes; Protobuf subscribers receive
them byte-exact, live, on recovery and in history. A JSON connection that would be sent
them is closed with 3506 (live push, subscribe reply, history reply) and every other
subscriber keeps receiving. The server API publishes bytes with ``b64data`` and answers
them in its history as ``b64data``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from centrifuge import Client, ClientState, DeltaType, StreamPosition
from centrifuge.fossil import apply_delta

from roomcast.app import NODE
from roomcast.codes import DisconnectCode
from tests.processes import token
from tests.server.test_sdk_python import ClientRecorder, Recorder, next_item
from tests.support.served import Served
from tests.wsclient import RawClient

from .served_engines import ENGINES, served_on

API_KEY = "binary-test-api-key"
_OPEN = {
    "history_size": 10,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_client": True,
    "allow_history_for_client": True,
    "allowed_delta_types": ["fossil"],
    "delta_publish": True,
}
CONFIG: dict[str, Any] = {
    "http_api": {"key": API_KEY},
    "channel": {
        "namespaces": [
            {"name": "bin", "publication_data_format": "binary", **_OPEN},
            {"name": "text", **_OPEN},
        ]
    },
}
INAPPROPRIATE = int(DisconnectCode.INAPPROPRIATE_PROTOCOL)


@pytest.fixture(params=ENGINES)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async with served_on(request, CONFIG) as server:
        yield server


@pytest.fixture
async def sdk_clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.disconnect()
    # The SDK closes its socket in a task of its own; let those finish (the server's
    # tasks, in this process too, run until it stops).
    pending = [t for t in asyncio.all_tasks() if "centrifuge" in _task_file(t)]
    if pending:
        await asyncio.wait(pending, timeout=10)


def _task_file(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""


async def protobuf_client(served: Served, made: list[Client], user: str) -> Client:
    client = Client(served.ws_url, token=token(user), use_protobuf=True)
    made.append(client)
    await client.connect()
    return client


async def api(served: Served, method: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{served.http_url}/api/{method}", json=body, headers={"X-API-Key": API_KEY}
        ) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = await response.json()  # fails on invalid JSON
        return result


async def json_subscriber(served: Served, channel: str, **subscribe: Any) -> RawClient:
    client = await RawClient.open(served.ws_url)
    await client.connect(token("json"))
    reply = await client.call(2, "subscribe", {"channel": channel, **subscribe})
    assert "error" not in reply, reply
    return client


async def next_pub(client: RawClient) -> dict[str, Any]:
    message = await client.recv()
    pub: dict[str, Any] = message["push"]["pub"]
    return pub


async def test_protobuf_bytes_reach_protobuf_subscribers_and_close_json_ones(
    served: Served, sdk_clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    node = served.app[NODE]
    channel, elsewhere = f"bin:{uuid.uuid4().hex[:8]}", f"bin:{uuid.uuid4().hex[:8]}"
    publisher = await protobuf_client(served, sdk_clients, "pub")
    events = Recorder()
    await (
        (await protobuf_client(served, sdk_clients, "sub"))
        .new_subscription(channel, events=events)
        .subscribe()
    )
    json_sub = await json_subscriber(served, channel)
    json_other = await json_subscriber(served, elsewhere)
    sdk_events = ClientRecorder()
    json_sdk = Client(served.ws_url, token=token("json-sdk"), events=sdk_events)
    sdk_clients.append(json_sdk)
    await json_sdk.connect()
    await json_sdk.new_subscription(channel, events=Recorder()).subscribe()
    try:
        # JSON bytes reach both kinds; spread over lines, JSON connections get them compact.
        await publisher.publish(channel, b'{\n  "n": 1\n}')
        assert (await next_item(events.publications)).pub.data == b'{\n  "n": 1\n}'
        assert (await next_pub(json_sub))["data"] == {"n": 1}
        assert json_sub.frames[-1].count("\n") == 0

        caplog.set_level(logging.INFO, logger="roomcast")
        await publisher.publish(channel, b"boom")
        assert (await next_item(events.publications)).pub.data == b"boom"
        assert await json_sub.closed() == INAPPROPRIATE
        # The official SDK takes 3506 as terminal: disconnected, no reconnect.
        assert (await next_item(sdk_events.disconnected)).code == INAPPROPRIATE

        # Nothing else is affected: empty data, the next publication, other channels.
        await publisher.publish(channel, b"")
        await publisher.publish(channel, b"\x00\xff")
        # (Protobuf leaves empty bytes out: the SDK shows None.)
        received = [(await next_item(events.publications)).pub.data for _ in range(2)]
        assert received == [None, b"\x00\xff"]
        await publisher.publish(elsewhere, b'{"still": "json"}')
        assert (await next_pub(json_other))["data"] == {"still": "json"}
        assert json_sdk.state == ClientState.DISCONNECTED and sdk_events.connected.qsize() == 1
    finally:
        await json_sub.close()
        await json_other.close()
    assert node.metrics.disconnects[INAPPROPRIATE] == 2
    warnings = [r for r in caplog.records if r.name == "roomcast.dataformat"]
    assert [(r.levelname, r.__dict__["channel"]) for r in warnings] == [("WARNING", channel)]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_recovery_and_history_of_bytes(served: Served, sdk_clients: list[Client]) -> None:
    """The subscribe reply and the history reply: byte-exact for Protobuf, 3506 for a JSON
    connection (whose subscription is taken back), ``b64data`` in the server API."""
    node = served.app[NODE]
    channel = f"bin:{uuid.uuid4().hex[:8]}"
    first = await api(served, "publish", {"channel": channel, "data": {"a": 1}})
    epoch = first["result"]["epoch"]
    raw = b"\x00\xffbinary"
    await api(served, "publish", {"channel": channel, "b64data": base64.b64encode(raw).decode()})

    history = await api(served, "history", {"channel": channel, "limit": 10})
    assert [p.get("data") for p in history["result"]["publications"]] == [{"a": 1}, None]
    assert history["result"]["publications"][1] == {
        "b64data": base64.b64encode(raw).decode(),
        "offset": 2,
    }

    client = await protobuf_client(served, sdk_clients, "pb")
    assert [p.data for p in (await client.history(channel, limit=10)).publications] == [
        b'{"a":1}',
        raw,
    ]

    # A JSON connection recovering from offset 0 would be sent the bytes: closed, and
    # its subscription undone on this node.
    async with await RawClient.open(served.ws_url) as json_client:
        await json_client.connect(token("json"))
        await json_client.send(
            {"id": 2, "subscribe": {"channel": channel, "recover": True, "epoch": epoch}}
        )
        assert await json_client.closed() == INAPPROPRIATE
    async with await RawClient.open(served.ws_url) as json_client:
        await json_client.connect(token("json"))
        await json_client.send({"id": 2, "history": {"channel": channel, "limit": 10}})
        assert await json_client.closed() == INAPPROPRIATE
    # From the top there is nothing to refuse.
    async with await RawClient.open(served.ws_url) as json_client:
        await json_client.connect(token("json"))
        reply = await json_client.call(2, "subscribe", {"channel": channel})
        assert reply["subscribe"]["offset"] == 2
    for _ in range(50):
        if not node.hub.has_subscribers(channel):
            break
        await asyncio.sleep(0.02)
    assert not node.hub.has_subscribers(channel)

    async def from_the_start(channel: str) -> StreamPosition:
        return StreamPosition(offset=0, epoch=epoch)

    events = Recorder()
    await client.new_subscription(channel, events=events, get_state=from_the_start).subscribe()
    assert (await next_item(events.subscribed)).recovered
    recovered = [(await next_item(events.publications)).pub.data for _ in range(2)]
    assert recovered == [b'{"a":1}', raw]


async def test_server_api_b64data(served: Served) -> None:
    binary, text = f"bin:{uuid.uuid4().hex[:8]}", f"text:{uuid.uuid4().hex[:8]}"
    empty = await api(served, "publish", {"channel": binary, "b64data": ""})
    assert empty["result"]["offset"] == 1
    boom = base64.b64encode(b"boom").decode()
    assert "result" in await api(served, "publish", {"channel": binary, "b64data": boom})
    refused = await api(served, "publish", {"channel": text, "b64data": boom})
    assert refused["error"] == {"code": 107, "message": "data must be JSON"}
    as_json = base64.b64encode(b'{"ok":true}').decode()
    assert "result" in await api(served, "publish", {"channel": text, "b64data": as_json})
    bad = await api(served, "publish", {"channel": binary, "b64data": "not base64!"})
    assert bad["error"]["code"] == 107
    # An empty b64data beside data is no b64data (Centrifugo's precedence); nothing at all
    # is still refused.
    both = {"channel": binary, "b64data": "", "data": {"x": 1}}
    assert "result" in await api(served, "publish", both)
    missing = await api(served, "publish", {"channel": binary})
    assert missing["error"] == {"code": 107, "message": "data required"}
    history = await api(served, "history", {"channel": text, "limit": 10})
    assert history["result"]["publications"] == [{"data": {"ok": True}, "offset": 1}]
    history = await api(served, "history", {"channel": binary, "limit": 10})
    assert history["result"]["publications"] == [
        {"b64data": "", "offset": 1},
        {"b64data": boom, "offset": 2},
        {"data": {"x": 1}, "offset": 3},
    ]


async def test_json_delta_subscriber_in_a_binary_namespace(
    served: Served, sdk_clients: list[Client]
) -> None:
    """Deltas between JSON publications apply as in a json namespace; bytes close it."""
    channel = f"bin:{uuid.uuid4().hex[:8]}"
    publisher = await protobuf_client(served, sdk_clients, "pub")
    events = Recorder()
    await (
        (await protobuf_client(served, sdk_clients, "sub"))
        .new_subscription(channel, events=events, delta=DeltaType.FOSSIL)
        .subscribe()
    )
    json_sub = await json_subscriber(served, channel, delta="fossil")
    try:
        base = '{"board":"' + "x" * 200 + '","round":%d}'
        held = ""
        for n in range(3):
            await publisher.publish(channel, (base % n).encode())
            pub = await next_pub(json_sub)
            held = (
                bytes(apply_delta(held.encode(), pub["data"].encode())).decode()
                if pub.get("delta")
                else pub["data"]
            )
            assert held == base % n
            assert pub.get("delta", False) == (n > 0)
            assert (await next_item(events.publications)).pub.data == (base % n).encode()
        await publisher.publish(channel, b"\xff" * 300)
        assert await json_sub.closed() == INAPPROPRIATE
        assert (await next_item(events.publications)).pub.data == b"\xff" * 300
    finally:
        await json_sub.close()
