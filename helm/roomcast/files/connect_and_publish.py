"""`helm test` client: connect with a token, subscribe, publish through the HTTP API and
wait for the publication to come back over the WebSocket.

Runs inside the Roomcast image (Python, aiohttp and roomcast are there); everything it
needs comes from the environment the test Pod sets.
"""

import asyncio
import json
import os
import secrets
import sys
import time

import aiohttp

from roomcast.tokens import make_token

BASE = os.environ["ROOMCAST_URL"].rstrip("/")
SECRET = os.environ["ROOMCAST_TOKEN_HMAC_SECRET"]
API_KEY = os.environ["ROOMCAST_API_KEY"]
TIMEOUT = float(os.environ.get("ROOMCAST_TEST_TIMEOUT_SECONDS", "30"))


def replies(message: aiohttp.WSMessage) -> list[dict]:
    """The server batches replies and pushes as newline-delimited JSON."""
    if message.type != aiohttp.WSMsgType.TEXT:
        raise RuntimeError(f"unexpected WebSocket message {message.type}: {message.data}")
    return [json.loads(line) for line in message.data.splitlines() if line.strip()]


async def reply_to(ws: aiohttp.ClientWebSocketResponse, command_id: int) -> dict:
    while True:
        for reply in replies(await ws.receive(timeout=TIMEOUT)):
            if reply.get("id") == command_id:
                if "error" in reply:
                    raise RuntimeError(f"command {command_id} failed: {reply['error']}")
                return reply


async def exchange(session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> int:
    user = "helm-test"
    channel = f"helm-test-{secrets.token_hex(4)}"
    now = int(time.time())
    connect_token = make_token(SECRET, {"sub": user, "iat": now, "exp": now + 300})
    sub_token = make_token(SECRET, {"sub": user, "channel": channel, "exp": now + 300})
    payload = {"nonce": secrets.token_hex(8)}
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": connect_token}}))
    connected = await reply_to(ws, 1)
    print(f"connected as {user}, client {connected['connect'].get('client')}")
    await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": channel, "token": sub_token}}))
    await reply_to(ws, 2)
    print(f"subscribed to {channel}")
    async with session.post(
        f"{BASE}/api/publish",
        json={"channel": channel, "data": payload},
        headers={"X-API-Key": API_KEY},
        timeout=aiohttp.ClientTimeout(total=TIMEOUT),
    ) as response:
        body = await response.json()
        if response.status != 200 or "error" in body:
            raise RuntimeError(f"publish failed: {response.status} {body}")
    print("published through the HTTP API")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for reply in replies(await ws.receive(timeout=TIMEOUT)):
            push = reply.get("push", {})
            if push.get("channel") == channel and push.get("pub", {}).get("data") == payload:
                print("received the publication: OK")
                return 0
    print("publication not received", file=sys.stderr)
    return 1


async def main() -> int:
    ws_url = BASE.replace("http", "ws", 1) + "/connection/websocket"
    timeout = aiohttp.ClientWSTimeout(ws_close=5)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, timeout=timeout) as ws,
    ):
        return await exchange(session, ws)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
