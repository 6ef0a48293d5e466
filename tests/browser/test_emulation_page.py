"""centrifuge-js in Chromium where WebSocket does not get through: the SDK falls back to
HTTP streaming (or uses SSE) and works as usual.

The page comes from another origin than the server (``localhost`` against ``127.0.0.1``;
Playwright answers for the page and the SDK's browser build), one the server's
``allowed_origins`` admits, so the stream and ``/emulation`` go through CORS as they do
for a real site. WebSocket is "blocked" by pointing its endpoint at a port where nothing
listens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PROTOCOL_CONFIG, ServerProcess, free_port, start_server, token

SDK = Path(__file__).resolve().parents[1] / "js" / "node_modules" / "centrifuge" / "dist"
PAGE = """<!doctype html><meta charset="utf-8"><title>emulation</title>
<script src="/sdk/centrifuge.js"></script>
<script>%s</script>"""

#: Runs the steps with a deadline, so a page that never connects fails instead of hanging.
SCENARIO = """async (argument) => {
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), 20000));
  return await Promise.race([late, scenario(argument)]);
}"""

#: The steps, on the page: connect, subscribe, publish, read history.
STEPS = """async function scenario({transports, emulationEndpoint, token, channel}) {
  const client = new Centrifuge(transports, {
    token, emulationEndpoint, minReconnectDelay: 100, maxReconnectDelay: 500,
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
    port = free_port()
    config = {
        **PROTOCOL_CONFIG,
        "client": {**PROTOCOL_CONFIG["client"], "allowed_origins": [page_origin(port)]},
        "http_stream": {"enabled": True},
        "sse": {"enabled": True},
    }
    started = start_server(config, port=port)
    try:
        yield started
    finally:
        started.stop()


def page_origin(port: int) -> str:
    return f"http://localhost:{port}"


def run(browser: Any, server: ServerProcess, transports: list[dict[str, str]], channel: str) -> Any:
    # A page Playwright serves has no address of its own, so Chromium counts it as public
    # and asks before it reaches a loopback server; a real site and server are both public.
    context = browser.new_context(permissions=["local-network-access"])
    try:
        sdk = (SDK / "centrifuge.js").read_text()
        origin = page_origin(server.port)
        context.route(
            f"{origin}/page.html",
            lambda route: route.fulfill(body=PAGE % STEPS, content_type="text/html"),
        )
        context.route(
            f"{origin}/sdk/centrifuge.js",
            lambda route: route.fulfill(body=sdk, content_type="text/javascript"),
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{origin}/page.html")
        argument = {
            "transports": transports,
            "emulationEndpoint": f"{server.http_url}/emulation",
            "token": token("chromium"),
            "channel": channel,
        }
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
