"""An application served in-process exactly as ``roomcast serve`` serves it.

``start_listener`` puts the listening socket's ``Gateway`` in front of aiohttp, as in
production, so in-process tests run the WebSocket code clients meet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from roomcast.app import Listener, start_listener


class Served:
    """URLs of a served application."""

    def __init__(self, listener: Listener, ws_path: str = "/connection/websocket") -> None:
        self.listener = listener
        self.app = listener.runner.app
        self.port = listener.port
        self.ws_url = f"ws://127.0.0.1:{self.port}{ws_path}"
        self.http_url = f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Served]:
    """Serve ``app`` on a free port of 127.0.0.1 until the block ends, also on failure."""
    listener = await start_listener(app, "127.0.0.1", 0)
    try:
        yield Served(listener)
    finally:
        await listener.close()
