"""One WebSocket path: every form of the request reaches the same protocol code.

The listening socket answers a canonical upgrade itself and hands everything else
to aiohttp, whose route gives upgraded sockets back to ``ConnectionProtocol``. The
proof that a form ran the lean protocol is behaviour only it has: an unmasked
client frame closes with 1002, and a message of exactly ``message_size_limit``
bytes is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestServer

from roomcast.app import CONNECTIONS, NODE, build_app
from roomcast.config import load_settings
from roomcast.engine import Publication
from roomcast.ws.server import ConnectionProtocol
from tests.processes import PROTOCOL_CONFIG, SECRET
from tests.support.rawws import PATH, RawSocket, frame, upgrade_head
from tests.support.served import Served, serving
from tests.support.waiting import eventually

LIMIT = 65_536


def _settings():  # type: ignore[no-untyped-def]
    return load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={**PROTOCOL_CONFIG, "websocket": {"message_size_limit": LIMIT}},
    )


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(build_app(_settings())) as server:
        yield server


async def _open(port: int, form: str) -> RawSocket:
    """A socket upgraded with the request in ``form``."""
    sock = await RawSocket.open(port)
    if form == "keep-alive":
        status, _ = await sock.request(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        )
        assert status == 200
        target = PATH
    else:
        target = {
            "canonical": PATH,
            "percent-encoded": "/connection/%77ebsocket",
            "fragment": PATH + "#frag",
            "absolute-form": f"http://127.0.0.1:{port}{PATH}",
            "query": PATH + "?format=json",
        }[form]
    assert await sock.upgrade(target) == 101
    return sock


FORMS = ["canonical", "percent-encoded", "fragment", "absolute-form", "query", "keep-alive"]


@pytest.mark.parametrize("form", FORMS)
async def test_every_form_runs_the_same_protocol(served: Served, form: str) -> None:
    async with await _open(served.port, form) as sock:
        assert b'"connect"' in await sock.connect()
        padded = json.dumps({"id": 2, "presence_stats": {"channel": "x"}})
        sock.send_text(padded + " " * (LIMIT - len(padded)))  # exactly the limit: accepted
        opcode, reply = await sock.read_frame()
        assert opcode == 0x1 and json.loads(reply)["id"] == 2
        sock.send(0x1, b'{"id": 3, "presence": {"channel": "x"}}', masked=False)
        assert await sock.close_code() == 1002


@pytest.mark.parametrize("form", ["canonical", "percent-encoded", "absolute-form"])
async def test_a_reserved_close_code_from_the_client_is_a_protocol_error(
    served: Served, form: str
) -> None:
    async with await _open(served.port, form) as sock:
        await sock.connect()
        sock.send(0x8, (1006).to_bytes(2, "big"))
        assert await sock.close_code() == 1002


async def test_absolute_form_authority_is_not_the_host_for_origin_checks(served: Served) -> None:
    """The same-host Origin default compares with the Host header, whatever the target says."""
    async with await RawSocket.open(served.port) as sock:
        head = upgrade_head(
            "http://evil.example/connection/websocket",
            host=f"127.0.0.1:{served.port}",
            extra="Origin: http://evil.example\r\n",
        )
        status, _ = await sock.request(head)
        assert status == 403
    async with await RawSocket.open(served.port) as sock:
        head = upgrade_head(
            "http://evil.example/connection/websocket",
            host=f"127.0.0.1:{served.port}",
            extra=f"Origin: http://127.0.0.1:{served.port}\r\n",
        )
        status, _ = await sock.request(head)
        assert status == 101


async def test_an_app_served_by_aiohttp_alone_runs_the_same_protocol() -> None:
    """``TestServer(build_app())`` has no ``Gateway`` in front; its route hands sockets over."""
    server = TestServer(build_app(_settings()), host="127.0.0.1")
    await server.start_server()
    try:
        assert server.port is not None
        async with await _open(server.port, "canonical") as sock:
            assert b'"connect"' in await sock.connect()
            sock.send(0x1, b"{}", masked=False)
            assert await sock.close_code() == 1002
    finally:
        await server.close()


async def test_refusals_are_the_same_on_every_form(served: Served) -> None:
    for target in (PATH, "/connection/%77ebsocket"):
        async with await RawSocket.open(served.port) as sock:
            head = upgrade_head(target, extra="Origin: null\r\n")
            status, _ = await sock.request(head)
            assert status == 403, target


def _disconnects(served: Served, code: int) -> float:
    value = served.app[NODE].metrics.registry.get_sample_value(
        "roomcast_disconnects_total", {"code": str(code), "terminal": "false"}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("code", "send"),
    [
        (1002, lambda s: s.send(0x1, b"{}", masked=False)),
        (1007, lambda s: s.send(0x1, b"\xff\xfe")),
        # Only the header: the server answers before reading a payload it refuses.
        (1009, lambda s: s.writer.write(b"\x81\xff" + (LIMIT + 1).to_bytes(8, "big") + b"mask")),
    ],
    ids=["protocol-error", "invalid-utf8", "too-big"],
)
async def test_frame_error_closes_are_counted_and_logged(
    served: Served, code: int, send: Callable[[RawSocket], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roomcast.ws.server")
    async with await _open(served.port, "canonical") as sock:
        await sock.connect()
        send(sock)
        assert await sock.close_code() == code
    assert _disconnects(served, code) == 1
    (record,) = [r for r in caplog.records if r.getMessage() == "disconnect"]
    assert record.__dict__["code"] == code and record.__dict__["client"]


async def _subscribe(raw: RawSocket, channel: str) -> None:
    """Upgrade, connect and subscribe ``raw`` to ``channel``."""
    assert await raw.upgrade() == 101
    await raw.connect()
    raw.send_text(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
    await raw.read_frame()


def _server_side(served: Served) -> tuple[ConnectionProtocol, asyncio.Transport]:
    """The only connection's protocol and socket transport, its kernel send buffer made
    small so the server's own buffer fills quickly."""
    (client,) = served.app[CONNECTIONS]
    protocol = client.transport
    assert isinstance(protocol, ConnectionProtocol)
    raw_transport = protocol._raw
    assert raw_transport is not None
    raw_transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return protocol, raw_transport


