"""HTTP handlers of the admin UI (see the package docstring for the security model)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from roomcast.api import ServerApi
from roomcast.codes import ErrorCode, ProtocolError
from roomcast.node import Node

from .sessions import LoginThrottle, Session, SessionSigner

log = logging.getLogger(__name__)

COOKIE = "roomcast_admin"
PREFIX = "/admin"
MAX_CONNECTIONS_LISTED = 500
HISTORY_SHOWN = 20
STATIC = {
    "admin.js": "text/javascript",
    "admin.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    headers = SECURITY_HEADERS
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _same_origin(request: web.Request) -> bool:
    """No Origin (not a browser) or the Origin of this very host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host and origin != "null"


class AdminUI:
    def __init__(self, node: Node) -> None:
        settings = node.settings.admin
        self.node = node
        self.api = ServerApi(node)
        self.signer = SessionSigner(settings.password, settings.session_ttl)
        self.throttle = LoginThrottle()

    def _session(self, request: web.Request) -> Session | None:
        return self.signer.check(request.cookies.get(COOKIE))

    def guarded(self, handler: Callable[[web.Request], Awaitable[Any]], *, write: bool) -> Handler:
        """A logged-in session for reads; for writes also same origin and the CSRF token."""

        async def wrapper(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                return _error(401, "log in first")
            if write and not (
                _same_origin(request)
                and self.signer.csrf_matches(session, request.headers.get("X-CSRF-Token"))
            ):
                return _error(403, "cross-site request refused")
            try:
                return _json(await handler(request))
            except ProtocolError as exc:
                status = 503 if exc.code == ErrorCode.INTERNAL else 400
                return _json({"error": exc.message, "code": int(exc.code)}, status)

        return wrapper

    # Page ---------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._static("index.html", "text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return self._static(name, STATIC[name])

    def _static(self, name: str, content_type: str) -> web.Response:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return web.Response(
            body=body, content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS
        )

    # Session ------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return _error(403, "cross-site login refused")
        if request.content_type != "application/json":
            return _error(415, "send JSON")
        address = request.remote or ""
        if not self.throttle.allowed(address):
            return _error(429, "too many failed logins, wait a minute")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "the body is not JSON")
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or not self.signer.password_matches(password):
            self.throttle.failed(address)
            log.warning("admin login failed", extra={"remote": address})
            return _error(401, "wrong password")
        cookie = self.signer.issue()
        session = self.signer.check(cookie)
        assert session is not None
        response = _json({"csrf": self.signer.csrf_token(session)})
        secure = request.secure or urlsplit(request.headers.get("Origin", "")).scheme == "https"
        response.set_cookie(
            COOKIE,
            cookie,
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=secure,
            max_age=int(self.signer.ttl),
        )
        log.info("admin login", extra={"remote": address})
        return response

    async def session(self, request: web.Request) -> Any:
        session = self._session(request)
        assert session is not None  # guarded
        return {"csrf": self.signer.csrf_token(session), "node": self.node.name}

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None or not self.signer.csrf_matches(
            session, request.headers.get("X-CSRF-Token")
        ):
            return _error(403, "cross-site request refused")
        response = _json({})
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    # Data ---------------------------------------------------------------------------------
    async def state(self, request: web.Request) -> Any:
        """Every node, every channel with its subscriber count, this node's connections."""
        nodes = (await self.api.info({}))["nodes"]
        channels = (await self.api.channels({}))["channels"]
        clients = list(self.node.clients.values())
        connections = [
            {"client": c.id, "user": c.user, "channels": sorted(c.subs)}
            for c in clients[:MAX_CONNECTIONS_LISTED]
        ]
        return {
            "node": {"uid": self.node.uid, "name": self.node.name},
            "nodes": nodes,
            "channels": [
                {"channel": name, "num_clients": info.get("num_clients", 0)}
                for name, info in channels.items()
            ],
            "connections": connections,
            "connections_total": len(clients),
        }

    async def channel(self, request: web.Request) -> Any:
        """Presence and recent history of one channel, each null where the channel has none."""
        name = request.query.get("name", "")
        if not name:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "name is required")
        options = self.node.rules.resolve(name).options
        presence = None
        if options.presence:
            found = (await self.api.presence({"channel": name}))["presence"]
            presence = sorted(found.values(), key=lambda info: (info["user"], info["client"]))
        history = None
        if self.node.history_options(self.node.rules.resolve(name)) is not None:
            result = await self.api.history(
                {"channel": name, "limit": HISTORY_SHOWN, "reverse": True}
            )
            history = result.get("publications", [])
        return {"channel": name, "presence": presence, "history": history}

    async def publish(self, request: web.Request) -> Any:
        body = await _body(request)
        return await self.api.publish({"channel": body.get("channel"), "data": body.get("data")})

    async def disconnect(self, request: web.Request) -> Any:
        body = await _body(request)
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "user is required")
        await self.api.disconnect({"user": user})
        return {"user": user}


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the body must be an object")
    return body


def setup_admin(app: web.Application, node: Node) -> None:
    """Add the admin routes when ``admin.enabled``; otherwise /admin stays a 404."""
    if not node.settings.admin.enabled:
        return
    ui = AdminUI(node)
    router = app.router
    router.add_get(PREFIX, ui.page)
    router.add_get(PREFIX + "/", ui.page)
    router.add_get(PREFIX + "/static/{name}", ui.static)
    router.add_post(PREFIX + "/api/login", ui.login)
    router.add_post(PREFIX + "/api/logout", ui.logout)
    router.add_get(PREFIX + "/api/session", ui.guarded(ui.session, write=False))
    router.add_get(PREFIX + "/api/state", ui.guarded(ui.state, write=False))
    router.add_get(PREFIX + "/api/channel", ui.guarded(ui.channel, write=False))
    router.add_post(PREFIX + "/api/publish", ui.guarded(ui.publish, write=True))
    router.add_post(PREFIX + "/api/disconnect", ui.guarded(ui.disconnect, write=True))
