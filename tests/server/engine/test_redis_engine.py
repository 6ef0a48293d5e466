"""What only the Redis engine has to do: holes, outages, TTLs by Redis time, shards, Sentinel."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from roomcast.app import NODE, build_app
from roomcast.config import load_settings
from roomcast.engine import ClientInfo, EngineUnavailable, HistoryOptions, NodeInfo, Publication
from roomcast.engine.redis import RedisEngine, jump_hash
from roomcast.engine.redis_codec import decode_timed_message, encode_body
from roomcast.engine.redis_protocol import RedisAddress, open_connection
from roomcast.engine.redis_scripts import ADD_MEMBER, PUBLISH
from roomcast.engine.redis_shard import RedisKeys
from tests.processes import PROTOCOL_CONFIG, SECRET, ServerProcess, start_server
from tests.support.rawws import RawSocket
from tests.support.served import serving
from tests.support.tokens import token
from tests.wsclient import RawClient

from .helpers import Recorder, eventually
from .redis_servers import RedisServer, Sentinel, redis_servers
from .test_engine_contract import redis_settings
from .test_redis_codec import released_decode

pytestmark = pytest.mark.redis

HISTORY = HistoryOptions(size=100, ttl_seconds=60, meta_ttl_seconds=3600)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def engines() -> AsyncIterator[list[RedisEngine]]:
    started: list[RedisEngine] = []
    yield started
    await asyncio.gather(*(engine.close() for engine in started))


async def start(
    engines: list[RedisEngine], url: str | list[str], prefix: str = "", **extra: object
) -> tuple[RedisEngine, Recorder]:
    settings = redis_settings(url if isinstance(url, str) else url[0], **extra)
    updates: dict[str, object] = {}
    if prefix:
        updates["prefix"] = prefix
    if isinstance(url, list):
        updates["address"] = url
    engine = RedisEngine(settings.model_copy(update=updates))
    events = Recorder()
    await engine.start(events)
    engines.append(engine)
    return engine, events


def publish_silently(server: RedisServer, engine: RedisEngine, channel: str, n: int) -> None:
    """Append publications to the stream without telling anyone: a lost pub/sub message."""
    keys = RedisKeys(engine._settings.prefix)
    with server.client() as conn:
        for _ in range(n):
            conn.eval(
                PUBLISH.source, 2, keys.stream(channel), keys.meta(channel),
                encode_body(Publication(b'"lost"')), "nobody.listens", HISTORY.size,
                60_000, 3_600_000, "unused", "PUBLISH", 1000, "",
            )  # fmt: skip


async def test_two_nodes_share_publications_and_history(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    a, a_events = await start(engines, redis_server.url, prefix="shared")
    b, b_events = await start(engines, redis_server.url, prefix="shared")
    await b.subscribe("news")
    position = await a.publish("news", Publication(b"1"), history=HISTORY)
    await eventually(lambda: b_events.offsets("news") == [1])
    assert a_events.offsets("news") == []  # a never subscribed
    result = await b.history("news", history=HISTORY, since=None, limit=-1)
    assert result.position == position
    await b.unsubscribe("news")
    await b.subscribe("sentinel")
    await a.publish("news", Publication(b"2"), history=HISTORY)
    await a.publish("sentinel", Publication(b"end"), history=HISTORY)
    # One Redis delivers in publish order: once the sentinel is here, "news" 2 would be too.
    await eventually(lambda: b_events.offsets("sentinel") == [1])
    assert b_events.offsets("news") == [1]


async def test_unix_socket_url(tmp_path: Path, engines: list[RedisEngine]) -> None:
    """A Redis reached by a Unix socket (a sidecar, or Redis on the same host)."""
    socket_path = tmp_path / "redis.sock"
    with RedisServer("--unixsocket", str(socket_path), "--unixsocketperm", "700") as server:
        url = f"unix://{socket_path}?db=3"
        a, _ = await start(engines, url, prefix="unix")
        b, b_events = await start(engines, url, prefix="unix")
        await b.subscribe("news")
        position = await a.publish("news", Publication(b"1"), history=HISTORY)
        await eventually(lambda: b_events.offsets("news") == [1])
        assert (await b.history("news", history=HISTORY, since=None, limit=-1)).position == position
        with redis.Redis(unix_socket_path=str(socket_path), db=3) as conn:
            assert conn.dbsize() > 0  # the URL's database, not 0
        with server.client() as conn:
            assert conn.dbsize() == 0


async def test_a_hole_is_filled_from_the_stream_in_order(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    engine, events = await start(engines, redis_server.url, position_check_interval=60)
    await engine.subscribe("c")
    await engine.publish("c", Publication(b"1"), history=HISTORY)
    publish_silently(redis_server, engine, "c", 3)
    await engine.publish("c", Publication(b"5"), history=HISTORY)
    await eventually(lambda: events.offsets("c") == [1, 2, 3, 4, 5])
    assert events.data("c") == [b"1", b'"lost"', b'"lost"', b'"lost"', b"5"]
    assert engine.metrics_collector.holes_filled == 1
    assert events.insufficient == []


async def test_a_lost_tail_is_found_by_the_position_check(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    engine, events = await start(engines, redis_server.url)
    await engine.subscribe("tail")
    await engine.publish("tail", Publication(b"1"), history=HISTORY)
    publish_silently(redis_server, engine, "tail", 2)
    await eventually(lambda: events.offsets("tail") == [1, 2, 3])
    assert events.insufficient == []


async def test_a_hole_beyond_the_stream_is_reported(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    engine, events = await start(engines, redis_server.url, position_check_interval=60)
    small = HistoryOptions(size=2, ttl_seconds=60, meta_ttl_seconds=3600)
    await engine.subscribe("s")
    await engine.publish("s", Publication(b"1"), history=small)
    publish_silently(redis_server, engine, "s", 5)  # the stream keeps only 2 of them
    await engine.publish("s", Publication(b"7"), history=small)
    await eventually(lambda: events.insufficient == ["s"])
    await eventually(lambda: events.offsets("s") == [1, 7])


async def test_presence_expires_by_redis_time(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    engine, _ = await start(engines, redis_server.url)
    await engine.add_presence("p", ClientInfo("u", "gone"), 0.3)
    await engine.add_presence("p", ClientInfo("u", "stays"), 30)
    assert set(await engine.presence("p")) == {"gone", "stays"}
    await asyncio.sleep(0.5)
    assert set(await engine.presence("p")) == {"stays"}
    assert await engine.presence_stats("p") == (1, 1)


async def test_outage_fails_fast_then_resubscribes_and_catches_up(
    engines: list[RedisEngine],
) -> None:
    # Persistence on (AOF, fsync always): what was acknowledged survives the restart.
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        engine, events = await start(engines, server.url, prefix="outage")
        other, _ = await start(engines, server.url, prefix="outage")
        await engine.subscribe("c")
        first = await engine.publish("c", Publication(b"1"), history=HISTORY)
        await eventually(lambda: events.offsets("c") == [1])
        server.kill()
        await eventually(lambda: not engine.available)
        started = time.monotonic()
        with pytest.raises(EngineUnavailable):
            await engine.publish("c", Publication(b"x"), history=HISTORY)
        assert time.monotonic() - started < 0.1
        server.start()
        await eventually(lambda: engine.available and other.available)
        # Published while this node was still reconnecting: delivered, via pub/sub or the stream.
        second = await other.publish("c", Publication(b"2"), history=HISTORY)
        assert first is not None and second is not None and second.epoch == first.epoch
        await engine.publish("c", Publication(b"3"), history=HISTORY)
        await eventually(lambda: events.offsets("c") == [1, 2, 3])
        assert events.insufficient == []
        assert engine.metrics_collector.reconnects >= 1


async def test_data_loss_gives_a_new_epoch_and_insufficient_state(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    engine, events = await start(engines, redis_server.url)
    await engine.subscribe("c")
    before = await engine.publish("c", Publication(b"1"), history=HISTORY)
    with redis_server.client() as conn:
        conn.flushall()
    await eventually(lambda: events.insufficient == ["c"])
    after = await engine.publish("c", Publication(b"2"), history=HISTORY)
    assert before is not None and after is not None
    assert after.epoch != before.epoch and after.offset == 1
    await eventually(lambda: [e for _, _, e in events.publications] == [before.epoch, after.epoch])


async def test_channels_are_sharded_over_several_redis(engines: list[RedisEngine]) -> None:
    with redis_servers(2) as servers:
        urls = [s.url for s in servers]
        engine, events = await start(engines, urls, prefix="sharded")
        other, _ = await start(engines, urls, prefix="sharded")
        channels = [f"ch{i}" for i in range(20)]
        for channel in channels:
            await engine.subscribe(channel)
        for channel in channels:
            await other.publish(channel, Publication(b"1"), history=HISTORY)
        await eventually(lambda: len(events.publications) == len(channels))
        per_server = []
        for server in servers:
            with server.client() as conn:
                per_server.append(len(conn.keys("sharded.stream.*")))
        assert sum(per_server) == len(channels) and min(per_server) > 0
        info = ClientInfo("u", "c")
        for channel in channels[:4]:
            await other.add_presence(channel, info, 30)
            assert set(await engine.presence(channel)) == {"c"}


async def test_a_shard_started_again_keeps_one_connection_pair(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    """Cluster discovery can start a master's shard before the engine's start does: a
    second pair of connections would deliver each message twice and outlive close()."""
    engine, events = await start(engines, redis_server.url, prefix="twice")
    shard = engine._shards[0]
    task = shard._task
    assert shard.handler is not None
    shard.start(shard.handler)
    assert shard._task is task
    await engine.subscribe("once")
    await engine.publish("once", Publication(b"1"), history=HISTORY)
    await eventually(lambda: events.offsets("once") == [1])
    with redis_server.client() as conn:
        names = [c["name"] for c in conn.client_list() if c["name"].startswith("twice-")]
    assert sorted(names) == ["twice-cmd", "twice-sub"]
    await asyncio.sleep(0.2)
    assert events.offsets("once") == [1]


def test_jump_hash_moves_few_keys_when_a_shard_is_added() -> None:
    before = [jump_hash(key, 4) for key in range(10_000)]
    after = [jump_hash(key, 5) for key in range(10_000)]
    moved = sum(1 for b, a in zip(before, after, strict=True) if a != b)
    assert all(0 <= b < 4 for b in before)
    assert 1500 < moved < 2500  # about 1/5


async def test_password_in_the_url(engines: list[RedisEngine]) -> None:
    with RedisServer("--requirepass", "s3cret") as server:
        engine, events = await start(engines, server.url)
        await engine.subscribe("c")
        await engine.publish("c", Publication(b"1"), history=HISTORY)
        await eventually(lambda: events.offsets("c") == [1])
        wrong = RedisEngine(redis_settings(server.url.replace("s3cret", "nope")))
        await wrong.start(Recorder())
        try:
            assert not wrong.available
        finally:
            await wrong.close()


async def test_sentinel_failover_keeps_acknowledged_publications(
    engines: list[RedisEngine],
) -> None:
    """A master, two replicas, three sentinels; acks wait for one replica (WAIT)."""
    with RedisServer() as master:
        replicas = [
            RedisServer("--replicaof", "127.0.0.1", str(master.port), workdir=master.workdir)
            for _ in range(2)
        ]
        sentinels: list[Sentinel] = []
        try:
            for replica in replicas:
                replica.start()

            def replicas_online() -> bool:
                with master.client() as conn:
                    info = conn.info("replication")
                return all("online" in str(info.get(f"slave{i}", "")) for i in range(2))

            await eventually(replicas_online, timeout=10)
            sentinels = [Sentinel(master.port, master.workdir) for _ in range(3)]
            await eventually(lambda: all(s.master() for s in sentinels), timeout=10)
            engine, events = await start(
                engines,
                master.url,
                sentinel_addresses=[s.url for s in sentinels],
                sentinel_master_name="roomcast",
                replicas_to_wait=1,
            )
            assert engine.available
            await engine.subscribe("c")
            acked = [await engine.publish("c", Publication(b"1"), history=HISTORY)]
            master.kill()
            ports = {r.port for r in replicas}
            await eventually(lambda: (sentinels[0].master() or ("", 0))[1] in ports, timeout=20)
            deadline = time.monotonic() + 20
            while True:  # until the other replica follows the new master, WAIT cannot succeed
                try:
                    acked.append(await engine.publish("c", Publication(b"2"), history=HISTORY))
                    break
                except EngineUnavailable:
                    assert time.monotonic() < deadline, "no publish succeeded after failover"
                    await asyncio.sleep(0.2)
            result = await engine.history("c", history=HISTORY, since=None, limit=-1)
            assert acked[0] is not None and result.position.epoch == acked[0].epoch
            offsets = [p.offset for p in result.publications]
            assert offsets[0] == 1 and offsets == list(range(1, len(offsets) + 1))
            assert acked[-1] is not None and acked[-1].offset == offsets[-1]
            await eventually(lambda: events.offsets("c")[-1:] == [offsets[-1]])
            assert events.offsets("c") == offsets
            assert events.insufficient == []
        finally:
            for sentinel in sentinels:
                sentinel.kill()
            for replica in replicas:
                replica.kill()


async def test_metrics_are_exported(redis_server: RedisServer, engines: list[RedisEngine]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    engine, _ = await start(engines, redis_server.url)
    await asyncio.sleep(0.3)  # one health check
    registry = CollectorRegistry()
    registry.register(engine.metrics_collector)
    text = generate_latest(registry).decode()
    for name in (
        "roomcast_engine_redis_round_trip_seconds_bucket",
        "roomcast_engine_pubsub_messages_total",
        "roomcast_engine_reconnects_total",
        "roomcast_engine_resubscribe_seconds_count",
        "roomcast_engine_holes_filled_total",
    ):
        assert name in text


async def test_publish_to_write_latency_is_observed_with_redis(shared_redis: RedisServer) -> None:
    """Publications arriving from Redis carry their arrival time into the latency histogram."""
    settings = load_settings(
        environ={"ROOMCAST_TOKEN_HMAC_SECRET": SECRET}, overrides=dict(PROTOCOL_CONFIG)
    )
    app = build_app(settings, RedisEngine(redis_settings(shared_redis.url)))
    async with serving(app) as server, await RawSocket.open(server.port) as sock:
        assert await sock.upgrade() == 101
        await sock.connect()
        sock.send_text(json.dumps({"id": 2, "subscribe": {"channel": "timed"}}))
        await sock.read_frame()
        node = app[NODE]
        info = node.rules.resolve("timed")
        await node.publish("timed", info, Publication(b'{"n": 1}'), source="api")
        push = b""
        while b'"pub"' not in push:  # the join push comes first
            _, push = await sock.read_frame()
        assert b'"data":{"n": 1}' in push
        count = node.metrics.registry.get_sample_value("roomcast_publish_to_write_seconds_count")
        assert count == 1


async def test_timed_frames_wait_until_no_node_of_an_earlier_release_is_live(
    redis_server: RedisServer, engines: list[RedisEngine]
) -> None:
    """A node of the release before timed frames skips them, so while one is in the
    registry publications go out in the frame it reads; once it is gone, timed."""
    engine, _ = await start(engines, redis_server.url, prefix="rollout")
    keys = RedisKeys("rollout")
    me = NodeInfo("new", "new", "", 0, 0, 0, 0, 0)
    earlier = NodeInfo("earlier", "earlier", "", 0, 0, 0, 0, 0)
    with redis_server.client() as conn:  # what the earlier release's announce writes
        record = json.dumps(dataclasses.asdict(earlier))
        conn.eval(ADD_MEMBER.source, 2, *keys.nodes, "earlier", record, 60_000)
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.pubsub("rolled"))

    async def frame_of(n: int) -> bytes:
        await engine.publish("rolled", Publication(b'{"n":%d}' % n), history=HISTORY)
        message = await asyncio.to_thread(pubsub.get_message, timeout=5)
        while message is None or message["type"] != "message":
            message = await asyncio.to_thread(pubsub.get_message, timeout=5)
        return bytes(message["data"])

    try:
        await engine.announce(me, 9)
        assert not engine.metrics_collector.timed_frames
        first = await frame_of(1)
        assert released_decode(first) is not None
        assert released_decode(first)[::2] == (1, b'{"n":1}')  # type: ignore[index]
        with redis_server.client() as conn:  # its record gone, as when it expires
            conn.hdel(keys.nodes[0], "earlier")
        await engine.announce(me, 9)
        assert engine.metrics_collector.timed_frames
        second = await frame_of(2)
        assert released_decode(second) is None
        wall_offset = time.time() - time.monotonic()
        offset, _, pub = decode_timed_message(second, time.monotonic(), wall_offset)
        assert (offset, pub.data) == (2, b'{"n":2}')
    finally:
        pubsub.close()


async def test_publish_to_write_runs_from_the_publisher_on_another_node(
    shared_redis: RedisServer,
) -> None:
    """Two servers on one Redis: a publication held up on its way to the subscriber's
    node (that node is stopped for a second) shows the hold-up in the subscriber
    node's histogram, which timing from its own receipt would hide."""
    redis_config = {"address": [shared_redis.url], "prefix": "timed2"}
    config = {**PROTOCOL_CONFIG, "engine": {"type": "redis", "redis": redis_config}}
    publisher = start_server(config)
    subscriber_node = start_server(config)
    try:
        async with aiohttp.ClientSession() as session:

            async def metric(server: ServerProcess, line: str) -> float | None:
                async with session.get(f"{server.http_url}/metrics") as response:
                    for row in (await response.text()).splitlines():
                        if row.startswith(line + " "):
                            return float(row.split()[-1])
                return None

            async def timed(server: ServerProcess) -> bool:
                return await metric(server, "roomcast_engine_redis_timed_frames") == 1.0

            deadline = time.monotonic() + 15  # each sees the other at its next announce
            while not (await timed(publisher) and await timed(subscriber_node)):
                assert time.monotonic() < deadline, "the nodes never agreed on timed frames"
                await asyncio.sleep(0.2)
            async with await RawClient.open(subscriber_node.ws_url) as client:
                await client.connect(token("reader"))
                await client.call(2, "subscribe", {"channel": "plain:held"})
                subscriber_node.process.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.to_thread(
                        publisher.api, "publish", {"channel": "plain:held", "data": {"n": 1}}
                    )
                    await asyncio.sleep(1.0)  # the hold-up itself, not a wait for a result
                finally:
                    subscriber_node.process.send_signal(signal.SIGCONT)
                push = await client.recv()
                assert push["push"]["pub"]["data"] == {"n": 1}
            histogram = "roomcast_publish_to_write_seconds"
            assert await metric(subscriber_node, f"{histogram}_count") == 1.0
            assert await metric(subscriber_node, f'{histogram}_bucket{{le="0.5"}}') == 0.0
    finally:
        subscriber_node.stop()
        publisher.stop()


