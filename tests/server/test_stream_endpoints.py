"""HTTP streaming and SSE emulation against a real server, spoken raw over HTTP.

The SDK-level flows are in test_sdk_js_emulation.py; these pin the wire: framing,
the connect reply's session and node, statuses of bad requests, disconnect pushes.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from roomcast import protobuf
from tests.processes import ServerProcess, running_server, token
from tests.support.streams import (
    EMULATION_CONFIG,
    JsonStream,
    commands,
    emulate,
    http_session,
    open_sse,
    open_stream,
    track,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session() as session:
        yield session


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server with both emulation transports, for the tests that keep its config."""
    with running_server(EMULATION_CONFIG) as started:
        yield started


async def test_http_stream_carries_replies_of_emulated_commands(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    ch = f"s{uuid.uuid4().hex[:8]}"
    stream, connect = await open_stream(http, server)
    assert connect["session"] and connect["node"] and connect["client"]
    assert connect["session"] != connect["client"]  # the client id is public, the session not
    status = await emulate(http, server.http_url, connect, {"id": 2, "subscribe": {"channel": ch}})
    assert status == 204
    assert (await stream.until(lambda m: m.get("id") == 2))["subscribe"]["recoverable"] is True
    assert (
        await emulate(
            http, server.http_url, connect, {"id": 3, "publish": {"channel": ch, "data": {"n": 1}}}
        )
        == 204
    )
    # The publish reply and the publication may come in either order.
    pub, _ = await stream.both(lambda m: "pub" in m.get("push", {}), lambda m: m.get("id") == 3)
    assert pub["push"]["pub"]["data"] == {"n": 1}
    # A pong is an empty command, as on WebSocket.
    assert await emulate(http, server.http_url, connect, {}) == 204


async def test_sse_opens_with_the_connect_in_the_url(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    connect_command = commands({"id": 1, "connect": {"token": token("sse")}})
    async with http.get(
        f"{server.http_url}/connection/sse", params={"cf_connect": connect_command}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = JsonStream(response, sse=True)
        connect = (await stream.next())["connect"]
        ch = f"s{uuid.uuid4().hex[:8]}"
        subscribe = {"id": 2, "subscribe": {"channel": ch}}
        assert await emulate(http, server.http_url, connect, subscribe) == 204
        await stream.until(lambda m: m.get("id") == 2)
        server.api("publish", {"channel": ch, "data": {"via": "api"}})
        pub = await stream.until(lambda m: "pub" in m.get("push", {}))
        assert pub["push"]["pub"]["data"] == {"via": "api"}


async def test_sse_takes_the_connect_in_a_post_body_too(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    response = track(
        await http.post(
            f"{server.http_url}/connection/sse",
            data=commands({"id": 1, "connect": {"token": token("sse-post")}}),
            headers={"Content-Type": "application/json"},
        )
    )
    assert response.status == 200
    connect = (await JsonStream(response, sse=True).next())["connect"]
    assert connect["session"] and connect["node"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _prefixed(message: bytes) -> bytes:
    return _varint(len(message)) + message


def _replies(buffer: bytearray) -> list[dict[str, Any]]:
    """Whole length-prefixed replies cut from the front of ``buffer``."""
    out = []
    while True:
        length, shift, pos = 0, 0, 0
        while pos < len(buffer):
            byte = buffer[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            return out
        if len(buffer) < pos + length:
            return out
        out.append(protobuf.decode_message("Reply", bytes(buffer[pos : pos + length])))
        del buffer[: pos + length]


async def test_protobuf_http_stream_is_length_prefixed(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    ch = f"s{uuid.uuid4().hex[:8]}"
    binary = {"Content-Type": "application/octet-stream"}
    connect_cmd = protobuf.encode_message("Command", {"id": 1, "connect": {"token": token("pb")}})
    response = await http.post(
        f"{server.http_url}/connection/http_stream", data=_prefixed(connect_cmd), headers=binary
    )
    track(response)
    assert response.status == 200
    buffer = bytearray()
    replies: list[dict[str, Any]] = []

    async def wait_for(cmd_id: int) -> dict[str, Any]:
        while True:
            for reply in replies:
                if reply.get("id") == cmd_id:
                    return reply
            buffer.extend(await asyncio.wait_for(response.content.readany(), 5))
            replies.extend(_replies(buffer))

    connect = (await wait_for(1))["connect"]
    subscribe = protobuf.encode_message("Command", {"id": 2, "subscribe": {"channel": ch}})
    body = protobuf.encode_message(
        "EmulationRequest",
        {"node": connect["node"], "session": connect["session"], "data": _prefixed(subscribe)},
    )
    async with http.post(f"{server.http_url}/emulation", data=body, headers=binary) as emulated:
        assert emulated.status == 204
    assert "subscribe" in await wait_for(2)
    # JSON commands for a Protobuf stream are refused, not misread.
    assert await emulate(http, server.http_url, connect, {"id": 3, "presence": {}}) == 400
    response.close()


async def test_bad_emulation_requests_get_a_clear_status(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    stream, connect = await open_stream(http, server)
    url = f"{server.http_url}/emulation"
    cases: list[tuple[bytes, int, str]] = [
        (b"not json", 400, "body is not JSON"),
        (b"[1]", 400, "JSON object expected"),
        (b'{"node":"n","session":"s","data":3}', 400, "data must be a string of commands"),
        (b'{"session":"s","data":"{}"}', 400, "node and session required"),
        (orjson.dumps({**connect, "data": "{}", "node": "elsewhere"}), 404, "node not found"),
        (orjson.dumps({**connect, "data": "{}", "session": "gone"}), 404, "session not found"),
        (b"x" * 70_000, 413, "emulation request too large"),
    ]
    json_type = {"Content-Type": "application/json"}
    for body, status, message in cases:
        async with http.post(url, data=body, headers=json_type) as response:
            assert (response.status, await response.json()) == (status, {"error": message}), body
    async with http.post(url, data=b"\xff\xff") as response:  # octet-stream: Protobuf
        assert (response.status, await response.json()) == (
            400,
            {"error": "malformed EmulationRequest"},
        )
    async with http.get(url) as response:
        assert response.status == 405
    async with http.get(f"{server.http_url}/connection/sse") as response:
        assert response.status == 400
    async with http.post(
        f"{server.http_url}/connection/sse",
        data=b"\x01\x02",
        headers={"Content-Type": "application/octet-stream"},
    ) as response:
        assert (response.status, await response.json()) == (400, {"error": "SSE speaks JSON only"})
    async with http.post(
        f"{server.http_url}/connection/http_stream", data=b"{" + b" " * 70_000 + b"}"
    ) as response:
        assert response.status == 413
    # None of that touched the open stream.
    assert await emulate(http, server.http_url, connect, {"id": 2, "presence": {}}) == 204
    assert (await stream.until(lambda m: m.get("id") == 2))["error"]["code"] == 107
    async with http.get(f"{server.http_url}/metrics") as response:
        metrics = await response.text()
    # Only this test sends malformed requests to the module's server.
    assert 'roomcast_emulation_requests_total{outcome="bad_request"} 5.0' in metrics
    assert 'roomcast_emulation_requests_total{outcome="too_large"} 1.0' in metrics


async def sessions_by_transport(
    http: aiohttp.ClientSession, server: ServerProcess
) -> dict[str, float]:
    """The server's ``roomcast_emulation_sessions`` gauge by its ``transport`` label."""
    async with http.get(f"{server.http_url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "roomcast_emulation_sessions":
            return {s.labels["transport"]: s.value for s in family.samples}
    raise AssertionError("roomcast_emulation_sessions not exported")


async def until_sessions(
    http: aiohttp.ClientSession, server: ServerProcess, want: dict[str, float]
) -> None:
    """Wait for the gauge to read ``want`` (a stream's end reaches it after its response's)."""
    for _ in range(100):
        if await sessions_by_transport(http, server) == want:
            return
        await asyncio.sleep(0.05)
    assert await sessions_by_transport(http, server) == want


async def test_sessions_gauge_counts_each_transport_while_its_streams_are_open(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    # Both label values are there from the start; other tests' streams may still be ending.
    await until_sessions(http, server, {"http_stream": 0, "sse": 0})
    lines, _ = await open_stream(http, server, user="gauge")
    binary = track(
        await http.post(
            f"{server.http_url}/connection/http_stream",
            data=_prefixed(
                protobuf.encode_message("Command", {"id": 1, "connect": {"token": token("pb")}})
            ),
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    assert binary.status == 200
    sse, _ = await open_sse(http, server, user="gauge-sse")
    # Protobuf streams are HTTP streaming too.
    assert await sessions_by_transport(http, server) == {"http_stream": 2, "sse": 1}
    sse.response.close()
    await until_sessions(http, server, {"http_stream": 2, "sse": 0})
    lines.response.close()
    binary.close()
    await until_sessions(http, server, {"http_stream": 0, "sse": 0})


async def test_transports_are_off_unless_enabled(
    http: aiohttp.ClientSession, protocol_server: ServerProcess
) -> None:
    for path in ("/connection/http_stream", "/connection/sse", "/emulation"):
        async with http.post(f"{protocol_server.http_url}{path}", data=b"{}") as response:
            assert response.status == 404, path


async def test_server_disconnect_is_a_push_then_the_end_of_the_stream(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    stream, _ = await open_stream(http, server, user="kicked")
    server.api("disconnect", {"user": "kicked", "disconnect": {"code": 3503, "reason": "bye"}})
    rest = await stream.ended()
    assert rest[-1] == {"push": {"disconnect": {"code": 3503, "reason": "bye"}}}


async def test_command_rate_limit_applies_per_session(
    http: aiohttp.ClientSession,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    limited = {
        **EMULATION_CONFIG,
        "client": {
            **EMULATION_CONFIG["client"],
            "command_rate_limit": {"rate_per_second": 1, "burst": 2, "max_rejections": 3},
        },
    }
    server = server_factory(limited)
    stream, connect = await open_stream(http, server)
    presence = [{"id": n, "presence_stats": {"channel": "x"}} for n in range(2, 12)]
    assert await emulate(http, server.http_url, connect, *presence) == 204
    rest = await stream.ended()
    assert {
        "id": 3,
        "error": {"code": 111, "message": "too many requests", "temporary": True},
    } in rest
    assert rest[-1]["push"]["disconnect"]["code"] == 3013


async def test_a_stream_that_goes_away_leaves_no_presence(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    ch = f"s{uuid.uuid4().hex[:8]}"
    stream, connect = await open_stream(http, server, user="leaver")
    await emulate(http, server.http_url, connect, {"id": 2, "subscribe": {"channel": ch}})
    await stream.until(lambda m: m.get("id") == 2)
    assert server.api("presence_stats", {"channel": ch})["result"]["num_clients"] == 1
    stream.response.close()  # the peer hangs up; no write is pending to notice it
    for _ in range(100):
        if server.api("presence_stats", {"channel": ch})["result"]["num_clients"] == 0:
            break
        await asyncio.sleep(0.05)
    assert server.api("presence_stats", {"channel": ch})["result"]["num_clients"] == 0
    assert await emulate(http, server.http_url, connect, {}) == 404


async def test_drain_closes_streams_with_the_shutdown_push(
    http: aiohttp.ClientSession,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    config = {**EMULATION_CONFIG, "shutdown": {"drain_window": "0.2s", "timeout": "5s"}}
    server = server_factory(config)
    stream, _ = await open_stream(http, server)
    async with http.get(
        f"{server.http_url}/connection/sse",
        params={"cf_connect": commands({"id": 1, "connect": {"token": token("b")}})},
    ) as sse_response:
        sse = JsonStream(sse_response, sse=True)
        await sse.next()
        server.process.send_signal(signal.SIGTERM)
        shutdown = {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}}
        assert (await stream.ended())[-1] == shutdown
        assert (await sse.ended())[-1] == shutdown
    assert server.process.wait(timeout=10) == 0


async def test_pages_of_foreign_origins_are_refused_others_get_cors_headers(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    foreign = {"Origin": "https://evil.example"}
    own = {"Origin": server.http_url}  # the server's own host: allowed by default
    for path in ("/connection/http_stream", "/connection/sse", "/emulation"):
        url = f"{server.http_url}{path}"
        async with http.post(url, data=b"{}", headers=foreign) as response:
            assert (response.status, await response.json()) == (
                403,
                {"error": "origin not allowed"},
            )
        async with http.options(url, headers=foreign) as response:
            assert response.status == 403
        async with http.options(url, headers=own) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == server.http_url
            assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    async with http.post(
        f"{server.http_url}/emulation",
        json={"node": "n", "session": "s", "data": "{}"},
        headers=own,
    ) as response:
        assert response.status == 404
        assert response.headers["Access-Control-Allow-Origin"] == server.http_url


async def test_a_body_arriving_in_pieces_is_read_whole(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    """Chunked and slow: the connect of a stream and an emulation request, piece by piece."""
    stream_connect = commands({"id": 1, "connect": {"token": token("slow")}}).encode()

    async def pieces(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 16):
            yield data[start : start + 16]
            await asyncio.sleep(0.005)

    response = await http.post(
        f"{server.http_url}/connection/http_stream",
        data=pieces(stream_connect),
        headers={"Content-Type": "application/json"},
    )
    stream = JsonStream(response)
    connect = (await stream.next())["connect"]
    body = {"node": connect["node"], "session": connect["session"], "data": commands({"id": 2})}
    async with http.post(
        f"{server.http_url}/emulation",
        data=pieces(orjson.dumps(body)),
        headers={"Content-Type": "application/json"},
    ) as emulated:
        assert emulated.status == 204
    assert (await stream.until(lambda m: m.get("id") == 2))["error"]["code"] == 107
