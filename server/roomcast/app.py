"""The aiohttp application: WebSocket and emulation endpoints, server API, health, readiness,
metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .admin import setup_admin
from .api import make_api_handler
from .client import Client
from .codes import DisconnectCode
from .config import Settings
from .engine import Engine
from .engine.memory import MemoryEngine
from .node import Node
from .stream.endpoints import add_routes as add_stream_routes
from .ws.outbox import Flusher
from .ws.server import Gateway, upgrade_handler

log = logging.getLogger(__name__)

NODE = web.AppKey("node", Node)
CONNECTIONS: web.AppKey[set[Client]] = web.AppKey("connections")
GATEWAY = web.AppKey("gateway", Gateway)


def make_engine(settings: Settings) -> Engine:
    if settings.engine.type == "redis":
        from .engine.redis import RedisEngine

        return RedisEngine(settings.engine.redis)
    return MemoryEngine(settings.engine.memory.history_max_size)


def build_app(settings: Settings, engine: Engine | None = None) -> web.Application:
    """An application serving one node; the engine starts and stops with it.

    Serve it with ``start_listener``: WebSocket upgrades are answered by the
    ``Gateway`` in front of aiohttp. Served by aiohttp alone (``TestServer``), the
    WebSocket route hands each upgraded socket to the same ``Gateway`` code.
    """
    app = web.Application(client_max_size=settings.websocket.message_size_limit * 4)
    node = Node(settings, engine or make_engine(settings))
    app[NODE] = node
    connections: set[Client] = set()
    app[CONNECTIONS] = connections
    gateway = Gateway(node, connections)
    app[GATEWAY] = gateway

    async def node_lifetime(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        gateway.flusher = Flusher(node.metrics)
        yield
        for client in list(connections):
            client.disconnect(DisconnectCode.SHUTDOWN)
        await node.close()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        body = {
            "ready": node.ready,
            "draining": node.draining,
            "engine": {"type": node.engine.name, "available": node.engine.available},
            "connections": len(connections),
        }
        return web.json_response(body, status=200 if node.ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(node.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.cleanup_ctx.append(node_lifetime)
    app.router.add_get(
        settings.websocket.handler_prefix, upgrade_handler(gateway), allow_head=False
    )
    add_stream_routes(app, node, connections)
    prefix = settings.http_api.handler_prefix.rstrip("/")
    app.router.add_route("*", prefix + "/{method}", make_api_handler(node))
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    setup_admin(app, node)
    return app


class Listener:
    """A served application: the listening socket with the ``Gateway`` in front of aiohttp."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server) -> None:
        self.runner = runner
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        await self.runner.cleanup()


async def start_listener(
    app: web.Application,
    host: str,
    port: int,
    *,
    backlog: int = 100,
    gateway: Gateway | None = None,
    **runner_options: Any,
) -> Listener:
    """Start ``app`` and listen: what production runs, and what in-process tests run.

    ``gateway`` replaces the application's own (the frame-conformance suite's echo).
    """
    runner = web.AppRunner(app, handle_signals=False, **runner_options)
    await runner.setup()
    try:
        front = gateway or app[GATEWAY]
        front.http_protocol = runner.server
        if front.flusher is None:
            front.flusher = app[GATEWAY].flusher
        server = await asyncio.get_running_loop().create_server(
            front, host, port, reuse_address=True, backlog=backlog
        )
    except BaseException:
        await runner.cleanup()
        raise
    return Listener(runner, server)