async def test_ready_while_a_minority_of_shards_is_down() -> None:
    """One shard of three down: the node stays ready (its Service keeps it), the shard's
    metric says which one is down, and its channels fail fast; two down: not ready."""
    with redis_servers(3) as servers:
        settings = load_settings(environ={}, overrides={"engine": {"type": "redis"}})
        engine = RedisEngine(redis_settings(servers[0].url, address=[s.url for s in servers]))
        app = build_app(settings, engine)
        async with serving(app) as server, aiohttp.ClientSession() as session:

            async def ready() -> int:
                async with session.get(f"{server.http_url}/ready") as response:
                    return response.status

            labels = [s.url for s in servers]

            def shard_up() -> list[float]:
                registry = app[NODE].metrics.registry
                return [
                    registry.get_sample_value("roomcast_engine_redis_shard_up", {"shard": label})
                    or 0.0
                    for label in labels
                ]

            assert await ready() == 200
            assert shard_up() == [1.0, 1.0, 1.0]
            servers[0].kill()
            await eventually(lambda: shard_up() == [0.0, 1.0, 1.0])
            assert engine.available and await ready() == 200
            channels = (f"c{i}" for i in range(1000))
            down = next(c for c in channels if engine._shard(c).label == labels[0])
            with pytest.raises(EngineUnavailable):
                await engine.publish(down, Publication(b"1"), history=HISTORY)
            servers[1].kill()
            await eventually(lambda: not engine.available)
            assert await ready() == 503


