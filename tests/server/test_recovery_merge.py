"""Publications racing a recovering subscribe are merged: none lost, none doubled.

The engine here is the real memory engine with one seam: its history read waits
for the test, so a publication can land between the history read and the
subscriber going live, as it does with a remote engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from roomcast.app import NODE, build_app
from roomcast.config import load_settings
from roomcast.engine import HistoryOptions, HistoryResult, Publication, StreamPosition
from roomcast.engine.memory import MemoryEngine
from tests.processes import PROTOCOL_CONFIG, SECRET, token
from tests.support.served import Served, serving


class PausingHistoryEngine(MemoryEngine):
    def __init__(self) -> None:
        super().__init__()
        self.pause = False
        self.reading = asyncio.Event()
        self.resume = asyncio.Event()

    async def history(
        self,
        channel: str,
        *,
        history: HistoryOptions,
        since: StreamPosition | None,
        limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        result = await super().history(
            channel, history=history, since=since, limit=limit, reverse=reverse
        )
        if self.pause:
            self.reading.set()
            await self.resume.wait()
        return result


@pytest.fixture
async def served() -> AsyncIterator[tuple[Served, PausingHistoryEngine]]:
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET}, overrides=dict(PROTOCOL_CONFIG)
    )
    engine = PausingHistoryEngine()
    async with serving(build_app(settings, engine)) as server:
        yield server, engine


async def test_publication_during_recovery_is_merged(
    served: tuple[Served, PausingHistoryEngine],
) -> None:
    server, engine = served
    node = server.app[NODE]
    info = node.rules.resolve("race")
    for n in (1, 2):
        await node.publish("race", info, Publication(json.dumps({"n": n}).encode()), source="api")
    epoch = (
        await engine.history(
            "race",
            history=node.history_options(info),  # type: ignore[arg-type]
            since=None,
            limit=0,
        )
    ).position.epoch
    engine.pause = True
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(server.ws_url) as ws,
    ):
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token()}}))
        await ws.receive()
        await ws.send_str(
            json.dumps(
                {
                    "id": 2,
                    "subscribe": {"channel": "race", "recover": True, "offset": 1, "epoch": epoch},
                }
            )
        )
        await engine.reading.wait()
        for n in (3, 4):  # land while the subscriber is between history read and going live
            await node.publish(
                "race", info, Publication(json.dumps({"n": n}).encode()), source="api"
            )
        engine.resume.set()
        messages: list[dict[str, Any]] = []
        while not any(m.get("id") == 2 for m in messages):
            frame = await asyncio.wait_for(ws.receive(), 5)
            messages.extend(json.loads(line) for line in frame.data.split("\n") if line)
        await node.publish("race", info, Publication(b'{"n":5}'), source="api")
        while not any("pub" in m.get("push", {}) for m in messages):
            frame = await asyncio.wait_for(ws.receive(), 5)
            messages.extend(json.loads(line) for line in frame.data.split("\n") if line)
        pushed = [m["push"]["pub"]["offset"] for m in messages if "pub" in m.get("push", {})]
        assert pushed == [5]  # live delivery continues after the reply
        messages = [m for m in messages if "pub" not in m.get("push", {})]
        reply = next(m for m in messages if m.get("id") == 2)["subscribe"]
        assert reply["recovered"] is True
        recovered = [p["offset"] for p in reply["publications"]]
        pushed = [m["push"]["pub"]["offset"] for m in messages if "pub" in m.get("push", {})]
        assert recovered + pushed == [2, 3, 4]
        assert messages.index(next(m for m in messages if m.get("id") == 2)) < min(
            (i for i, m in enumerate(messages) if "pub" in m.get("push", {})), default=99
        )
