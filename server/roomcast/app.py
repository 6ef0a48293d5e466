"""The aiohttp application: WebSocket endpoint, server API, health, readiness, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .admin import setup_admin
from .admission import upgrade_refusal
from .api import make_api_handler
from .client import Client
from .codes import DisconnectCode
from .config import Settings
from .engine import Engine
from .engine.memory import MemoryEngine
from .node import Node
from .origins import OriginPolicy
from .websocket import Flusher, WebSocketTransport

log = logging.getLogger(__name__)

NODE = web.AppKey("node", Node)
CONNECTIONS: web.AppKey[set[Client]] = web.AppKey("connections")
FLUSHER: web.AppKey[list[Flusher]] = web.AppKey("flusher")


def make_engine(settings: Settings) -> Engine:
    if settings.engine.type == "redis":
        from .engine.redis import RedisEngine

        return RedisEngine(settings.engine.redis)
    return MemoryEngine()


def build_app(settings: Settings, engine: Engine | None = None) -> web.Application:
    """An application serving one node; the engine starts and stops with it."""
    app = web.Application(client_max_size=settings.websocket.message_size_limit * 4)
    node = Node(settings, engine or make_engine(settings))
    app[NODE] = node
    connections: set[Client] = set()
    app[CONNECTIONS] = connections
    origins = OriginPolicy(settings.client.allowed_origins)
    ws_settings = settings.websocket
    flusher: list[Flusher] = []
    app[FLUSHER] = flusher

    async def node_lifetime(app: web.Application) -> AsyncIterator[None]:
        await node.start()
        flusher.append(Flusher(node.metrics))
        yield
        for client in list(connections):
            client.disconnect(DisconnectCode.SHUTDOWN)
        await node.close()

    async def websocket(request: web.Request) -> web.StreamResponse:
        refusal = upgrade_refusal(
            node,
            connections,
            origins,
            request.headers.get("Origin"),
            request.host,
            request.headers.get("Sec-WebSocket-Protocol", ""),
        )
        if refusal is not None:
            return web.Response(status=refusal[0], text=refusal[1])
        ws = web.WebSocketResponse(
            max_msg_size=ws_settings.message_size_limit,
            compress=ws_settings.compression,
            autoping=True,
            timeout=ws_settings.close_timeout,
            protocols=("centrifuge-json",),
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="websocket upgrade expected")
        await ws.prepare(request)
        raw = request.transport
        if raw is None:
            return ws
        transport = WebSocketTransport(ws, raw, flusher[0], settings.client.queue_max_size)
        client = Client(node, transport, request.remote or "")
        connections.add(client)
        try:
            await transport.serve(
                client.handle_frame, client.handle_binary, ws_settings.close_timeout
            )
        finally:
            connections.discard(client)
            await client.cleanup()
        return ws

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
    app.router.add_get(ws_settings.handler_prefix, websocket)
    prefix = settings.http_api.handler_prefix.rstrip("/")
    app.router.add_route("*", prefix + "/{method}", make_api_handler(node))
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    setup_admin(app, node)
    return app