async def _publish_until(served: Served, channel: str, done: Callable[[], object]) -> None:
    """Publish 4 KB publications to ``channel`` until ``done()`` (2,000 at the most)."""
    node = served.app[NODE]
    info = node.rules.resolve(channel)
    data = json.dumps({"pad": "x" * 4000}).encode()
    for _ in range(2000):
        await node.publish(channel, info, Publication(data), source="api")
        await asyncio.sleep(0)  # the outboxes are flushed at the end of a loop turn
        if done():
            return


async def test_slow_consumer_close_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that never reads is cut with 3008, and the cut shows in metrics and logs."""
    caplog.set_level(logging.INFO, logger="roomcast.ws.server")
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={**PROTOCOL_CONFIG, "client": {"queue_max_size": 65_536}},
    )
    async with (
        serving(build_app(settings)) as server,
        await RawSocket.open(server.port, receive_buffer=4096) as raw,
    ):
        await _subscribe(raw, "flood")
        # the client reads nothing from here on
        await _publish_until(server, "flood", lambda: _disconnects(server, 3008))
        assert _disconnects(server, 3008) == 1
    assert any(
        r.getMessage() == "disconnect" and r.__dict__["code"] == 3008 for r in caplog.records
    )


async def test_a_client_that_stops_reading_is_cut_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writes without progress for ``write_timeout`` end in 3008, whatever is queued.

    The queue limit is set far above what is sent, so only the write timeout can cut
    this client; before it was read, the client stayed connected until its pong
    deadline (and for good when it sent pongs without reading).
    """
    caplog.set_level(logging.INFO, logger="roomcast.ws.server")
    queue_max = 64 * 1024 * 1024
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={
            **PROTOCOL_CONFIG,
            "client": {"queue_max_size": queue_max},
            "websocket": {"write_timeout": 0.5},
        },
    )
    async with (
        serving(build_app(settings)) as server,
        await RawSocket.open(server.port, receive_buffer=4096) as raw,
    ):
        await _subscribe(raw, "stuck")
        protocol, raw_transport = _server_side(server)
        raw.writer.transport.pause_reading()  # the client reads nothing from here on
        await _publish_until(server, "stuck", lambda: protocol._writing_paused)
        assert protocol._writing_paused
        assert raw_transport.get_write_buffer_size() < queue_max // 100
        await eventually(lambda: _disconnects(server, 3008) == 1, timeout=10)
        # Reading again, the client finds the close frame behind what was queued.
        raw.writer.transport.resume_reading()
        assert await raw.close_code() == 3008
    (record,) = [r for r in caplog.records if r.getMessage() == "disconnect"]
    assert record.__dict__["code"] == 3008 and record.__dict__["client"]


async def test_pongs_to_a_ping_flood_stay_under_the_queue_limit() -> None:
    """A client that pings and never reads gets one pending pong, not unbounded memory."""
    queue_max = 256 * 1024
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={**PROTOCOL_CONFIG, "client": {"queue_max_size": queue_max}},
    )
    async with (
        serving(build_app(settings)) as server,
        await RawSocket.open(server.port, receive_buffer=4096) as raw,
    ):
        assert await raw.upgrade() == 101
        await raw.connect()
        protocol, raw_transport = _server_side(server)
        ping = frame(0x9, b"p" * 125)
        for _ in range(200):  # up to 200 x 1,000 pings: 25 MB of pongs if all were answered
            raw.writer.write(ping * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(raw.writer.drain(), 0.05)
            assert raw_transport.get_write_buffer_size() <= queue_max
            if protocol._pong is not None or protocol.closed:
                break
        # Pongs wait while the client does not read: one kept, the buffer under the limit.
        assert protocol._pong is not None or protocol.closed
        assert raw_transport.get_write_buffer_size() <= queue_max
