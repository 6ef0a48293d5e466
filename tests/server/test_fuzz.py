"""Property-based garbage against a live server: it answers or closes, never crashes.

Runs in-process (aiohttp test server) so that any unhandled exception in the server
is caught by the log handler below and fails the test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomcast.app import build_app
from roomcast.config import load_settings
from tests.processes import PROTOCOL_CONFIG, SECRET, token
from tests.support.served import serving

METHODS = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "rpc",
    "refresh",
    "sub_refresh",
    "send",
    "bogus",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.one_of(
            st.sampled_from(["chat", "secret:x", "nope:y", "", "$p"]),
            st.text(max_size=300),
            json_values,
        ),
        "data": json_values,
        "token": st.one_of(st.text(max_size=50), json_values),
        "recover": json_values,
        "offset": json_values,
        "epoch": json_values,
        "limit": json_values,
        "since": json_values,
        "flag": json_values,
    },
)
commands = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(-5, 2**33), json_values)},
    optional={m: st.one_of(requests, json_values) for m in METHODS},
)


class ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live() -> AsyncIterator[tuple[str, ErrorCollector]]:
    collector = ErrorCollector()
    logging.getLogger().addHandler(collector)
    settings_ = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET}, overrides=dict(PROTOCOL_CONFIG)
    )
    async with serving(build_app(settings_)) as server:
        yield server.ws_url, collector
    logging.getLogger().removeHandler(collector)


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(commands, min_size=1, max_size=5))
async def test_garbage_commands_never_crash(
    live: tuple[str, ErrorCollector], batch: list[dict[str, Any]]
) -> None:
    url, collector = live
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token()}}))
        first = await ws.receive(timeout=5)
        assert "connect" in first.data
        await ws.send_str("\n".join(json.dumps(c) for c in batch))
        # A sentinel in its own frame: answered if the connection survived the batch.
        await ws.send_str(json.dumps({"id": 4_000_000_000, "rpc": {"method": "end"}}))
        done = False
        while not done:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            for line in msg.data.split("\n"):
                reply = json.loads(line)
                if "error" in reply:
                    assert reply["error"]["message"] and reply["error"]["code"] != 100
                done = done or reply.get("id") == 4_000_000_000
    assert ws.close_code in (None, 1000, 3004, 3005, 3500, 3501, 3506, 3508, 1009)
    assert not collector.records, [r.getMessage() for r in collector.records]
