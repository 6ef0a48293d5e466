"""Subscribe with recovery answers as Centrifugo does, for every epoch, offset and flag.

Each row prepares a channel's stream (fresh; three publications; three then
history removed; three with only two retained; six, more than the recovery limit
of five), subscribes over a real WebSocket to an in-process server, and checks
the whole reply or the error. Every row runs on the memory engine and on a real
redis-server. Rules (Centrifugo's): an empty or absent epoch matches any epoch;
recovered iff the history after the offset starts right after it and reaches
the top (or is empty and the offset is the top); flag 2 turns "not recovered"
into error 112; ``recover`` is ignored unless the subscription is recoverable.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from roomcast.app import NODE
from roomcast.engine import Publication
from roomcast.node import Node
from tests.processes import token
from tests.support.served import Served
from tests.wsclient import RawClient

from .served_engines import ENGINES, served_on

_STREAM = {"history_size": 10, "history_ttl": "300s", "allow_subscribe_for_client": True}
CONFIG: dict[str, Any] = {
    "client": {"recovery_max_publication_limit": 5},
    "channel": {
        "namespaces": [
            {"name": "rec", **_STREAM, "force_recovery": True},
            {"name": "short", **_STREAM, "history_size": 2, "force_recovery": True},
            {"name": "pos", **_STREAM, "force_positioning": True},
            {"name": "ask", **_STREAM, "allow_recovery": True, "allow_positioning": True},
            {"name": "hist", **_STREAM},
            {"name": "plain", "allow_subscribe_for_client": True},
        ]
    },
}

#: What a channel's stream holds before the subscribe: (publications, remove history after).
STATES = {"fresh": (0, False), "three": (3, False), "removed": (3, True), "six": (6, False)}

ABSENT, MATCH, OTHER = object(), object(), "XXXXXXXX"


@dataclass(frozen=True)
class Row:
    """One subscribe and what Centrifugo answers to it."""

    ns: str
    state: str
    recover: bool
    epoch: object  # ABSENT, "", MATCH or OTHER
    offset: int | None  # None: no offset key
    flag2: bool = False
    ask: dict[str, bool] = field(default_factory=dict)  # recoverable / positioned requested
    # Expected: error 112, or the reply's recovered flag, publication offsets, offset.
    error: int | None = None
    recovered: bool = False
    pubs: tuple[int, ...] = ()
    reply_offset: int = 0

    @property
    def id(self) -> str:
        epoch = {id(ABSENT): "absent", id(MATCH): "match"}.get(id(self.epoch), repr(self.epoch))
        parts = [self.ns, self.state, "recover" if self.recover else "plain", f"epoch={epoch}"]
        parts.append(f"offset={self.offset}")
        if self.flag2:
            parts.append("flag2")
        parts.extend(f"ask-{k}" for k in self.ask)
        return "/".join(parts)


def ok(
    ns: str, state: str, epoch: object, offset: int | None, pubs: tuple[int, ...] = ()
) -> list[Row]:
    """A recovered row, with and without flag 2 (which changes nothing when recovered)."""
    return [
        Row(ns, state, True, epoch, offset, flag2, recovered=True, pubs=pubs,
            reply_offset=offset or 0)
        for flag2 in (False, True)
    ]  # fmt: skip


def failed(ns: str, state: str, epoch: object, offset: int | None, *, top: int) -> list[Row]:
    """An unrecovered row: without flag 2 the top position, with it error 112."""
    return [
        Row(ns, state, True, epoch, offset, reply_offset=top),
        Row(ns, state, True, epoch, offset, True, error=112),
    ]


ROWS: list[Row] = [
    # Three publications, all retained: every epoch against every offset.
    *ok("rec", "three", ABSENT, None, (1, 2, 3)),  # JS/Go getState: offset 0, epoch ""
    *ok("rec", "three", ABSENT, 0, (1, 2, 3)),
    *ok("rec", "three", ABSENT, 1, (2, 3)),
    *ok("rec", "three", ABSENT, 3),
    *failed("rec", "three", ABSENT, 4, top=3),
    *ok("rec", "three", "", 0, (1, 2, 3)),  # Python getState: offset 0, epoch ""
    *ok("rec", "three", "", 1, (2, 3)),
    *ok("rec", "three", "", 3),
    *failed("rec", "three", "", 4, top=3),
    *ok("rec", "three", MATCH, 0, (1, 2, 3)),
    *ok("rec", "three", MATCH, 1, (2, 3)),
    *ok("rec", "three", MATCH, 3),
    *failed("rec", "three", MATCH, 4, top=3),
    *failed("rec", "three", OTHER, 0, top=3),
    *failed("rec", "three", OTHER, 1, top=3),
    *failed("rec", "three", OTHER, 3, top=3),
    *failed("rec", "three", OTHER, 4, top=3),
    *failed("rec", "three", "_", 0, top=3),  # the SDKs' "state invalidated" sentinel
    # A fresh channel: offset 0 is its top, so recovery succeeds with nothing to send.
    *ok("rec", "fresh", ABSENT, None),
    *ok("rec", "fresh", "", 0),
    *ok("rec", "fresh", MATCH, 0),
    *failed("rec", "fresh", OTHER, 0, top=0),
    *failed("rec", "fresh", "", 1, top=0),
    *failed("rec", "fresh", MATCH, 1, top=0),
    # History removed, position kept: only a client already at the top is recovered.
    *failed("rec", "removed", "", 0, top=3),
    *failed("rec", "removed", MATCH, 1, top=3),
    *ok("rec", "removed", "", 3),
    *ok("rec", "removed", MATCH, 3),
    # Only publications 2 and 3 retained: from offset 0 there is a hole.
    *failed("short", "three", "", 0, top=3),
    *failed("short", "three", MATCH, 0, top=3),
    *ok("short", "three", "", 1, (2, 3)),
    *ok("short", "three", MATCH, 1, (2, 3)),
    # Six publications, recovery limit five: the cut-off tail is not a recovery.
    *failed("rec", "six", "", 0, top=6),
    *ok("rec", "six", "", 1, (2, 3, 4, 5, 6)),
    # No recover flag: never recovered, never 112, whatever the position says.
    Row("rec", "three", False, "", 0, reply_offset=3),
    Row("rec", "three", False, OTHER, 1, flag2=True, reply_offset=3),
    Row("rec", "fresh", False, ABSENT, None, flag2=True, reply_offset=0),
    # Positioned but not recoverable: recover is ignored (no recovered, no 112).
    Row("pos", "three", True, "", 0, reply_offset=3),
    Row("pos", "three", True, OTHER, 1, flag2=True, reply_offset=3),
    Row("pos", "three", False, ABSENT, None, reply_offset=3),
    # Recovery and positioning only when the client asks and the namespace allows.
    Row("ask", "three", True, "", 0, ask={"recoverable": True}, recovered=True, pubs=(1, 2, 3)),
    Row("ask", "three", True, OTHER, 1, True, ask={"recoverable": True}, error=112),
    Row("ask", "three", True, "", 0, True, ask={"positioned": True}, reply_offset=3),
    Row("ask", "three", True, "", 0, True),
    # A stream the subscription does not use, and no stream at all: only was_recovering.
    Row("hist", "three", True, "", 0, True),
    Row("plain", "fresh", True, "", 0, True),
]


def expected_reply(row: Row, epoch: str) -> dict[str, Any]:
    """Centrifugo's subscribe result for a row that is not an error."""
    recoverable = row.ns in ("rec", "short") or row.ask.get("recoverable", False)
    positioned = recoverable or row.ns == "pos" or row.ask.get("positioned", False)
    reply: dict[str, Any] = {}
    if recoverable:
        reply["recoverable"] = True
    if positioned:
        reply["epoch"] = epoch
    if row.pubs:
        reply["publications"] = [{"data": {"n": n}, "offset": n} for n in row.pubs]
    if row.recovered:
        reply["recovered"] = True
    if positioned:
        reply["offset"] = row.reply_offset
        reply["positioned"] = True
    if row.recover:
        reply["was_recovering"] = True
    return reply


