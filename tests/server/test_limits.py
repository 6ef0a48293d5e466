"""Bad input and limits: every one answered with an error reply or a close code."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
import uuid

import aiohttp
import pytest

from tests.processes import PROTOCOL_CONFIG, ServerProcess, token
from tests.support.rawws import RawSocket, upgrade_head
from tests.wsclient import RawClient


async def test_oversized_frame_closes_1009(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({**PROTOCOL_CONFIG, "websocket": {"message_size_limit": 1024}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token())
        await c.ws.send_str(json.dumps({"id": 2, "publish": {"channel": "x", "data": "a" * 2000}}))
        assert await c.closed() == 1009


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1, 2, 3]",
        '"just a string"',
        "[" * 2000 + "]" * 2000,
        '{"id": 2, "publish": {"channel": "x", "data": NaN}}',
        '{"id": 99999999999999999999999, "presence": {"channel": "x"}}',
        '{"id": -1, "presence": {"channel": "x"}}',
        '{"id": 2, "subscribe": "not an object"}',
        '{"id": 2, "subscribe": {"channel": ""}}',
    ],
    ids=[
        "broken",
        "array",
        "string",
        "deep",
        "nan",
        "huge-id",
        "negative-id",
        "bad-body",
        "empty-channel",
    ],
)
async def test_malformed_commands_close_3501(protocol_server: ServerProcess, frame: str) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.ws.send_str(frame)
        assert await c.closed() == 3501


async def test_binary_frame_closes_3506(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.ws.send_bytes(b"\x0a\x02\x08\x01")
        assert await c.closed() == 3506


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"channel": "x" * 300}, 107),
        ({"channel": "ünïcode"}, 107),
        ({"channel": "a/b"}, 107),
        ({"channel": "nope:room"}, 102),
        ({"channel": 123}, 107),
    ],
)
async def test_bad_channels_get_error_replies(
    protocol_server: ServerProcess, request_body: dict[str, object], code: int
) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "subscribe", request_body)
        assert reply["error"]["code"] == code
        # The connection is still usable after the error.
        assert (await c.call(3, "rpc", {"method": "m"}))["error"]["code"] == 108


async def test_publish_without_data_is_bad_request(protocol_server: ServerProcess) -> None:
    ch = f"c{uuid.uuid4().hex[:8]}"
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.call(2, "subscribe", {"channel": ch})
        reply = await c.call(3, "publish", {"channel": ch})
        assert reply["error"]["code"] == 107


async def test_channel_limit(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({**PROTOCOL_CONFIG, "client": {"channel_limit": 3}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token())
        for i in range(3):
            assert "subscribe" in await c.call(10 + i, "subscribe", {"channel": f"plain:{i}"})
        reply = await c.call(20, "subscribe", {"channel": "plain:overflow"})
        assert reply["error"] == {"code": 106, "message": "limit exceeded"}


async def test_rate_limit_replies_111_then_disconnects_3013(server_factory) -> None:  # type: ignore[no-untyped-def]
    limits = {"rate_per_second": 5, "burst": 10, "max_rejections": 20}
    server = server_factory({**PROTOCOL_CONFIG, "client": {"command_rate_limit": limits}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token())
        await c.send(*[{"id": 100 + i, "presence_stats": {"channel": "a"}} for i in range(15)])
        replies = [await c.recv() for _ in range(15)]
        limited = [r for r in replies if r["error"]["code"] == 111]
        assert limited[0]["error"] == {
            "code": 111,
            "message": "too many requests",
            "temporary": True,
        }
        assert 15 - len(limited) <= 10  # the burst (less the connect command) went through
        await c.send(*[{"id": 200 + i, "presence_stats": {"channel": "a"}} for i in range(40)])
        assert await c.closed() == 3013


async def test_steady_flooder_is_cut_although_some_commands_pass(server_factory) -> None:  # type: ignore[no-untyped-def]
    """At 1.5 times the rate, every third command is refused and the others pass: the
    refusals still add up within the window and end in 3013."""
    limits = {"rate_per_second": 20, "burst": 20, "max_rejections": 30}
    server = server_factory({**PROTOCOL_CONFIG, "client": {"command_rate_limit": limits}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token())
        # Read everything (replies, then the close) while sending, as a real client does.
        reader = asyncio.create_task(c.closed(timeout=15))
        for i in range(20):  # spend the burst
            await c.send({"id": 100 + i, "presence_stats": {"channel": "a"}})
        for i in range(300):  # 30 per second for up to 10 s
            if reader.done():
                break
            await c.send({"id": 1000 + i, "presence_stats": {"channel": "a"}})
            await asyncio.sleep(1 / 30)
        assert await reader == 3013


async def test_flood_does_not_hurt_other_clients(server_factory) -> None:  # type: ignore[no-untyped-def]
    limits = {"rate_per_second": 50, "burst": 50, "max_rejections": 1000}
    server = server_factory({**PROTOCOL_CONFIG, "client": {"command_rate_limit": limits}})
    ch = "calm"
    async with (
        await RawClient.open(server.ws_url) as calm,
        await RawClient.open(server.ws_url) as noisy,
    ):
        await calm.connect(token("calm"))
        await calm.call(2, "subscribe", {"channel": ch})
        await calm.recv()
        await noisy.connect(token("noisy"))
        await noisy.send(*[{"id": 10 + i, "subscribe": {"channel": f"n{i}"}} for i in range(500)])
        server.api("publish", {"channel": ch, "data": {"ok": True}})
        assert (await calm.recv())["push"]["pub"]["data"] == {"ok": True}


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://app.example.com", 101),
        ("https://evil.example", 403),
        ("null", 403),
        ("https://app.example.com.evil.example", 403),
        ("https://sub.widgets.example.org", 101),
        (None, 101),
    ],
)
async def test_origin_policy(server_factory, origin: str | None, status: int) -> None:  # type: ignore[no-untyped-def]
    allowed = ["https://app.example.com", "https://*.widgets.example.org"]
    server = server_factory({**PROTOCOL_CONFIG, "client": {"allowed_origins": allowed}})
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as session:
        if status == 101:
            ws = await session.ws_connect(server.ws_url, headers=headers)
            await ws.close()
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as error:
                await session.ws_connect(server.ws_url, headers=headers)
            assert error.value.status == status


async def test_same_host_origin_allowed_without_list(protocol_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        ok = await session.ws_connect(
            protocol_server.ws_url, headers={"Origin": f"http://127.0.0.1:{protocol_server.port}"}
        )
        await ok.close()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(
                protocol_server.ws_url, headers={"Origin": "http://localhost.evil:1"}
            )


async def test_upgrade_headers_dribble_is_cut(server_factory) -> None:  # type: ignore[no-untyped-def]
    """Slowloris: a request whose headers never finish is closed after the deadline."""
    server = server_factory({**PROTOCOL_CONFIG, "websocket": {"handshake_timeout": "1s"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()

    async def dribble() -> None:
        for _ in range(30):
            await asyncio.sleep(0.2)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()

    dribbler = asyncio.create_task(dribble())
    try:
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        data = b""
    finally:
        dribbler.cancel()
        await asyncio.gather(dribbler, return_exceptions=True)
        writer.close()
    assert data == b""  # closed without a response
    assert time.monotonic() - started < 3
    # A legitimate client still connects.
    async with await RawClient.open(server.ws_url) as c:
        assert "connect" in await c.connect(token())


@pytest.mark.parametrize("pieces", [1, 8], ids=["whole", "in-pieces"])
async def test_request_head_over_16_kib_is_refused_431(  # type: ignore[no-untyped-def]
    protocol_server, pieces: int
) -> None:
    head = upgrade_head(extra=f"X-Big: {'a' * 20_000}\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", protocol_server.port)
    try:
        step = len(head) // pieces + 1
        for first in range(0, len(head), step):
            writer.write(head[first : first + step])
            await writer.drain()
            await asyncio.sleep(0.05)
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 431 "), data[:80]


async def test_slow_consumer_disconnected_with_3008(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({**PROTOCOL_CONFIG, "client": {"queue_max_size": 65536}})
    ch = f"slow{uuid.uuid4().hex[:6]}"
    async with await RawSocket.open(server.port, receive_buffer=4096) as slow:
        assert await slow.upgrade() == 101
        await slow.connect()
        slow.send_text(json.dumps({"id": 2, "subscribe": {"channel": ch}}))
        await slow.read_frame()
        slow.writer.transport.pause_reading()  # the slow client reads nothing from here on
        async with await RawClient.open(server.ws_url) as fast:
            await fast.connect(token("fast"))
            await fast.call(2, "subscribe", {"channel": ch})
            big = "x" * 20_000
            for i in range(200):  # ~4 MB to the slow reader, far beyond its queue
                server.api("publish", {"channel": ch, "data": {"i": i, "pad": big}})
            received = 0
            while received < 200:
                message = await fast.recv()
                if "pub" in message.get("push", {}):
                    received += 1
        # Reading again, the slow client finds the close frame behind what was queued.
        slow.writer.transport.resume_reading()
        assert await slow.close_code(timeout=10) == 3008


async def test_declared_huge_frame_closes_1009_without_allocating(
    protocol_server: ServerProcess,
) -> None:
    async with await RawSocket.open(protocol_server.port) as sock:
        assert await sock.upgrade() == 101
        # A masked text frame header announcing 2**63 - 1 bytes, then nothing.
        sock.writer.write(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**63 - 1) + os.urandom(4))
        assert await sock.close_code(timeout=10) == 1009


async def test_compression_is_never_negotiated(protocol_server: ServerProcess) -> None:
    """permessage-deflate is not offered back (compression bombs, CPU)."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(protocol_server.ws_url, compress=15) as ws,
    ):
        assert ws.compress == 0


