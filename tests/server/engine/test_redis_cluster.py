"""Several server processes on Redis, driven through the unmodified Python SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from centrifuge import CentrifugeError, Client

from .cluster_support import Front, Log, cluster_config, sdk_client, server_nodes
from .helpers import eventually
from .redis_servers import RedisCluster, RedisServer, redis_servers

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


async def connect_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.connect() for client in clients))


async def subscribed(sub: Any) -> None:
    """Subscribe and wait for the reply (the SDK's subscribe() only starts it)."""
    await sub.subscribe()
    await sub.ready(timeout=10)


async def disconnect_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)


@contextlib.contextmanager
def one_redis(mode: str) -> Iterator[dict[str, Any]]:
    """The engine's redis settings for one standalone server or a 3-master Cluster."""
    if mode == "cluster":
        with RedisCluster(3) as cluster:
            yield {"address": cluster.urls[:1], "cluster": True}
    else:
        with redis_servers(1) as (redis,):
            yield {"address": [redis.url]}


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
async def test_three_nodes_behave_as_one_server(mode: str) -> None:
    with one_redis(mode) as redis, server_nodes(3, cluster_config(**redis)) as nodes:
        users = ["ann", "ben", "cat"]
        clients = [sdk_client(node.ws_url, user) for node, user in zip(nodes, users, strict=True)]
        try:
            await connect_all(clients)
            logs = [Log("room") for _ in clients]
            subs = [
                c.new_subscription("room", events=log) for c, log in zip(clients, logs, strict=True)
            ]
            for sub in subs:
                await subscribed(sub)
            await subs[0].publish({"from": "ann"})
            await subs[2].publish({"from": "cat"})
            expected = [(1, {"from": "ann"}), (2, {"from": "cat"})]
            await eventually(lambda: all(log.deliveries == expected for log in logs))
            presence = await subs[1].presence()
            assert sorted(info.user for info in presence.clients.values()) == users
            history = await subs[2].history(limit=10)
            assert [p.data for p in history.publications] == [d for _, d in expected]
            info = nodes[0].api("info", {})["result"]
            assert sorted(n["name"] for n in info["nodes"]) == ["node0", "node1", "node2"]

            def channel_count() -> Any:
                return nodes[1].api("channels", {})["result"]["channels"].get("room")

            await eventually(lambda: channel_count() == {"num_clients": 3}, timeout=10)
            # join and leave cross nodes; the API publishes through Redis too
            late = sdk_client(nodes[2].ws_url, "dan")
            clients.append(late)
            await late.connect()
            joined: list[str] = []

            class Joins(Log):
                async def on_join(self, ctx: Any) -> None:
                    joined.append(ctx.info.user)

            watcher = sdk_client(nodes[0].ws_url, "eve")
            clients.append(watcher)
            await watcher.connect()
            await subscribed(watcher.new_subscription("room", events=Joins("room")))
            await subscribed(late.new_subscription("room"))
            await eventually(lambda: "dan" in joined)
            nodes[1].api("publish", {"channel": "room", "data": {"from": "api"}})
            await eventually(
                lambda: all(log.deliveries[-1:] == [(3, {"from": "api"})] for log in logs)
            )
        finally:
            await disconnect_all(clients)


async def test_sharded_over_two_redis() -> None:
    with redis_servers(2) as servers:
        config = cluster_config([s.url for s in servers])
        with server_nodes(2, config) as nodes:
            a, b = sdk_client(nodes[0].ws_url, "a"), sdk_client(nodes[1].ws_url, "b")
            try:
                await connect_all([a, b])
                channels = [f"ch{i}" for i in range(12)]
                logs = {ch: Log(ch) for ch in channels}
                for ch in channels:
                    await subscribed(b.new_subscription(ch, events=logs[ch]))
                for ch in channels:
                    nodes[0].api("publish", {"channel": ch, "data": {"ch": ch}})
                await eventually(
                    lambda: all(log.deliveries == [(1, {"ch": c})] for c, log in logs.items())
                )
                keys = []
                for server in servers:
                    with server.client() as conn:
                        keys.append(len(conn.keys("roomcast.stream.*")))
                assert sum(keys) == len(channels) and min(keys) > 0
            finally:
                await disconnect_all([a, b])


