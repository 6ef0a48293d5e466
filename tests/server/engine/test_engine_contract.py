"""The engine contract (engine/base.py), one suite run against every engine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from roomcast.config import RedisSettings
from roomcast.engine import ClientInfo, Engine, HistoryOptions, NodeInfo, Publication
from roomcast.engine import StreamPosition as Pos
from roomcast.engine.memory import MemoryEngine
from roomcast.engine.redis import RedisEngine

from .helpers import Recorder, eventually
from .redis_servers import RedisCluster, RedisServer

HISTORY = HistoryOptions(size=10, ttl_seconds=60, meta_ttl_seconds=3600)


@dataclass
class Setup:
    engine: Engine
    events: Recorder
    kind: str


def redis_settings(url: str, **extra: object) -> RedisSettings:
    """Fast checks so tests need not wait; a fresh prefix isolates each test."""
    return RedisSettings.model_validate(
        {
            "address": [url],
            "prefix": f"t{uuid.uuid4().hex[:8]}",
            "health_check_interval": 0.2,
            "position_check_interval": 0.2,
            "reconnect_delay_min": 0.02,
            "reconnect_delay_max": 0.2,
            "io_timeout": 2.0,
            **extra,
        }
    )


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    engine: Engine
    if request.param == "memory":
        engine = MemoryEngine()
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("shared_redis")
        engine = RedisEngine(redis_settings(server.url))
    else:
        cluster: RedisCluster = request.getfixturevalue("shared_redis_cluster")
        engine = RedisEngine(redis_settings(cluster.urls[0], cluster=True))
    events = Recorder()
    await engine.start(events)
    try:
        assert engine.available
        yield Setup(engine, events, request.param)
    finally:
        await engine.close()


def pub(data: bytes = b'{"x":1}', **kwargs: object) -> Publication:
    return Publication(data, **kwargs)  # type: ignore[arg-type]


async def test_publish_without_history_reaches_the_node(setup: Setup) -> None:
    await setup.engine.subscribe("plain")
    position = await setup.engine.publish("plain", pub(b'"hi"'), history=None)
    assert position is None
    await eventually(lambda: setup.events.data("plain") == [b'"hi"'])
    assert setup.events.offsets("plain") == [0]


async def test_offsets_are_gap_free_in_one_epoch(setup: Setup) -> None:
    engine = setup.engine
    await engine.subscribe("c")
    positions = [await engine.publish("c", pub(), history=HISTORY) for _ in range(5)]
    assert [p.offset for p in positions if p] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions if p}) == 1
    await eventually(lambda: setup.events.offsets("c") == [1, 2, 3, 4, 5])
    epoch = positions[0].epoch if positions[0] else ""
    assert {e for ch, _, e in setup.events.publications if ch == "c"} == {epoch}


async def test_concurrent_publishes_arrive_in_offset_order(setup: Setup) -> None:
    engine = setup.engine
    await engine.subscribe("burst")
    await asyncio.gather(*(engine.publish("burst", pub(), history=HISTORY) for _ in range(300)))
    await eventually(lambda: len(setup.events.offsets("burst")) >= 300)
    assert setup.events.offsets("burst") == list(range(1, 301))


async def test_history_since_limit_and_reverse(setup: Setup) -> None:
    engine = setup.engine
    for i in range(6):
        await engine.publish("h", pub(b"%d" % i), history=HISTORY)
    whole = await engine.history("h", history=HISTORY, since=None, limit=-1)
    assert [p.offset for p in whole.publications] == [1, 2, 3, 4, 5, 6]
    assert [p.data for p in whole.publications] == [b"%d" % i for i in range(6)]
    assert whole.position.offset == 6
    epoch = whole.position.epoch
    after = await engine.history("h", history=HISTORY, since=Pos(2, epoch), limit=3)
    assert [p.offset for p in after.publications] == [3, 4, 5]
    back = await engine.history("h", history=HISTORY, since=Pos(4, epoch), limit=-1, reverse=True)
    assert [p.offset for p in back.publications] == [3, 2, 1]
    newest = await engine.history("h", history=HISTORY, since=None, limit=2, reverse=True)
    assert [p.offset for p in newest.publications] == [6, 5]
    only_position = await engine.history("h", history=HISTORY, since=None, limit=0)
    assert only_position.publications == [] and only_position.position == Pos(6, epoch)


async def test_history_keeps_the_last_size_publications(setup: Setup) -> None:
    small = HistoryOptions(size=3, ttl_seconds=60, meta_ttl_seconds=3600)
    for _ in range(5):
        await setup.engine.publish("trim", pub(), history=small)
    result = await setup.engine.history("trim", history=small, since=None, limit=-1)
    assert [p.offset for p in result.publications] == [3, 4, 5]
    assert result.position.offset == 5


async def test_history_expires_but_the_position_survives(setup: Setup) -> None:
    short = HistoryOptions(size=10, ttl_seconds=0.3, meta_ttl_seconds=3600)
    first = await setup.engine.publish("ttl", pub(), history=short)
    assert first is not None
    await asyncio.sleep(0.6)
    result = await setup.engine.history("ttl", history=short, since=None, limit=-1)
    assert result.publications == []
    assert result.position == first


async def test_a_lost_stream_starts_a_new_epoch(setup: Setup) -> None:
    brief = HistoryOptions(size=10, ttl_seconds=0.2, meta_ttl_seconds=0.3)
    first = await setup.engine.publish("meta", pub(), history=brief)
    assert first is not None
    await asyncio.sleep(0.6)
    if isinstance(setup.engine, MemoryEngine):
        setup.engine.sweep()
    again = await setup.engine.publish("meta", pub(), history=brief)
    assert again is not None
    assert again.epoch != first.epoch and again.offset == 1


async def test_position_of_an_empty_channel_is_stable(setup: Setup) -> None:
    one = await setup.engine.history("empty", history=HISTORY, since=None, limit=0)
    two = await setup.engine.history("empty", history=HISTORY, since=None, limit=0)
    assert one.position.offset == 0 and one.position.epoch
    assert one.position == two.position
    published = await setup.engine.publish("empty", pub(), history=HISTORY)
    assert published == Pos(1, one.position.epoch)


async def test_remove_history_keeps_the_position(setup: Setup) -> None:
    for _ in range(3):
        last = await setup.engine.publish("rm", pub(), history=HISTORY)
    await setup.engine.remove_history("rm")
    result = await setup.engine.history("rm", history=HISTORY, since=None, limit=-1)
    assert result.publications == [] and result.position == last
    after = await setup.engine.publish("rm", pub(), history=HISTORY)
    assert after is not None and last is not None and after.offset == last.offset + 1


async def test_idempotent_retry_is_published_once(setup: Setup) -> None:
    engine = setup.engine
    await engine.subscribe("idem")
    first = await engine.publish("idem", pub(), history=HISTORY, idempotency_key="k1")
    retry = await engine.publish("idem", pub(), history=HISTORY, idempotency_key="k1")
    other = await engine.publish("idem", pub(), history=HISTORY, idempotency_key="k2")
    assert first == retry and first is not None and other == Pos(2, first.epoch)
    # A later publication of the channel is the sentinel: a duplicate would come before it.
    last = await engine.publish("idem", pub(), history=HISTORY)
    assert last == Pos(3, first.epoch)
    await eventually(lambda: setup.events.offsets("idem")[-1:] == [3])
    assert setup.events.offsets("idem") == [1, 2, 3]


async def test_publication_fields_survive_the_trip(setup: Setup) -> None:
    engine = setup.engine
    await engine.subscribe("full")
    info = ClientInfo("alice", "c-1", conn_info=b'{"name":"A"}', chan_info=b"[1,2]")
    sent = pub(b'{"text":"x:y:z"}', info=info, tags={"k": "v"})
    await engine.publish("full", sent, history=HISTORY)
    await eventually(lambda: len(setup.events.publications) == 1)
    _, live, _ = setup.events.publications[0]
    stored = (await engine.history("full", history=HISTORY, since=None, limit=-1)).publications[0]
    for got in (live, stored):
        assert got.data == b'{"text":"x:y:z"}'
        assert got.info == info
        assert got.tags == {"k": "v"}
        assert got.offset == 1


async def test_join_leave_and_control_reach_the_node(setup: Setup) -> None:
    engine = setup.engine
    await engine.subscribe("room")
    info = ClientInfo("bob", "c-2")
    await engine.publish_join("room", info)
    await engine.publish_leave("room", info)
    await engine.publish_control(b'{"op":"disconnect","user":"bob"}')
    await eventually(lambda: setup.events.leaves == [("room", "c-2")])
    assert setup.events.joins == [("room", "c-2")]
    await eventually(lambda: setup.events.controls == [b'{"op":"disconnect","user":"bob"}'])


async def test_a_node_message_reaches_that_node_only(setup: Setup) -> None:
    assert await setup.engine.send_to_node(setup.events.uid, b"for you")
    await eventually(lambda: setup.events.node_messages == [b"for you"])
    if setup.kind != "redis-cluster":  # Cluster counts receivers per server: it cannot tell
        assert not await setup.engine.send_to_node("no-such-node", b"lost")
    await asyncio.sleep(0.05)
    assert setup.events.node_messages == [b"for you"]


async def test_presence_add_remove_and_stats(setup: Setup) -> None:
    engine = setup.engine
    a1 = ClientInfo("ann", "c1", conn_info=b'{"n":1}')
    a2 = ClientInfo("ann", "c2")
    b1 = ClientInfo("ben", "c3")
    for info in (a1, a2, b1):
        await engine.add_presence("p", info, 30)
    await engine.add_presence("p", a1, 30)  # a refresh is not a second entry
    assert await engine.presence("p") == {"c1": a1, "c2": a2, "c3": b1}
    assert await engine.presence_stats("p") == (3, 2)
    await engine.remove_presence("p", "c2", "ann")
    assert set(await engine.presence("p")) == {"c1", "c3"}
    assert await engine.presence_stats("p") == (2, 2)
    assert await engine.presence("nobody") == {}


async def test_announced_node_is_listed(setup: Setup) -> None:
    info = NodeInfo("uid-1", "node-a", "1.0", 3, 2, 1, 4, 10, channels={"x": 4})
    await setup.engine.announce(info, 10)
    nodes = await setup.engine.nodes()
    assert [n for n in nodes if n.uid == "uid-1"] == [info]
