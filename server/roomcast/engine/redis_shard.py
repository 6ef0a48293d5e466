"""One Redis shard: its two connections, reconnects, and the channel streams it carries.

Pub/sub is at most once: a message published while the subscriber connection is down,
or dropped because Redis cut a slow subscriber off, is simply gone. So every
publication with history carries its gap-free offset and each channel's
``ChannelState`` (``redis_ordering``) delivers in order and asks this shard to read
holes from the stream. Holes at the tail (nothing newer arrived) are found by the
position check, after every reconnect and periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roomcast.config import RedisSettings

from .base import EngineEventHandler, EngineUnavailable, Publication
from .redis_codec import (
    decode_body,
    decode_info,
    decode_message,
    decode_timed_message,
    parse_entry_offset,
)
from .redis_ordering import ChannelState
from .redis_protocol import (
    Arg,
    ConnectionLost,
    RedisAddress,
    RedisConnection,
    RedisReplyError,
    open_connection,
)
from .redis_redirects import TRYAGAIN_DELAYS, Redirect, parse_redirect
from .redis_scripts import HISTORY, SCRIPTS, Script

log = logging.getLogger(__name__)

_SUBSCRIBE_BATCH = 512
_CHECK_BATCH = 1000
#: Reply errors after which this connection is talking to the wrong server.
_RECONNECT_ERRORS = ("READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN")
#: Reply errors that mean a Cluster slot moved: the server is fine, the slot map is stale.
_SLOT_MOVED_ERRORS = ("MOVED", "ASK", "TRYAGAIN")


class RedisKeys:
    """Key and channel names; ``{channel}`` is a hash tag so a channel's keys share a slot."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.control = f"{prefix}.control".encode()
        #: this node's own channel, known once the engine starts
        self.node = b""
        self.nodes = (f"{prefix}.nodes.data.{{nodes}}", f"{prefix}.nodes.expire.{{nodes}}")
        #: the live nodes that read timed frames (see redis_codec), a registry of its own
        #: because a release before them refuses node records with fields it does not know
        self.timed_readers = (
            f"{prefix}.timed.data.{{nodes}}",
            f"{prefix}.timed.expire.{{nodes}}",
        )

    def node_channel(self, uid: str) -> bytes:
        return f"{self.prefix}.node.{uid}".encode()

    def broadcast(self) -> list[bytes]:
        """The channels every node listens to on the shard that carries control."""
        return [self.control, self.node] if self.node else [self.control]

    def pubsub(self, channel: str) -> bytes:
        return f"{self.prefix}.ch.{{{channel}}}".encode()

    def stream(self, channel: str) -> str:
        return f"{self.prefix}.stream.{{{channel}}}"

    def meta(self, channel: str) -> str:
        return f"{self.prefix}.meta.{{{channel}}}"

    def idempotency(self, channel: str, key: str) -> str:
        return f"{self.prefix}.idem.{{{channel}}}.{key}"

    def presence(self, channel: str) -> tuple[str, str]:
        tag = f"{{{channel}}}"
        return f"{self.prefix}.presence.data.{tag}", f"{self.prefix}.presence.expire.{tag}"


class RedisEngineMetrics(Collector):
    """Engine counters, plain numbers on the hot path; exported at scrape time."""

    def __init__(self, shard_states: Callable[[], list[tuple[str, bool]]] | None = None) -> None:
        self._shard_states = shard_states
        self.messages_in = 0
        self.redirects: Counter[str] = Counter()  # moved, ask, tryagain
        self.reconnects = 0
        self.holes_detected = 0
        self.holes_filled = 0
        self.insufficient_state = 0
        self.timed_frames = False
        self.round_trip = Histogram(
            "roomcast_engine_redis_round_trip_seconds",
            "Round trip of the health-check PING on each Redis connection.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
            registry=None,
        )
        self.resubscribe = Histogram(
            "roomcast_engine_resubscribe_seconds",
            "Time to resubscribe every channel after a reconnect, up to the last confirmation.",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=None,
        )

    def collect(self) -> Any:
        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        yield counter(
            "roomcast_engine_pubsub_messages", "Pub/sub messages read from Redis.", self.messages_in
        )
        yield counter(
            "roomcast_engine_reconnects",
            "Reconnects to Redis after a lost connection.",
            self.reconnects,
        )
        yield counter(
            "roomcast_engine_holes_detected", "Offset holes seen on pub/sub.", self.holes_detected
        )
        yield counter(
            "roomcast_engine_holes_filled", "Holes filled from the stream.", self.holes_filled
        )
        yield counter(
            "roomcast_engine_insufficient_state",
            "Channels whose subscribers were told publications were lost.",
            self.insufficient_state,
        )
        redirects = CounterMetricFamily(
            "roomcast_engine_redis_redirects",
            "Cluster answers followed while slots move: moved, ask, tryagain.",
            labels=["kind"],
        )
        for kind, n in sorted(self.redirects.items()):
            redirects.add_metric([kind], n)
        yield redirects
        if self._shard_states is not None:
            up = GaugeMetricFamily(
                "roomcast_engine_redis_shard_up",
                "1 while this node reaches the Redis shard (a cluster master).",
                labels=["shard"],
            )
            for label, available in self._shard_states():
                up.add_metric([label], float(available))
            yield up
        timed = GaugeMetricFamily(
            "roomcast_engine_redis_timed_frames",
            "1 while this node publishes with its own time (every node in the registry "
            "reads it); 0 while a node of an earlier release is live.",
        )
        timed.add_metric([], float(self.timed_frames))
        yield timed
        yield from self.round_trip.collect()
        yield from self.resubscribe.collect()


