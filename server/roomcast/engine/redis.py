"""The Redis engine: many Roomcast nodes behave as one server.

Layout in Redis (``{channel}`` is a hash tag, so a channel's keys live on one shard):

* ``<prefix>.stream.{ch}``: the history stream; entry id ``<offset>-0``, field ``d``.
* ``<prefix>.meta.{ch}``: hash with the epoch ``e`` and the top offset ``s``.
* ``<prefix>.ch.{ch}``: the pub/sub channel of publications, joins and leaves.
* ``<prefix>.presence.data.{ch}`` / ``.expire.{ch}``: client info, and expiry by Redis time.
* ``<prefix>.nodes.data.{nodes}`` / ``.expire.{nodes}``: the node registry.
* ``<prefix>.timed.data.{nodes}`` / ``.expire.{nodes}``: the nodes that read timed frames.
* ``<prefix>.control``: commands for every node.
* ``<prefix>.node.<uid>``: messages for one node (forwarded emulation requests).

Channels are spread over several Redis servers by consistent hashing (``address``
lists them), over Redis Cluster nodes by slot (``cluster``), or go to the master that
Sentinel names. Each shard reconnects on its own; while one is down, calls for its
channels raise ``EngineUnavailable`` at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

import orjson
from redis.crc import key_slot

from roomcast.config import RedisSettings

from .base import (
    ClientInfo,
    EngineEventHandler,
    EngineUnavailable,
    HistoryOptions,
    HistoryResult,
    NodeInfo,
    Publication,
    StreamPosition,
)
from .memory import IDEMPOTENCY_WINDOW_SECONDS, new_epoch
from .redis_codec import decode_body, encode_body, parse_entry_offset, timed_prefix
from .redis_protocol import ConnectionLost, RedisAddress, RedisReplyError, open_connection
from .redis_redirects import Redirect
from .redis_scripts import ADD_MEMBER, HISTORY, LIVE_MEMBERS, PUBLISH
from .redis_shard import RedisEngineMetrics, RedisKeys, Shard, backoff_seconds

log = logging.getLogger(__name__)

_CLUSTER_SLOTS = 16384


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach): adding a shard moves 1/n of channels."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


CLOSE_GRACE_SECONDS = 0.05


class RedisEngine:
    """Broker, history, presence and node registry on one or more Redis servers."""

    name = "redis"

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._keys = RedisKeys(settings.prefix)
        self.metrics_collector = RedisEngineMetrics(self._shard_states)
        self._shards: list[Shard] = []
        #: Cluster: shard index per slot, -1 while no master is known for it
        self._slots: list[int] = []
        self._by_endpoint: dict[tuple[str, int], Shard] = {}
        self._refresh_lock = asyncio.Lock()
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._publish_cmd = (
            "SPUBLISH" if settings.cluster and settings.sharded_pubsub else "PUBLISH"
        )
        self._handler: EngineEventHandler | None = None
        #: set by close(): no slot map refresh may add or start a shard after it
        self._closed = False

    @property
    def available(self) -> bool:
        """A majority of the shards is reachable.

        This is what readiness follows: with one shard of several down, channels on
        the others still work, and taking every pod out of its Service would cut
        those too. Commands on the down shard's channels fail fast meanwhile.
        """
        shards = self._shards
        return sum(shard.available for shard in shards) * 2 > len(shards)

    def _shard_states(self) -> list[tuple[str, bool]]:
        return [(shard.label, shard.available) for shard in self._shards]

    async def start(self, handler: EngineEventHandler) -> None:
        self._handler = handler
        self._keys.node = self._keys.node_channel(handler.uid)
        s = self._settings
        if s.cluster:
            await self._discover_cluster()
        elif s.sentinel_addresses:
            self._shards = [self._make_shard("sentinel", self._resolve_sentinel, master=True)]
        else:
            for url in s.address:
                address = self._address(url)
                self._shards.append(self._make_shard(str(address), _fixed(address)))
        for shard in self._shards:
            shard.start(handler)
        await asyncio.gather(
            *(shard.wait_first_attempt(s.connect_timeout * 2) for shard in self._shards)
        )

    def _make_shard(self, label: str, resolve: Any, *, master: bool = False) -> Shard:
        s = self._settings
        cluster_hooks: dict[str, Any] = (
            {
                "on_slots_stale": self._slots_stale,
                "before_resubscribe": self._refresh_slots,
                "redirect_target": self._redirect_target,
            }
            if s.cluster
            else {}
        )
        return Shard(
            label=label,
            resolve=resolve,
            settings=s,
            keys=self._keys,
            metrics=self.metrics_collector,
            sharded_pubsub=s.cluster and s.sharded_pubsub,
            carries_control=not self._shards,
            require_master=master,
            **cluster_hooks,
        )

    def _address(self, url: str) -> RedisAddress:
        """A URL with the TLS settings as defaults for what its query does not say."""
        s = self._settings
        return RedisAddress.parse(
            url,
            tls_verify=not s.tls_skip_verify,
            tls_ca_file=s.tls_ca_file or None,
            tls_cert_file=s.tls_cert_file or None,
            tls_key_file=s.tls_key_file or None,
        )

    async def close(self) -> None:
        """Stop the slot map refresh, then every shard.

        Closing first: a shard being closed may be inside its own refresh (after a
        reconnect) or drop a subscription that asks for one, and a map applied then
        would open and start a shard for a new master that nobody closes.
        """
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        await asyncio.gather(*(shard.close() for shard in self._shards))
        # A connection attempt cancelled above closes its socket a few loop turns later
        # (the connect's cancellation, then the transport's close): give it those turns,
        # so that a caller closing the loop next leaves no socket open.
        await asyncio.sleep(CLOSE_GRACE_SECONDS)

    # Routing -------------------------------------------------------------------
    def _shard(self, channel: str) -> Shard:
        shards = self._shards
        if not shards:
            raise EngineUnavailable("redis engine is not started")
        if self._slots:
            index = self._slots[self._slot(channel)]
            if index < 0:
                self._slots_stale()
                raise EngineUnavailable("no redis cluster master serves this channel's slot")
            return shards[index]
        if len(shards) == 1:
            return shards[0]
        return shards[jump_hash(zlib.crc32(channel.encode()), len(shards))]

    def _slot(self, channel: str) -> int:
        """The channel's Cluster slot: every key of a channel hashes like its pub/sub key."""
        return key_slot(self._keys.pubsub(channel))

    def _nodes_shard(self) -> Shard:
        if self._slots:
            index = self._slots[key_slot(self._keys.nodes[0].encode())]
            if index < 0:
                self._slots_stale()
                raise EngineUnavailable("no redis cluster master serves the node registry")
            return self._shards[index]
        if not self._shards:
            raise EngineUnavailable("redis engine is not started")
        return self._shards[0]

    async def _resolve_sentinel(self) -> RedisAddress:
        """Ask the sentinels, in order, where the master is now."""
        s = self._settings
        base = self._address(s.address[0]) if s.address else RedisAddress()
        errors: list[str] = []
        for url in s.sentinel_addresses:
            sentinel = self._address(url)
            try:
                conn = await open_connection(sentinel, connect_seconds=s.connect_timeout)
                try:
                    reply = await conn.execute(
                        "SENTINEL",
                        "get-master-addr-by-name",
                        s.sentinel_master_name,
                        wait_seconds=s.io_timeout,
                    )
                finally:
                    conn.close()
            except (EngineUnavailable, RedisReplyError) as exc:
                errors.append(f"{sentinel}: {exc}")
                continue
            if reply:
                return base.with_endpoint(reply[0].decode(), int(reply[1]))
            errors.append(f"{sentinel}: master {s.sentinel_master_name!r} unknown")
        raise ConnectionLost("no sentinel named a master: " + "; ".join(errors))

    async def _discover_cluster(self) -> None:
        """Read the slot map; a cluster still forming gets until the connect deadline."""
        deadline = asyncio.get_running_loop().time() + self._settings.connect_timeout * 2
        while True:
            ranges = await self._read_slot_map()
            self._apply_slot_map(ranges)
            if -1 not in self._slots or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.05)

    async def _read_slot_map(self) -> list[Any]:
        """CLUSTER SLOTS from the first known master or seed that answers."""
        s = self._settings
        errors: list[str] = []
        candidates = [shard.address for shard in self._shards if shard.address is not None]
        candidates.extend(self._address(url) for url in s.address)
        for address in candidates:
            try:
                conn = await open_connection(address, connect_seconds=s.connect_timeout)
                try:
                    ranges: list[Any] = await conn.execute(
                        "CLUSTER", "SLOTS", wait_seconds=s.io_timeout
                    )
                    return ranges
                finally:
                    conn.close()
            except (EngineUnavailable, RedisReplyError) as exc:
                errors.append(f"{address}: {exc}")
        raise EngineUnavailable("no cluster node answered: " + "; ".join(errors))

    def _apply_slot_map(self, ranges: list[Any]) -> None:
        """Route by the new map; channels whose slot moved go, with their position, to
        the new owner, which subscribes and fills from the stream what it missed."""
        seed = self._address(self._settings.address[0])
        slots = [-1] * _CLUSTER_SLOTS
        for start, end, master, *_ in ranges:
            endpoint = (master[0].decode() or seed.host, int(master[1]))
            shard = self._by_endpoint.get(endpoint)
            if shard is None:
                address = seed.with_endpoint(*endpoint)
                shard = self._make_shard(str(address), _fixed(address))
                self._by_endpoint[endpoint] = shard
                self._shards.append(shard)
                if self._handler is not None and self._slots:  # found after start
                    shard.start(self._handler)
            index = self._shards.index(shard)
            slots[int(start) : int(end) + 1] = [index] * (int(end) - int(start) + 1)
        self._slots = slots
        for index, shard in enumerate(self._shards):
            for channel in shard.channels():
                owner = slots[self._slot(channel)]
                if owner >= 0 and owner != index:
                    state = shard.detach(channel)
                    if state is not None:
                        self._shards[owner].adopt(state)
            shard.resubscribe_orphans()

    def _redirect_target(self, redirect: Redirect) -> Shard | None:
        """The known master a MOVED or ASK reply names (a new one waits for the map)."""
        host = redirect.host or self._address(self._settings.address[0]).host
        return self._by_endpoint.get((host, redirect.port))

    def _slots_stale(self) -> None:
        """A MOVED reply or a dropped subscription: re-read the slot map soon, once."""
        if self._closed:
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_again = True
            return
        self._refresh_task = asyncio.ensure_future(self._refresh_soon())

    async def _refresh_soon(self) -> None:
        s = self._settings
        failures = 0
        while True:
            self._refresh_again = False
            try:
                await self._refresh_slots()
                failures = 0
            except EngineUnavailable as exc:
                log.warning("redis slot map refresh failed", extra={"error": str(exc)})
                self._refresh_again = True
                failures += 1
            if not self._refresh_again:
                return
            await asyncio.sleep(
                backoff_seconds(failures, s.reconnect_delay_min, s.reconnect_delay_max)
            )

    async def _refresh_slots(self) -> None:
        if self._closed:
            return
        async with self._refresh_lock:
            ranges = await self._read_slot_map()
            if not self._closed:  # close() may have come while the map was read
                self._apply_slot_map(ranges)

    # Broker --------------------------------------------------------------------
    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._shard(channel).unsubscribe(channel)

    async def publish(
        self,
        channel: str,
        pub: Publication,
        *,
        history: HistoryOptions | None,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        shard = self._shard(channel)
        body = encode_body(pub)
        key = self._keys.pubsub(channel)
        prefix = timed_prefix(time.time()) if self.metrics_collector.timed_frames else b""
        if history is None and not idempotency_key:
            await shard.execute(self._publish_cmd, key, b"%sp0::%s" % (prefix, body))
            return None
        keys = [self._keys.stream(channel), self._keys.meta(channel)]
        if idempotency_key:
            keys.append(self._keys.idempotency(channel, idempotency_key))
        size, ttl, meta_ttl = (
            (history.size, history.ttl_seconds, max(history.meta_ttl_seconds, history.ttl_seconds))
            if history is not None
            else (0, 1.0, 1.0)
        )
        offset, epoch = await shard.run_script(
            PUBLISH,
            keys,
            (
                body,
                key,
                size,
                _ms(ttl),
                _ms(meta_ttl),
                new_epoch(),
                self._publish_cmd,
                _ms(IDEMPOTENCY_WINDOW_SECONDS),
                prefix,
            ),
        )
        if offset == -1:  # a retry of an acknowledged publish: answer as the first time
            seen_offset, _, seen_epoch = epoch.partition(b":")
            return StreamPosition(int(seen_offset), seen_epoch.decode()) if history else None
        if self._settings.replicas_to_wait:
            await self._wait_replicas(shard)
        if history is None:
            return None
        pub.offset = offset
        return StreamPosition(offset, epoch.decode())

    async def _wait_replicas(self, shard: Shard) -> None:
        """Acknowledge only what enough replicas hold, so a failover cannot lose it."""
        s = self._settings
        n = await shard.execute("WAIT", s.replicas_to_wait, _ms(s.replica_wait_timeout))
        if int(n) < s.replicas_to_wait:
            raise EngineUnavailable(f"publication reached {n} of {s.replicas_to_wait} replicas")

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).execute(
            self._publish_cmd, self._keys.pubsub(channel), b"j" + info.encode()
        )

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).execute(
            self._publish_cmd, self._keys.pubsub(channel), b"l" + info.encode()
        )

    async def publish_control(self, payload: bytes) -> None:
        control = next((s for s in self._shards if s.carries_control), None)
        if control is None:
            raise EngineUnavailable("redis engine is not started")
        await control.execute("PUBLISH", self._keys.control, payload)

    async def send_to_node(self, uid: str, payload: bytes) -> bool:
        """Plain pub/sub on the shard that carries control, where every node listens.

        PUBLISH counts the receivers; Redis Cluster counts only those on the server
        that took the PUBLISH, so there a node is taken to exist.
        """
        control = next((s for s in self._shards if s.carries_control), None)
        if control is None:
            raise EngineUnavailable("redis engine is not started")
        receivers = await control.execute("PUBLISH", self._keys.node_channel(uid), payload)
        return bool(receivers) or self._settings.cluster

    # History -------------------------------------------------------------------
    async def history(
        self,
        channel: str,
        *,
        history: HistoryOptions,
        since: StreamPosition | None,
        limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        shard = self._shard(channel)
        await shard.wait_ready(channel)
        if reverse:
            start = f"{since.offset - 1}-0" if since is not None else "+"
            end = "-"
        else:
            start = f"{since.offset + 1}-0" if since is not None else "-"
            end = "+"
        top, epoch, entries = await shard.run_script(
            HISTORY,
            (self._keys.stream(channel), self._keys.meta(channel)),
            (
                new_epoch(),
                _ms(max(history.meta_ttl_seconds, history.ttl_seconds)),
                start,
                end,
                limit if limit >= 0 else -1,
                "1" if reverse else "0",
            ),
        )
        pubs = [decode_body(fields[1], parse_entry_offset(eid)) for eid, fields in entries]
        return HistoryResult(pubs, StreamPosition(int(top), epoch.decode()))

    async def remove_history(self, channel: str) -> None:
        await self._shard(channel).execute("DEL", self._keys.stream(channel))

    # Presence ------------------------------------------------------------------
    async def add_presence(self, channel: str, info: ClientInfo, ttl_seconds: float) -> None:
        await self._shard(channel).run_script(
            ADD_MEMBER, self._keys.presence(channel), (info.client, info.encode(), _ms(ttl_seconds))
        )

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        data, expire = self._keys.presence(channel)
        await self._shard(channel).execute_many(
            [("HDEL", data, client_id), ("ZREM", expire, client_id)]
        )

    async def _live(self, shard: Shard, keys: Sequence[str]) -> list[tuple[bytes, bytes]]:
        flat = await shard.run_script(LIVE_MEMBERS, keys, ())
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        members = await self._live(self._shard(channel), self._keys.presence(channel))
        return {client.decode(): ClientInfo.decode(raw) for client, raw in members}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        clients = await self.presence(channel)
        return len(clients), len({info.user for info in clients.values()})

    # Nodes ---------------------------------------------------------------------
    async def announce(self, info: NodeInfo, ttl_seconds: float) -> None:
        """Keep this node in the registry; publish timed frames from now on only if
        every live node reads them (a node of an earlier release would drop them)."""
        shard = self._nodes_shard()
        ttl = _ms(ttl_seconds)
        await shard.run_script(
            ADD_MEMBER, self._keys.nodes, (info.uid, orjson.dumps(dataclasses.asdict(info)), ttl)
        )
        await shard.run_script(ADD_MEMBER, self._keys.timed_readers, (info.uid, b"1", ttl))
        readers = {uid for uid, _ in await self._live(shard, self._keys.timed_readers)}
        nodes = await self._live(shard, self._keys.nodes)
        self.metrics_collector.timed_frames = all(uid in readers for uid, _ in nodes)

    async def nodes(self) -> list[NodeInfo]:
        out: list[NodeInfo] = []
        for _, raw in await self._live(self._nodes_shard(), self._keys.nodes):
            try:
                out.append(NodeInfo(**orjson.loads(raw)))
            except (orjson.JSONDecodeError, TypeError):
                log.warning("bad node record in redis")
        return out


def _fixed(address: RedisAddress) -> Any:
    async def resolve() -> RedisAddress:
        return address

    return resolve
