"""centrifuge-js over HTTP streaming and SSE, with its commands posted to another node.

Two servers share one redis-server: the SDK's stream is opened on A and its
``emulationEndpoint`` points at B, so every command reaches the stream's node
through the engine. Each flow runs over http_stream (JSON and Protobuf) and SSE.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.jsclient import JsClient, check_recovery, is_event, js_sdk_available
from tests.processes import PROTOCOL_CONFIG, ServerProcess, start_server, token
from tests.server.engine.redis_servers import RedisServer

pytestmark = [
    pytest.mark.node,
    pytest.mark.redis,
    pytest.mark.skipif(
        not js_sdk_available(), reason="node or tests/js/node_modules missing: run `make install`"
    ),
]


@dataclass
class Nodes:
    a: ServerProcess
    b: ServerProcess


@pytest.fixture(scope="module")
def nodes() -> Iterator[Nodes]:
    with RedisServer() as redis:
        config = {
            **PROTOCOL_CONFIG,
            # Pings every 2 s: their pongs, posted to B, must reach A in time all along.
            "client": {"ping_interval": "2s", "pong_timeout": "1.5s"},
            "http_stream": {"enabled": True},
            "sse": {"enabled": True},
            "engine": {"type": "redis", "redis": {"address": [redis.url]}},
        }
        a = start_server(config)
        try:
            b = start_server(config)
            try:
                yield Nodes(a, b)
            finally:
                b.stop()
        finally:
            a.stop()


@pytest.fixture(params=["http_stream", "http_stream-protobuf", "sse"])
def transport(request: pytest.FixtureRequest, nodes: Nodes) -> dict[str, Any]:
    """Options of the driver's connect: the stream on A, the commands to B."""
    name, _, protocol = str(request.param).partition("-")
    options: dict[str, Any] = {
        "transports": [{"transport": name, "endpoint": f"{nodes.a.http_url}/connection/{name}"}],
        "emulationEndpoint": f"{nodes.b.http_url}/emulation",
    }
    if protocol:
        options["protocol"] = protocol
    return options


async def test_connect_subscribe_publish_presence_history(
    js: JsClient, nodes: Nodes, transport: dict[str, Any]
) -> None:
    ch = f"em{uuid.uuid4().hex[:8]}"
    await js.call("connect", token=token("alice"), **transport)
    connected = await js.wait(is_event("connected"))
    assert connected["transport"] == transport["transports"][0]["transport"]
    await js.call("subscribe", channel=ch)
    subscribed = await js.wait(is_event("subscribed", channel=ch))
    assert subscribed["recoverable"] is True and subscribed["positioned"] is True
    await js.wait(is_event("join", channel=ch, user="alice"))

    await js.call("publish", channel=ch, data={"text": "from js"})
    pub = await js.wait(is_event("publication", channel=ch))
    assert pub["data"] == {"text": "from js"} and pub["offset"] == 1
    nodes.b.api("publish", {"channel": ch, "data": {"text": "from api"}})
    api_pub = await js.wait(lambda e: is_event("publication")(e) and e["offset"] == 2)
    assert api_pub["data"] == {"text": "from api"}

    presence = await js.call("presence", channel=ch)
    assert [c["user"] for c in presence["clients"].values()] == ["alice"]
    assert await js.call("presence_stats", channel=ch) == {"numClients": 1, "numUsers": 1}
    history = await js.call("history", channel=ch, limit=10)
    assert [p["data"]["text"] for p in history["publications"]] == ["from js", "from api"]
    # Two more rounds of pings and pongs: still the one connection.
    await asyncio.sleep(4.5)
    assert await js.call("presence_stats", channel=ch) == {"numClients": 1, "numUsers": 1}
    assert js.count("connected") == 1 and js.count("disconnected") == 0


async def test_recovery_after_reconnect(
    js: JsClient, nodes: Nodes, transport: dict[str, Any]
) -> None:
    ch = f"em{uuid.uuid4().hex[:8]}"
    await js.call("connect", token=token("bob"), **transport)
    await js.call("subscribe", channel=ch)
    await js.wait(is_event("subscribed", channel=ch))
    await check_recovery(
        js, ch, lambda body: nodes.a.api("publish", body), lambda body: nodes.b.api("publish", body)
    )


async def test_server_disconnect_reaches_the_sdk_as_its_code(
    js: JsClient, nodes: Nodes, transport: dict[str, Any]
) -> None:
    """A stream has no close code: the disconnect push carries it, with the same effect."""
    user = f"u{uuid.uuid4().hex[:6]}"
    await js.call("connect", token=token(user), **transport)
    await js.wait(is_event("connected"))
    nodes.b.api("disconnect", {"user": user, "disconnect": {"code": 3001, "reason": "shutdown"}})
    await js.wait(is_event("connecting", code=3001, reason="shutdown"))
    await js.wait(lambda e: e.get("event") == "connected" and js.count("connected") == 2)
    nodes.a.api("disconnect", {"user": user, "disconnect": {"code": 3503, "reason": "go away"}})
    disconnected = await js.wait(is_event("disconnected"))
    assert (disconnected["code"], disconnected["reason"]) == (3503, "go away")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"map": True}, "map subscriptions are not available"),
        ({"mapPresenceType": 2}, "map subscriptions are not available"),
        ({"sharedPoll": True}, "shared poll subscriptions are not available"),
    ],
)
async def test_unoffered_subscription_kinds_end_with_a_terminal_error(
    js: JsClient, nodes: Nodes, options: dict[str, Any], message: str
) -> None:
    """Map and shared-poll subscriptions: unsubscribed with 108, no retry loop."""
    ch = f"em{uuid.uuid4().hex[:8]}"
    await js.call("connect", url=nodes.a.ws_url, token=token("mapper"))
    await js.wait(is_event("connected"))
    await js.call("subscribe", channel=ch, options=options)
    unsubscribed = await js.wait(is_event("unsubscribed", channel=ch))
    assert (unsubscribed["code"], unsubscribed["reason"]) == (108, message)
    assert js.count("subscribing", channel=ch) == 1  # the first attempt, none after
