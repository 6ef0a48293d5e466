"""centrifuge-js in Chromium where WebSocket does not get through: the SDK falls back to
HTTP streaming (or uses SSE) and works as usual.

The page is served at the server's own origin (Playwright answers for the page and the
SDK's browser build), so its requests to the stream and ``/emulation`` are same-origin.
WebSocket is "blocked" by pointing its endpoint at a port where nothing listens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PROTOCOL_CONFIG, ServerProcess, free_port, running_server, token

SDK = Path(__file__).resolve().parents[1] / "js" / "node_modules" / "centrifuge" / "dist"
PAGE = """<!doctype html><meta charset="utf-8"><title>emulation</title>
<script src="/sdk/centrifuge.js"></script>"""

#: Connects, subscribes, publishes and reads history; resolves with what it saw.
SCENARIO = """async ({transports, token, channel}) => {
  const client = new Centrifuge(transports, {
    token, emulationEndpoint: '/emulation', minReconnectDelay: 100, maxReconnectDelay: 500,
  });
  const connected = new Promise((resolve) => client.on('connected', resolve));
  const sub = client.newSubscription(channel);
  const published = new Promise((resolve) => sub.on('publication', resolve));
  const subscribed = new Promise((resolve) => sub.on('subscribed', resolve));
  sub.subscribe();
  client.connect();
  const ctx = await connected;
  await subscribed;
  await sub.publish({text: 'from chromium'});
  const pub = await published;
  const history = await sub.history({limit: 10});
  client.disconnect();
  return {transport: ctx.transport, data: pub.data, history: history.publications.length};
}"""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    config = {**PROTOCOL_CONFIG, "http_stream": {"enabled": True}, "sse": {"enabled": True}}
    with running_server(config) as started:
        yield started


def run(browser: Any, server: ServerProcess, transports: list[dict[str, str]], channel: str) -> Any:
    context = browser.new_context()
    try:
        sdk = (SDK / "centrifuge.js").read_text()
        context.route(
            f"{server.http_url}/page.html",
            lambda route: route.fulfill(body=PAGE, content_type="text/html"),
        )
        context.route(
            f"{server.http_url}/sdk/centrifuge.js",
            lambda route: route.fulfill(body=sdk, content_type="text/javascript"),
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{server.http_url}/page.html")
        argument = {"transports": transports, "token": token("chromium"), "channel": channel}
        return page.evaluate(SCENARIO, argument)
    finally:
        context.close()


def test_falls_back_to_http_streaming_when_websocket_is_blocked(
    browser: Any, server: ServerProcess
) -> None:
    blocked = f"ws://127.0.0.1:{free_port()}/connection/websocket"
    transports = [
        {"transport": "websocket", "endpoint": blocked},
        {"transport": "http_stream", "endpoint": f"{server.http_url}/connection/http_stream"},
        {"transport": "sse", "endpoint": f"{server.http_url}/connection/sse"},
    ]
    seen = run(browser, server, transports, "fallback")
    assert seen == {"transport": "http_stream", "data": {"text": "from chromium"}, "history": 1}


def test_sse_in_chromium(browser: Any, server: ServerProcess) -> None:
    transports = [
        {"transport": "sse", "endpoint": f"{server.http_url}/connection/sse"},
        {"transport": "http_stream", "endpoint": f"{server.http_url}/connection/http_stream"},
    ]
    seen = run(browser, server, transports, "sse")
    assert seen == {"transport": "sse", "data": {"text": "from chromium"}, "history": 1}