async def test_kill_9_of_a_node_its_clients_move_and_recover() -> None:
    with redis_servers(1) as (redis,), server_nodes(3, cluster_config([redis.url])) as nodes:
        async with Front([n.port for n in nodes]).running() as front:
            clients = [sdk_client(front.ws_url, f"u{i}") for i in range(6)]
            try:
                await connect_all(clients)
                logs = [Log("feed") for _ in clients]
                for client, log in zip(clients, logs, strict=True):
                    await subscribed(client.new_subscription("feed", events=log))
                nodes[1].api("publish", {"channel": "feed", "data": {"n": 1}})
                await eventually(lambda: all(len(log.deliveries) == 1 for log in logs))
                nodes[0].stop()  # SIGKILL: no goodbye to clients, Redis or presence
                for n in range(2, 6):
                    nodes[1 + n % 2].api("publish", {"channel": "feed", "data": {"n": n}})
                    await asyncio.sleep(0.2)
                want = [(n, {"n": n}) for n in range(1, 6)]
                await eventually(lambda: all(log.deliveries == want for log in logs), timeout=20)
                moved = [log for log in logs if len(log.subscribed) > 1]
                assert moved, "no client was on the killed node"
                assert all(ctx.recovered for log in moved for ctx in log.subscribed[1:])

                def present() -> int:
                    result = nodes[2].api("presence_stats", {"channel": "feed"})["result"]
                    return int(result["num_clients"])

                # the dead node's entries expire (3 x presence_update_interval)
                try:
                    await eventually(lambda: present() == len(clients), timeout=15)
                except AssertionError:
                    assert present() == len(clients)
            finally:
                await disconnect_all(clients)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return bool(json.loads(response.read())["ready"])
    except OSError:
        return False


async def test_redis_restart_under_load_loses_nothing_acknowledged() -> None:
    """Clients on three nodes publish and subscribe while Redis is killed and restarted.

    Redis runs with AOF (fsync always), so what was acknowledged survives. Afterwards
    every subscriber has every acknowledged publication of its channels, with offsets
    contiguous and no duplicate delivered to the application.
    """
    num_clients = int(os.environ.get("ROOMCAST_FAULT_CLIENTS", "200"))
    num_channels, per_client, publishers = 20, 3, 20
    rng = random.Random(7)
    with (
        RedisServer("--appendonly", "yes", "--appendfsync", "always") as redis,
        server_nodes(3, cluster_config([redis.url])) as nodes,
    ):
        clients = [sdk_client(nodes[i % 3].ws_url, f"user{i}") for i in range(num_clients)]
        logs: list[Log] = []
        subs: dict[str, Any] = {}
        try:
            for start in range(0, num_clients, 50):
                await connect_all(clients[start : start + 50])
            for i, client in enumerate(clients):
                for k in range(per_client):
                    channel = f"load{(i + k * 7) % num_channels}"
                    log = Log(channel)
                    sub = client.new_subscription(channel, events=log)
                    logs.append(log)
                    subs.setdefault(f"{i}:{channel}", sub)
            await asyncio.gather(*(subscribed(sub) for sub in subs.values()))
            acked: dict[str, set[str]] = defaultdict(set)
            failed = 0
            stop = asyncio.Event()

            async def publisher(n: int) -> None:
                nonlocal failed
                channel = f"load{n % num_channels}"
                seq = 0
                while not stop.is_set():
                    seq += 1
                    payload = {"p": n, "seq": seq}
                    try:
                        await clients[n].publish(channel, payload, timeout=3)
                        acked[channel].add(f"{n}:{seq}")
                    except (CentrifugeError, TimeoutError, OSError):
                        failed += 1
                    await asyncio.sleep(rng.uniform(0.1, 0.3))

            tasks = [asyncio.create_task(publisher(n)) for n in range(publishers)]
            await asyncio.sleep(3)
            redis.kill()
            await eventually(lambda: not _ready(nodes[0].port), timeout=5)
            await asyncio.sleep(2)
            redis.start()
            await eventually(lambda: all(_ready(n.port) for n in nodes), timeout=15)
            await asyncio.sleep(3)
            stop.set()
            await asyncio.gather(*tasks)
            assert failed > 0, "the outage did not reach the publishers"
            assert sum(len(v) for v in acked.values()) > publishers * 10

            def complete() -> bool:
                return all(
                    acked[log.channel] <= {f"{d['p']}:{d['seq']}" for _, d in log.deliveries}
                    for log in logs
                )

            await eventually(complete, timeout=30)
            resubscribed = sum(len(log.subscribed) - 1 for log in logs)
            print(
                f"clients={num_clients} subscriptions={len(logs)}"
                f" acked={sum(len(v) for v in acked.values())} failed={failed}"
                f" deliveries={sum(len(log.deliveries) for log in logs)}"
                f" resubscribes={resubscribed}"
            )
            for log in logs:
                offsets = [offset for offset, _ in log.deliveries]
                assert len(offsets) == len(set(offsets)), f"duplicate on {log.channel}"
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (
                    f"gap on {log.channel}"
                )
            assert all(node.process.poll() is None for node in nodes), "a node crashed"
        finally:
            for start in range(0, num_clients, 50):
                await disconnect_all(clients[start : start + 50])
