"""centrifuge-js (the official npm SDK) under Node, driven over stdin/stdout."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).parent / "js" / "driver.mjs"
NODE_MODULES = Path(__file__).parent / "js" / "node_modules" / "centrifuge"

Event = dict[str, Any]


def is_event(name: str, **match: object) -> Callable[[Event], bool]:
    """A predicate for :meth:`JsClient.wait`: the event ``name`` with these fields."""
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in match.items())


async def check_recovery(
    js: JsClient,
    channel: str,
    publish: Callable[[dict[str, Any]], object],
    publish_while_away: Callable[[dict[str, Any]], object] | None = None,
) -> None:
    """With ``js`` subscribed to ``channel``: one publication, a disconnect, three more
    meanwhile (through ``publish_while_away``, by default ``publish``), a reconnect. The
    SDK must recover and hand over all four, in order, once."""
    publish_while_away = publish_while_away or publish
    publish({"channel": channel, "data": {"n": 1}})
    await js.wait(lambda e: is_event("publication")(e) and e["data"] == {"n": 1})

    await js.call("disconnect")
    await js.wait(is_event("disconnected"))
    for n in (2, 3, 4):
        publish_while_away({"channel": channel, "data": {"n": n}})
    await js.call("reconnect")
    resubscribed = await js.wait(
        lambda e: is_event("subscribed", channel=channel)(e) and e["wasRecovering"]
    )
    assert resubscribed["recovered"] is True
    for n in (2, 3, 4):
        await js.wait(lambda e, n=n: is_event("publication")(e) and e["data"] == {"n": n})
    offsets = [e["offset"] for e in js.events if e.get("event") == "publication"]
    assert offsets == [1, 2, 3, 4]


def js_sdk_available() -> bool:
    return shutil.which("node") is not None and NODE_MODULES.exists()


class JsClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[Event] = []
        self._seq = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls) -> JsClient:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))
            self._changed.set()

    async def send(self, op: str, **fields: Any) -> int:
        self._seq += 1
        assert self.process.stdin is not None
        self.process.stdin.write(
            json.dumps({"op": op, "seq": self._seq, **fields}).encode() + b"\n"
        )
        await self.process.stdin.drain()
        return self._seq

    async def wait(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """The first event (old or new) matching ``predicate``."""

        async def scan() -> Event:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching event; events so far: {self.events}") from None

    async def call(self, op: str, timeout: float = 10.0, **fields: Any) -> Any:
        seq = await self.send(op, **fields)
        event = await self.wait(
            lambda e: e.get("event") == "result" and e.get("seq") == seq, timeout
        )
        if "error" in event:
            raise JsError(event["error"])
        return event["result"]

    def count(self, event_name: str, **match: Any) -> int:
        return sum(
            1
            for e in self.events
            if e.get("event") == event_name and all(e.get(k) == v for k, v in match.items())
        )

    async def close(self) -> None:
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.send("exit"), 2)
                await asyncio.wait_for(self.process.wait(), 3)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()


class JsError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        self.code = error.get("code")
        super().__init__(f"{self.code} {error.get('message')}")
