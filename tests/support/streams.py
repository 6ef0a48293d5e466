"""Emulated connections spoken raw over HTTP, for the tests of ``roomcast.stream``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from tests.processes import PROTOCOL_CONFIG, ServerProcess, token

#: The protocol tests' configuration with both emulation transports on.
EMULATION_CONFIG: dict[str, Any] = {
    **PROTOCOL_CONFIG,
    "http_stream": {"enabled": True},
    "sse": {"enabled": True},
}

#: responses of the running test, closed after it whatever happened
_responses: list[aiohttp.ClientResponse] = []


class JsonStream:
    """An open ``/connection/http_stream`` (or SSE) response read one message at a time."""

    def __init__(self, response: aiohttp.ClientResponse, sse: bool = False) -> None:
        self.response = response
        self.sse = sse
        _responses.append(response)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not line:
                raise EOFError("stream ended")
            line = line.strip()
            if self.sse:
                if not line.startswith(b"data: "):
                    continue
                line = line[len(b"data: ") :]
            if line:
                message: dict[str, Any] = orjson.loads(line)
                return message

    async def until(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await self.next(timeout)
            if predicate(message):
                return message

    async def both(self, first: Any, second: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages matching each predicate, whichever order they come in."""
        found: list[dict[str, Any] | None] = [None, None]
        while None in found:
            message = await self.next(timeout)
            for i, predicate in enumerate((first, second)):
                if found[i] is None and predicate(message):
                    found[i] = message
        return [m for m in found if m is not None]

    async def ended(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages left before the stream ends."""
        rest = []
        while True:
            try:
                rest.append(await self.next(timeout))
            except EOFError:
                return rest


@asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session; the streams opened in it are closed at the end, also on failure."""
    async with aiohttp.ClientSession() as session:
        try:
            yield session
        finally:
            for response in _responses:
                response.close()
            _responses.clear()


def track(response: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
    """Close ``response`` with the session's other streams."""
    _responses.append(response)
    return response


def commands(*items: dict[str, Any]) -> str:
    return "\n".join(orjson.dumps(item).decode() for item in items)


async def open_stream(
    http: aiohttp.ClientSession, server: ServerProcess, user: str = "ann"
) -> tuple[JsonStream, dict[str, Any]]:
    response = await http.post(
        f"{server.http_url}/connection/http_stream",
        data=commands({"id": 1, "connect": {"token": token(user)}}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 200
    stream = JsonStream(response)
    connected = await stream.next()
    return stream, connected["connect"]


async def open_sse(
    http: aiohttp.ClientSession, server: ServerProcess, user: str = "ann"
) -> tuple[JsonStream, dict[str, Any]]:
    """An EventSource's stream: its connect command in the URL."""
    connect_command = commands({"id": 1, "connect": {"token": token(user)}})
    response = await http.get(
        f"{server.http_url}/connection/sse", params={"cf_connect": connect_command}
    )
    assert response.status == 200
    stream = JsonStream(response, sse=True)
    connected = await stream.next()
    return stream, connected["connect"]


async def emulate(
    http: aiohttp.ClientSession, url: str, connect: dict[str, Any], *items: dict[str, Any]
) -> int:
    body = {"node": connect["node"], "session": connect["session"], "data": commands(*items)}
    async with http.post(f"{url}/emulation", json=body) as response:
        return response.status
