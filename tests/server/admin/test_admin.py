"""The admin UI's HTTP side on a real server: off by default, login, CSRF, the data shown,
publish and disconnect (the page itself is driven in Chromium by tests/browser)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from roomcast.codes import DisconnectCode
from roomcast.config import ConfigError, load_settings
from tests.processes import PROTOCOL_CONFIG, SECRET, ServerProcess, running_server, token
from tests.wsclient import RawClient

PASSWORD = "admin-password-for-tests"
ADMIN_CONFIG: dict[str, Any] = {**PROTOCOL_CONFIG, "admin": {"enabled": True}}


@pytest.fixture(scope="module")
def admin_server() -> Any:
    with running_server(ADMIN_CONFIG, {"ROOMCAST_ADMIN_PASSWORD": PASSWORD}) as server:
        yield server


class Admin:
    """An admin's browser session: cookie jar plus the CSRF token the login returned."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = session
        self.csrf = ""
        self.origin = server.http_url

    async def login(self, password: str = PASSWORD) -> aiohttp.ClientResponse:
        response = await self.http.post(
            f"{self.origin}/admin/api/login",
            json={"password": password},
            headers={"Origin": self.origin},
        )
        if response.status == 200:
            self.csrf = (await response.json())["csrf"]
        return response

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.origin}/admin/api/{path}", params=params) as r:
            return r.status, await r.json()

    async def post(
        self, path: str, body: Any, *, csrf: str | None = None, origin: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Origin": origin or self.origin}
        token_value = self.csrf if csrf is None else csrf
        if token_value:
            headers["X-CSRF-Token"] = token_value
        async with self.http.post(
            f"{self.origin}/admin/api/{path}", json=body, headers=headers
        ) as r:
            return r.status, await r.json()


@pytest.fixture
async def admin(admin_server: ServerProcess) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Admin(admin_server, session)


def channel() -> str:
    return f"adm{uuid.uuid4().hex[:8]}"


async def test_off_unless_configured() -> None:
    with running_server(PROTOCOL_CONFIG) as server:
        async with aiohttp.ClientSession() as http:
            for path in ("/admin", "/admin/api/state", "/admin/static/admin.js"):
                async with http.get(server.http_url + path) as response:
                    assert response.status == 404, path


def test_the_password_is_required_and_its_own() -> None:
    with pytest.raises(ConfigError, match="at least 12 characters"):
        load_settings(environ={}, overrides={"admin": {"enabled": True, "password": "short"}})
    with pytest.raises(ConfigError, match="must differ"):
        load_settings(
            environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET, "ROOMCAST_ADMIN_PASSWORD": SECRET},
            overrides={"admin": {"enabled": True}},
        )


async def test_the_page_is_served_with_a_strict_policy(admin: Admin) -> None:
    async with admin.http.get(admin.origin + "/admin") as response:
        assert response.status == 200
        assert "Roomcast admin" in await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    async with admin.http.get(admin.origin + "/admin/static/admin.js") as response:
        assert response.status == 200 and response.content_type == "text/javascript"
    async with admin.http.get(admin.origin + "/admin/static/../../config.py") as response:
        assert response.status == 404


async def test_nothing_without_a_session(admin: Admin) -> None:
    assert (await admin.get("state"))[0] == 401
    assert (await admin.get("session"))[0] == 401
    status, _ = await admin.post("publish", {"channel": channel(), "data": {}}, csrf="x")
    assert status == 401
    response = await admin.login("wrong password, clearly")
    assert response.status == 401
    admin.http.cookie_jar.update_cookies({"roomcast_admin": "forged.cookie"})
    assert (await admin.get("state"))[0] == 401


async def test_login_must_be_same_origin_json(admin: Admin) -> None:
    url = f"{admin.origin}/admin/api/login"
    async with admin.http.post(
        url, json={"password": PASSWORD}, headers={"Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
    async with admin.http.post(url, data={"password": PASSWORD}) as response:
        assert response.status == 415
    async with admin.http.post(
        url, data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400


async def test_the_state_shows_connections_channels_and_nodes(admin: Admin) -> None:
    server = admin.server
    ch = channel()
    async with await RawClient.open(server.ws_url) as client:
        connected = await client.connect(token("alice"))
        client_id = connected["connect"]["client"]
        await client.call(2, "subscribe", {"channel": ch})
        server.api("publish", {"channel": ch, "data": {"text": "earlier"}})
        assert (await admin.login()).status == 200

        status, state = await admin.get("state")
        assert status == 200
        assert {"client": client_id, "user": "alice", "channels": [ch]} in state["connections"]
        assert {"channel": ch, "num_clients": 1} in state["channels"]
        [node] = state["nodes"]
        assert node["num_clients"] >= 1 and node["num_subs"] >= 1

        status, detail = await admin.get("channel", name=ch)
        assert status == 200
        assert [(p["user"], p["client"]) for p in detail["presence"]] == [("alice", client_id)]
        assert [p["data"] for p in detail["history"]] == [{"text": "earlier"}]
        assert (await admin.get("channel"))[0] == 400


async def test_publish_needs_the_csrf_token_and_the_same_origin(admin: Admin) -> None:
    ch = channel()
    assert (await admin.login()).status == 200
    async with await RawClient.open(admin.server.ws_url) as client:
        await client.connect(token("bob"))
        await client.call(2, "subscribe", {"channel": ch})
        body = {"channel": ch, "data": {"text": "from admin"}}
        assert (await admin.post("publish", body, csrf="wrong"))[0] == 403
        assert (await admin.post("publish", body, origin="https://evil.example"))[0] == 403
        status, result = await admin.post("publish", body)
        assert status == 200 and result["offset"] == 1
        push = await client.recv()
        while "pub" not in push["push"]:  # join pushes come first on this channel
            push = await client.recv()
        assert push["push"]["pub"]["data"] == {"text": "from admin"}
        status, error = await admin.post("publish", {"channel": ch, "data": None})
        assert status == 400 and error["error"]


async def test_disconnect_a_user_everywhere(admin: Admin) -> None:
    assert (await admin.login()).status == 200
    async with (
        await RawClient.open(admin.server.ws_url) as first,
        await RawClient.open(admin.server.ws_url) as second,
    ):
        await first.connect(token("mallory"))
        await second.connect(token("mallory"))
        status, result = await admin.post("disconnect", {"user": "mallory"})
        assert status == 200 and result == {"user": "mallory"}
        codes = await asyncio.gather(first.closed(), second.closed())
        assert codes == [DisconnectCode.FORCE_DISCONNECT] * 2
    assert (await admin.post("disconnect", {"user": ""}))[0] == 400


async def test_logout_ends_the_session(admin: Admin) -> None:
    assert (await admin.login()).status == 200
    assert (await admin.get("session"))[0] == 200
    assert (await admin.post("logout", {}, csrf="wrong"))[0] == 403
    assert (await admin.post("logout", {}))[0] == 200
    assert (await admin.get("state"))[0] == 401


async def test_failed_logins_are_throttled() -> None:
    with running_server(ADMIN_CONFIG, {"ROOMCAST_ADMIN_PASSWORD": PASSWORD}) as server:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            admin = Admin(server, http)
            statuses = [(await admin.login("not the password")).status for _ in range(6)]
            assert statuses == [401] * 5 + [429]
            assert (await admin.login()).status == 429