async def test_websocket_ping_close_and_invalid_utf8(protocol_server: ServerProcess) -> None:
    async with await RawSocket.open(protocol_server.port) as sock:
        assert await sock.upgrade() == 101
        sock.send(0x9, b"are you there")
        assert await sock.read_frame() == (0xA, b"are you there")
        sock.send(0x1, b"\xff\xfe not utf-8")
        assert await sock.close_code() == 1007
    async with await RawSocket.open(protocol_server.port) as sock:
        assert await sock.upgrade() == 101
        sock.send(0x8, struct.pack("!H", 1000) + b"bye")
        opcode, payload = await sock.read_frame()
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1000
        # then the server hangs up
        assert await asyncio.wait_for(sock.reader.read(), 5) == b""


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        (
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "8",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            426,
        ),
        (
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "short",
            },
            400,
        ),
    ],
    ids=["plain-get", "version", "bad-key"],
)
async def test_bad_upgrades_get_http_errors(
    protocol_server: ServerProcess, headers: dict[str, str], status: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            protocol_server.ws_url.replace("ws://", "http://"), headers=headers
        ) as response,
    ):
        assert response.status == status


async def test_http_api_and_websocket_share_the_port_with_keep_alive(
    protocol_server: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # one kept-alive connection, several requests
            async with session.get(f"{protocol_server.http_url}/health") as response:
                assert response.status == 200
        async with session.post(
            f"{protocol_server.http_url}/api/info", json={}, headers={"X-API-Key": "test-api-key"}
        ) as response:
            assert (await response.json())["result"]["nodes"]
