"""Graceful drain on SIGTERM: readiness off, shutdown codes paced over the window, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request

import aiohttp

from tests.processes import PROTOCOL_CONFIG, token

CONNECTIONS = 1000
WINDOW_SECONDS = 3.0


def ready_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def hold_connection(
    session: aiohttp.ClientSession, url: str, tok: str, closes: list[tuple[float, int | None]]
) -> None:
    ws = await session.ws_connect(url)
    await ws.send_str(f'{{"id":1,"connect":{{"token":"{tok}"}}}}')
    connected = await ws.receive()
    assert '"connect"' in connected.data
    async for _ in ws:
        pass
    closes.append((time.monotonic(), ws.close_code))


async def test_sigterm_drains_1000_connections(server_factory) -> None:  # type: ignore[no-untyped-def]
    config = {
        **PROTOCOL_CONFIG,
        "shutdown": {"drain_window": f"{WINDOW_SECONDS}s", "timeout": "20s"},
    }
    server = server_factory(config)
    tok = token("drain")
    closes: list[tuple[float, int | None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        holders = []
        for i in range(0, CONNECTIONS, 100):
            batch = [
                asyncio.create_task(hold_connection(session, server.ws_url, tok, closes))
                for _ in range(min(100, CONNECTIONS - i))
            ]
            holders.extend(batch)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while server.api("info", {})["result"]["nodes"][0]["num_clients"] < CONNECTIONS:
            assert time.monotonic() < deadline, "connections did not come up"
            await asyncio.sleep(0.1)
        assert ready_status(server.http_url) == 200

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while await asyncio.to_thread(ready_status, server.http_url) != 503:
            assert time.monotonic() < deadline, "readiness did not go false on SIGTERM"
            await asyncio.sleep(0.02)
        try:
            await session.ws_connect(server.ws_url)
            raise AssertionError("a new connection was accepted while draining")
        except aiohttp.WSServerHandshakeError as error:
            assert error.status == 503

        await asyncio.wait_for(asyncio.gather(*holders), WINDOW_SECONDS + 15)
    exit_code = await asyncio.to_thread(server.process.wait, 20)
    assert exit_code == 0

    assert len(closes) == CONNECTIONS
    assert {code for _, code in closes} == {3001}
    offsets = sorted(t - started for t, _ in closes)
    assert offsets[-1] <= WINDOW_SECONDS + 2
    # Spread across the window: no tenth of it takes more than a quarter of the closes.
    slices = [0] * 10
    for offset in offsets:
        slices[min(9, int(offset / WINDOW_SECONDS * 10))] += 1
    assert max(slices) <= CONNECTIONS // 4, slices
    assert offsets[-1] - offsets[0] >= WINDOW_SECONDS * 0.6
