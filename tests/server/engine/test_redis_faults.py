"""Faults F5 and F6 (a partition, a half-open link): Redis unreachable from one node, TCP still up.

A FaultProxy sits between one node's engine and Redis; the other node talks to Redis
directly and keeps publishing. The cut-off node must notice within a health check
(interval plus the PING's timeout) and, once the proxy heals, deliver every publication
acknowledged meanwhile, in order, or say that it cannot: never a silent gap.
"""

from __future__ import annotations

import asyncio
import copy
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from roomcast.engine import EngineUnavailable, HistoryOptions, Publication
from roomcast.engine.redis import RedisEngine

from .cluster_support import Log, cluster_config, sdk_client, server_nodes
from .fault_proxy import FaultProxy
from .helpers import eventually
from .redis_servers import RedisServer
from .test_redis_engine import engines, start  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

HISTORY = HistoryOptions(size=1000, ttl_seconds=300, meta_ttl_seconds=3600)
HEALTH_CHECK_SECONDS = 0.2
IO_TIMEOUT_SECONDS = 0.5
#: a PING sent just before the fault, its timeout, and scheduling slack
DETECT_WITHIN_SECONDS = HEALTH_CHECK_SECONDS + IO_TIMEOUT_SECONDS + 0.3


@pytest.fixture
async def redis_and_proxy() -> AsyncIterator[tuple[RedisServer, FaultProxy]]:
    with RedisServer() as server:
        async with FaultProxy(server.port).running() as proxy:
            yield server, proxy


async def publish_for(engine: RedisEngine, channel: str, seconds: float) -> list[int]:
    """Publish every 20 ms; the acknowledged offsets."""
    acked: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        position = await engine.publish(channel, Publication(b"x"), history=HISTORY)
        assert position is not None
        acked.append(position.offset)
        await asyncio.sleep(0.02)
    return acked


async def test_f6_half_open_subscriber_connection_is_noticed_and_backfilled(
    redis_and_proxy: tuple[RedisServer, FaultProxy],
    engines: list[RedisEngine],  # noqa: F811
) -> None:
    server, proxy = redis_and_proxy
    node, events = await start(
        engines, proxy.url(), prefix="f6", io_timeout=IO_TIMEOUT_SECONDS, position_check_interval=60
    )
    publisher, _ = await start(engines, server.url, prefix="f6")
    await node.subscribe("c")
    acked = await publish_for(publisher, "c", 0.3)
    await eventually(lambda: events.offsets("c") == acked)
    _cmd, pubsub = proxy.connections  # the shard connects its command connection first
    stalled_at = time.monotonic()
    proxy.stall(pubsub)  # Redis is fine, new connections work: only this one is dead
    acked += await publish_for(publisher, "c", 1.5)
    assert pubsub.closed_by_client_at is not None, "the dead connection was not noticed"
    assert pubsub.closed_by_client_at - stalled_at < DETECT_WITHIN_SECONDS
    await eventually(lambda: events.offsets("c") == acked, timeout=5)
    assert events.insufficient == []
    assert node.metrics_collector.reconnects == 1
    assert acked == list(range(1, len(acked) + 1))


