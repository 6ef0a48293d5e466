"""A raw protocol client for tests that check exact frames and close codes."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import aiohttp


class RawClient:
    """Sends commands as frames and reads messages one by one (frames are split on \\n)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self._pending: deque[dict[str, Any]] = deque()
        self.frames: list[str] = []
        self.pings = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, autoping=True, max_msg_size=0, **kwargs)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, *commands: dict[str, Any]) -> None:
        await self.ws.send_str("\n".join(json.dumps(c) for c in commands))

    async def recv(self, timeout: float = 5.0, skip_pings: bool = True) -> dict[str, Any]:
        """Next message; raises ``Closed`` with the close code when the server closes."""
        while True:
            while self._pending:
                message = self._pending.popleft()
                if skip_pings and message == {}:
                    self.pings += 1
                    continue
                return message
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.data)
                for line in msg.data.split("\n"):
                    if line.strip():
                        self._pending.append(json.loads(line))
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                raise Closed(self.ws.close_code, msg.extra if isinstance(msg.extra, str) else "")
            else:
                raise AssertionError(f"unexpected message {msg.type}: {msg.data!r}")

    async def reply(self, cmd_id: int, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the reply to ``cmd_id``, keeping pushes for later ``recv`` calls."""
        kept: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.recv(timeout)
                if message.get("id") == cmd_id:
                    return message
                kept.append(message)
        finally:
            self._pending.extendleft(reversed(kept))

    async def call(self, cmd_id: int, method: str, body: dict[str, Any]) -> dict[str, Any]:
        await self.send({"id": cmd_id, method: body})
        return await self.reply(cmd_id)

    async def connect(self, token: str | None, cmd_id: int = 1) -> dict[str, Any]:
        body = {"name": "test"} if token is None else {"token": token, "name": "test"}
        return await self.call(cmd_id, "connect", body)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return the close code."""
        try:
            while True:
                await self.recv(timeout)
        except Closed as exc:
            return exc.code


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"closed {code} {reason}")
