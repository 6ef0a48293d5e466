"""Redis Cluster with sharded pub/sub: routing by slot, and following a slot that moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from roomcast.engine import EngineUnavailable, HistoryOptions, Publication, StreamPosition
from roomcast.engine.redis import RedisEngine

from .helpers import eventually
from .redis_servers import RedisCluster, RedisServer
from .test_redis_engine import engines, start  # noqa: F401  (the fixture)

pytestmark = pytest.mark.redis

HISTORY = HistoryOptions(size=100, ttl_seconds=60, meta_ttl_seconds=3600)


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    """A cluster of its own: these tests move slots."""
    with RedisCluster(3) as started:
        yield started


async def publish_until_accepted(engine: RedisEngine, channel: str, data: bytes) -> StreamPosition:
    """A publish that meets a moved slot fails fast (temporary); the retry goes to the owner."""
    deadline = time.monotonic() + 10
    while True:
        try:
            position = await engine.publish(channel, Publication(data), history=HISTORY)
            assert position is not None
            return position
        except EngineUnavailable:
            assert time.monotonic() < deadline, "publishes kept failing after the slot moved"
            await asyncio.sleep(0.05)


async def test_channels_spread_over_every_master(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    engine, events = await start(engines, cluster.urls[0], prefix="spread", cluster=True)
    other, _ = await start(engines, cluster.urls[1], prefix="spread", cluster=True)
    channels = [f"room{i}" for i in range(30)]
    await asyncio.gather(*(engine.subscribe(ch) for ch in channels))
    for ch in channels:
        await other.publish(ch, Publication(b"1"), history=HISTORY)
    await eventually(lambda: len(events.publications) == len(channels))
    streams = []
    for node in cluster.nodes:
        with node.client() as conn:
            streams.append(len(conn.keys("spread.stream.*")))
    assert sum(streams) == len(channels) and min(streams) > 0
    assert engine.metrics_collector.reconnects == 0


async def test_a_moved_slot_is_followed_without_a_gap(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    """Redis drops the SSUBSCRIBE of a slot that leaves a master and answers MOVED to
    commands for it. Subscribers move to the new owner and fill what they missed."""
    subscriber, events = await start(engines, cluster.urls[0], prefix="move", cluster=True)
    publisher, _ = await start(engines, cluster.urls[0], prefix="move", cluster=True)
    await subscriber.subscribe("mover")
    await subscriber.subscribe("stayer")
    for i in (1, 2, 3):
        await publisher.publish("mover", Publication(b"%d" % i), history=HISTORY)
    await eventually(lambda: subscriber.available and events.offsets("mover") == [1, 2, 3])
    slot = key_slot(b"move.ch.{mover}")
    source = cluster.owner(slot)
    target = next(node for node in cluster.nodes if node is not source)
    cluster.move_slot(slot, target)
    positions = [await publish_until_accepted(publisher, "mover", b"%d" % i) for i in (4, 5, 6)]
    assert [p.offset for p in positions] == [4, 5, 6]
    await eventually(lambda: events.offsets("mover") == [1, 2, 3, 4, 5, 6])
    assert events.data("mover") == [b"%d" % i for i in range(1, 7)]
    assert events.insufficient == []
    # the subscriber now reads the channel on its new owner; other channels never moved
    await publisher.publish("mover", Publication(b"7"), history=HISTORY)
    await publisher.publish("stayer", Publication(b"s"), history=HISTORY)
    await eventually(lambda: events.offsets("mover")[-1:] == [7] and events.data("stayer"))
    result = await subscriber.history("mover", history=HISTORY, since=None, limit=-1)
    assert [p.offset for p in result.publications] == list(range(1, 8))
    assert subscriber.metrics_collector.reconnects == 0


async def test_a_subscriber_that_was_away_while_the_slot_moved_catches_up(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    """The slot moves while the subscriber's connection is down: on reconnect it reads
    the new slot map before resubscribing, instead of drawing MOVED from the old owner."""
    subscriber, events = await start(engines, cluster.urls[0], prefix="away", cluster=True)
    publisher, _ = await start(engines, cluster.urls[0], prefix="away", cluster=True)
    await subscriber.subscribe("wanderer")
    await publisher.publish("wanderer", Publication(b"1"), history=HISTORY)
    await eventually(lambda: events.offsets("wanderer") == [1])
    slot = key_slot(b"away.ch.{wanderer}")
    source = cluster.owner(slot)
    target = next(node for node in cluster.nodes if node is not source)
    shard = subscriber._shard("wanderer")
    cluster.move_slot(slot, target)
    for conn in (shard._cmd, shard._pubsub):  # the old owner's connections break
        assert conn is not None
        conn.close()
    for i in (2, 3):
        await publish_until_accepted(publisher, "wanderer", b"%d" % i)
    await eventually(lambda: events.offsets("wanderer") == [1, 2, 3])
    assert events.insufficient == []
    assert subscriber._shard("wanderer") is not shard


def _other_master(cluster: RedisCluster, slot: int) -> RedisServer:
    return next(node for node in cluster.nodes if node is not cluster.owner(slot))


async def test_ask_is_followed_while_a_slot_migrates(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    """The channel's keys have moved, the slot is not handed over yet: ASK, then ASKING."""
    engine, _ = await start(engines, cluster.urls[0], prefix="ask", cluster=True)
    await engine.publish("asked", Publication(b"1"), history=HISTORY)
    slot = key_slot(b"ask.stream.{asked}")
    target = _other_master(cluster, slot)
    source, _ = cluster.begin_migration(slot, target)
    cluster.migrate(source, target, [b"ask.stream.{asked}", b"ask.meta.{asked}"])
    position = await engine.publish("asked", Publication(b"2"), history=HISTORY)
    assert position is not None and position.offset == 2
    assert engine.metrics_collector.redirects["ask"] >= 1
    with source.client() as conn:  # the source answered ASK: it holds none of the keys
        assert conn.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0


async def test_tryagain_then_moved_is_followed(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    """Keys split between the nodes mid-migration: the publish waits (TRYAGAIN) and then
    goes to the new owner (MOVED) instead of failing."""
    engine, _ = await start(engines, cluster.urls[0], prefix="try", cluster=True)
    await engine.publish("split", Publication(b"1"), history=HISTORY)
    slot = key_slot(b"try.stream.{split}")
    target = _other_master(cluster, slot)
    source, target_id = cluster.begin_migration(slot, target)
    cluster.migrate(source, target, [b"try.meta.{split}"])  # the stream stays behind for now
    publishing = asyncio.ensure_future(engine.publish("split", Publication(b"2"), history=HISTORY))
    await eventually(lambda: engine.metrics_collector.redirects["tryagain"] >= 1)
    assert not publishing.done()
    cluster.migrate(source, target, [b"try.stream.{split}"])
    cluster.finish_migration(slot, target_id)
    position = await publishing
    assert position is not None and position.offset == 2


async def test_a_closed_engine_reads_no_slot_map(
    cluster: RedisCluster,
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    """Closing drops subscriptions, and a dropped subscription asks for a slot map
    refresh: after close() none may start or apply, or it could open a shard for a new
    master that nobody closes."""
    engine, _ = await start(engines, cluster.urls[0], prefix="closed", cluster=True)
    await engine.close()
    refresh, slots, shards = engine._refresh_task, engine._slots, list(engine._shards)
    engine._slots_stale()  # as a MOVED reply or a dropped subscription would
    await engine._refresh_slots()  # as a shard's reconnect would
    assert engine._refresh_task is refresh
    assert engine._slots is slots and engine._shards == shards