@pytest.mark.parametrize("seconds", [1.0, 3.0])
async def test_f5_partition_fails_fast_then_catches_up(
    redis_and_proxy: tuple[RedisServer, FaultProxy],
    engines: list[RedisEngine],  # noqa: F811
    seconds: float,
) -> None:
    server, proxy = redis_and_proxy
    node, events = await start(
        engines, proxy.url(), prefix="f5", io_timeout=IO_TIMEOUT_SECONDS, position_check_interval=60
    )
    publisher, _ = await start(engines, server.url, prefix="f5")
    await node.subscribe("c")
    acked = await publish_for(publisher, "c", 0.3)
    await eventually(lambda: events.offsets("c") == acked)
    partitioned_at = time.monotonic()
    proxy.partition()
    # publishes on the cut-off node go on until a health check fails, then fail fast
    await eventually(lambda: not node.available, timeout=DETECT_WITHIN_SECONDS)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable):
        await node.publish("c", Publication(b"y"), history=HISTORY)
    assert time.monotonic() - started < 0.05
    acked += await publish_for(publisher, "c", seconds - (time.monotonic() - partitioned_at))
    delivered_before_heal = len(events.offsets("c"))
    proxy.heal()
    healed_at = time.monotonic()
    await eventually(lambda: events.offsets("c") == acked, timeout=10)
    caught_up_seconds = time.monotonic() - healed_at
    assert delivered_before_heal < len(acked)
    assert events.insufficient == []
    # reconnect backoff (at most reconnect_delay_max) plus the resubscribe and one fill
    assert caught_up_seconds < 0.2 + IO_TIMEOUT_SECONDS + 1.0


def engine_counters(http_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        name: float(value)
        for line in text.splitlines()
        if line.startswith("roomcast_engine_") and " " in line
        for name, value in [line.rsplit(" ", 1)]
    }


def fault_config(url: str) -> dict[str, Any]:
    """Fast health checks, and a history window larger than the publications of a test."""
    config = cluster_config([url], io_timeout="0.5s", health_check_interval="0.2s")
    config["channel"] = copy.deepcopy(config["channel"])
    config["channel"]["without_namespace"]["history_size"] = 1000
    return config


async def test_f5_partition_of_one_node_seen_through_the_sdk() -> None:
    """Two nodes; node A reaches Redis through the proxy, the API publishes on node B.

    Every SDK subscriber, on either node, ends with every acknowledged publication
    exactly once and in offset order; node A's subscribers either got the missed ones
    from the node's backfill or were told (a resubscribe with recovery)."""
    with RedisServer() as redis:
        async with FaultProxy(redis.port).running() as proxy:
            with (
                server_nodes(1, fault_config(proxy.url())) as (node_a,),
                server_nodes(1, fault_config(redis.url)) as (node_b,),
            ):
                clients = [
                    sdk_client((node_a if i % 2 else node_b).ws_url, f"u{i}") for i in range(6)
                ]
                try:
                    await asyncio.gather(*(c.connect() for c in clients))
                    logs = [Log("f5") for _ in clients]
                    for client, log in zip(clients, logs, strict=True):
                        sub = client.new_subscription("f5", events=log)
                        await sub.subscribe()
                        await sub.ready(timeout=10)
                    acked: list[int] = []

                    async def publish(seconds: float) -> None:
                        deadline = time.monotonic() + seconds
                        while time.monotonic() < deadline:
                            reply = await asyncio.to_thread(
                                node_b.api, "publish", {"channel": "f5", "data": {"n": len(acked)}}
                            )
                            acked.append(reply["result"]["offset"])
                            await asyncio.sleep(0.03)

                    await publish(0.5)
                    proxy.partition()
                    await publish(3.0)
                    proxy.heal()
                    await publish(0.5)

                    def complete() -> bool:
                        return all([o for o, _ in log.deliveries] == acked for log in logs)

                    try:
                        await eventually(complete, timeout=15)
                    except AssertionError:
                        for log in logs:
                            missing = sorted(set(acked) - {o for o, _ in log.deliveries})
                            print(log.subscribed, missing[:20], len(log.deliveries))
                        raise
                    assert acked == list(range(1, len(acked) + 1))
                    for log in logs:
                        assert [d["n"] for _, d in log.deliveries] == list(range(len(acked)))
                    assert all(ctx.recovered for log in logs for ctx in log.subscribed[1:])
                    counters = engine_counters(node_a.http_url)
                    assert counters["roomcast_engine_reconnects_total"] >= 1
                    filled = counters["roomcast_engine_holes_filled_total"]
                    assert filled >= 1 or any(len(log.subscribed) > 1 for log in logs)
                finally:
                    await asyncio.gather(*(c.disconnect() for c in clients))
