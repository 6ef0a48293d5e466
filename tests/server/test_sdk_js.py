"""centrifuge-js, unchanged, against a real server: the flows app developers use."""

from __future__ import annotations

import uuid

import pytest

from tests.jsclient import JsClient, JsError, check_recovery, is_event, js_sdk_available
from tests.processes import ServerProcess, token

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(
        not js_sdk_available(), reason="node or tests/js/node_modules missing: run `make install`"
    ),
]


async def test_connect_subscribe_publish_presence_history(
    js: JsClient, protocol_server: ServerProcess
) -> None:
    ch = f"js{uuid.uuid4().hex[:8]}"
    await js.call("connect", url=protocol_server.ws_url, token=token("alice"))
    await js.wait(is_event("connected"))
    await js.call("subscribe", channel=ch)
    subscribed = await js.wait(is_event("subscribed", channel=ch))
    assert subscribed["recoverable"] is True and subscribed["positioned"] is True
    await js.wait(is_event("join", channel=ch, user="alice"))

    await js.call("publish", channel=ch, data={"text": "from js"})
    pub = await js.wait(is_event("publication", channel=ch))
    assert pub["data"] == {"text": "from js"} and pub["offset"] == 1
    assert pub["info"]["user"] == "alice"

    protocol_server.api("publish", {"channel": ch, "data": {"text": "from api"}})
    api_pub = await js.wait(lambda e: is_event("publication")(e) and e["offset"] == 2)
    assert api_pub["data"] == {"text": "from api"}

    presence = await js.call("presence", channel=ch)
    assert [c["user"] for c in presence["clients"].values()] == ["alice"]
    stats = await js.call("presence_stats", channel=ch)
    assert stats == {"numClients": 1, "numUsers": 1}
    history = await js.call("history", channel=ch, limit=10)
    assert [p["data"]["text"] for p in history["publications"]] == ["from js", "from api"]


async def test_recovery_after_disconnect(js: JsClient, protocol_server: ServerProcess) -> None:
    ch = f"js{uuid.uuid4().hex[:8]}"
    await js.call("connect", url=protocol_server.ws_url, token=token("bob"))
    await js.call("subscribe", channel=ch)
    await js.wait(is_event("subscribed", channel=ch))
    await check_recovery(js, ch, lambda body: protocol_server.api("publish", body))


async def test_token_refresh_keeps_connection(js: JsClient, server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({"client": {"expired_close_delay": "1s"}})
    await js.call(
        "connect", url=server.ws_url, token=token("carol", ttl=2), tokens=[token("carol", ttl=600)]
    )
    await js.wait(is_event("connected"))
    await js.wait(is_event("get_token"), timeout=10)
    # The expiry check (exp + 1 s) passes without a disconnect because the SDK refreshed.
    with pytest.raises(AssertionError):
        await js.wait(lambda e: e.get("event") == "connecting" and e["code"] != 0, timeout=4)
    assert js.count("connected") == 1


async def test_expired_token_is_replaced_via_get_token(
    js: JsClient, protocol_server: ServerProcess
) -> None:
    await js.call(
        "connect",
        url=protocol_server.ws_url,
        token=token("dan", ttl=None, exp=1_000_000_000),
        tokens=[token("dan")],
    )
    await js.wait(is_event("get_token"))
    await js.wait(is_event("connected"))


async def test_invalid_token_is_terminal(js: JsClient, protocol_server: ServerProcess) -> None:
    bad = token("eve", secret="not-the-server-secret-not-the-server-secret")
    await js.call("connect", url=protocol_server.ws_url, token=bad)
    disconnected = await js.wait(is_event("disconnected"))
    assert disconnected["code"] == 3500


async def test_permission_error_reaches_subscription(
    js: JsClient, protocol_server: ServerProcess
) -> None:
    await js.call("connect", url=protocol_server.ws_url, token=token("frank"))
    await js.call("subscribe", channel="secret:room")
    unsubscribed = await js.wait(is_event("unsubscribed", channel="secret:room"))
    assert unsubscribed["code"] == 103


async def test_rpc_answers_not_available(js: JsClient, protocol_server: ServerProcess) -> None:
    await js.call("connect", url=protocol_server.ws_url, token=token("gina"))
    await js.wait(is_event("connected"))
    with pytest.raises(JsError) as error:
        await js.call("rpc", method="anything")
    assert error.value.code == 108


async def test_shutdown_code_makes_sdk_reconnect(js: JsClient, server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory()
    await js.call("connect", url=server.ws_url, token=token("hank"))
    await js.wait(is_event("connected"))
    server.api("disconnect", {"user": "hank", "disconnect": {"code": 3001, "reason": "shutdown"}})
    connecting = await js.wait(is_event("connecting", code=3001))
    assert connecting["reason"] == "shutdown"
    await js.wait(lambda e: e.get("event") == "connected" and js.count("connected") == 2)
