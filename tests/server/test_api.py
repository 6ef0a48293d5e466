"""The server HTTP API: Centrifugo's shapes, checked raw and with `cent` (its PyPI client)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import aiohttp
import cent
import pytest

from roomcast.api import ServerApi
from roomcast.app import build_app
from roomcast.config import load_settings
from roomcast.engine.memory import MemoryEngine
from roomcast.node import Node
from tests.processes import API_KEY, PROTOCOL_CONFIG, SECRET, ServerProcess, token
from tests.support.served import Served, serving
from tests.wsclient import RawClient


def raw_post(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{server.http_url}{path}",
        data=body if method == "POST" else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def channel() -> str:
    return f"api{uuid.uuid4().hex[:8]}"


def test_publish_vectors(protocol_server: ServerProcess) -> None:
    """T8."""
    ch = channel()
    first = protocol_server.api("publish", {"channel": ch, "data": {"text": "hello"}})
    assert first["result"]["offset"] == 1 and len(first["result"]["epoch"]) == 8
    assert protocol_server.api("publish", {"channel": "unknown:chat", "data": {}}) == {
        "error": {"code": 102, "message": "unknown channel"}
    }
    assert protocol_server.api("publish", {}) == {"error": {"code": 107, "message": "bad request"}}


@pytest.mark.parametrize(
    ("headers", "method", "status"),
    [
        ({}, "POST", 401),
        ({"X-API-Key": "wrong"}, "POST", 401),
        ({"Authorization": f"apikey {API_KEY}"}, "POST", 200),
        ({"Authorization": f"ApiKey {API_KEY}"}, "POST", 200),
        ({"X-API-Key": API_KEY}, "GET", 405),
    ],
)
def test_auth_and_methods(
    protocol_server: ServerProcess, headers: dict[str, str], method: str, status: int
) -> None:
    code, body = raw_post(protocol_server, "/api/info", b"{}", headers, method)
    assert code == status
    if status != 200:
        assert body == b""


def test_api_key_that_is_not_utf8_is_a_plain_401(protocol_server: ServerProcess) -> None:
    """Raw header bytes, as a broken or hostile client sends them: no 500, no traceback."""
    import socket

    request = (
        b"POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe" + API_KEY.encode()
        + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", protocol_server.port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 401"), reply[:100]
    assert "Traceback" not in protocol_server.log_path.read_text()


def test_transport_error_mode_and_bad_json(protocol_server: ServerProcess) -> None:
    headers = {"X-API-Key": API_KEY, "X-Centrifugo-Error-Mode": "transport"}
    code, body = raw_post(protocol_server, "/api/publish", b"{}", headers)
    assert code == 400 and json.loads(body)["code"] == 107
    code, body = raw_post(
        protocol_server, "/api/publish", b'{"channel":"nope:x","data":{}}', headers
    )
    assert code == 404
    code, body = raw_post(protocol_server, "/api/publish", b"{oops", {"X-API-Key": API_KEY})
    assert code == 400


def test_batch_and_broadcast(protocol_server: ServerProcess) -> None:
    ch = channel()
    batch = protocol_server.api(
        "batch",
        {
            "commands": [
                {"publish": {"channel": ch, "data": {}}},
                {"publish": {"channel": "x:test2", "data": {}}},
                {"nonsense": {}},
                None,
            ]
        },
    )
    assert batch["replies"][0]["publish"]["offset"] == 1
    assert batch["replies"][1] == {"error": {"code": 102, "message": "unknown channel"}}
    assert batch["replies"][2]["error"]["code"] == 104
    assert batch["replies"][3]["error"]["code"] == 107
    broadcast = protocol_server.api("broadcast", {"channels": [ch, "", "nope:a"], "data": {"b": 1}})
    results = broadcast["result"]["responses"]
    assert results[0]["result"]["offset"] == 2
    assert results[1]["error"]["code"] == 107 and results[2]["error"]["code"] == 102
    assert protocol_server.api("broadcast", {"channels": []})["error"]["code"] == 107


def test_idempotency_key_publishes_once(protocol_server: ServerProcess) -> None:
    ch = channel()
    body: dict[str, Any] = {"channel": ch, "data": {"n": 1}, "idempotency_key": "k1"}
    first = protocol_server.api("publish", body)
    second = protocol_server.api("publish", body)
    assert first == second
    history = protocol_server.api("history", {"channel": ch, "limit": -1})["result"]
    assert len(history["publications"]) == 1


def test_history_presence_channels_info(protocol_server: ServerProcess) -> None:
    ch = channel()
    protocol_server.api("publish", {"channel": ch, "data": {"a": 1}, "tags": {"k": "v"}})
    history = protocol_server.api("history", {"channel": ch, "limit": -1})["result"]
    assert history["publications"] == [{"data": {"a": 1}, "offset": 1, "tags": {"k": "v"}}]
    assert protocol_server.api("history_remove", {"channel": ch}) == {"result": {}}
    after = protocol_server.api("history", {"channel": ch, "limit": -1})["result"]
    assert after["publications"] == [] and after["offset"] == 1
    assert protocol_server.api("presence_stats", {"channel": ch})["result"] == {
        "num_clients": 0,
        "num_users": 0,
    }
    assert protocol_server.api("presence", {"channel": "plain:x"})["error"]["code"] == 108
    nodes = protocol_server.api("info", {})["result"]["nodes"]
    assert len(nodes) == 1 and {
        "uid",
        "name",
        "version",
        "num_clients",
        "num_users",
        "num_channels",
        "num_subs",
    } <= set(nodes[0])


async def test_channels_lists_subscribed(protocol_server: ServerProcess) -> None:
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.call(2, "subscribe", {"channel": ch})
        result = protocol_server.api("channels", {"pattern": "api*"})["result"]["channels"]
        assert result[ch] == {"num_clients": 1}


async def test_refresh_expired_disconnects(protocol_server: ServerProcess) -> None:
    user = uuid.uuid4().hex[:8]
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token(user))
        protocol_server.api("refresh", {"user": user, "expired": True})
        assert await c.closed() == 3005


def test_cent_client_works_unchanged(protocol_server: ServerProcess) -> None:
    client = cent.Client(f"{protocol_server.http_url}/api", api_key=API_KEY)
    ch = channel()
    result = client.publish(cent.PublishRequest(channel=ch, data={"from": "cent"}))
    assert result.offset == 1 and result.epoch
    history = client.history(cent.HistoryRequest(channel=ch, limit=10))
    assert [p.data for p in history.publications] == [{"from": "cent"}]
    stats = client.presence_stats(cent.PresenceStatsRequest(channel=ch))
    assert stats.num_clients == 0
    info = client.info(cent.InfoRequest())
    assert len(info.nodes) == 1
    batch = client.batch(
        cent.BatchRequest(
            requests=[
                cent.PublishRequest(channel=ch, data={"n": 2}),
                cent.PublishRequest(channel=ch, data={"n": 3}),
            ]
        )
    )
    assert [r.offset for r in batch.replies] == [2, 3]
    with pytest.raises(cent.CentApiResponseError) as error:
        client.publish(cent.PublishRequest(channel="nope:x", data={}))
    assert error.value.code == 102
    with pytest.raises(cent.CentUnauthorizedError):
        cent.Client(f"{protocol_server.http_url}/api", api_key="wrong").info(cent.InfoRequest())


def _node(**http_api: Any) -> Node:
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={**PROTOCOL_CONFIG, "http_api": {"key": API_KEY, **http_api}},
    )
    return Node(settings, MemoryEngine())


async def _post(served: Served, method: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{served.http_url}/api/{method}", json=body, headers={"X-API-Key": API_KEY}
        ) as response,
    ):
        return response.status, await response.read()


async def test_batch_and_broadcast_over_the_size_limit_are_refused() -> None:
    settings = load_settings(
        environ={}, overrides={"http_api": {"key": API_KEY, "batch_max_size": 10}}
    )
    async with serving(build_app(settings)) as served:
        _, body = await _post(served, "batch", {"commands": [{"info": {}}] * 11})
        assert json.loads(body)["error"]["code"] == 106
        _, body = await _post(
            served, "broadcast", {"channels": [f"c{i}" for i in range(11)], "data": {}}
        )
        assert json.loads(body)["error"]["code"] == 106
        _, body = await _post(served, "batch", {"commands": [{"info": {}}] * 10})
        assert all("info" in reply for reply in json.loads(body)["replies"])


async def test_responses_stop_growing_at_the_size_limit() -> None:
    """A batch runs no command once its response is full; one large result is a 106."""
    limit = 4096
    settings = load_settings(
        environ={},
        overrides={
            **PROTOCOL_CONFIG,
            "http_api": {"key": API_KEY, "response_max_size": limit},
        },
    )
    async with serving(build_app(settings)) as served:
        status, body = await _post(served, "batch", {"commands": [{"info": {}}] * 100})
        assert status == 200 and len(body) <= limit + 100 * 80
        replies = json.loads(body)["replies"]
        assert "info" in replies[0]
        assert replies[-1] == {"error": {"code": 106, "message": "response too large"}}
        for n in range(10):  # the channel keeps 10: 5 KB of history
            await _post(served, "publish", {"channel": "big", "data": {"pad": "x" * 500, "n": n}})
        _, body = await _post(served, "history", {"channel": "big", "limit": -1})
        assert json.loads(body) == {"error": {"code": 106, "message": "response too large"}}


async def test_broadcast_publications_share_one_payload() -> None:
    node = _node()
    await node.start()
    try:
        api = ServerApi(node)
        channels = ["shared1", "shared2", "shared3"]
        result = await api.broadcast({"channels": channels, "data": {"big": "x" * 1000}})
        assert all("result" in r for r in result["responses"])
        history = node.history_options(node.rules.resolve("shared1"))
        assert history is not None
        stored = [
            (await node.engine.history(ch, history=history, since=None, limit=-1)).publications
            for ch in channels
        ]
        assert stored[0][0].data is stored[1][0].data is stored[2][0].data
    finally:
        await node.close()


async def test_a_long_batch_gives_other_tasks_turns() -> None:
    node = _node()
    await node.start()
    turns = 0

    async def other_client() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_client())
    await asyncio.sleep(0)
    try:
        started = turns
        await ServerApi(node).batch({"commands": [{"info": {}}] * 200})
        assert turns - started >= 200 // 32  # a turn after every 32 commands
    finally:
        other.cancel()
        await node.close()