def backoff_seconds(failures: int, low: float, high: float) -> float:
    """Exponential backoff with full jitter, so restarted nodes do not reconnect in step."""
    return random.uniform(low, min(high, low * 2 ** min(failures, 20)))


class Shard:
    """One Redis server (standalone or found through Sentinel) and its channels."""

    def __init__(
        self,
        *,
        label: str,
        resolve: Callable[[], Awaitable[RedisAddress]],
        settings: RedisSettings,
        keys: RedisKeys,
        metrics: RedisEngineMetrics,
        sharded_pubsub: bool = False,
        carries_control: bool = False,
        require_master: bool = False,
        on_slots_stale: Callable[[], None] | None = None,
        before_resubscribe: Callable[[], Awaitable[None]] | None = None,
        redirect_target: Callable[[Redirect], Shard | None] | None = None,
    ) -> None:
        self.label = label
        self._resolve = resolve
        self._settings = settings
        self._keys = keys
        self._metrics = metrics
        self.carries_control = carries_control
        #: time.time() - time.monotonic(): timed frames become monotonic time with it
        self.wall_offset = time.time() - time.monotonic()
        self._require_master = require_master
        self._sharded = sharded_pubsub
        self._sub_cmd, self._unsub_cmd = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded_pubsub else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self.handler: EngineEventHandler | None = None
        self.states: dict[str, ChannelState] = {}
        self._by_key: dict[bytes, ChannelState] = {}
        self._cmd: RedisConnection | None = None
        self._pubsub: RedisConnection | None = None
        self._available = False
        self._ops: list[tuple[bool, bytes]] = []
        self._ops_scheduled = False
        self._confirms: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._first_attempt = asyncio.Event()
        self._closing = False
        self.address: RedisAddress | None = None
        #: Cluster: a reply or push said a slot moved; the engine re-reads the slot map
        self._on_slots_stale = on_slots_stale
        #: Cluster: the shard a MOVED or ASK reply points to, if this node knows it
        self._redirect_target = redirect_target
        #: Cluster: runs after a reconnect, before resubscribing, so channels whose slot
        #: moved meanwhile go to their new owner instead of drawing MOVED here
        self._before_resubscribe = before_resubscribe
        #: unsubscribes sent and not yet confirmed, so an unasked one is recognised
        self._pending_unsub: dict[bytes, int] = {}
        #: channels Redis unsubscribed us from (their slot left this server)
        self._orphans: set[bytes] = set()

    # Lifecycle ---------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._available

    def start(self, handler: EngineEventHandler) -> None:
        """Connect, and stay connected until close(); a second call does nothing.

        A Cluster master found by a later slot map read during discovery is started
        there, and again by the engine's start: a second connection pair would deliver
        every message of its channels twice and outlive close()."""
        if self._task is not None:
            return
        self.handler = handler
        self._task = asyncio.create_task(self._run(), name=f"redis-shard-{self.label}")

    async def wait_first_attempt(self, wait_seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_seconds)

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        # Python 3.11's wait_for can swallow a cancel that races its result: insist.
        while tasks:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=0.1)
            tasks = [task for task in tasks if not task.done()]
        self._disconnect()  # the sockets close a loop turn later: see RedisEngine.close

    async def _run(self) -> None:
        failures = 0
        connected_before = False
        s = self._settings
        while not self._closing:
            try:
                await self._connect()
            except (EngineUnavailable, RedisReplyError, OSError) as exc:
                failures += 1
                self._first_attempt.set()
                delay = backoff_seconds(failures, s.reconnect_delay_min, s.reconnect_delay_max)
                log.warning(
                    "redis connect failed",
                    extra={"shard": self.label, "error": str(exc), "retry_in": round(delay, 3)},
                )
                if self._on_slots_stale is not None:
                    self._on_slots_stale()  # a failed-over master: its slots are elsewhere
                await asyncio.sleep(delay)
                continue
            if connected_before:
                self._metrics.reconnects += 1
                if self._before_resubscribe is not None:
                    try:
                        await self._before_resubscribe()
                    except (EngineUnavailable, RedisReplyError, OSError) as exc:
                        log.warning("redis slot map refresh failed", extra={"error": str(exc)})
            connected_before = True
            failures = 0
            log.info("redis connected", extra={"shard": self.label, "address": str(self.address)})
            try:
                await self._serve()
            except (EngineUnavailable, RedisReplyError, OSError) as exc:
                log.warning("redis connection lost", extra={"shard": self.label, "error": str(exc)})
            finally:
                self._disconnect()
            await asyncio.sleep(backoff_seconds(0, s.reconnect_delay_min, s.reconnect_delay_min))

    async def _connect(self) -> None:
        s = self._settings
        address = await self._resolve()
        cmd = await open_connection(
            address, connect_seconds=s.connect_timeout, name=f"{s.prefix}-cmd"
        )
        try:
            if self._require_master:
                role = await cmd.execute("ROLE", wait_seconds=s.io_timeout)
                if not role or role[0] != b"master":
                    raise ConnectionLost(f"{address} is not a master")
            loads = await cmd.execute_many(
                [("SCRIPT", "LOAD", script.source) for script in SCRIPTS], s.io_timeout
            )
            for reply in loads:
                if isinstance(reply, RedisReplyError):
                    raise reply
            pubsub = await open_connection(
                address,
                connect_seconds=s.connect_timeout,
                on_message=self._on_message,
                on_confirm=self._on_confirm,
                on_redirect=self._on_redirect if self._sharded else None,
                name=f"{s.prefix}-sub",
            )
        except BaseException:
            cmd.close()
            raise
        self.address = address
        self._cmd, self._pubsub = cmd, pubsub
        self._first_attempt.set()

    def _disconnect(self) -> None:
        self._available = False
        for conn in (self._cmd, self._pubsub):
            if conn is not None:
                conn.close()
        self._cmd = self._pubsub = None
        self._ops.clear()
        self._pending_unsub.clear()
        self._orphans.clear()
        error = EngineUnavailable("redis connection lost")
        for waiters in self._confirms.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
                    waiter.exception()  # retrieved: nobody may be waiting any more
        self._confirms.clear()

    async def _serve(self) -> None:
        """Resubscribe, bring channels up to date, then watch the connections."""
        s = self._settings
        cmd, pubsub = self._cmd, self._pubsub
        assert cmd is not None and pubsub is not None
        self._available = True
        started = time.monotonic()
        keys = self._keys.broadcast() if self.carries_control else []
        keys.extend(state.key for state in self.states.values())
        confirms = [self._request(True, key) for key in keys]
        if confirms:
            await asyncio.wait_for(asyncio.gather(*confirms), s.io_timeout + len(keys) / 20_000)
        self._metrics.resubscribe.observe(time.monotonic() - started)
        await self._check_positions()
        next_check = time.monotonic() + s.position_check_interval
        while True:
            done, _ = await asyncio.wait(
                (cmd.closed, pubsub.closed), timeout=s.health_check_interval
            )
            if done:
                raise ConnectionLost("redis connection closed")
            for conn in (cmd, pubsub):
                sent = time.monotonic()
                await conn.execute("PING", wait_seconds=s.io_timeout)
                self._metrics.round_trip.observe(time.monotonic() - sent)
            self.wall_offset = time.time() - time.monotonic()  # follows clock adjustments
            if time.monotonic() >= next_check:
                await self._check_positions()
                next_check = time.monotonic() + s.position_check_interval

    # Commands ----------------------------------------------------------------
    def connection(self) -> RedisConnection:
        """The command connection; fails fast while this shard is down."""
        conn = self._cmd
        if not self._available or conn is None or not conn.is_open:
            raise EngineUnavailable(f"redis shard {self.label} is unavailable")
        return conn

    def _reply_error(self, conn: RedisConnection, exc: RedisReplyError) -> EngineUnavailable:
        message = str(exc)
        if message.startswith(_SLOT_MOVED_ERRORS) and self._on_slots_stale is not None:
            self._on_slots_stale()  # the connection is fine; the next call goes elsewhere
        elif message.startswith(_RECONNECT_ERRORS):
            conn.close()  # a demoted master: find the right server again
        return EngineUnavailable(f"redis: {exc}")

    async def execute(self, *args: Arg) -> Any:
        return await self._command(args, None)

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        conn = self.connection()
        replies = await conn.execute_many(commands, self._settings.io_timeout)
        for reply in replies:
            if isinstance(reply, RedisReplyError):
                raise self._reply_error(conn, reply)
        return replies

    async def run_script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        return await self._command(
            ("EVALSHA", script.sha, len(keys), *keys, *args),
            ("EVAL", script.source, len(keys), *keys, *args),
        )

    async def _command(
        self,
        args: Sequence[Arg],
        source: Sequence[Arg] | None,
        *,
        asking: bool = False,
        redirected: bool = False,
    ) -> Any:
        """Run one command (``source``: the script's EVAL if EVALSHA finds no script),
        following a cluster redirect once and trying again on TRYAGAIN."""
        conn = self.connection()
        for delay in (*TRYAGAIN_DELAYS, None):
            try:
                return await self._send(conn, args, source, asking)
            except RedisReplyError as exc:
                message = str(exc)
                if message.startswith("TRYAGAIN") and delay is not None:
                    self._metrics.redirects["tryagain"] += 1
                    await asyncio.sleep(delay)
                    continue
                redirect = parse_redirect(message)
                target = (
                    self._redirect_target(redirect)
                    if redirect is not None and self._redirect_target is not None
                    else None
                )
                if redirect is None or target is None or redirected:
                    raise self._reply_error(conn, exc) from None
                self._metrics.redirects[redirect.kind.lower()] += 1
                if redirect.kind == "MOVED" and self._on_slots_stale is not None:
                    self._on_slots_stale()
                return await target._command(
                    args, source, asking=redirect.kind == "ASK", redirected=True
                )
        raise AssertionError("unreachable: the last try raises or returns")

    async def _send(
        self, conn: RedisConnection, args: Sequence[Arg], source: Sequence[Arg] | None, asking: bool
    ) -> Any:
        timeout = self._settings.io_timeout
        if asking:
            # One command on the importing node; a script by its source, which it may lack.
            replies = await conn.execute_many([("ASKING",), source or args], timeout)
            for reply in replies:
                if isinstance(reply, RedisReplyError):
                    raise reply
            return replies[1]
        try:
            return await conn.execute(*args, wait_seconds=timeout)
        except RedisReplyError as exc:
            if source is None or not str(exc).startswith("NOSCRIPT"):
                raise
            return await conn.execute(*source, wait_seconds=timeout)

    # Subscriptions -------------------------------------------------------------
    def _request(self, subscribe: bool, key: bytes) -> asyncio.Future[None]:
        """Queue a (un)subscribe for the next batch; subscribes resolve on confirmation."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if subscribe:
            self._confirms.setdefault(key, deque()).append(waiter)
        else:
            waiter.set_result(None)
        self._ops.append((subscribe, key))
        if not self._ops_scheduled:
            self._ops_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_ops)
        return waiter

    def _flush_ops(self) -> None:
        self._ops_scheduled = False
        ops, self._ops = self._ops, []
        pubsub = self._pubsub
        if pubsub is None:
            return
        run: list[bytes] = []
        kind = True
        for subscribe, key in ops:
            if run and (subscribe != kind or len(run) >= _SUBSCRIBE_BATCH):
                self._send_ops(pubsub, kind, run)
                run = []
            kind = subscribe
            run.append(key)
        if run:
            self._send_ops(pubsub, kind, run)

    def _send_ops(self, pubsub: RedisConnection, subscribe: bool, keys: list[bytes]) -> None:
        broadcast = [key for key in self._keys.broadcast() if key in keys] if subscribe else []
        if broadcast:  # control and node channels: plain pub/sub even in Cluster
            pubsub.send("SUBSCRIBE", *broadcast)
            keys = [key for key in keys if key not in broadcast]
        command = self._sub_cmd if subscribe else self._unsub_cmd
        if not subscribe:
            for key in keys:
                self._pending_unsub[key] = self._pending_unsub.get(key, 0) + 1
        if self._sharded:  # one slot per SSUBSCRIBE: Redis refuses CROSSSLOT batches
            for key in keys:
                pubsub.send(command, key)
        elif keys:
            pubsub.send(command, *keys)

    def _on_confirm(self, kind: bytes, key: bytes) -> None:
        if kind in (b"subscribe", b"ssubscribe"):
            waiters = self._confirms.get(key)
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._confirms[key]
                if not waiter.done():
                    waiter.set_result(None)
            return
        pending = self._pending_unsub.get(key, 0)
        if pending > 1:
            self._pending_unsub[key] = pending - 1
        elif pending == 1:
            del self._pending_unsub[key]
        elif key in self._by_key:
            # Redis Cluster unsubscribes everyone from a slot that left this server.
            log.info("redis dropped a subscription", extra={"shard": self.label})
            self._orphans.add(key)
            if self._on_slots_stale is not None:
                self._on_slots_stale()

    def _on_redirect(self, error: RedisReplyError) -> None:
        log.info("redis redirected a subscribe", extra={"shard": self.label, "error": str(error)})
        if self._on_slots_stale is not None:
            self._on_slots_stale()

    async def subscribe(self, channel: str) -> None:
        """Subscribe on Redis, then take the channel's current position as the baseline."""
        state = self.states.get(channel)
        if state is not None and state.has_baseline:
            return
        timeout = self._settings.io_timeout
        if state is None:
            key = self._keys.pubsub(channel)
            state = ChannelState(channel, key, self)
            state.ready = asyncio.get_running_loop().create_future()
            self.states[channel] = state
            self._by_key[key] = state
            if not self._available:
                raise EngineUnavailable(f"redis shard {self.label} is unavailable")
            try:
                await asyncio.wait_for(self._request(True, key), timeout)
            except TimeoutError:
                raise EngineUnavailable("redis subscribe timed out") from None
            reply = await self.execute("HMGET", self._keys.meta(channel), "e", "s")
            if self.states.get(channel) is state and not state.has_baseline:
                state.set_baseline(reply[0], int(reply[1] or 0))
            return
        await self.wait_ready(channel)

    async def wait_ready(self, channel: str) -> None:
        """Wait until the channel's subscription is live (for reads that must follow it)."""
        state = self.states.get(channel)
        if state is None or state.ready is None or state.ready.done():
            return
        if not self._available:
            raise EngineUnavailable(f"redis shard {self.label} is unavailable")
        try:
            await asyncio.wait_for(asyncio.shield(state.ready), self._settings.io_timeout)
        except TimeoutError:
            raise EngineUnavailable("redis subscribe timed out") from None

    def unsubscribe(self, channel: str) -> None:
        state = self.states.pop(channel, None)
        if state is None:
            return
        self._by_key.pop(state.key, None)
        if state.ready is not None and not state.ready.done():
            state.ready.set_result(None)
        if state.key in self._orphans:  # Redis already dropped it; SUNSUBSCRIBE would be MOVED
            self._orphans.discard(state.key)
        elif self._available:
            self._request(False, state.key)

    # Slot moves (Redis Cluster) --------------------------------------------------
    def channels(self) -> list[str]:
        return list(self.states)

    def detach(self, channel: str) -> ChannelState | None:
        """Give up a channel whose slot moved, keeping what was delivered of it.

        No SUNSUBSCRIBE: the old owner already dropped the subscription, and would
        answer MOVED. A subscribe still waiting here fails; the SDK retries it.
        """
        state = self.states.pop(channel, None)
        if state is None:
            return None
        self._by_key.pop(state.key, None)
        self._orphans.discard(state.key)
        error = EngineUnavailable(f"channel moved away from {self.label}")
        for waiter in self._confirms.pop(state.key, ()):
            if not waiter.done():
                waiter.set_exception(error)
        return state

    def adopt(self, state: ChannelState) -> None:
        """Take over a channel from another shard: subscribe, then fill what was missed."""
        self.states[state.channel] = state
        self._by_key[state.key] = state
        state.events = self
        if state.busy:  # a fill or baseline read on the old shard will not finish
            state.stalled = True
        if self._available:
            self._spawn(self._resubscribe([state]))

    def resubscribe_orphans(self) -> None:
        """Subscribe again to channels Redis dropped but whose slot is still ours."""
        orphans = [s for key in self._orphans if (s := self._by_key.get(key)) is not None]
        self._orphans.clear()
        for state in orphans:
            state.stalled = state.stalled or state.busy
        if orphans and self._available:
            self._spawn(self._resubscribe(orphans))

    async def _resubscribe(self, states: list[ChannelState]) -> None:
        try:
            confirms = [self._request(True, state.key) for state in states]
            await asyncio.wait_for(asyncio.gather(*confirms), self._settings.io_timeout)
            await self._check_states(states)
        except (EngineUnavailable, RedisReplyError, TimeoutError) as exc:
            # a full resubscribe after the reconnect brings every channel back
            log.warning("redis resubscribe failed", extra={"shard": self.label, "error": str(exc)})
            if self._pubsub is not None:
                self._pubsub.close()

    # Delivery ------------------------------------------------------------------
    def _on_message(self, key: bytes, frame: bytes, received: float) -> None:
        self._metrics.messages_in += 1
        state = self._by_key.get(key)
        handler = self.handler
        if handler is None:
            return
        if state is None:
            if key == self._keys.control:
                handler.on_control(frame)
            elif key == self._keys.node and key:
                handler.on_node_message(frame)
            return
        kind = frame[:1]
        try:
            if kind == b"t":
                offset, epoch, pub = decode_timed_message(frame, received, self.wall_offset)
            elif kind == b"p":
                offset, epoch, pub = decode_message(frame, received)
            else:
                if kind == b"j":
                    handler.on_join(state.channel, decode_info(frame[1:]))
                elif kind == b"l":
                    handler.on_leave(state.channel, decode_info(frame[1:]))
                return
            if offset == 0:
                handler.on_publication(state.channel, pub, "")
            else:
                state.receive(offset, epoch, pub)
        except ValueError:
            log.warning("bad message from redis", extra={"channel": state.channel})

    # OrderEvents: what the channels' state machines ask of this shard -----------
    def deliver(self, channel: str, pub: Publication, epoch: str) -> None:
        assert self.handler is not None
        self.handler.on_publication(channel, pub, epoch)

    def lost(self, channel: str) -> None:
        self._metrics.insufficient_state += 1
        log.warning("publications lost", extra={"channel": channel})
        if self.handler is not None:
            self.handler.on_insufficient_state(channel)

    def fill(self, state: ChannelState, epoch: bytes, first: int, last: int) -> None:
        self._spawn(self._fill(state, epoch, first, last))

    def hole(self) -> None:
        self._metrics.holes_detected += 1

    async def _fill(self, state: ChannelState, epoch: bytes, first: int, last: int) -> None:
        """Read offsets first..last of the stream for ``state``."""
        channel = state.channel
        try:
            top, meta_epoch, entries = await self.run_script(
                HISTORY,
                (self._keys.stream(channel), self._keys.meta(channel)),
                ("", 0, f"{first}-0", f"{last}-0", -1, "0"),
            )
        except EngineUnavailable:
            if self.states.get(channel) is state:
                state.stalled = True
            return
        if self.states.get(channel) is not state:
            return
        pubs = [decode_body(fields[1], parse_entry_offset(eid)) for eid, fields in entries]
        if state.filled(epoch, first, last, pubs, meta_epoch or None, int(top)):
            self._metrics.holes_filled += 1

    async def _check_positions(self) -> None:
        """Compare each channel's position in Redis with what this node delivered.

        A PING on the subscriber connection after reading the positions is a barrier:
        Redis queued every publication counted in them before the PONG, so an offset
        still missing after the PONG was lost, not late.
        """
        await self._check_states(list(self.states.values()))

    async def _check_states(self, states: list[ChannelState]) -> None:
        for start in range(0, len(states), _CHECK_BATCH):
            batch = states[start : start + _CHECK_BATCH]
            before = [(state.epoch, state.offset, state.has_baseline) for state in batch]
            metas = await self.execute_many(
                [("HMGET", self._keys.meta(state.channel), "e", "s") for state in batch]
            )
            pubsub = self._pubsub
            if pubsub is None:
                raise ConnectionLost("redis subscriber connection lost")
            await pubsub.execute("PING", wait_seconds=self._settings.io_timeout)
            for state, seen, (epoch, top_raw) in zip(batch, before, metas, strict=True):
                # A channel that moved meanwhile is live; its tail is checked next time.
                unchanged = seen == (state.epoch, state.offset, state.has_baseline)
                if self.states.get(state.channel) is state and unchanged:
                    state.check(epoch, int(top_raw or 0))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