@pytest.fixture(params=ENGINES)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async with served_on(request, CONFIG) as server:
        yield server


async def prepare(node: Node, channel: str, state: str) -> str:
    """Publish and trim as the state says; return the stream's epoch ("" without history)."""
    count, remove = STATES[state]
    info = node.rules.resolve(channel)
    for n in range(1, count + 1):
        await node.publish(channel, info, Publication(json.dumps({"n": n}).encode()), source="api")
    history = node.history_options(info)
    if history is None:
        return ""
    if remove:
        await node.engine.remove_history(channel)
    position = await node.engine.history(channel, history=history, since=None, limit=0)
    return position.position.epoch


def subscribe_body(row: Row, channel: str, epoch: str) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": channel, "flag": 3 if row.flag2 else 1, **row.ask}
    if row.recover:
        body["recover"] = True
    if row.offset is not None:
        body["offset"] = row.offset
    if row.epoch is MATCH:
        body["epoch"] = epoch
    elif row.epoch is not ABSENT:
        body["epoch"] = row.epoch
    return body


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_subscribe_recovery(served: Served, row: Row) -> None:
    node = served.app[NODE]
    channel = f"{row.ns}:{uuid.uuid4().hex[:8]}"
    epoch = await prepare(node, channel, row.state)
    async with await RawClient.open(served.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "subscribe", subscribe_body(row, channel, epoch))
        if row.error is not None:
            assert reply["error"] == {"code": row.error, "message": "unrecoverable position"}
            # The subscription was not made: a plain retry from the top succeeds.
            retry = await c.call(3, "subscribe", {"channel": channel})
            assert "error" not in retry
        else:
            assert reply == {"id": 2, "subscribe": expected_reply(row, epoch)}


@pytest.mark.parametrize("epoch", [ABSENT, ""], ids=["absent", "empty"])
async def test_server_side_subscription_recovers_without_epoch(
    served: Served, epoch: object
) -> None:
    """The connect ``subs`` map (server-side subscriptions) follows the same rule."""
    node = served.app[NODE]
    channel = f"rec:{uuid.uuid4().hex[:8]}"
    current = await prepare(node, channel, "three")
    position: dict[str, Any] = {"recover": True, "offset": 1}
    if epoch is not ABSENT:
        position["epoch"] = epoch
    async with await RawClient.open(served.ws_url) as c:
        reply = await c.call(
            1, "connect", {"token": token(channels=[channel]), "subs": {channel: position}}
        )
        assert reply["connect"]["subs"][channel] == {
            "recoverable": True,
            "epoch": current,
            "publications": [{"data": {"n": 2}, "offset": 2}, {"data": {"n": 3}, "offset": 3}],
            "recovered": True,
            "offset": 1,
            "positioned": True,
            "was_recovering": True,
        }
