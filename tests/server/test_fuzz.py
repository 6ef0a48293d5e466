"""Property-based garbage against a live server: it answers or closes, never crashes.

Every client command and every server API method gets requests made of every field
the server reads, with values of any type: nested past the JSON encoder's depth,
numeric strings of foreign digits or thousands of digits, huge integers. The
server runs in-process (as ``roomcast serve`` runs it) so that an ERROR log line
anywhere fails the test, and so does an answer with code 100 (a server fault)
to input that is the client's fault. Examples are bounded to keep ``make test`` fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomcast.app import build_app
from roomcast.config import load_settings
from tests.processes import API_KEY, PROTOCOL_CONFIG, SECRET, token
from tests.support.served import Served, serving

#: Client command -> the fields its handler reads.
CLIENT_FIELDS = {
    "connect": ["token", "data", "subs", "name", "version"],
    "subscribe": [
        "channel",
        "token",
        "recover",
        "offset",
        "epoch",
        "positioned",
        "recoverable",
        "join_leave",
        "flag",
        "type",
        "tf",
        "data",
    ],
    "unsubscribe": ["channel"],
    "publish": ["channel", "data"],
    "presence": ["channel"],
    "presence_stats": ["channel"],
    "history": ["channel", "limit", "since", "reverse"],
    "rpc": ["method", "data"],
    "refresh": ["token"],
    "sub_refresh": ["channel", "token"],
    "send": ["data"],
    "bogus": ["channel"],
}

#: Server API method -> the fields it reads.
API_FIELDS = {
    "publish": ["channel", "data", "b64data", "tags", "skip_history", "idempotency_key"],
    "broadcast": ["channels", "data", "b64data", "tags", "skip_history", "idempotency_key"],
    "subscribe": ["user", "channel", "client", "data", "info", "override", "recover_since"],
    "unsubscribe": ["user", "channel", "client"],
    "disconnect": ["user", "client", "whitelist", "disconnect"],
    "refresh": ["user", "client", "expired", "expire_at", "info"],
    "presence": ["channel"],
    "presence_stats": ["channel"],
    "history": ["channel", "limit", "since", "reverse"],
    "history_remove": ["channel"],
    "channels": ["pattern"],
    "info": [],
    "rpc": ["method", "data"],
    "batch": ["commands"],
}


def nested(depth: int) -> Any:
    value: Any = {"x": 1}
    for _ in range(depth):
        value = [value]
    return value


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
#: Values that broke servers like this one: foreign digits, huge numbers, deep nesting.
hostile = st.sampled_from(
    [
        "²",
        "١٢",
        "9" * 5000,
        2**70,
        -1,
        "",
        nested(300),
        {"offset": "²", "epoch": "e"},
        {"offset": "9" * 5000},
        {"offset": -5, "epoch": 1},
        {"code": "3000", "reason": 5},
        {"code": 3000, "reason": "x" * 200},
        {"presence": {"value": "yes"}},
        {"chat": {"recover": "yes", "offset": "²"}},
        ["chat", 5, None],
        [{"publish": {"channel": "chat", "data": nested(300)}}],
    ]
)
#: Values a handler accepts, so requests get past their first check to the later ones.
plausible = {
    "channel": st.sampled_from(["chat", "open:x", "secret:x", "nope:y"]),
    "channels": st.lists(st.sampled_from(["chat", "open:x", "nope:y"]), min_size=1, max_size=3),
    "user": st.just("42"),
    "data": st.sampled_from([{"text": "hi"}, 1, "s"]),
    "subs": st.just({"chat": {"recover": True, "offset": 1, "epoch": "e"}}),
    "limit": st.integers(-1, 20),
}


def requests(fields: list[str]) -> st.SearchStrategy[Any]:
    """Objects made of the fields a method reads (any values), or any JSON at all."""
    values = {
        name: st.one_of(plausible.get(name, st.nothing()), hostile, json_values) for name in fields
    }
    return st.one_of(st.fixed_dictionaries({}, optional=values), json_values)


def aimed(fields: list[str], target: str) -> st.SearchStrategy[dict[str, Any]]:
    """A request whose ``target`` field is garbage and whose other fields would pass."""
    base = {name: plausible[name] for name in fields if name in plausible and name != target}
    return st.fixed_dictionaries({**base, target: st.one_of(hostile, json_values)})


client_commands = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(-5, 2**33), json_values)},
    optional={method: requests(fields) for method, fields in CLIENT_FIELDS.items()},
)
CLIENT_TARGETS = [(m, f) for m, fields in CLIENT_FIELDS.items() for f in fields]
API_TARGETS = [(m, f) for m, fields in API_FIELDS.items() for f in fields] + [("info", "")]


class ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @contextlib.contextmanager
    def nothing_logged(self) -> Iterator[None]:
        """Fail if the block logs an ERROR line (each example answers for its own)."""
        self.records.clear()
        yield
        assert not self.records, [r.getMessage() for r in self.records]


def per_field(targets: list[tuple[str, str]], examples: int) -> Callable[[Any], Any]:
    """Run the test for each (method, field) with ``examples`` drawn requests."""

    def wrap(test: Any) -> Any:
        test = given(data=st.data())(test)
        test = settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck)
        )(test)
        test = pytest.mark.parametrize(("method", "field"), targets)(test)
        return pytest.mark.asyncio(loop_scope="module")(test)

    return wrap


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live() -> AsyncIterator[tuple[Served, ErrorCollector]]:
    collector = ErrorCollector()
    logging.getLogger().addHandler(collector)
    settings_ = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        overrides={
            **PROTOCOL_CONFIG,
            "http_api": {"key": API_KEY},
            "http_stream": {"enabled": True},
        },
    )
    try:
        async with serving(build_app(settings_)) as server:
            yield server, collector
    finally:
        logging.getLogger().removeHandler(collector)


def server_faults(answer: Any) -> list[Any]:
    """Every error object with code 100 anywhere in an answer."""
    found: list[Any] = []
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and error.get("code") == 100:
            found.append(error)
        for value in answer.values():
            found += server_faults(value)
    elif isinstance(answer, list):
        for value in answer:
            found += server_faults(value)
    return found


async def _send_commands(server: Served, batch: list[dict[str, Any]]) -> None:
    """Connect, send ``batch`` in one frame, then a sentinel; every answer is checked."""
    async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
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
                    assert reply["error"]["message"]
                assert not server_faults(reply), reply
                done = done or reply.get("id") == 4_000_000_000
    assert ws.close_code in (None, 1000, 3005, 3500, 3501, 3506, 3508, 1009)


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(client_commands, min_size=1, max_size=5))
async def test_garbage_commands_never_crash(
    live: tuple[Served, ErrorCollector], batch: list[dict[str, Any]]
) -> None:
    server, collector = live
    with collector.nothing_logged():
        await _send_commands(server, batch)


@per_field(CLIENT_TARGETS, examples=8)
async def test_garbage_in_each_command_field_never_crashes(
    live: tuple[Served, ErrorCollector], method: str, field: str, data: st.DataObject
) -> None:
    server, collector = live
    request = data.draw(aimed(CLIENT_FIELDS[method], field))
    with collector.nothing_logged():
        await _send_commands(server, [{"id": 2, method: request}])


async def _call_api(server: Served, method: str, body: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url}/api/{method}",
            data=json.dumps(body),
            headers={"X-API-Key": API_KEY},
        ) as response,
    ):
        status = response.status
        text = await response.text()
    assert status in (200, 400), (status, text)
    if status == 200:
        assert not server_faults(json.loads(text)), text


@per_field(API_TARGETS, examples=12)
async def test_garbage_in_each_api_field_never_crashes(
    live: tuple[Served, ErrorCollector], method: str, field: str, data: st.DataObject
) -> None:
    server, collector = live
    fields = API_FIELDS[method]
    body = data.draw(aimed(fields, field) if field else requests(fields))
    if method == "batch":  # garbage inside a command of the batch, too
        inner = data.draw(st.sampled_from(sorted(set(API_FIELDS) - {"batch"})))
        target = data.draw(st.sampled_from(API_FIELDS[inner] or [""]))
        command = data.draw(aimed(API_FIELDS[inner], target) if target else requests([]))
        body = {"commands": [{inner: command}, body.get("commands")]}
    with collector.nothing_logged():
        await _call_api(server, method, body)


emulation_fields = {
    "node": st.one_of(st.just("this"), hostile, json_values),
    "session": st.one_of(st.just("this"), hostile, json_values),
    "data": st.one_of(st.just('{"id":2,"presence":{}}'), hostile, json_values),
}


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.fixed_dictionaries({}, optional=emulation_fields), json_values, st.binary(max_size=64)
    ),
    protobuf_type=st.booleans(),
)
async def test_garbage_emulation_requests_get_a_status(
    live: tuple[Served, ErrorCollector], body: Any, protobuf_type: bool
) -> None:
    """``/emulation`` answers garbage with a client-error status, for a live session too."""
    server, collector = live
    content_type = "application/octet-stream" if protobuf_type else "application/json"
    with collector.nothing_logged():
        async with aiohttp.ClientSession() as session:
            stream = await session.post(
                f"{server.http_url}/connection/http_stream",
                data=json.dumps({"id": 1, "connect": {"token": token()}}),
                headers={"Content-Type": "application/json"},
            )
            connect = json.loads(await stream.content.readline())["connect"]
            if isinstance(body, dict):  # "this": the live stream's own node or session
                body = {k: connect[k] if v == "this" else v for k, v in body.items()}
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            async with session.post(
                f"{server.http_url}/emulation", data=raw, headers={"Content-Type": content_type}
            ) as response:
                assert response.status in (204, 400, 404), response.status
                if response.status != 204:
                    assert (await response.json())["error"]
            stream.close()


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(client_commands, min_size=1, max_size=5))
async def test_garbage_commands_over_http_streaming_never_crash(
    live: tuple[Served, ErrorCollector], batch: list[dict[str, Any]]
) -> None:
    """The WebSocket garbage, posted to ``/emulation``: answers or a disconnect push."""
    server, collector = live
    with collector.nothing_logged():
        async with aiohttp.ClientSession() as session:
            stream = await session.post(
                f"{server.http_url}/connection/http_stream",
                data=json.dumps({"id": 1, "connect": {"token": token()}}),
                headers={"Content-Type": "application/json"},
            )
            connect = json.loads(await stream.content.readline())["connect"]
            sentinel = json.dumps({"id": 4_000_000_000, "rpc": {"method": "end"}})
            for data in ("\n".join(json.dumps(c) for c in batch), sentinel):
                body = {"node": connect["node"], "session": connect["session"], "data": data}
                async with session.post(f"{server.http_url}/emulation", json=body) as response:
                    assert response.status in (204, 404)  # 404: the batch closed the session
            last: dict[str, Any] = {}
            while last.get("id") != 4_000_000_000:
                line = await asyncio.wait_for(stream.content.readline(), 5)
                if not line:
                    assert last["push"]["disconnect"]["code"] in (3005, 3500, 3501, 3506, 3508)
                    break
                if line.strip():
                    last = json.loads(line)
                    assert not server_faults(last), last
            stream.close()