async def test_a_timed_out_command_leaves_the_connection_and_the_reply_order_intact(
    shared_redis: RedisServer,
) -> None:
    """The late reply is dropped, not given to the next command; nothing reconnects."""
    conn = await open_connection(RedisAddress.parse(shared_redis.url), connect_seconds=2)
    try:
        with pytest.raises(EngineUnavailable):
            await conn.execute("BLPOP", "never-filled", "1", wait_seconds=0.05)
        assert conn.is_open
        assert await conn.execute("ECHO", "after", wait_seconds=5) == b"after"
    finally:
        conn.close()


async def test_a_slow_command_does_not_drop_the_shards_subscriptions(
    shared_redis: RedisServer, engines: list[RedisEngine]
) -> None:
    """Commands behind a slow one time out; the connections and subscriptions stay."""
    engine, events = await start(
        engines, shared_redis.url, io_timeout=0.3, health_check_interval=30
    )
    await engine.subscribe("steady")
    with pytest.raises(EngineUnavailable):  # Redis holds the engine's connection for 1 s
        await engine._shard("steady").execute("BLPOP", "never-filled", "1")
    deadline = time.monotonic() + 10
    while True:
        try:
            position = await engine.publish("steady", Publication(b"1"), history=HISTORY)
            break
        except EngineUnavailable:  # queued behind the BLPOP: timed out, dropped when answered
            assert time.monotonic() < deadline
    assert position is not None
    await eventually(lambda: position.offset in events.offsets("steady"))
    assert engine.metrics_collector.reconnects == 0 and engine.available
